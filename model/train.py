"""`fstcn train`: the two-stage FstCN training loop, single-process or under torchrun (DDP).

Owns the run: dataset split and held-out validation set, the decode-once frame cache
(`fstcn.model.frame_cache`), the two stages of the paper (stage 1: the lower SCL + auxiliary classifier as a
single-frame classifier; stage 2: the whole network on clip pairs, optionally keeping the auxiliary loss
with a small weight), the optimiser and per-step learning-rate schedule, checkpoints (`last.pt` every
epoch and when the time budget ends, `best.pt` by validation accuracy) with exact resume, the per-epoch
`log.jsonl`, and DistributedDataParallel (gloo on CPU, nccl on CUDA; rank 0 alone writes).

Determinism: every random choice of a sample comes from a generator seeded by (seed, stage, epoch,
sample index), the sampler's order by (seed, stage, epoch), and torch's generator (dropout) is reseeded
at each epoch from (seed, stage, epoch, rank). So a run resumed from `last.pt` is the run that was not
interrupted (on CPU; cuDNN kernels may add noise on GPU), and a stop in the middle of an epoch resumes
by skipping the batches already done, with each rank's torch RNG state restored.

Samples come from `fstcn.model.augment`, i.e. through `fstcn.core.clips`, the code the service runs.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from fstcn.core.meta import ModelMeta, SamplingParams
from fstcn.model.augment import AugmentConfig, training_frame, training_pair, validation_pairs
from fstcn.model.frame_cache import CachedVideo, build_frame_cache

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
LOG_FILE = "log.jsonl"
# Rank 0 may decode thousands of videos while the other ranks wait on a barrier.
_PROCESS_GROUP_TIMEOUT = timedelta(hours=3)


def _under(name: str, module: str) -> bool:
    """Whether the dotted parameter/module `name` is `module` or lies inside it ("lower.conv1" in "lower")."""
    return name == module or name.startswith(module + ".")


# Per-class layers: --init-from does not copy them from a checkpoint trained on other labels.
CLASSIFIER_PREFIXES = ("classifier.", "aux_classifier.")


@dataclass
class TrainConfig:
    """Every option of `fstcn train` (also stored in the checkpoint, so a run documents itself)."""

    data: str
    out: str
    dataset_kind: str = "auto"  # auto | ucf101 | hmdb51 | folder
    split: int = 1
    splits_dir: str | None = None  # ucf101/hmdb51 split files, when not under or beside `data`
    test_root: str | None = None  # folder layout: a separate test tree, else a seeded hold-out ...
    holdout: float = 0.2  # ... of this fraction per class (the same defaults as `fstcn evaluate`)
    holdout_seed: int = 0
    preset: str = "small"
    paths: str = "both"  # both | spatial | temporal (the paper's control experiment)
    epochs_stage1: int = 4
    epochs_stage2: int = 12
    batch_size: int = 32
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-3  # peak learning rate of stage 1
    lr_stage2: float | None = None  # peak learning rate of stage 2 (default: lr)
    weight_decay: float = 0.05
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # cosine | step
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    # Weight of the auxiliary frame loss in stage 2. Off by default: it reruns the lower SCL on the
    # appearance frame, which cost ~25% of stage-2 throughput on CPU for a regulariser stage 1 already gave.
    aux_weight: float = 0.0
    # stage 2: probability that a sample's spatial features are zeroed before the fusion (path dropout)
    drop_spatial_path: float = 0.0
    scale_min: float = 0.8
    scale_max: float = 1.0
    flip: bool = True
    val_fraction: float = 0.1  # seeded, per-class hold-out of the training videos
    val_on_test: bool = False  # validate on the dataset's test list instead (never the default)
    val_clips: int = 2  # clip pairs per validation video (serving uses M; 2 keeps validation cheap)
    seed: int = 0
    resume: bool = False
    init_from: tuple[str, ...] = ()  # start from these checkpoints' weights (fresh optimiser, schedule)
    freeze: tuple[str, ...] = ()  # parameter-name prefixes (e.g. "lower", "temporal") kept as they are
    # "A:B" class pairs that are each other's time reversal (sit_down:stand_up): stage 2 also trains on
    # every A video played backwards as a B sample and vice versa (see TrainingSamples)
    reverse_pairs: tuple[str, ...] = ()
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads (default: all cores / local world size)
    workers: int = 0  # DataLoader worker processes per rank
    decode_workers: int = 1  # processes decoding videos into the cache
    cache_dir: str | None = None  # default: <out>/frame-cache
    max_minutes: float | None = None
    stop_after_steps: int | None = None  # like max_minutes, counted in optimiser steps of this invocation
    max_videos_per_class: int | None = None  # subsample the training list (quick runs, tests)
    amp: bool = False  # bfloat16 autocast (CUDA)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.paths not in ("both", "spatial", "temporal"):
            raise ValueError(f"paths must be both, spatial or temporal, got {self.paths!r}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be adamw or sgd, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step"):
            raise ValueError(f"schedule must be cosine or step, got {self.schedule!r}")
        if self.epochs_stage1 < 0 or self.epochs_stage2 < 0:
            raise ValueError("epoch counts must be >= 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.drop_spatial_path < 1.0:
            raise ValueError(f"drop_spatial_path must be in [0, 1), got {self.drop_spatial_path}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_clips < 1:
            raise ValueError(f"val_clips must be >= 1, got {self.val_clips}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.stop_after_steps is not None and self.stop_after_steps < 0:
            raise ValueError(f"stop_after_steps must be >= 0, got {self.stop_after_steps}")
        AugmentConfig(self.scale_min, self.scale_max, self.flip)  # validates the scale range
        if self.resume and self.init_from:
            raise ValueError("--resume and --init-from exclude each other: resume continues a run exactly")
        for pair in self.reverse_pairs:
            names = pair.split(":")
            if len(names) != 2 or not all(names):
                raise ValueError(f"--reverse-pair takes two class names as A:B (or A:A), got {pair!r}")


def reversal_labels(pairs: Sequence[str], labels: Sequence[str]) -> dict[int, int]:
    """Label index -> label index of the same video played backwards, from "A:B" pairs (both ways);
    "A:A" names a class that is its own reversal (a squat backwards is a squat)."""
    index = {name: i for i, name in enumerate(labels)}
    reversed_as: dict[int, int] = {}
    for pair in pairs:
        first, second = pair.split(":")
        missing = [name for name in (first, second) if name not in index]
        if missing:
            raise ValueError(f"--reverse-pair {pair}: no class {', '.join(missing)} in {list(labels)}")
        for a, b in ((first, second), (second, first)):
            if reversed_as.setdefault(index[a], index[b]) != index[b]:
                raise ValueError(f"--reverse-pair: class {a} is paired twice")
    return reversed_as


@dataclass
class TrainResult:
    """What a finished (or budget-stopped) run reports."""

    out: str
    completed: bool  # False when --max-minutes stopped it early
    stage: int
    epoch: int
    best_val_accuracy: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    weight_digests: list[str] = field(default_factory=list)  # per rank: equal when DDP kept them in sync


# --------------------------------------------------------------------------------------------------
# distributed plumbing


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str) -> DistInfo:
    """Join the torchrun process group if WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda, but CUDA is not available")
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=_PROCESS_GROUP_TIMEOUT)
    return DistInfo(rank, world_size, local_rank, local_world, torch_device)


def _barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def _all_reduce_sum(values: Sequence[float], info: DistInfo) -> list[float]:
    if not info.distributed:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_collective_device(info))
    dist.all_reduce(tensor)
    return tensor.tolist()


def _collective_device(info: DistInfo) -> torch.device:
    return info.device if info.device.type == "cuda" else torch.device("cpu")


def _broadcast_object(value: Any, info: DistInfo) -> Any:
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=_collective_device(info))
    return box[0]


def _gather_objects(value: Any, info: DistInfo) -> list[Any]:
    if not info.distributed:
        return [value]
    boxes: list[Any] = [None] * info.world_size
    dist.all_gather_object(boxes, value)
    return boxes


# --------------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class VideoItem:
    path: str
    label: int


def _load_items(config: TrainConfig, subset: str) -> tuple[list[VideoItem], list[str]]:
    """(videos of `subset` ("train" | "test"), class names) via `fstcn.model.datasets.load_dataset`."""
    from fstcn.model.datasets import load_dataset

    dataset = load_dataset(
        config.dataset_kind,
        config.data,
        config.split,
        subset,  # type: ignore[arg-type]
        splits_dir=config.splits_dir,
        test_root=config.test_root,
        holdout=config.holdout,
        seed=config.holdout_seed,
    )
    items = [VideoItem(path=str(sample.path), label=sample.label_index) for sample in dataset.samples]
    return items, list(dataset.labels)


def split_holdout(items: Sequence[VideoItem], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded per-class hold-out: (train indices, validation indices), both sorted.

    Each class keeps at least one training video; a class with k videos gives round(fraction * k).
    """
    rng = np.random.default_rng([seed, 0x5EED])
    by_class: dict[int, list[int]] = {}
    for index, item in enumerate(items):
        by_class.setdefault(item.label, []).append(index)
    val: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        count = min(len(members) - 1, int(round(fraction * len(members))))
        if count > 0:
            val.extend(int(i) for i in rng.permutation(members)[:count])
    val_set = set(val)
    return [i for i in range(len(items)) if i not in val_set], sorted(val)


def _subsample_per_class(items: Sequence[VideoItem], limit: int, seed: int) -> list[VideoItem]:
    rng = np.random.default_rng([seed, 0x5A3])
    by_class: dict[int, list[int]] = {}
    for index, item in enumerate(items):
        by_class.setdefault(item.label, []).append(index)
    keep = sorted(int(i) for members in by_class.values() for i in rng.permutation(members)[:limit])
    return [items[i] for i in keep]


def sample_rng(seed: int, stage: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one training sample's random choices (independent of workers and ranks)."""
    return np.random.default_rng([seed, stage, epoch, index])


class TrainingSamples(Dataset[tuple[torch.Tensor, ...]]):
    """Augmented training samples over cached videos.

    mode "frame" -> (frame (3, c, c), label); mode "pair" -> (appearance (3, c, c), motion
    (T, 3, c, c), label). Call `set_epoch` before each epoch: the randomness depends on it.

    `reversed_as` (pair mode): label -> label of the video played backwards. Every video of such a label
    is also a sample of the other label with its frames in reverse order. The reversed copy looks the
    same frame by frame, so a video's appearance no longer tells which of the two it is: only the order
    of its frames does (the paper's direction-of-time argument for the temporal path).
    """

    def __init__(
        self,
        videos: Sequence[CachedVideo],
        labels: Sequence[int],
        meta: ModelMeta,
        augment: AugmentConfig,
        mode: str,
        seed: int,
        reversed_as: dict[int, int] | None = None,
    ) -> None:
        if mode not in ("frame", "pair"):
            raise ValueError(f"mode must be frame or pair, got {mode!r}")
        if len(videos) != len(labels):
            raise ValueError(f"{len(videos)} videos but {len(labels)} labels")
        if reversed_as and mode != "pair":
            raise ValueError("reversed videos are clip-pair samples (mode pair)")
        self.videos = list(videos)
        self.labels = [int(label) for label in labels]
        reversed_as = reversed_as or {}
        # sample index -> (video index, label, played backwards)
        self.samples = [(i, label, False) for i, label in enumerate(self.labels)] + [
            (i, reversed_as[label], True) for i, label in enumerate(self.labels) if label in reversed_as
        ]
        self.meta = meta
        self.augment = augment
        self.mode = mode
        self.seed = seed
        self.stage = 1 if mode == "frame" else 2
        self.epoch = 0
        self._maps: dict[int, np.ndarray] = {}  # memory maps opened by this process

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def _frames(self, index: int) -> np.ndarray:
        frames = self._maps.get(index)
        if frames is None:
            frames = self._maps[index] = self.videos[index].frames()
        return frames

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        rng = sample_rng(self.seed, self.stage, self.epoch, index)
        video_index, label_index, backwards = self.samples[index]
        frames, times = self._frames(video_index), self.videos[video_index].times
        label = torch.tensor(label_index, dtype=torch.int64)
        if self.mode == "frame":
            return training_frame(frames, times, self.meta, rng, self.augment), label
        if backwards:  # (F, h, w, 3) in reverse order, times again ascending from 0
            frames, times = frames[::-1], times[-1] - times[::-1]
        appearance, motion = training_pair(frames, times, self.meta, rng, self.augment)
        return appearance, motion, label


class ValidationVideos(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Serving-identical inputs per video: (appearance (M, 3, c, c), motion (M, T, 3, c, c), label)."""

    def __init__(
        self, videos: Sequence[CachedVideo], labels: Sequence[int], meta: ModelMeta, num_clips: int
    ) -> None:
        self.videos = list(videos)
        self.labels = [int(label) for label in labels]
        self.meta = meta
        self.num_clips = num_clips

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        video = self.videos[index]
        appearance, motion = validation_pairs(video.frames(), video.times, self.meta, self.num_clips)
        return appearance, motion, torch.tensor(self.labels[index], dtype=torch.int64)


def _stack_videos(batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    appearance = torch.cat([item[0] for item in batch])  # (V*M, 3, c, c)
    motion = torch.cat([item[1] for item in batch])  # (V*M, T, 3, c, c)
    labels = torch.stack([item[2] for item in batch])  # (V,)
    return appearance, motion, labels


class _SkipSampler(Sampler[int]):
    """The epoch's (distributed) order without its first `skip` indices (resume mid-epoch)."""

    def __init__(self, base: DistributedSampler[Any], skip: int) -> None:
        self.base = base
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.base)[self.skip :])

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


# --------------------------------------------------------------------------------------------------
# model plumbing


class _FrameObjective(nn.Module):
    """Stage 1: the auxiliary classifier on single frames (B, 3, c, c) -> logits (B, N)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.frame_logits(frames)  # type: ignore[operator,no-any-return]


class _PairObjective(nn.Module):
    """Stage 2: (appearance (B,3,c,c), motion (B,T,3,c,c)) -> (logits (B,N), aux logits (B,N) | None)."""

    def __init__(self, model: nn.Module, with_aux: bool, drop_spatial_path: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.with_aux = with_aux
        self.drop_spatial_path = drop_spatial_path

    def forward(
        self, appearance: torch.Tensor, motion: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        drop = None
        if self.training and self.drop_spatial_path > 0:  # (B,) bool, from torch's per-epoch generator
            drop = torch.rand(appearance.shape[0], device=appearance.device) < self.drop_spatial_path
        logits = self.model(appearance, motion, drop)
        aux = self.model.frame_logits(appearance) if self.with_aux else None
        return logits, aux


def _example_inputs(meta: ModelMeta, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    c = meta.crop_size
    appearance = torch.zeros(2, 3, c, c, device=device)
    motion = torch.zeros(2, meta.sampling.clip_length, 3, c, c, device=device)
    return appearance, motion


def used_parameters(objective: nn.Module, inputs: Sequence[torch.Tensor]) -> set[str]:
    """Names of the parameters that receive a gradient from `objective(*inputs)` (a dry run in eval mode).

    DDP needs every trainable parameter to take part in the loss; stage 1 touches only the lower SCL and
    the auxiliary head, and `--paths spatial|temporal` leaves a whole path out.
    """
    was_training = objective.training
    objective.eval()
    for parameter in objective.parameters():
        parameter.requires_grad_(True)
        parameter.grad = None
    with torch.enable_grad():
        outputs = objective(*inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        total = sum(output.float().sum() for output in outputs if output is not None)
        assert isinstance(total, torch.Tensor)
        total.backward()
    names = {name for name, p in objective.named_parameters() if p.grad is not None}
    for parameter in objective.parameters():
        parameter.grad = None
    objective.train(was_training)
    return names


def _build_optimizer(params: list[nn.Parameter], config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    # Weight decay only on weights of rank >= 2 (convs, FCs, P); biases and norm scales stay free.
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


def learning_rate(step: int, total_steps: int, peak: float, warmup_steps: int, schedule: str) -> float:
    """Linear warm-up to `peak`, then cosine to 0 (or /10 at 50% and 75% of the steps for "step")."""
    if total_steps <= 0:
        return peak
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return peak * (0.1 ** int(progress >= 0.5)) * (0.1 ** int(progress >= 0.75))


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _seed_epoch(seed: int, stage: int, epoch: int, rank: int) -> None:
    """Reseed torch (dropout) and the host RNGs for one epoch of one rank."""
    value = int(np.random.SeedSequence([seed, stage, epoch, rank]).generate_state(1)[0])
    torch.manual_seed(value)
    random.seed(value)
    np.random.seed(value)


def make_meta(preset_config: Any, preset: str, labels: Sequence[str]) -> ModelMeta:
    """The serving metadata this run trains for (sizes and sampling from the preset config)."""
    sampling = getattr(preset_config, "sampling", None)
    if not isinstance(sampling, SamplingParams):
        sampling = SamplingParams(
            **{
                name: getattr(preset_config, name)
                for name in ("clip_length", "stride", "diff_offset", "num_clips", "ref_fps")
                if hasattr(preset_config, name)
            }
        )
    extra = {
        name: getattr(preset_config, name)
        for name in ("mean", "std", "diff_scale")
        if hasattr(preset_config, name)
    }
    return ModelMeta(
        name="fstcn",
        version="0",
        preset=preset,
        labels=tuple(labels),
        sampling=sampling,
        resize_short=int(preset_config.resize_short),
        crop_size=int(preset_config.crop_size),
        **extra,
    )


# --------------------------------------------------------------------------------------------------
# the run


@dataclass
class _Progress:
    """Where the run stands: in `stage`, `epochs_done` full epochs and `step` batches of the next."""

    stage: int = 1
    epochs_done: int = 0
    step: int = 0


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
        self.stopped_early = False
        self.steps_this_run = 0

    # ---- set-up -----------------------------------------------------------------------------------

    def _log(self, message: str, *args: Any) -> None:
        if self.info.is_main:
            logger.info(message, *args)

    def _prepare_data(self) -> None:
        config = self.config
        items, labels = _load_items(config, "train")
        if config.max_videos_per_class is not None:
            items = _subsample_per_class(items, config.max_videos_per_class, config.seed)
        if config.val_on_test:
            train_items = items
            val_items, test_labels = _load_items(config, "test")
            if test_labels != labels:
                raise ValueError("the test list's classes differ from the training list's")
        elif config.val_fraction > 0:
            train_idx, val_idx = split_holdout(items, config.val_fraction, config.seed)
            train_items = [items[i] for i in train_idx]
            val_items = [items[i] for i in val_idx]
        else:
            train_items, val_items = items, []
        if len(labels) < 2:
            raise ValueError(f"training needs at least 2 classes, found {len(labels)} in {config.data}")
        self.labels = labels
        self.train_videos, self.train_labels = self._cache(train_items, "train")
        self.val_videos, self.val_labels = self._cache(val_items, "val")
        if not self.train_videos:
            raise ValueError(f"no decodable training videos under {config.data}")
        self._log(
            "%d classes, %d training videos, %d validation videos",
            len(labels),
            len(self.train_videos),
            len(self.val_videos),
        )

    def _cache(self, items: Sequence[VideoItem], name: str) -> tuple[list[CachedVideo], list[int]]:
        """Local rank 0 decodes what is missing; every rank then reads the same cache."""
        if not items:
            return [], []
        cache_dir = self.config.cache_dir or str(self.out / "frame-cache")
        sources = [item.path for item in items]
        failures: dict[str, str] = {}
        if self.info.local_rank == 0:
            with tqdm(
                total=len(sources),
                desc=f"caching {name} frames",
                unit="video",
                disable=not self.progress_bars,
            ) as bar:
                _, failures = build_frame_cache(
                    sources,
                    cache_dir,
                    resize_short=self.resize_short,
                    workers=self.config.decode_workers,
                    progress=bar.update,
                )
        _barrier(self.info)
        failures = _broadcast_object(failures, self.info)
        if failures:
            self._log("%d %s videos could not be decoded and are skipped", len(failures), name)
        kept = [item for item in items if item.path not in failures]
        entries, missing = build_frame_cache(
            [item.path for item in kept], cache_dir, resize_short=self.resize_short, workers=1
        )
        if missing:  # only if the cache changed under us
            raise RuntimeError(f"frame cache entries vanished: {sorted(missing)[:3]}")
        videos = [entry for entry in entries if entry is not None]
        return videos, [item.label for item in kept]

    def _build_model(self) -> None:
        from fstcn.model.network import fstcn

        torch.manual_seed(self.config.seed)  # the same initial weights on every rank
        overrides: dict[str, Any] = {} if self.config.paths == "both" else {"paths": self.config.paths}
        self.model = fstcn(preset=self.config.preset, num_classes=len(self.labels), **overrides)
        self.model.to(self.info.device)
        self.preset_config = self.model.config  # the preset with the overrides: what the checkpoint needs
        self.meta = make_meta(self.preset_config, self.config.preset, self.labels)
        if self.config.init_from:
            self._load_initial_weights(self.config.init_from)
        modules = [name for name, _ in self.model.named_modules() if name]
        unknown = [p for p in self.config.freeze if not any(_under(n, p) for n in modules)]
        if unknown:
            tops = sorted({name.split(".")[0] for name in modules})
            raise ValueError(
                f"--freeze {', '.join(unknown)}: no such module (this model has {', '.join(tops)})"
            )

    def _load_initial_weights(self, paths: Sequence[str]) -> None:
        """Fine-tuning: copy checkpoints' weights (same preset) into the fresh model.

        Every tensor whose name and shape match is copied, from the first file in `paths` that has it
        (so `[temporal_run, both_run]` takes the shared trunk and the temporal path from the first and the
        spatial path from the second). A file trained on other labels gives everything but its
        classifiers (transfer learning). The rest keep their fresh initialisation and are logged by name:
        a layer whose size changed (e.g. the TCL when the temporal pool changes) or a path none of the
        files has.
        """
        from fstcn.model.checkpoint import load_checkpoint

        own = self.model.state_dict()
        copied: dict[str, torch.Tensor] = {}
        for path in paths:
            checkpoint = load_checkpoint(path)
            if checkpoint["preset"] != self.config.preset:
                raise ValueError(
                    f"--init-from {path}: preset {checkpoint['preset']!r}, not {self.config.preset!r}"
                )
            same_labels = list(checkpoint["labels"]) == list(self.labels)
            if not same_labels:  # transfer: its classifiers score other classes, everything else fits
                self._log(
                    "%s has other labels %s: its classifiers are not copied", path, checkpoint["labels"]
                )
            fitting = {
                name: tensor.float() if tensor.is_floating_point() else tensor
                for name, tensor in checkpoint["state_dict"].items()
                if name in own
                and name not in copied
                and own[name].shape == tensor.shape
                and (same_labels or not name.startswith(CLASSIFIER_PREFIXES))
            }
            if not fitting:
                raise ValueError(f"--init-from {path}: no tensor of it fits what is still to fill")
            copied.update(fitting)
            self._log(
                "initial weights from %s (epoch %s): %d tensors", path, checkpoint["epoch"], len(fitting)
            )
        self.model.load_state_dict(copied, strict=False)
        fresh = sorted(name for name in own if name not in copied)
        self._log(
            "%d of %d tensors copied%s",
            len(copied),
            len(own),
            f"; freshly initialised: {', '.join(fresh)}" if fresh else "",
        )

    # ---- checkpoints ------------------------------------------------------------------------------

    def _save(self, progress: _Progress, optimizer: torch.optim.Optimizer | None, best: bool) -> None:
        from fstcn.model.checkpoint import save_checkpoint

        rng_states = _gather_objects(_rng_state(), self.info)
        if not self.info.is_main:
            return
        extra = {
            "progress": asdict(progress),
            "rng": rng_states,
            "world_size": self.info.world_size,
            "best_val_accuracy": self.best_val,
            "train_config": asdict(self.config),
            "meta": self.meta.to_json(),
            "paths": self.config.paths,
            "history": self.history,
        }
        epoch = (self.config.epochs_stage1 if progress.stage == 2 else 0) + progress.epochs_done
        self.out.mkdir(parents=True, exist_ok=True)
        names = [LAST_CHECKPOINT, BEST_CHECKPOINT] if best else [LAST_CHECKPOINT]
        for name in names:  # save_checkpoint writes atomically (temp file + rename)
            save_checkpoint(
                self.out / name,
                model=self.model,
                config=self.preset_config,
                labels=self.labels,
                sampling=self.meta.sampling,
                epoch=epoch,
                optimizer=optimizer,
                extra=extra,
            )

    def _load_resume(self) -> tuple[_Progress, dict[str, Any] | None, list[dict[str, Any]] | None]:
        from fstcn.model.checkpoint import load_checkpoint

        path = self.out / LAST_CHECKPOINT
        if not path.exists():
            raise FileNotFoundError(f"--resume: no {path}")
        checkpoint = load_checkpoint(path)
        extra = checkpoint.get("extra") or {}
        if list(checkpoint["labels"]) != list(self.labels):
            raise ValueError(f"{path} was trained on other classes: {checkpoint['labels']}")
        if checkpoint.get("preset") not in (None, self.config.preset):
            raise ValueError(f"{path} is a {checkpoint['preset']!r} model, not {self.config.preset!r}")
        if extra.get("paths", "both") != self.config.paths:
            raise ValueError(f"{path} trained --paths {extra.get('paths')}, not {self.config.paths}")
        self.model.load_state_dict(checkpoint["state_dict"])
        self.best_val = extra.get("best_val_accuracy")
        self.history = list(extra.get("history", []))
        progress = _Progress(**extra.get("progress", {"stage": 2, "epochs_done": 0, "step": 0}))
        rng_states = extra.get("rng")
        rng = None
        if progress.step > 0 and rng_states and len(rng_states) == self.info.world_size:
            rng = rng_states[self.info.rank]
        self._log("resuming from %s: stage %d, %d epochs done", path, progress.stage, progress.epochs_done)
        return progress, checkpoint.get("optimizer"), rng

    # ---- loops ------------------------------------------------------------------------------------

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm statistics.

        DDP broadcasts buffers at the start of each forward, so after an epoch's last step each rank still
        holds the statistics updated by its own last batch; this makes them (and the checkpoint) equal.
        """
        if self.info.distributed:
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)

    def _time_is_up(self) -> bool:
        """Budget check before a step. Rank 0's clock decides for everyone, so all ranks stop together."""
        if self.config.stop_after_steps is not None and self.steps_this_run >= self.config.stop_after_steps:
            return True
        if self.config.max_minutes is None:
            return False
        elapsed = time.monotonic() - self.started
        flag = torch.tensor(
            [int(elapsed >= self.config.max_minutes * 60)], device=_collective_device(self.info)
        )
        if self.info.distributed:
            dist.broadcast(flag, src=0)
        return bool(flag.item())

    def _stage_objective(self, stage: int) -> tuple[nn.Module, list[nn.Parameter]]:
        if stage == 1:
            objective: nn.Module = _FrameObjective(self.model)
            inputs: tuple[torch.Tensor, ...] = (_example_inputs(self.meta, self.info.device)[0],)
        else:
            objective = _PairObjective(
                self.model,
                with_aux=self.config.aux_weight > 0,
                drop_spatial_path=self.config.drop_spatial_path,
            )
            inputs = _example_inputs(self.meta, self.info.device)
        used = used_parameters(objective, inputs)
        trainable = []
        for name, parameter in objective.named_parameters():
            train_it = name in used and not self._frozen(name.removeprefix("model."))
            parameter.requires_grad_(train_it)
            if train_it:
                trainable.append(parameter)
        if not trainable:
            raise ValueError(
                f"--freeze {', '.join(self.config.freeze)} leaves nothing to train in stage {stage}"
            )
        return objective, trainable

    def _frozen(self, name: str) -> bool:
        return any(_under(name, prefix) for prefix in self.config.freeze)

    def _train_mode(self, module: nn.Module) -> None:
        """Training mode, except that frozen parts keep BatchNorm statistics and dropout as in eval."""
        module.train()
        for name, sub in self.model.named_modules():
            if name and self._frozen(name):
                sub.eval()

    def _run_stage(
        self,
        stage: int,
        progress: _Progress,
        optimizer_state: dict[str, Any] | None,
        rng_state: dict[str, Any] | None,
    ) -> bool:
        """Train one stage from `progress`; False when the time budget stopped it."""
        config = self.config
        epochs = config.epochs_stage1 if stage == 1 else config.epochs_stage2
        peak = config.lr if stage == 1 or config.lr_stage2 is None else config.lr_stage2
        objective, trainable = self._stage_objective(stage)
        optimizer = _build_optimizer(trainable, config, peak)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        wrapped: nn.Module = objective
        if self.info.distributed:
            device_ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(objective, device_ids=device_ids)
        dataset = TrainingSamples(
            self.train_videos,
            self.train_labels,
            self.meta,
            AugmentConfig(config.scale_min, config.scale_max, config.flip),
            mode="frame" if stage == 1 else "pair",
            seed=config.seed,
            reversed_as=reversal_labels(config.reverse_pairs, self.labels) if stage == 2 else None,
        )
        base_sampler: DistributedSampler[Any] = DistributedSampler(
            dataset,
            num_replicas=self.info.world_size,
            rank=self.info.rank,
            shuffle=True,
            seed=config.seed * 1000 + stage,
        )
        per_rank = len(base_sampler)
        drop_last = per_rank >= config.batch_size  # never drop a whole tiny epoch
        steps_per_epoch = (
            per_rank // config.batch_size if drop_last else math.ceil(per_rank / config.batch_size)
        )
        total_steps = steps_per_epoch * epochs
        warmup = min(total_steps // 2, int(round(config.warmup_epochs * steps_per_epoch)))
        for epoch in range(progress.epochs_done, epochs):
            skip = progress.step if epoch == progress.epochs_done else 0
            base_sampler.set_epoch(epoch)
            dataset.set_epoch(epoch)
            if skip and rng_state is not None:
                _set_rng_state(rng_state)
            else:
                _seed_epoch(config.seed, stage, epoch, self.info.rank)
            loader = DataLoader(
                dataset,
                batch_size=config.batch_size,
                sampler=_SkipSampler(base_sampler, skip * config.batch_size),
                num_workers=config.workers,
                drop_last=drop_last,
                pin_memory=self.info.device.type == "cuda",
                # its own generator: creating the loader must not draw from torch's global RNG (dropout)
                generator=torch.Generator().manual_seed(config.seed),
            )
            stats = self._train_epoch(
                stage, epoch, wrapped, optimizer, loader, skip, steps_per_epoch, total_steps, warmup, peak
            )
            self._sync_buffers()
            done_steps = skip + int(stats["steps"])
            finished = done_steps >= steps_per_epoch
            record = {"event": "epoch", "stage": stage, "epoch": epoch + 1, **stats}
            if not finished:
                record["partial"] = True
            val = self._validate(stage) if finished and self.val_videos else None
            if val is not None:
                record["val_accuracy"] = val
            improved = stage == 2 and val is not None and (self.best_val is None or val > self.best_val)
            if improved:
                self.best_val = val
            self.history.append(record)
            new_progress = _Progress(stage, epoch + 1, 0) if finished else _Progress(stage, epoch, done_steps)
            self._save(new_progress, optimizer, best=improved)
            if self.info.is_main:
                with open(self.out / LOG_FILE, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                logger.info("%s", json.dumps(record))
            _barrier(self.info)
            if not finished:
                return False
        return True

    def _train_epoch(
        self,
        stage: int,
        epoch: int,
        wrapped: nn.Module,
        optimizer: torch.optim.Optimizer,
        loader: DataLoader[Any],
        skip: int,
        steps_per_epoch: int,
        total_steps: int,
        warmup: int,
        peak: float,
    ) -> dict[str, float]:
        config = self.config
        device = self.info.device
        self._train_mode(wrapped)
        loss_sum = correct = seen = 0.0
        steps = 0
        started = time.monotonic()
        cpu_started = time.process_time()
        epochs = config.epochs_stage1 if stage == 1 else config.epochs_stage2
        bar = tqdm(
            loader,
            total=steps_per_epoch - skip,
            desc=f"stage {stage} epoch {epoch + 1}/{epochs}",
            unit="batch",
            disable=not self.progress_bars,
            leave=False,
        )
        lr = peak
        for batch in bar:
            if self._time_is_up():
                self.stopped_early = True
                break
            global_step = epoch * steps_per_epoch + skip + steps
            lr = learning_rate(global_step, total_steps, peak, warmup, config.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            *inputs, labels = (tensor.to(device, non_blocking=True) for tensor in batch)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
                smoothing = config.label_smoothing
                if stage == 1:
                    logits = wrapped(*inputs)
                    loss = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
                else:
                    logits, aux = wrapped(*inputs)
                    loss = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
                    if aux is not None:
                        aux_loss = F.cross_entropy(aux.float(), labels, label_smoothing=smoothing)
                        loss = loss + config.aux_weight * aux_loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at stage {stage} step {global_step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
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
        loss_sum, correct, seen = _all_reduce_sum([loss_sum, correct, seen], self.info)
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

    @torch.no_grad()
    def _validate(self, stage: int) -> float:
        """Video accuracy on the validation videos: stage 1 from the auxiliary head on the clips'
        appearance frames, stage 2 from the network; softmax averaged over the M clips, centre crop."""
        num_clips = self.config.val_clips
        dataset = ValidationVideos(self.val_videos, self.val_labels, self.meta, num_clips)
        indices = list(range(self.info.rank, len(dataset), self.info.world_size))
        loader = DataLoader(
            torch.utils.data.Subset(dataset, indices),
            batch_size=max(1, self.config.batch_size // num_clips),
            num_workers=self.config.workers,
            collate_fn=_stack_videos,
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
        self._train_mode(self.model)
        correct, total = _all_reduce_sum([correct, total], self.info)
        return correct / max(total, 1.0)

    def run(self) -> TrainResult:
        config = self.config
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        _barrier(self.info)
        from fstcn.core.presets import get_config

        self.resize_short = get_config(config.preset).resize_short  # fails early on an unknown preset
        self._prepare_data()
        self._build_model()
        progress, optimizer_state, rng_state = _Progress(), None, None
        if config.resume:
            progress, optimizer_state, rng_state = self._load_resume()
        elif self.info.is_main and (self.out / LOG_FILE).exists():
            (self.out / LOG_FILE).unlink()  # a fresh run starts a fresh log
        for stage in (1, 2):
            if progress.stage > stage:
                continue
            epochs = config.epochs_stage1 if stage == 1 else config.epochs_stage2
            if progress.stage < stage:  # the previous stage just ended: fresh optimiser
                progress, optimizer_state, rng_state = _Progress(stage), None, None
            if progress.epochs_done >= epochs:
                continue
            finished = self._run_stage(stage, progress, optimizer_state, rng_state)
            # The stage's DDP wrapper must be gone before the next one wraps the same parameters:
            # its reducer's gradient hooks are removed only when it is destroyed.
            gc.collect()
            if not finished:
                self._log("time budget of %s minutes reached: stopped, last.pt saved", config.max_minutes)
                return self._result(completed=False)
            progress, optimizer_state, rng_state = _Progress(stage, epochs, 0), None, None
        return self._result(completed=True)

    def _result(self, completed: bool) -> TrainResult:
        digests = _gather_objects(weight_digest(self.model), self.info)
        if self.info.is_main:
            record = {"event": "end", "completed": completed, "weight_digests": digests}
            record["ranks_in_sync"] = len(set(digests)) == 1
            with open(self.out / LOG_FILE, "a") as handle:
                handle.write(json.dumps(record) + "\n")
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
            history=list(self.history),
        )


def weight_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, shapes and bytes): equal iff the weights are."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


def train(config: TrainConfig) -> TrainResult:
    """Run `fstcn train` with `config` (single process, or one rank of a torchrun launch)."""
    trainer = _Trainer(config)
    try:
        return trainer.run()
    finally:
        if trainer.info.distributed and dist.is_initialized():
            dist.destroy_process_group()


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a stored `train_config` dict, ignoring keys this version does not know."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{key: value for key, value in raw.items() if key in names})
