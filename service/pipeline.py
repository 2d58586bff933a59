"""The data plane: video file -> probe -> plan -> decode -> clip pairs -> crops -> infer -> fuse.

`Pipeline.predict_file(path, options)` is the whole prediction of one video, blocking; `fstcn predict`
calls it directly. `Pipeline.predict_received(receive)` is the server's path: it receives a request's
videos as temporary files (`receive`: byte limits enforced while reading), runs `predict_file` on each
in one worker thread under the engine's admission control, enforces the request time limit over all of
it, and removes the temporary files on every path. `predict_upload(stream, content_type, options)` is
that path for one multipart upload (`POST /predict`).

Decoding, scoring and fusion are the core's one path (`fstcn.core.scoring`: `decode_planned`, then
`score_video` with the engine as its runner); this module adds what serving needs around it. Each stage
is timed into `fstcn_stage_duration_seconds{stage}` by `metrics.stage_timer`, and the request's deadline
is checked between stages; the video and model code never know about metrics or HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt

from fstcn.core.clips import ClipPlan
from fstcn.core.errors import FstcnError, InternalError, RequestTimeout
from fstcn.core.fusion import FusionResult
from fstcn.core.options import DEFAULT_TOP_K, PredictOptions
from fstcn.core.scoring import Runner, Stage, decode_planned, score_video
from fstcn.core.video.decode import DecodedVideo, VideoInfo, VideoLimits, probe_video
from fstcn.service import metrics
from fstcn.service.admission import ConcurrencyLimiter
from fstcn.service.engine import Engine
from fstcn.service.upload import UploadedFile, receive_upload

logger = logging.getLogger(__name__)


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
        request_timeout_s: limit of one request (`predict_received`), upload included.
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
        """Check `options` against the model; fill the defaults. Raises InvalidParameter."""
        return options.resolved(self.engine.meta)

    # ------------------------------------------------------------------------------ server path
    async def predict_upload(
        self, stream: AsyncIterator[bytes], content_type: str | None, options: PredictOptions
    ) -> Prediction:
        """Receive a multipart upload and predict on it within the request time limit."""
        options = self.resolve(options)  # refuse bad options before reading a byte

        async def receive() -> tuple[Sequence[UploadedFile], PredictOptions]:
            upload = await receive_upload(stream, content_type or "", max_bytes=self.max_upload_bytes)
            return [upload], options

        (prediction,) = await self.predict_received(receive)
        return prediction

    async def predict_received(
        self, receive: Callable[[], Awaitable[tuple[Sequence[UploadedFile], PredictOptions]]]
    ) -> list[Prediction]:
        """Receive a request's videos and options (`receive`), then predict on each video in order in one
        worker job, all within the request time limit (RequestTimeout: 504). The files are removed on
        every path, by the worker once it ran."""
        if self.limiter is None:
            raise RuntimeError("predict_received needs a ConcurrencyLimiter")
        self.limiter.check()  # refuse before reading a byte when the queue is already full
        deadline = time.monotonic() + self.request_timeout_s
        try:
            async with asyncio.timeout(self.request_timeout_s):
                uploads, options = await receive()
                started = threading.Event()

                def job() -> list[Prediction]:
                    # the worker removes the files when it is done with them, even after the caller gave up
                    started.set()
                    try:
                        return [
                            self.predict_file(upload.path, options, deadline=deadline) for upload in uploads
                        ]
                    finally:
                        for upload in uploads:
                            upload.cleanup()

                try:
                    return await self.limiter.run(job)
                finally:
                    if not started.is_set():  # refused, or gave up while queued: the job never ran
                        for upload in uploads:
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
        except FstcnError:
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
            video, plan = decode_planned(
                path,
                info,
                meta,
                num_clips,
                limits=self.limits,
                threads=self.decode_threads,
                between=lambda: _check_deadline(deadline),
            )
        _check_deadline(deadline)

        fused = self._score(self.engine, video, plan, options, _stages(deadline, timings))
        rechecked = self.recheck is not None and _lead(fused.video_scores) < self.recheck.margin
        if rechecked:
            assert self.recheck is not None
            metrics.count_recheck()
            with metrics.stage_timer("recheck", timings):
                fused = self._score(self.recheck.engine, video, plan, options, _stages(deadline))
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

    @staticmethod
    def _score(
        runner: Runner, video: DecodedVideo, plan: ClipPlan, options: PredictOptions, stage: Stage
    ) -> FusionResult:
        return score_video(runner, video, plan, crops=options.crops, fusion=options.fusion, stage=stage)


def _lead(scores: npt.NDArray[np.float64]) -> float:
    """How far the best class's fused score is ahead of the second best's."""
    best, second = np.sort(scores)[-2:][::-1]
    return float(best - second)


def _stages(deadline: float | None, timings: dict[str, float] | None = None) -> Stage:
    """Scoring stages that stop once the request's time is up; with `timings`, each is also timed into
    the metrics and `timings` (without, the caller times the whole)."""

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        _check_deadline(deadline)
        if timings is None:
            yield
            return
        with metrics.stage_timer(cast(metrics.Stage, name), timings):
            yield

    return stage


def _check_deadline(deadline: float | None) -> None:
    """Stop abandoned work between stages once the request's time is up (the client already got 504)."""
    if deadline is not None and time.monotonic() > deadline:
        raise RequestTimeout("the request ran past its time limit")
