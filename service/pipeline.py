"""The data plane: video file -> probe -> plan -> decode -> clip pairs -> crops -> infer -> fuse.

`Pipeline.predict_file(path, options)` is the whole prediction of one video, blocking; `fstcn predict`
calls it directly. `Pipeline.predict_upload(stream, content_type, options)` is the server's path: it
streams the upload to a temporary file (byte limit enforced while reading), runs `predict_file` in a
worker thread under the engine's admission control, enforces the request time limit over all of it, and
removes the temporary file on every path.

Each stage is timed into `fstcn_stage_duration_seconds{stage}` by `metrics.stage_timer`; the video and
model code never know about metrics or HTTP. Sampling, crops and normalisation come from the shared
`model.clips` (one implementation for training and serving), fusion from `service.fusion`. With a
frames graph (`Engine.graph`, see `model.frames_graph`) the decoded frames go to the model as they are,
with index arrays, and crops and normalisation run inside ONNX Runtime.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from model.clips import ClipPlan, gather_clip_pairs, network_inputs, plan_clip_pairs
from model.frames_graph import frame_feeds
from service import metrics
from service.engine import ConcurrencyLimiter, Engine, FloatArray
from service.errors import InternalError, InvalidParameter, RequestTimeout, ServiceError
from service.fusion import fuse_scores
from service.video.decode import DecodedVideo, VideoInfo, VideoLimits, decode_video, probe_video
from service.video.upload import receive_upload

logger = logging.getLogger(__name__)

CROP_COUNTS = (1, 2, 9, 18)
FUSIONS = ("sci", "mean")
MAX_CLIPS = 32
DEFAULT_TOP_K = 5
# A decoded video ending this much before its headers' duration gets its clip pairs re-planned.
HEADER_SLACK_S = 0.25
HEADER_SLACK_FRACTION = 0.05


@dataclass(frozen=True)
class PredictOptions:
    """Per-request options (SPEC 4). None: `top_k` 5 (N if fewer classes), `clips` the model's default."""

    top_k: int | None = None
    clips: int | None = None
    crops: int = 18
    fusion: str = "sci"


@dataclass(frozen=True)
class Recheck:
    """Re-score close calls exactly: when the served model's fused top-1 leads its runner-up by less than
    `margin`, the video's clip pairs go through `engine` (an exact-crops model of the same weights: the
    plain graph or its exact frames graph) and its answer is returned. Meant for a shared-trunk model,
    whose windows differ from exact crops at their borders: only near-ties can flip."""

    engine: Engine
    margin: float


@dataclass(frozen=True)
class ClipResult:
    start_s: float
    end_s: float
    index: int  # best class of the clip pair
    score: float
    sci: float


@dataclass(frozen=True)
class Prediction:
    """The result of one video: ranked classes (index, fused score), per-clip results, the video."""

    top: list[tuple[int, float]]
    fusion: str
    clips: list[ClipResult]
    video: VideoInfo
    timing_s: dict[str, float] = field(default_factory=dict)
    rechecked: bool = False  # scored again by the exact-crops recheck model (`Recheck`)


class Pipeline:
    """Runs predictions with one engine under one admission control.

    Args:
        engine: the loaded model.
        limits: duration/frames/pixels limits checked from the headers and again while decoding.
        limiter: admission control (None: `predict_file` only, e.g. the CLI).
        max_upload_bytes: byte limit of uploads.
        request_timeout_s: limit of one `predict_upload`, upload included.
        decode_threads: FFmpeg decoder threads (0 = FFmpeg's choice).
        recheck: re-score close calls with an exact-crops model (None: never).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        limits: VideoLimits,
        limiter: ConcurrencyLimiter | None = None,
        max_upload_bytes: int = 200 * 1024 * 1024,
        request_timeout_s: float = 60.0,
        decode_threads: int = 0,
        recheck: Recheck | None = None,
    ) -> None:
        self.engine = engine
        self.recheck = recheck
        self.limits = limits
        self.limiter = limiter
        self.max_upload_bytes = max_upload_bytes
        self.request_timeout_s = request_timeout_s
        self.decode_threads = decode_threads

    # ---------------------------------------------------------------------------------- options
    def resolve(self, options: PredictOptions) -> PredictOptions:
        """Check `options` against the model; fill the default clip count. Raises InvalidParameter."""
        meta = self.engine.meta
        top_k = min(DEFAULT_TOP_K, meta.num_classes) if options.top_k is None else options.top_k
        if not 1 <= top_k <= meta.num_classes:
            raise InvalidParameter(
                f"top_k must be between 1 and the number of classes ({meta.num_classes}), got {top_k}"
            )
        clips = meta.sampling.num_clips if options.clips is None else options.clips
        if not 1 <= clips <= MAX_CLIPS:
            raise InvalidParameter(f"clips must be between 1 and {MAX_CLIPS}, got {clips}")
        if options.crops not in CROP_COUNTS:
            raise InvalidParameter(f"crops must be one of {CROP_COUNTS}, got {options.crops}")
        if options.fusion not in FUSIONS:
            raise InvalidParameter(f"fusion must be one of {FUSIONS}, got {options.fusion!r}")
        return replace(options, top_k=top_k, clips=clips)

    # ------------------------------------------------------------------------------ server path
    async def predict_upload(
        self, stream: AsyncIterator[bytes], content_type: str | None, options: PredictOptions
    ) -> Prediction:
        """Receive an upload and predict on it within the request time limit (RequestTimeout: 504)."""
        if self.limiter is None:
            raise RuntimeError("predict_upload needs a ConcurrencyLimiter")
        options = self.resolve(options)
        self.limiter.check()  # refuse before reading a byte when the queue is already full
        deadline = time.monotonic() + self.request_timeout_s
        try:
            async with asyncio.timeout(self.request_timeout_s):
                upload = await receive_upload(stream, content_type or "", max_bytes=self.max_upload_bytes)
                started = threading.Event()

                def job() -> Prediction:
                    # the worker removes the file when it is done with it, even after the caller gave up
                    started.set()
                    try:
                        return self.predict_file(upload.path, options, deadline=deadline)
                    finally:
                        upload.cleanup()

                try:
                    return await self.limiter.run(job)
                finally:
                    if not started.is_set():  # refused, or gave up while queued: the job never ran
                        upload.cleanup()
        except TimeoutError:
            raise RequestTimeout(f"the request took longer than {self.request_timeout_s:g} s") from None

    # ------------------------------------------------------------------------------- data plane
    def predict_file(
        self, path: Path, options: PredictOptions, *, deadline: float | None = None
    ) -> Prediction:
        """Predict the action in the video at `path` (blocking). Raises service.errors exceptions."""
        try:
            return self._predict_file(Path(path), self.resolve(options), deadline)
        except ServiceError:
            raise
        except Exception as error:  # an unexpected failure: log it fully, answer without internals
            logger.exception("prediction failed unexpectedly for %s", path)
            raise InternalError("internal error while processing the video") from error

    def _predict_file(self, path: Path, options: PredictOptions, deadline: float | None) -> Prediction:
        meta = self.engine.meta
        num_clips = options.clips or meta.sampling.num_clips
        timings: dict[str, float] = {}
        _check_deadline(deadline)  # queued past the time limit: the client already got 504

        with metrics.stage_timer("decode", timings):
            info = probe_video(path, self.limits)
            metrics.observe_video(info.duration_s)
            video, plan = self._decode_planned(path, info, num_clips, deadline)
        _check_deadline(deadline)

        probs = self._scores(self.engine, video, plan, options, timings, deadline)  # (M*K, N), clip-major
        with metrics.stage_timer("fuse", timings):
            # (M*K, N) -> (M, K, N)
            fused = fuse_scores(probs.reshape(num_clips, options.crops, meta.num_classes), options.fusion)
        rechecked = self.recheck is not None and _lead(fused.video_scores) < self.recheck.margin
        if rechecked:
            assert self.recheck is not None
            metrics.count_recheck()
            with metrics.stage_timer("recheck", timings):
                probs = self._scores(self.recheck.engine, video, plan, options, None, deadline)
                fused = fuse_scores(probs.reshape(num_clips, options.crops, meta.num_classes), options.fusion)
        order = np.argsort(-fused.video_scores, kind="stable")[: options.top_k or DEFAULT_TOP_K]
        top = [(int(index), float(fused.video_scores[index])) for index in order]
        last_time = float(video.times[-1]) if video.times.size else 0.0
        clips = [
            ClipResult(
                start_s=round(float(plan.starts[i]), 4),
                end_s=round(min(float(plan.diff_times[i].max()), max(last_time, float(plan.starts[i]))), 4),
                index=int(np.argmax(fused.clip_scores[i])),
                score=float(np.max(fused.clip_scores[i])),
                sci=float(fused.clip_sci[i]),
            )
            for i in range(num_clips)
        ]
        return Prediction(
            top=top,
            fusion=options.fusion,
            clips=clips,
            video=video.info,
            timing_s=timings,
            rechecked=rechecked,
        )

    def _scores(
        self,
        engine: Engine,
        video: DecodedVideo,
        plan: ClipPlan,
        options: PredictOptions,
        timings: dict[str, float] | None,
        deadline: float | None,
    ) -> FloatArray:
        """`engine`'s probabilities (M*K, N) of the planned clip pairs, rows clip-major. Stages are timed
        into `timings` (None: the caller times the whole)."""
        stage = metrics.stage_timer if timings is not None else _untimed
        if engine.graph is not None:  # a frames graph: V_diff, normalisation and crops run inside the model
            with stage("preprocess", timings):
                feeds = frame_feeds(video.frames, video.times, plan, engine.graph, options.crops)
            _check_deadline(deadline)
            with stage("infer", timings):
                return engine.infer_frames(feeds)
        with stage("preprocess", timings):
            appearance, motion = gather_clip_pairs(video.frames, video.times, plan)
            # (M*K, 3, c, c) and (M*K, T, 3, c, c), rows clip-major
            appearance_in, motion_in = network_inputs(appearance, motion, engine.meta, options.crops)
        _check_deadline(deadline)
        with stage("infer", timings):
            return engine.infer(appearance_in, motion_in)

    def _decode_planned(
        self, path: Path, info: VideoInfo, num_clips: int, deadline: float | None
    ) -> tuple[DecodedVideo, ClipPlan]:
        """Plan the clip pairs from the headers and decode only their frames.

        When the headers do not give a duration, every frame is decoded (within the limits) and the plan
        comes from the real timestamps; when the decoded video ends clearly before the headers said, the
        plan is redone over the real length, so clip pairs never sit on a clamped, motionless tail.
        """
        meta = self.engine.meta
        declared_last = _last_frame_time(info)
        if declared_last <= 0:
            video = self._decode(path, None)
            return video, plan_clip_pairs(0.0, float(video.times[-1]), meta.sampling, num_clips)
        plan = plan_clip_pairs(0.0, declared_last, meta.sampling, num_clips)
        video = self._decode(path, plan.all_times())
        decoded_last = float(video.times[-1])
        if _header_overstates(declared_last, decoded_last):
            logger.info(
                "%s ends at %.2f s, headers said %.2f s: re-planning", path.name, decoded_last, declared_last
            )
            _check_deadline(deadline)
            plan = plan_clip_pairs(0.0, decoded_last, meta.sampling, num_clips)
            video = self._decode(path, plan.all_times())
        return video, plan

    def _decode(self, path: Path, times: npt.NDArray[np.float64] | None) -> DecodedVideo:
        return decode_video(
            path,
            resize_short=self.engine.meta.resize_short,
            times=times,
            limits=self.limits,
            threads=self.decode_threads,
        )


def _lead(scores: npt.NDArray[np.float64]) -> float:
    """How far the best class's fused score is ahead of the second best's."""
    best, second = np.sort(scores)[-2:][::-1]
    return float(best - second)


@contextmanager
def _untimed(stage: metrics.Stage, timings: dict[str, float] | None = None) -> Iterator[None]:
    yield


def _last_frame_time(info: VideoInfo) -> float:
    """Time of the last frame from the headers (0.0 when unknown)."""
    if not math.isfinite(info.duration_s) or info.duration_s <= 0:
        return 0.0
    frame_s = 1.0 / info.fps if math.isfinite(info.fps) and info.fps > 0 else 0.0
    return max(0.0, float(info.duration_s) - frame_s)


def _header_overstates(declared_last_s: float, decoded_last_s: float) -> bool:
    """Whether the decoded video ends clearly before the headers said (truncated or lying file)."""
    return decoded_last_s < declared_last_s - max(HEADER_SLACK_S, HEADER_SLACK_FRACTION * declared_last_s)


def _check_deadline(deadline: float | None) -> None:
    """Stop abandoned work between stages once the request's time is up (the client already got 504)."""
    if deadline is not None and time.monotonic() > deadline:
        raise RequestTimeout("the request ran past its time limit")
