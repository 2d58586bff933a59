"""The data plane without HTTP: option checks, planning from headers that are missing or lie, deadlines."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from fstcn.core.errors import InvalidParameter, RequestTimeout
from fstcn.core.options import PredictOptions
from fstcn.core.video.decode import VideoInfo, VideoLimits, probe_video
from fstcn.service import pipeline as pipeline_module
from fstcn.service.engine import CPU, Engine
from fstcn.service.pipeline import Pipeline
from tests.service.fake_model import FAKE_META

SMALL = {"width": 160, "height": 120}


@pytest.fixture(scope="module")
def pipe(fake_model_path: Path) -> Pipeline:
    return Pipeline(Engine.load(fake_model_path, providers=[CPU]), limits=VideoLimits())


def test_resolve_fills_defaults_and_rejects_out_of_range(pipe: Pipeline) -> None:
    resolved = pipe.resolve(PredictOptions())
    assert (resolved.top_k, resolved.clips, resolved.crops, resolved.fusion) == (
        5,
        FAKE_META.sampling.num_clips,
        18,
        "sci",
    )
    for bad in (
        PredictOptions(top_k=0),
        PredictOptions(top_k=7),
        PredictOptions(clips=0),
        PredictOptions(clips=33),
        PredictOptions(crops=4),
        PredictOptions(fusion="max"),
    ):
        with pytest.raises(InvalidParameter):
            pipe.resolve(bad)


def with_header(monkeypatch: pytest.MonkeyPatch, **changes: float) -> None:
    def lying_probe(path: Path, limits: VideoLimits | None = None) -> VideoInfo:
        return replace(probe_video(path, limits), **changes)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline_module, "probe_video", lying_probe)


@pytest.mark.parametrize("header_duration", [0.0, float("nan"), 10.0])
def test_clip_pairs_cover_the_real_video_when_headers_are_missing_or_lie(
    header_duration: float,
    pipe: Pipeline,
    video_factory: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    video = video_factory("real-2s.mp4", fps=25, seconds=2.0, **SMALL)  # last frame at 1.96 s
    honest = pipe.predict_file(video, PredictOptions(crops=1))
    with_header(monkeypatch, duration_s=header_duration)
    prediction = pipe.predict_file(video, PredictOptions(crops=1))
    assert prediction.clips[-1].end_s == pytest.approx(1.96, abs=0.05)
    assert [c.start_s for c in prediction.clips] == pytest.approx([c.start_s for c in honest.clips], abs=0.05)
    assert [i for i, _ in prediction.top] == [i for i, _ in honest.top]
    assert [score for _, score in prediction.top] == pytest.approx(
        [score for _, score in honest.top], abs=1e-4
    )


def test_work_past_its_deadline_stops(pipe: Pipeline, video_factory: Callable[..., Path]) -> None:
    video = video_factory("deadline.mp4", **SMALL)
    with pytest.raises(RequestTimeout):
        pipe.predict_file(video, PredictOptions(), deadline=time.monotonic() - 1)


def test_stage_timings_are_reported(pipe: Pipeline, video_factory: Callable[..., Path]) -> None:
    prediction = pipe.predict_file(video_factory("timed.mp4", **SMALL), PredictOptions(crops=2, clips=2))
    assert set(prediction.timing_s) == {"decode", "preprocess", "infer", "fuse"}
    assert all(seconds >= 0 for seconds in prediction.timing_s.values())
    assert len(prediction.clips) == 2
