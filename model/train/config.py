"""What one training run is told: `TrainConfig` (every option of `fstcn train`, validated when built),
and what follows from it before any data is read: the class pairs trained played backwards
(`reversal_labels`) and the serving metadata the run trains for (`make_meta`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fstcn.core.meta import ModelMeta, SamplingParams
from fstcn.model.augment import AugmentConfig

__all__ = ["TrainConfig", "config_from_dict", "make_meta", "reversal_labels"]


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


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a stored `train_config` dict, ignoring keys this version does not know."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{key: value for key, value in raw.items() if key in names})
