"""The service serves fast-path graphs: the engine recognises a frames graph by its metadata, and the
data plane's predictions through it equal the plain graph's (exact crops) or stay close (shared trunk)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fstcn.core.options import PredictOptions
from fstcn.core.video.decode import VideoLimits
from fstcn.service.engine import BatchingOptions, Engine
from fstcn.service.pipeline import Pipeline
from tests.bench.test_fastpaths import _export


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    return _export(tmp_path_factory.mktemp("served"))


def _pipeline(path: Path, batching: BatchingOptions | None = None) -> Pipeline:
    engine = Engine.load(path, providers=["CPUExecutionProvider"], intra_op_threads=1, batching=batching)
    engine.warm_up()
    return Pipeline(engine, limits=VideoLimits())


@pytest.mark.parametrize("crops", [1, 18])
def test_frames_graph_predictions_equal_the_plain_graph(
    models: tuple[Path, dict[str, Path]], video_factory: Callable[..., Path], crops: int
) -> None:
    plain_path, paths = models
    video = video_factory("fast.mp4", seconds=3.0, width=96, height=64)
    plain = _pipeline(plain_path)
    exact = _pipeline(paths["exact"], batching=BatchingOptions())  # batching is ignored, with a warning
    trunk = _pipeline(paths["shared"])
    assert plain.engine.graph is None
    assert exact.engine.graph is not None and exact.engine.graph.crops == "exact"
    assert trunk.engine.graph is not None and trunk.engine.graph.crops == "shared"
    options = PredictOptions(crops=crops, clips=3)
    expected = plain.predict_file(video, options)
    got = exact.predict_file(video, options)
    assert [index for index, _ in got.top] == [index for index, _ in expected.top]
    np.testing.assert_allclose([s for _, s in got.top], [s for _, s in expected.top], atol=1e-6)
    assert [c.sci for c in got.clips] == pytest.approx([c.sci for c in expected.clips], abs=1e-6)
    assert set(got.timing_s) == {"decode", "preprocess", "infer", "fuse"}
    shared = trunk.predict_file(video, options)
    assert len(shared.clips) == 3 and len(shared.top) == len(expected.top)
    assert all(0.0 <= score <= 1.0 for _, score in shared.top)


def test_infer_frames_is_refused_by_a_plain_engine(models: tuple[Path, dict[str, Path]]) -> None:
    engine = Engine.load(models[0], providers=["CPUExecutionProvider"], intra_op_threads=1)
    with pytest.raises(ValueError, match="frames graph"):
        engine.infer_frames({})


@pytest.mark.parametrize("recheck_with", ["plain", "exact"])
def test_recheck_answers_close_calls_with_exact_crops(
    models: tuple[Path, dict[str, Path]], video_factory: Callable[..., Path], recheck_with: str
) -> None:
    """A video whose shared-trunk lead is under the margin gets the exact model's answer (the plain
    graph's or the exact frames graph's); over it, the shared trunk's own."""
    from prometheus_client import REGISTRY

    from fstcn.service.pipeline import Recheck

    plain_path, paths = models
    video = video_factory("fast.mp4", seconds=3.0, width=96, height=64)
    options = PredictOptions(crops=18, clips=3)
    exact = _pipeline(plain_path).predict_file(video, options)
    alone = _pipeline(paths["branch"]).predict_file(video, options)
    checker = Engine.load(
        plain_path if recheck_with == "plain" else paths["exact"],
        providers=["CPUExecutionProvider"],
        intra_op_threads=1,
    )
    lead = alone.top[0][1] - alone.top[1][1]

    def rechecks() -> float:
        return REGISTRY.get_sample_value("fstcn_rechecks_total") or 0.0

    before = rechecks()
    trunk = _pipeline(paths["branch"])
    trunk.recheck = Recheck(checker, margin=lead + 1e-6)  # just over this video's lead: rechecked
    got = trunk.predict_file(video, options)
    assert got.rechecked and rechecks() == before + 1
    assert [index for index, _ in got.top] == [index for index, _ in exact.top]
    np.testing.assert_allclose([s for _, s in got.top], [s for _, s in exact.top], atol=1e-6)
    assert {"decode", "preprocess", "infer", "fuse", "recheck"} == set(got.timing_s)
    trunk.recheck = Recheck(checker, margin=lead - 1e-6)  # just under it: the shared trunk's answer
    kept = trunk.predict_file(video, options)
    assert not kept.rechecked and rechecks() == before + 1
    assert kept.top == alone.top and "recheck" not in kept.timing_s


def test_recheck_model_must_match_the_served_model(
    models: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    from fstcn.service.app import recheck_from_settings
    from fstcn.service.engine import ModelLoadError
    from fstcn.service.settings import Settings

    plain_path, paths = models
    served = Engine.load(paths["branch"], providers=["CPUExecutionProvider"], intra_op_threads=1)
    settings = Settings(model_path=paths["branch"], recheck_model_path=plain_path, recheck_margin=0.1)
    recheck = recheck_from_settings(settings, served)
    assert recheck is not None and recheck.margin == 0.1 and recheck.engine.graph is None
    assert recheck_from_settings(Settings(model_path=paths["branch"]), served) is None
    with pytest.raises(ModelLoadError, match="not an exact-crops model"):
        recheck_from_settings(
            Settings(model_path=paths["branch"], recheck_model_path=paths["shared"]), served
        )
    other_plain, _ = _export(tmp_path, resize_short=48)
    with pytest.raises(ModelLoadError, match="resize_short"):
        recheck_from_settings(Settings(model_path=paths["branch"], recheck_model_path=other_plain), served)
    with pytest.raises(ValueError, match="recheck_model_path"):
        Settings(model_path=paths["branch"], recheck_model_path=tmp_path / "missing.onnx")


def test_recheck_model_runs_where_the_served_model_runs_and_adds_no_fallback_line(
    models: tuple[Path, dict[str, Path]], caplog: pytest.LogCaptureFixture
) -> None:
    """On auto providers without a GPU the served model reports the CPU fallback in one line; the recheck
    model then opens on the served engine's providers: no second GPU probe, no second line."""
    import logging

    import onnxruntime as ort

    from fstcn.service.app import engine_from_settings, recheck_from_settings
    from fstcn.service.engine import CUDA, ModelLoadError
    from fstcn.service.settings import Settings

    plain_path, paths = models
    if CUDA in ort.get_available_providers():
        try:  # only meaningful where the GPU providers do not really load
            Engine.load(paths["exact"], providers=[CUDA]).close()
            pytest.skip("CUDA really loads on this machine")
        except ModelLoadError:
            pass
    settings = Settings(model_path=paths["branch"], recheck_model_path=paths["exact"], providers="auto")
    with caplog.at_level(logging.INFO, logger="fstcn.service.engine"):
        served = engine_from_settings(settings)
        recheck = recheck_from_settings(settings, served)
    assert recheck is not None and recheck.engine.providers == served.providers == ["CPUExecutionProvider"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "running on CPU" in warnings[0]
    assert sum("loaded model" in r.getMessage() for r in caplog.records) == 2
