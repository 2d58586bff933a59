"""The two-stage training loop of `fstcn train`: stages, epochs, steps, validation, the log.

`train(config)` runs stage 1 (the lower SCL + auxiliary classifier on single frames), then stage 2 (the
whole network on clip pairs), each with a fresh optimiser and its own learning-rate schedule. After
every epoch it validates (video accuracy on the held-out videos, serving inputs at the centre crop),
saves `last.pt` (and `best.pt` on a better stage-2 accuracy) and appends one line to `log.jsonl`. A time
budget (`--max-minutes`, or a step count) stops it between two steps with `last.pt` saved; `--resume`
continues from there, skipping the batches of the epoch already done. Rank 0's clock decides for every
rank, so they stop together.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from fstcn.model.augment import AugmentConfig
from fstcn.model.train.config import TrainConfig, make_meta, reversal_labels
from fstcn.model.train.data import (
    SkipSampler,
    TrainingSamples,
    ValidationVideos,
    prepare_data,
    stack_videos,
)
from fstcn.model.train.distributed import (
    all_reduce_sum,
    barrier,
    broadcast_flag,
    gather_objects,
    seed_epoch,
    set_rng_state,
    setup_distributed,
    sync_buffers,
    weight_digest,
)
from fstcn.model.train.objectives import check_freeze, stage_loss, stage_objective, train_mode
from fstcn.model.train.optim import build_optimizer, learning_rate
from fstcn.model.train.state import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    Progress,
    Resumed,
    load_initial_weights,
    load_resume,
    save_run,
)

logger = logging.getLogger(__name__)

__all__ = ["LOG_FILE", "TrainResult", "train"]

LOG_FILE = "log.jsonl"


@dataclass
class TrainResult:
    """What a finished (or budget-stopped) run reports."""

    out: str
    completed: bool  # False when --max-minutes stopped it early
    stage: int
    epoch: int
    best_val_accuracy: float | None
    checkpoint: str = ""  # the one to export and evaluate: best.pt when validation chose one, else last.pt
    history: list[dict[str, Any]] = field(default_factory=list)
    weight_digests: list[str] = field(default_factory=list)  # per rank: equal when DDP kept them in sync


def train(config: TrainConfig) -> TrainResult:
    """Run `fstcn train` with `config` (single process, or one rank of a torchrun launch)."""
    trainer = _Trainer(config)
    try:
        return trainer.run()
    finally:
        if trainer.info.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@dataclass
class _Stage:
    """One stage as it trains: its objective (DDP-wrapped in `wrapped`), optimiser, samples and schedule."""

    number: int
    epochs: int
    peak_lr: float
    objective: nn.Module
    wrapped: nn.Module
    optimizer: torch.optim.Optimizer
    samples: TrainingSamples
    sampler: DistributedSampler[Any]
    drop_last: bool
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


class _Trainer:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.info = setup_distributed(config.device)
        threads = config.threads or max(1, (os.cpu_count() or 1) // self.info.local_world_size)
        torch.set_num_threads(threads)
        self.out = Path(config.out)
        self.progress_bars = config.progress and self.info.is_main
        self.history: list[dict[str, Any]] = []
        self.best_val: float | None = None
        self.steps_this_run = 0

    def _log(self, message: str, *args: Any) -> None:
        if self.info.is_main:
            logger.info(message, *args)

    # ---- the run ----------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        config = self.config
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        barrier(self.info)
        from fstcn.core.presets import get_config

        resize_short = get_config(config.preset).resize_short  # fails early on an unknown preset
        self.data = prepare_data(
            config,
            self.info,
            resize_short=resize_short,
            cache_dir=config.cache_dir or str(self.out / "frame-cache"),
            progress=self.progress_bars,
        )
        self._build_model()
        self._log("%s", self._checkpoint_plan())
        resumed = Resumed(Progress(), None, None, None)
        if config.resume:
            resumed = load_resume(
                self.out, model=self.model, labels=self.data.labels, config=config, info=self.info
            )
            self.best_val, self.history = resumed.best_val, resumed.history
        elif self.info.is_main and (self.out / LOG_FILE).exists():
            (self.out / LOG_FILE).unlink()  # a fresh run starts a fresh log
        progress, optimizer_state, rng_state = resumed.progress, resumed.optimizer_state, resumed.rng_state
        for stage in (1, 2):
            if progress.stage > stage:
                continue
            epochs = self._epochs(stage)
            if progress.stage < stage:  # the previous stage just ended: fresh optimiser
                progress, optimizer_state, rng_state = Progress(stage), None, None
            if progress.epochs_done >= epochs:
                continue
            finished = self._run_stage(stage, progress, optimizer_state, rng_state)
            # The stage's DDP wrapper must be gone before the next one wraps the same parameters:
            # its reducer's gradient hooks are removed only when it is destroyed.
            gc.collect()
            if not finished:
                self._log("time budget of %s minutes reached: stopped, last.pt saved", config.max_minutes)
                return self._result(completed=False)
            progress, optimizer_state, rng_state = Progress(stage, epochs, 0), None, None
        return self._result(completed=True)

    def _checkpoint_plan(self) -> str:
        """What the run will write, said before it starts: which checkpoint to use afterwards."""
        last, best = self.out / LAST_CHECKPOINT, self.out / BEST_CHECKPOINT
        videos = len(self.data.val_videos)
        if videos:
            source = "the test list" if self.config.val_on_test else "held-out training videos"
            return f"checkpoints: {last} every epoch, {best} by stage-2 accuracy on {videos} {source}"
        why = "--val-fraction 0" if self.config.val_fraction == 0 else "one video per class"
        return f"checkpoints: {last} every epoch; no validation videos ({why}), so no {best}: use {last}"

    def _epochs(self, stage: int) -> int:
        return self.config.epochs_stage1 if stage == 1 else self.config.epochs_stage2

    def _build_model(self) -> None:
        from fstcn.model.network import fstcn

        config = self.config
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        overrides: dict[str, Any] = {} if config.paths == "both" else {"paths": config.paths}
        self.model = fstcn(preset=config.preset, num_classes=len(self.data.labels), **overrides)
        self.model.to(self.info.device)
        self.preset_config = self.model.config  # the preset with the overrides: what the checkpoint needs
        self.meta = make_meta(self.preset_config, config.preset, self.data.labels)
        if config.init_from:
            load_initial_weights(
                self.model, config.init_from, preset=config.preset, labels=self.data.labels, info=self.info
            )
        check_freeze(self.model, config.freeze)

    def _result(self, completed: bool) -> TrainResult:
        digests = gather_objects(weight_digest(self.model), self.info)
        if self.info.is_main:
            record = {"event": "end", "completed": completed, "weight_digests": digests}
            record["ranks_in_sync"] = len(set(digests)) == 1
            self._append_log(record)
            if not record["ranks_in_sync"]:
                logger.error("ranks ended with different weights: %s", digests)
        last = self.history[-1] if self.history else {"stage": 1, "epoch": 0}
        return TrainResult(
            weight_digests=digests,
            out=str(self.out),
            completed=completed,
            stage=int(last["stage"]),
            epoch=int(last["epoch"]),
            best_val_accuracy=self.best_val,
            checkpoint=str(self.out / (BEST_CHECKPOINT if self.best_val is not None else LAST_CHECKPOINT)),
            history=list(self.history),
        )

    def _append_log(self, record: dict[str, Any]) -> None:
        with open(self.out / LOG_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    # ---- a stage ----------------------------------------------------------------------------------

    def _run_stage(
        self,
        number: int,
        progress: Progress,
        optimizer_state: dict[str, Any] | None,
        rng_state: dict[str, Any] | None,
    ) -> bool:
        """Train one stage from `progress`; False when the time budget stopped it."""
        stage = self._start_stage(number, optimizer_state)
        for epoch in range(progress.epochs_done, stage.epochs):
            skip = progress.step if epoch == progress.epochs_done else 0  # batches done before a resume
            loader = self._epoch_loader(stage, epoch, skip, rng_state)
            stats = self._train_epoch(stage, epoch, loader, skip)
            if not self._end_epoch(stage, epoch, skip, stats):
                return False
        return True

    def _start_stage(self, number: int, optimizer_state: dict[str, Any] | None) -> _Stage:
        """The objective, optimiser, samples and step counts of stage `number`."""
        config = self.config
        peak = config.lr if number == 1 or config.lr_stage2 is None else config.lr_stage2
        objective, trainable = stage_objective(self.model, self.meta, config, number, self.info.device)
        optimizer = build_optimizer(trainable, config, peak)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        wrapped: nn.Module = objective
        if self.info.distributed:
            device_ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(objective, device_ids=device_ids)
        samples = TrainingSamples(
            self.data.train_videos,
            self.data.train_labels,
            self.meta,
            AugmentConfig(config.scale_min, config.scale_max, config.flip),
            mode="frame" if number == 1 else "pair",
            seed=config.seed,
            reversed_as=reversal_labels(config.reverse_pairs, self.data.labels) if number == 2 else None,
        )
        sampler: DistributedSampler[Any] = DistributedSampler(
            samples,
            num_replicas=self.info.world_size,
            rank=self.info.rank,
            shuffle=True,
            seed=config.seed * 1000 + number,
        )
        per_rank = len(sampler)
        drop_last = per_rank >= config.batch_size  # never drop a whole tiny epoch
        steps_per_epoch = (
            per_rank // config.batch_size if drop_last else math.ceil(per_rank / config.batch_size)
        )
        epochs = self._epochs(number)
        total_steps = steps_per_epoch * epochs
        return _Stage(
            number=number,
            epochs=epochs,
            peak_lr=peak,
            objective=objective,
            wrapped=wrapped,
            optimizer=optimizer,
            samples=samples,
            sampler=sampler,
            drop_last=drop_last,
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            warmup_steps=min(total_steps // 2, int(round(config.warmup_epochs * steps_per_epoch))),
        )

    def _epoch_loader(
        self, stage: _Stage, epoch: int, skip: int, rng_state: dict[str, Any] | None
    ) -> DataLoader[Any]:
        """The epoch's batches after the first `skip`, with the epoch's randomness set up (or restored)."""
        config = self.config
        stage.sampler.set_epoch(epoch)
        stage.samples.set_epoch(epoch)
        if skip and rng_state is not None:
            set_rng_state(rng_state)
        else:
            seed_epoch(config.seed, stage.number, epoch, self.info.rank)
        return DataLoader(
            stage.samples,
            batch_size=config.batch_size,
            sampler=SkipSampler(stage.sampler, skip * config.batch_size),
            num_workers=config.workers,
            drop_last=stage.drop_last,
            pin_memory=self.info.device.type == "cuda",
            # its own generator: creating the loader must not draw from torch's global RNG (dropout)
            generator=torch.Generator().manual_seed(config.seed),
        )

    def _train_epoch(self, stage: _Stage, epoch: int, loader: DataLoader[Any], skip: int) -> dict[str, float]:
        """Optimiser steps over `loader` until it ends or the budget does; the epoch's statistics."""
        train_mode(stage.wrapped, self.model, self.config.freeze)
        loss_sum = correct = seen = 0.0
        steps = 0
        started = time.monotonic()
        cpu_started = time.process_time()
        bar = tqdm(
            loader,
            total=stage.steps_per_epoch - skip,
            desc=f"stage {stage.number} epoch {epoch + 1}/{stage.epochs}",
            unit="batch",
            disable=not self.progress_bars,
            leave=False,
        )
        lr = stage.peak_lr
        for batch in bar:
            if self._time_is_up():
                break
            global_step = epoch * stage.steps_per_epoch + skip + steps
            lr = learning_rate(
                global_step, stage.total_steps, stage.peak_lr, stage.warmup_steps, self.config.schedule
            )
            loss, logits, labels = self._step(stage, batch, lr, global_step)
            batch_size = labels.shape[0]
            loss_sum += float(loss.detach()) * batch_size
            correct += float((logits.argmax(dim=1) == labels).sum())
            seen += batch_size
            steps += 1
            self.steps_this_run += 1
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", lr=f"{lr:.2e}")
        bar.close()
        elapsed = time.monotonic() - started
        cpu_seconds = time.process_time() - cpu_started  # all threads of this process
        loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], self.info)
        return {
            "steps": steps,
            "loss": loss_sum / max(seen, 1.0),
            "accuracy": correct / max(seen, 1.0),
            "samples": seen,
            "seconds": elapsed,
            "samples_per_s": seen / max(elapsed, 1e-9),
            "cpu_seconds_rank0": cpu_seconds,
            "lr": lr,
        }

    def _step(
        self, stage: _Stage, batch: list[torch.Tensor], lr: float, global_step: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimiser step on `batch` (inputs..., labels (B,)) at learning rate `lr`:
        (loss, logits (B, N), labels (B,))."""
        for group in stage.optimizer.param_groups:
            group["lr"] = lr
        *inputs, labels = (tensor.to(self.info.device, non_blocking=True) for tensor in batch)
        device_type = self.info.device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.config.amp):
            loss, logits = stage_loss(stage.number, stage.wrapped, inputs, labels, self.config)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at stage {stage.number} step {global_step}")
        stage.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stage.optimizer.step()
        return loss, logits, labels

    def _end_epoch(self, stage: _Stage, epoch: int, skip: int, stats: dict[str, float]) -> bool:
        """Validate a finished epoch, record it, save the checkpoints; False when the budget cut it short."""
        sync_buffers(self.model, self.info)
        done_steps = skip + int(stats["steps"])
        finished = done_steps >= stage.steps_per_epoch
        record = {"event": "epoch", "stage": stage.number, "epoch": epoch + 1, **stats}
        if not finished:
            record["partial"] = True
        val = self._validate(stage.number) if finished and self.data.val_videos else None
        if val is not None:
            record["val_accuracy"] = val
        improved = stage.number == 2 and val is not None and (self.best_val is None or val > self.best_val)
        if improved:
            self.best_val = val
        self.history.append(record)
        progress = (
            Progress(stage.number, epoch + 1, 0) if finished else Progress(stage.number, epoch, done_steps)
        )
        save_run(
            self.out,
            model=self.model,
            preset_config=self.preset_config,
            meta=self.meta,
            config=self.config,
            info=self.info,
            progress=progress,
            optimizer=stage.optimizer,
            best=improved,
            best_val=self.best_val,
            history=self.history,
        )
        if self.info.is_main:
            self._append_log(record)
            logger.info("%s", _epoch_line(record, self._epochs(stage.number)))
        barrier(self.info)
        return finished

    def _time_is_up(self) -> bool:
        """Budget check before a step. Rank 0's clock decides for everyone, so all ranks stop together."""
        if self.config.stop_after_steps is not None and self.steps_this_run >= self.config.stop_after_steps:
            return True
        if self.config.max_minutes is None:
            return False
        elapsed = time.monotonic() - self.started
        return broadcast_flag(elapsed >= self.config.max_minutes * 60, self.info)

    @torch.no_grad()
    def _validate(self, stage: int) -> float:
        """Video accuracy on the validation videos: stage 1 from the auxiliary head on the clips'
        appearance frames, stage 2 from the network; softmax averaged over the M clips, centre crop."""
        num_clips = self.config.val_clips
        dataset = ValidationVideos(self.data.val_videos, self.data.val_labels, self.meta, num_clips)
        indices = list(range(self.info.rank, len(dataset), self.info.world_size))
        loader = DataLoader(
            torch.utils.data.Subset(dataset, indices),
            batch_size=max(1, self.config.batch_size // num_clips),
            num_workers=self.config.workers,
            collate_fn=stack_videos,
            generator=torch.Generator().manual_seed(0),
        )
        self.model.eval()
        correct = total = 0.0
        for appearance, motion, labels in tqdm(
            loader, desc="validating", unit="batch", disable=not self.progress_bars, leave=False
        ):
            appearance = appearance.to(self.info.device)
            with torch.autocast(self.info.device.type, dtype=torch.bfloat16, enabled=self.config.amp):
                if stage == 1:
                    logits = self.model.frame_logits(appearance)
                else:
                    logits = self.model(appearance, motion.to(self.info.device))
            probs = logits.float().softmax(dim=1).reshape(labels.shape[0], num_clips, -1)  # (V, M, N)
            predicted = probs.mean(dim=1).argmax(dim=1).cpu()
            correct += float((predicted == labels).sum())
            total += labels.shape[0]
        train_mode(self.model, self.model, self.config.freeze)
        correct, total = all_reduce_sum([correct, total], self.info)
        return correct / max(total, 1.0)


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    """An epoch's log record for people (log.jsonl keeps it whole): rounded, named, one line."""
    partial = " (partial)" if record.get("partial") else ""
    parts = [
        f"stage {record['stage']} epoch {record['epoch']}/{epochs}{partial}",
        f"loss {record['loss']:.4f}",
        f"accuracy {record['accuracy']:.3f}",
    ]
    if "val_accuracy" in record:
        parts.append(f"validation accuracy {record['val_accuracy']:.3f}")
    parts.append(f"{record['seconds']:.1f} s ({record['samples_per_s']:.1f} samples/s)")
    parts.append(f"lr {record['lr']:.2e}")
    return ", ".join(parts)
