"""The videos a run trains and validates on, and the samples cut from them.

`prepare_data` loads the dataset list (`fstcn.model.datasets`), subsamples it on request, holds out a
seeded per-class validation set (or takes the test list), and decodes every video once into the frame
cache (`fstcn.model.frame_cache`; local rank 0 decodes, every rank reads). `TrainingSamples` cuts the
augmented stage-1 frames and stage-2 clip pairs out of the cached frames (`fstcn.model.augment`, i.e.
through `fstcn.core.clips`, the code the service runs), every random choice from a generator seeded by
(seed, stage, epoch, sample index), so neither DataLoader workers nor ranks change a sample.
`ValidationVideos` are the serving inputs at the centre crop. `SkipSampler` resumes an epoch after the
batches already done.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from fstcn.core.meta import ModelMeta
from fstcn.model.augment import AugmentConfig, training_frame, training_pair, validation_pairs
from fstcn.model.frame_cache import CachedVideo, build_frame_cache
from fstcn.model.train.config import TrainConfig
from fstcn.model.train.distributed import DistInfo, barrier, broadcast_object

logger = logging.getLogger(__name__)

__all__ = [
    "SkipSampler",
    "TrainingData",
    "TrainingSamples",
    "ValidationVideos",
    "VideoItem",
    "load_items",
    "prepare_data",
    "sample_rng",
    "split_holdout",
    "stack_videos",
    "subsample_per_class",
]


@dataclass(frozen=True)
class VideoItem:
    """One video of the dataset list: its path and label index."""

    path: str
    label: int


def load_items(config: TrainConfig, subset: str) -> tuple[list[VideoItem], list[str]]:
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

    Each class keeps at least one training video; a class with k videos gives round(fraction * k), and
    at least one when k >= 2 and fraction > 0, so that a small dataset still chooses `best.pt`.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    by_class: dict[int, list[int]] = {}
    for index, item in enumerate(items):
        by_class.setdefault(item.label, []).append(index)
    val: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        count = min(len(members) - 1, max(int(round(fraction * len(members))), 1 if fraction > 0 else 0))
        if count > 0:
            val.extend(int(i) for i in rng.permutation(members)[:count])
    val_set = set(val)
    return [i for i in range(len(items)) if i not in val_set], sorted(val)


def subsample_per_class(items: Sequence[VideoItem], limit: int, seed: int) -> list[VideoItem]:
    """At most `limit` videos of each class, a seeded choice kept in list order."""
    rng = np.random.default_rng([seed, 0x5A3])
    by_class: dict[int, list[int]] = {}
    for index, item in enumerate(items):
        by_class.setdefault(item.label, []).append(index)
    keep = sorted(int(i) for members in by_class.values() for i in rng.permutation(members)[:limit])
    return [items[i] for i in keep]


@dataclass
class TrainingData:
    """The class names and the cached training and validation videos with their label indices."""

    labels: list[str]
    train_videos: list[CachedVideo]
    train_labels: list[int]
    val_videos: list[CachedVideo]
    val_labels: list[int]


def prepare_data(
    config: TrainConfig, info: DistInfo, *, resize_short: int, cache_dir: str, progress: bool
) -> TrainingData:
    """The run's videos, split into training and validation and cached at `resize_short`."""
    items, labels = load_items(config, "train")
    if config.max_videos_per_class is not None:
        items = subsample_per_class(items, config.max_videos_per_class, config.seed)
    if config.val_on_test:
        train_items = items
        val_items, test_labels = load_items(config, "test")
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
    cache = _FrameCache(info, cache_dir, resize_short, config.decode_workers, progress)
    train_videos, train_labels = cache.videos(train_items, "train")
    val_videos, val_labels = cache.videos(val_items, "val")
    if not train_videos:
        raise ValueError(f"no decodable training videos under {config.data}")
    if info.is_main:
        logger.info(
            "%d classes, %d training videos, %d validation videos",
            len(labels),
            len(train_videos),
            len(val_videos),
        )
    return TrainingData(labels, train_videos, train_labels, val_videos, val_labels)


@dataclass(frozen=True)
class _FrameCache:
    """The frame cache as the ranks share it: local rank 0 decodes what is missing, every rank reads."""

    info: DistInfo
    directory: str
    resize_short: int
    workers: int
    progress: bool

    def videos(self, items: Sequence[VideoItem], name: str) -> tuple[list[CachedVideo], list[int]]:
        """The cached videos of `items` that decode, and their labels."""
        if not items:
            return [], []
        sources = [item.path for item in items]
        failures: dict[str, str] = {}
        if self.info.local_rank == 0:
            with tqdm(
                total=len(sources), desc=f"caching {name} frames", unit="video", disable=not self.progress
            ) as bar:
                _, failures = build_frame_cache(
                    sources,
                    self.directory,
                    resize_short=self.resize_short,
                    workers=self.workers,
                    progress=bar.update,
                )
        barrier(self.info)
        failures = broadcast_object(failures, self.info)
        if failures and self.info.is_main:
            logger.info("%d %s videos could not be decoded and are skipped", len(failures), name)
        kept = [item for item in items if item.path not in failures]
        entries, missing = build_frame_cache(
            [item.path for item in kept], self.directory, resize_short=self.resize_short, workers=1
        )
        if missing:  # only if the cache changed under us
            raise RuntimeError(f"frame cache entries vanished: {sorted(missing)[:3]}")
        videos = [entry for entry in entries if entry is not None]
        return videos, [item.label for item in kept]


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


def stack_videos(batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """Collate validation videos: their clip pairs one after the other, one label per video."""
    appearance = torch.cat([item[0] for item in batch])  # (V*M, 3, c, c)
    motion = torch.cat([item[1] for item in batch])  # (V*M, T, 3, c, c)
    labels = torch.stack([item[2] for item in batch])  # (V,)
    return appearance, motion, labels


class SkipSampler(Sampler[int]):
    """The epoch's (distributed) order without its first `skip` indices (resume mid-epoch)."""

    def __init__(self, base: DistributedSampler[Any], skip: int) -> None:
        self.base = base
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.base)[self.skip :])

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)
