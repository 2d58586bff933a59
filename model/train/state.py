"""What a run saves and restores: checkpoints with exact resume, and fine-tuning's initial weights.

`save_run` writes `last.pt` (every epoch, and when the budget ends) and `best.pt` (on a better validation
accuracy) through `fstcn.model.checkpoint`, with the run's progress, every rank's torch generator state,
its config, metadata and history. `load_resume` puts all of that back, so a resumed run is the run that
was not interrupted. `load_initial_weights` (`--init-from`) copies what fits from other checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from fstcn.core.meta import ModelMeta
from fstcn.model.train.config import TrainConfig
from fstcn.model.train.distributed import DistInfo, gather_objects, rng_state

logger = logging.getLogger(__name__)

__all__ = [
    "BEST_CHECKPOINT",
    "CLASSIFIER_PREFIXES",
    "LAST_CHECKPOINT",
    "Progress",
    "Resumed",
    "load_initial_weights",
    "load_resume",
    "save_run",
]

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
# Per-class layers: --init-from does not copy them from a checkpoint trained on other labels.
CLASSIFIER_PREFIXES = ("classifier.", "aux_classifier.")


@dataclass
class Progress:
    """Where the run stands: in `stage`, `epochs_done` full epochs and `step` batches of the next."""

    stage: int = 1
    epochs_done: int = 0
    step: int = 0


@dataclass
class Resumed:
    """A run read back from its `last.pt`: where it stood and the state to continue from."""

    progress: Progress
    optimizer_state: dict[str, Any] | None
    rng_state: dict[str, Any] | None  # this rank's, when the run stopped inside an epoch
    best_val: float | None
    history: list[dict[str, Any]] = field(default_factory=list)


def save_run(
    out: Path,
    *,
    model: nn.Module,
    preset_config: Any,
    meta: ModelMeta,
    config: TrainConfig,
    info: DistInfo,
    progress: Progress,
    optimizer: torch.optim.Optimizer | None,
    best: bool,
    best_val: float | None,
    history: list[dict[str, Any]],
) -> None:
    """Write `last.pt` (and `best.pt` when `best`) from rank 0; every rank gives its generator state."""
    from fstcn.model.checkpoint import save_checkpoint

    rng_states = gather_objects(rng_state(), info)
    if not info.is_main:
        return
    extra = {
        "progress": asdict(progress),
        "rng": rng_states,
        "world_size": info.world_size,
        "best_val_accuracy": best_val,
        "train_config": asdict(config),
        "meta": meta.to_json(),
        "paths": config.paths,
        "history": history,
    }
    epoch = (config.epochs_stage1 if progress.stage == 2 else 0) + progress.epochs_done
    out.mkdir(parents=True, exist_ok=True)
    names = [LAST_CHECKPOINT, BEST_CHECKPOINT] if best else [LAST_CHECKPOINT]
    for name in names:  # save_checkpoint writes atomically (temp file + rename)
        save_checkpoint(
            out / name,
            model=model,
            config=preset_config,
            labels=list(meta.labels),
            sampling=meta.sampling,
            epoch=epoch,
            optimizer=optimizer,
            extra=extra,
        )


def load_resume(
    out: Path, *, model: nn.Module, labels: Sequence[str], config: TrainConfig, info: DistInfo
) -> Resumed:
    """Load `out/last.pt` into `model` after checking that it is this run (labels, preset, paths)."""
    from fstcn.model.checkpoint import load_checkpoint

    path = out / LAST_CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"--resume: no {path}")
    checkpoint = load_checkpoint(path)
    extra = checkpoint.get("extra") or {}
    if list(checkpoint["labels"]) != list(labels):
        raise ValueError(f"{path} was trained on other classes: {checkpoint['labels']}")
    if checkpoint.get("preset") not in (None, config.preset):
        raise ValueError(f"{path} is a {checkpoint['preset']!r} model, not {config.preset!r}")
    if extra.get("paths", "both") != config.paths:
        raise ValueError(f"{path} trained --paths {extra.get('paths')}, not {config.paths}")
    model.load_state_dict(checkpoint["state_dict"])
    progress = Progress(**extra.get("progress", {"stage": 2, "epochs_done": 0, "step": 0}))
    rng_states = extra.get("rng")
    rng = None
    if progress.step > 0 and rng_states and len(rng_states) == info.world_size:
        rng = rng_states[info.rank]
    if info.is_main:
        logger.info("resuming from %s: stage %d, %d epochs done", path, progress.stage, progress.epochs_done)
    return Resumed(
        progress=progress,
        optimizer_state=checkpoint.get("optimizer"),
        rng_state=rng,
        best_val=extra.get("best_val_accuracy"),
        history=list(extra.get("history", [])),
    )


def load_initial_weights(
    model: nn.Module, paths: Sequence[str], *, preset: str, labels: Sequence[str], info: DistInfo
) -> None:
    """Fine-tuning: copy checkpoints' weights (same preset) into the fresh model.

    Every tensor whose name and shape match is copied, from the first file in `paths` that has it
    (so `[temporal_run, both_run]` takes the shared trunk and the temporal path from the first and the
    spatial path from the second). A file trained on other labels gives everything but its
    classifiers (transfer learning). The rest keep their fresh initialisation and are logged by name:
    a layer whose size changed (e.g. the TCL when the temporal pool changes) or a path none of the
    files has.
    """
    from fstcn.model.checkpoint import load_checkpoint

    def log(message: str, *args: Any) -> None:
        if info.is_main:
            logger.info(message, *args)

    own = model.state_dict()
    copied: dict[str, torch.Tensor] = {}
    for path in paths:
        checkpoint = load_checkpoint(path)
        if checkpoint["preset"] != preset:
            raise ValueError(f"--init-from {path}: preset {checkpoint['preset']!r}, not {preset!r}")
        same_labels = list(checkpoint["labels"]) == list(labels)
        if not same_labels:  # transfer: its classifiers score other classes, everything else fits
            log("%s has other labels %s: its classifiers are not copied", path, checkpoint["labels"])
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
        log("initial weights from %s (epoch %s): %d tensors", path, checkpoint["epoch"], len(fitting))
    model.load_state_dict(copied, strict=False)
    fresh = sorted(name for name in own if name not in copied)
    log(
        "%d of %d tensors copied%s",
        len(copied),
        len(own),
        f"; freshly initialised: {', '.join(fresh)}" if fresh else "",
    )
