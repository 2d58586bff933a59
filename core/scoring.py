"""The one path from a video file to fused scores: decode the planned frames, score them with any runner.

Every caller goes through here: the service's data plane, `fstcn predict`, evaluation, export's checks,
the border calibration, t-SNE features and saliency. A *runner* is anything with the model's metadata
and the two steps of `Runner`: `OnnxModel` and the service's `Engine` (ONNX Runtime), or the training
side's torch runner (`fstcn.model.runner`). The stages are

  decode_planned   headers -> clip-pair plan -> decode only the planned frames (re-plan when the file
                   turns out shorter than its headers said)
  clip_probs       frames -> runner.prepare -> runner.run -> probabilities (M, K, N)
  score_video      clip_probs -> fusion (`fstcn.core.fusion`) -> FusionResult

`stage(name)` is how a caller times and interrupts them: a context manager entered around each stage
("decode", "preprocess", "infer", "fuse"), which may raise to stop abandoned work.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fstcn.core.clips import ClipPlan, plan_clip_pairs
from fstcn.core.fusion import FusionResult, fuse_scores
from fstcn.core.meta import ModelMeta
from fstcn.core.video.decode import DecodedVideo, VideoInfo, VideoLimits, decode_video

logger = logging.getLogger(__name__)

__all__ = ["Runner", "Stage", "clip_probs", "decode_planned", "score_video", "untimed"]

Feeds = dict[str, npt.NDArray[Any]]
Stage = Callable[[str], AbstractContextManager[Any]]

# A decoded video ending this much before its headers' duration gets its clip pairs re-planned.
HEADER_SLACK_S = 0.25
HEADER_SLACK_FRACTION = 0.05


class Runner(Protocol):
    """A model as scoring sees it: its metadata, a feeds builder and a run."""

    @property
    def meta(self) -> ModelMeta: ...

    def prepare(
        self, frames: npt.NDArray[np.uint8], frame_times: npt.ArrayLike, plan: ClipPlan, num_crops: int
    ) -> Feeds:
        """The model's inputs for the M clip pairs of `plan` in decoded frames uint8 (F, H, W, 3)."""
        ...

    def run(self, feeds: Feeds) -> npt.NDArray[np.float32]:
        """feeds -> probabilities (M*K, N) float32, rows clip-major (row = i*K + k)."""
        ...


def untimed(name: str) -> AbstractContextManager[Any]:
    """The `stage` of a caller that neither times nor interrupts."""
    return nullcontext()


def decode_planned(
    path: Path,
    info: VideoInfo,
    meta: ModelMeta,
    num_clips: int,
    *,
    limits: VideoLimits | None = None,
    threads: int = 0,
    between: Callable[[], None] | None = None,
) -> tuple[DecodedVideo, ClipPlan]:
    """Plan M clip pairs from the headers (`info`, from `probe_video`) and decode only their frames.

    When the headers do not give a duration, every frame is decoded (within the limits) and the plan
    comes from the real timestamps; when the decoded video ends clearly before the headers said, the plan
    is redone over the real length, so clip pairs never sit on a clamped, motionless tail. `between` runs
    before a second decode (a deadline check).
    """

    def decode(times: npt.NDArray[np.float64] | None) -> DecodedVideo:
        return decode_video(path, resize_short=meta.resize_short, times=times, limits=limits, threads=threads)

    declared_last = _last_frame_time(info)
    if declared_last <= 0:
        video = decode(None)
        return video, plan_clip_pairs(0.0, float(video.times[-1]), meta.sampling, num_clips)
    plan = plan_clip_pairs(0.0, declared_last, meta.sampling, num_clips)
    video = decode(plan.all_times())
    decoded_last = float(video.times[-1])
    if _header_overstates(declared_last, decoded_last):
        logger.info(
            "%s ends at %.2f s, headers said %.2f s: re-planning", path.name, decoded_last, declared_last
        )
        if between is not None:
            between()
        plan = plan_clip_pairs(0.0, decoded_last, meta.sampling, num_clips)
        video = decode(plan.all_times())
    return video, plan


def clip_probs(
    runner: Runner, video: DecodedVideo, plan: ClipPlan, num_crops: int, *, stage: Stage = untimed
) -> npt.NDArray[np.float32]:
    """The runner's probabilities of every planned clip pair and crop: (M, K, N) float32."""
    with stage("preprocess"):
        feeds = runner.prepare(video.frames, video.times, plan, num_crops)
    with stage("infer"):
        probs = runner.run(feeds)  # (M*K, N), clip-major
    num_clips = plan.num_clips
    expected = (num_clips * num_crops, runner.meta.num_classes)
    if probs.shape != expected:
        raise ValueError(f"runner returned probabilities of shape {probs.shape}, expected {expected}")
    return probs.reshape(num_clips, num_crops, runner.meta.num_classes)  # (M*K, N) -> (M, K, N)


def score_video(
    runner: Runner,
    video: DecodedVideo,
    plan: ClipPlan,
    *,
    crops: int,
    fusion: str,
    stage: Stage = untimed,
) -> FusionResult:
    """Score a decoded video: `clip_probs`, then fusion over crops and clip pairs."""
    probs = clip_probs(runner, video, plan, crops, stage=stage)  # (M, K, N)
    with stage("fuse"):
        return fuse_scores(probs, fusion)


def _last_frame_time(info: VideoInfo) -> float:
    """Time of the last frame from the headers (0.0 when unknown)."""
    if not math.isfinite(info.duration_s) or info.duration_s <= 0:
        return 0.0
    frame_s = 1.0 / info.fps if math.isfinite(info.fps) and info.fps > 0 else 0.0
    return max(0.0, float(info.duration_s) - frame_s)


def _header_overstates(declared_last_s: float, decoded_last_s: float) -> bool:
    """Whether the decoded video ends clearly before the headers said (truncated or lying file)."""
    return decoded_last_s < declared_last_s - max(HEADER_SLACK_S, HEADER_SLACK_FRACTION * declared_last_s)
