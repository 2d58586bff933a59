"""Training and validation samples cut from cached frames, through the serving code path.

Every array the network sees in training is produced by `fstcn.core.clips`: clip times by
`clip_pair_times`, frame lookup by `nearest_frame_indices`/`gather_clip_pairs`, and the crop +
normalisation by `network_inputs` (the exact function the service calls). Augmentation only chooses
*which* pixels go in: a random start t0 (temporal jitter over the whole video), a random appearance
position inside V_clip (docs/design.md, "Sampling"), a random square of `scale` x the short side at a
random position, and a random horizontal flip. The square is cut and flipped in uint8/int16 (exact),
normalised by `network_inputs` with that square as its single centre crop, and only then resized to
`crop_size` (bilinear; normalisation is affine per channel, so resizing after it equals resizing before it).
Validation samples are exactly the serving ones: M evenly spread clip pairs, centre crop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from fstcn.core.clips import (
    ClipPlan,
    CropBox,
    clip_pair_times,
    gather_clip_pairs,
    nearest_frame_indices,
    network_inputs,
    plan_clip_pairs,
)
from fstcn.core.meta import ModelMeta


@dataclass(frozen=True)
class AugmentConfig:
    """Random choices made per training sample."""

    scale_min: float = 0.8  # square side as a fraction of the frame's short side
    scale_max: float = 1.0
    flip: bool = True  # horizontal flip with probability 1/2 (no class depends on direction)
    temporal_jitter: bool = True  # t0 uniform over the video; False: the middle clip pair

    def __post_init__(self) -> None:
        if not 0.0 < self.scale_min <= self.scale_max <= 1.0:
            raise ValueError(f"need 0 < scale_min <= scale_max <= 1, got {self.scale_min}, {self.scale_max}")


def random_start_time(
    last_time_s: float, span_s: float, rng: np.random.Generator, jitter: bool = True
) -> float:
    """t0 uniform over [0, last_time_s - span_s] (0 when the video is shorter than one span)."""
    latest = max(0.0, last_time_s - span_s)
    return float(rng.uniform(0.0, latest)) if jitter else latest / 2.0


def random_square(
    height: int, width: int, rng: np.random.Generator, config: AugmentConfig
) -> tuple[CropBox, int]:
    """A random square (box, side) with side = scale x short side, at a random position."""
    short = min(height, width)
    scale = rng.uniform(config.scale_min, config.scale_max)
    side = int(np.clip(round(scale * short), 1, short))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    flip = bool(config.flip and rng.random() < 0.5)
    return CropBox(top=top, left=left, flip=flip), side


def single_clip_plan(start_s: float, meta: ModelMeta) -> ClipPlan:
    """The ClipPlan of one clip pair starting at `start_s` seconds."""
    clip_times, diff_times = clip_pair_times(start_s, meta.sampling)
    return ClipPlan(starts=np.array([start_s]), clip_times=clip_times[None], diff_times=diff_times[None])


def _normalise_square(
    appearance: npt.NDArray[np.uint8], motion: npt.NDArray[np.int16], meta: ModelMeta, side: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, side, side, 3) + (1, T, side, side, 3) -> (3, c, c), (T, 3, c, c) via `network_inputs`."""
    square_meta = dataclasses.replace(meta, crop_size=side, resize_short=max(meta.resize_short, side))
    app, mot = network_inputs(appearance, motion, square_meta, num_crops=1)  # (1,3,s,s), (1,T,3,s,s)
    app_t = torch.from_numpy(app)
    mot_t = torch.from_numpy(mot[0])  # (T, 3, s, s)
    if side != meta.crop_size:
        size = (meta.crop_size, meta.crop_size)
        app_t = F.interpolate(app_t, size=size, mode="bilinear", align_corners=False)
        mot_t = F.interpolate(mot_t, size=size, mode="bilinear", align_corners=False)
    return app_t[0], mot_t


def training_pair(
    frames: npt.NDArray[np.uint8],
    times: npt.NDArray[np.float64],
    meta: ModelMeta,
    rng: np.random.Generator,
    config: AugmentConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmented clip pair (stage 2): appearance (3, c, c), motion (T, 3, c, c) float32.

    frames uint8 (F, h, w, 3) (a memory map is fine: only the gathered frames are read), times (F,).
    """
    start = random_start_time(float(times[-1]), meta.sampling.span_s, rng, config.temporal_jitter)
    position = int(rng.integers(0, meta.sampling.clip_length))
    box, side = random_square(frames.shape[1], frames.shape[2], rng, config)
    square = frames[:, box.top : box.top + side, box.left : box.left + side]  # (F, s, s, 3) view
    appearance, motion = gather_clip_pairs(square, times, single_clip_plan(start, meta), position)
    if box.flip:
        appearance = appearance[:, :, ::-1]
        motion = motion[:, :, :, ::-1]
    return _normalise_square(appearance, motion, meta, side)


def training_frame(
    frames: npt.NDArray[np.uint8],
    times: npt.NDArray[np.float64],
    meta: ModelMeta,
    rng: np.random.Generator,
    config: AugmentConfig,
) -> torch.Tensor:
    """One augmented single frame (stage 1): a random frame of a random clip, (3, c, c) float32."""
    start = random_start_time(float(times[-1]), meta.sampling.span_s, rng, config.temporal_jitter)
    position = int(rng.integers(0, meta.sampling.clip_length))
    box, side = random_square(frames.shape[1], frames.shape[2], rng, config)
    clip_times, _ = clip_pair_times(start, meta.sampling)
    index = int(nearest_frame_indices(times, clip_times[position]))
    frame = np.asarray(frames[index, box.top : box.top + side, box.left : box.left + side])[None]
    if box.flip:
        frame = frame[:, :, ::-1]
    # network_inputs wants a motion array too; a one-frame zero V_diff costs nothing and is dropped.
    no_motion = np.zeros((1, 1, side, side, 3), dtype=np.int16)
    appearance, _ = _normalise_square(frame, no_motion, meta, side)
    return appearance


def validation_pairs(
    frames: npt.NDArray[np.uint8], times: npt.NDArray[np.float64], meta: ModelMeta, num_clips: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The serving inputs at one (centre) crop: appearance (M, 3, c, c), motion (M, T, 3, c, c)."""
    plan = plan_clip_pairs(float(times[0]), float(times[-1]), meta.sampling, num_clips)
    appearance, motion = gather_clip_pairs(frames, times, plan)
    app, mot = network_inputs(appearance, motion, meta, num_crops=1)
    return torch.from_numpy(app), torch.from_numpy(mot)
