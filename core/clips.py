"""Video frames -> FstCN clip pairs and test-time crops: the ONE implementation.

The contract is docs/design.md, "Sampling" and "Crops".

Training, evaluation and the service all turn decoded frames into network inputs through this module,
so there is no training-serving skew. It owns the time plan of the M clip pairs (sampling counts are
frames at the model's `ref_fps`, mapped through timestamps to the nearest decoded frame, which makes a
60 fps, 25 fps or variable-frame-rate upload see the same motion span), the gathering of V_clip's
appearance frame and V_diff, the 1/2/9/18 crop boxes, and the normalisation into the float32 arrays of
the ONNX contract (see `fstcn.core.meta`). Pure numpy: the service imports it, so no torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fstcn.core.meta import ModelMeta, SamplingParams

__all__ = [
    "CROP_COUNTS",
    "ClipPlan",
    "CropBox",
    "clip_pair_times",
    "crop_boxes",
    "gather_clip_pairs",
    "nearest_frame_indices",
    "network_inputs",
    "plan_clip_pairs",
    "resized_size",
]

CROP_COUNTS = (1, 2, 9, 18)
# Timestamps are floats from different sources (container time bases, i * s_t / ref_fps); a query
# exactly half-way between two frames must go to the earlier one whatever the rounding noise.
_TIE_TOLERANCE_S = 1e-9


def resized_size(height: int, width: int, resize_short: int) -> tuple[int, int]:
    """(h, w) after resizing so that the short side is `resize_short`, aspect ratio kept (rounded)."""
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    if resize_short < 1:
        raise ValueError(f"resize_short must be >= 1, got {resize_short}")
    if height <= width:
        return resize_short, max(resize_short, int(round(width * resize_short / height)))
    return max(resize_short, int(round(height * resize_short / width))), resize_short


@dataclass(frozen=True)
class ClipPlan:
    """When the M clip pairs of one video are taken, in seconds.

    starts (M,): t_0 of each pair; clip_times (M, l_t): the V_clip frame times t_i;
    diff_times (M, l_t): the V_diff partner times t_i + d_t / ref_fps.
    """

    starts: npt.NDArray[np.float64]
    clip_times: npt.NDArray[np.float64]
    diff_times: npt.NDArray[np.float64]

    @property
    def num_clips(self) -> int:
        return int(self.starts.shape[0])

    def all_times(self) -> npt.NDArray[np.float64]:
        """Sorted unique float64 array of every time the decoder must deliver."""
        return np.unique(np.concatenate([self.clip_times.ravel(), self.diff_times.ravel()])).astype(
            np.float64
        )


def clip_pair_times(
    start_s: float, params: SamplingParams
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(clip_times (l_t,), diff_times (l_t,)) of the pair starting at `start_s` seconds.

    t_i = start + i * s_t / ref_fps, and V_diff[i]'s partner frame is at t_i + d_t / ref_fps.
    """
    steps = np.arange(params.clip_length, dtype=np.float64) * params.stride
    clip_times = start_s + steps / params.ref_fps
    diff_times = start_s + (steps + params.diff_offset) / params.ref_fps
    return clip_times, diff_times


def plan_clip_pairs(first_s: float, last_s: float, params: SamplingParams, num_clips: int) -> ClipPlan:
    """Spread `num_clips` pairs evenly: the first starts at `first_s`, the last ends at `last_s`.

    `last_s` is the time of the video's last frame. A video shorter than one pair span puts every start
    at `first_s`; the frames beyond the end are then clamped by `nearest_frame_indices`.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if not (np.isfinite(first_s) and np.isfinite(last_s)):
        raise ValueError(f"first_s and last_s must be finite, got {first_s}, {last_s}")
    if last_s < first_s:
        raise ValueError(f"last_s ({last_s}) is before first_s ({first_s})")
    last_start = max(first_s, last_s - params.span_s)
    starts = np.linspace(first_s, last_start, num_clips, dtype=np.float64)
    pairs = [clip_pair_times(float(start), params) for start in starts]
    clip_times = np.stack([clip for clip, _ in pairs])  # (M, l_t)
    diff_times = np.stack([diff for _, diff in pairs])  # (M, l_t)
    return ClipPlan(starts=starts, clip_times=clip_times, diff_times=diff_times)


def nearest_frame_indices(frame_times: npt.ArrayLike, query_times: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Index of the decoded frame nearest to each query time, same shape as `query_times`.

    `frame_times` (F,) must be non-decreasing (presentation order). Ties go to the earlier frame;
    queries before the first or after the last frame clamp to it (short videos, VFR gaps).
    """
    times = np.asarray(frame_times, dtype=np.float64)
    queries = np.asarray(query_times, dtype=np.float64)
    if times.ndim != 1 or times.shape[0] < 1:
        raise ValueError(f"frame_times must be a non-empty 1-D array, got shape {times.shape}")
    if np.any(np.diff(times) < 0):
        raise ValueError("frame_times must be non-decreasing")
    if not np.all(np.isfinite(queries)):
        raise ValueError("query_times must be finite")
    after = np.searchsorted(times, queries, side="left")  # first frame at or after each query
    after = np.clip(after, 0, times.shape[0] - 1)
    before = np.clip(after - 1, 0, times.shape[0] - 1)
    take_before = (queries - times[before]) <= (times[after] - queries) + _TIE_TOLERANCE_S
    return np.where(take_before, before, after).astype(np.int64)


def nearer_to_earlier(query_s: float, earlier_s: float, later_s: float) -> bool:
    """Whether `nearest_frame_indices` gives `query_s` to the earlier of two neighbouring frames.

    The same rule for one query between two frame times, without numpy's per-call cost: the decoder
    asks it for every frame it keeps, while the frames stream past.
    """
    return (query_s - earlier_s) <= (later_s - query_s) + _TIE_TOLERANCE_S


def gather_clip_pairs(
    frames: npt.NDArray[np.uint8],
    frame_times: npt.ArrayLike,
    plan: ClipPlan,
    appearance_position: int | Sequence[int] | npt.NDArray[np.integer] | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16]]:
    """Cut the planned clip pairs out of decoded frames.

    frames uint8 (F, H, W, 3) with times (F,) seconds -> (appearance uint8 (M, H, W, 3),
    motion int16 (M, l_t, H, W, 3)). The appearance frame is V_clip's frame at position l_t // 2 (test)
    or at `appearance_position` (an int, or one per clip; training draws them at random).
    motion[m, i] = V[t_i + d_t] - V[t_i].
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (F, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    times = np.asarray(frame_times, dtype=np.float64)
    if times.shape != (frames.shape[0],):
        raise ValueError(f"frame_times has shape {times.shape}, expected ({frames.shape[0]},)")
    num_clips, clip_length = plan.clip_times.shape
    if appearance_position is None:
        positions = np.full(num_clips, clip_length // 2, dtype=np.int64)
    else:
        positions = np.broadcast_to(np.asarray(appearance_position, dtype=np.int64), (num_clips,))
    if np.any(positions < 0) or np.any(positions >= clip_length):
        raise ValueError(f"appearance_position must be in [0, {clip_length}), got {positions.tolist()}")
    clip_idx = nearest_frame_indices(times, plan.clip_times)  # (M, l_t)
    diff_idx = nearest_frame_indices(times, plan.diff_times)  # (M, l_t)
    appearance = frames[clip_idx[np.arange(num_clips), positions]]  # (M, H, W, 3)
    motion = frames[diff_idx].astype(np.int16) - frames[clip_idx].astype(np.int16)  # (M, l_t, H, W, 3)
    return appearance, motion


@dataclass(frozen=True)
class CropBox:
    """A crop_size x crop_size square at (top, left) of the resized frame, flipped horizontally or not."""

    top: int
    left: int
    flip: bool


def crop_boxes(height: int, width: int, crop_size: int, num_crops: int) -> list[CropBox]:
    """The test-time crops of docs/design.md, "Crops", for a (height, width) frame.

    1 = [centre]; 2 = [centre, centre flipped]; 9 = the 3x3 positions row-major (top-left ...
    bottom-right, index 4 is the centre); 18 = those 9, then the same 9 flipped (index 9 + k is the flip
    of k). So `crop_boxes(..., 18)[:9]` equals `crop_boxes(..., 9)`.
    """
    if num_crops not in CROP_COUNTS:
        raise ValueError(f"num_crops must be one of {CROP_COUNTS}, got {num_crops}")
    if crop_size < 1:
        raise ValueError(f"crop_size must be >= 1, got {crop_size}")
    if crop_size > height or crop_size > width:
        raise ValueError(f"crop_size {crop_size} does not fit a {height}x{width} frame")
    tops = (0, (height - crop_size) // 2, height - crop_size)
    lefts = (0, (width - crop_size) // 2, width - crop_size)
    centre = CropBox(top=tops[1], left=lefts[1], flip=False)
    if num_crops == 1:
        return [centre]
    if num_crops == 2:
        return [centre, CropBox(top=centre.top, left=centre.left, flip=True)]
    grid = [CropBox(top=top, left=left, flip=False) for top in tops for left in lefts]
    if num_crops == 9:
        return grid
    return grid + [CropBox(top=box.top, left=box.left, flip=True) for box in grid]


def network_inputs(
    appearance: npt.NDArray[np.uint8],
    motion: npt.NDArray[np.int16],
    meta: ModelMeta,
    num_crops: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Crop, flip and normalise clip pairs into the ONNX inputs.

    appearance uint8 (M, H, W, 3), motion int16 (M, T, H, W, 3) -> (appearance float32 (M*K, 3, c, c),
    motion float32 (M*K, T, 3, c, c)) with K = num_crops and c = meta.crop_size. Rows are clip-major
    (row = i * K + k), so the network's probs reshape to (M, K, N). Normalisation per `fstcn.core.meta`:
    appearance = (x / 255 - mean) / std, motion = d / 255 * diff_scale.
    """
    if appearance.ndim != 4 or appearance.shape[-1] != 3:
        raise ValueError(f"expected appearance of shape (M, H, W, 3), got {appearance.shape}")
    if motion.ndim != 5 or motion.shape[-1] != 3:
        raise ValueError(f"expected motion of shape (M, T, H, W, 3), got {motion.shape}")
    num_clips, height, width, _ = appearance.shape
    if motion.shape[0] != num_clips or motion.shape[2:4] != (height, width):
        raise ValueError(f"motion {motion.shape} does not match appearance {appearance.shape}")
    size = meta.crop_size
    boxes = crop_boxes(height, width, size, num_crops)
    app_crops = []
    mot_crops = []
    for box in boxes:
        app = appearance[:, box.top : box.top + size, box.left : box.left + size]  # (M, c, c, 3)
        mot = motion[:, :, box.top : box.top + size, box.left : box.left + size]  # (M, T, c, c, 3)
        if box.flip:
            app = app[:, :, ::-1]
            mot = mot[:, :, :, ::-1]
        app_crops.append(app)
        mot_crops.append(mot)
    app_stack = np.stack(app_crops, axis=1)  # (M, K, c, c, 3)
    mot_stack = np.stack(mot_crops, axis=1)  # (M, K, T, c, c, 3)
    mean = np.asarray(meta.mean, dtype=np.float32)
    std = np.asarray(meta.std, dtype=np.float32)
    app_norm = (app_stack.astype(np.float32) / np.float32(255.0) - mean) / std
    mot_norm = mot_stack.astype(np.float32) * np.float32(meta.diff_scale / 255.0)
    k = len(boxes)
    clip_length = motion.shape[1]
    # (M, K, c, c, 3) -> (M*K, 3, c, c)
    app_out = np.ascontiguousarray(app_norm.transpose(0, 1, 4, 2, 3).reshape(num_clips * k, 3, size, size))
    # (M, K, T, c, c, 3) -> (M*K, T, 3, c, c)
    mot_out = np.ascontiguousarray(
        mot_norm.transpose(0, 1, 2, 5, 3, 4).reshape(num_clips * k, clip_length, 3, size, size)
    )
    return app_out, mot_out
