"""The service serves every form of the network through one engine contract: the engine learns the form
from the file, the data plane's predictions through an exact frames graph equal the plain graph's (how
close the shared trunk stays is measured on the shipped bundle, tests/models/test_bundle.py),
`/v1/model` says which form is served with which inputs and whether batching is in effect, and the
recheck model is loaded and checked from the settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client import REGISTRY

from fstcn.core.clips import plan_clip_pairs
from fstcn.core.options import PredictOptions
from fstcn.core.runtime import CUDA
from fstcn.core.video.decode import VideoLimits
from fstcn.service.app import create_app
from fstcn.service.engine import CPU, BatchingOptions, Engine, ModelLoadError
from fstcn.service.loading import engine_from_settings, recheck_from_settings
from fstcn.service.pipeline import Pipeline, Recheck
from fstcn.service.settings import Settings
from tests.model.tiny import tiny_bundle
from tests.service.servers import open_client


@pytest.fixture(scope="module")
def models(tiny_models: tuple[Path, dict[str, Path]]) -> tuple[Path, dict[str, Path]]:
    return tiny_models


def _pipeline(path: Path, batching: BatchingOptions | None = None) -> Pipeline:
    engine = Engine.load(path, providers=[CPU], intra_op_threads=1, batching=batching)
    engine.warm_up()
    return Pipeline(engine, limits=VideoLimits())


@pytest.mark.parametrize("crops", [1, 18])
def test_frames_graph_predictions_equal_the_plain_graph(
    models: tuple[Path, dict[str, Path]], video_factory: Callable[..., Path], crops: int
) -> None:
    plain_path, paths = models
    video = video_factory("fast.mp4", seconds=3.0, width=96, height=64)
    plain = _pipeline(plain_path)
    exact = _pipeline(paths["exact"], batching=BatchingOptions())
    trunk = _pipeline(paths["shared"])
    assert (plain.engine.form, exact.engine.form, trunk.engine.form) == ("plain", "exact", "shared-lower")
    assert exact.engine.batching
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


@pytest.mark.parametrize("form", ["plain", "exact", "shared", "branch"])
def test_every_form_keeps_the_runner_contract(models: tuple[Path, dict[str, Path]], form: str) -> None:
    """prepare(frames, times, plan, K) -> feeds holding M*K rows, each declared input fed; run -> (M*K, N)
    probabilities."""
    plain_path, paths = models
    engine = Engine.load(plain_path if form == "plain" else paths[form], providers=[CPU], intra_op_threads=1)
    meta = engine.meta
    frames = np.random.default_rng(0).integers(0, 256, (40, meta.resize_short, 56, 3), dtype=np.uint8)
    times = np.arange(len(frames)) / meta.sampling.ref_fps
    plan = plan_clip_pairs(0.0, float(times[-1]), meta.sampling, 2)
    feeds = engine.prepare(frames, times, plan, 9)
    assert set(feeds) == {graph_input.name for graph_input in engine.inputs}
    assert engine.model.rows(feeds) == 2 * 9
    probs = engine.run(feeds)
    assert probs.shape == (2 * 9, meta.num_classes) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


class CountingSession:
    """Wraps an InferenceSession and records the rows of every run's output."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session, self.rows = session, list[int]()

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self.session.run(outputs, feeds)
        self.rows.append(int(result[0].shape[0]))
        return result


@pytest.mark.parametrize("form", ["plain", "exact", "shared", "branch"])
def test_batched_runs_equal_unbatched_runs_for_every_form(
    models: tuple[Path, dict[str, Path]], form: str
) -> None:
    """Six concurrent requests in one batch: frames of two sizes and three crop counts. Those whose feeds
    can share a run (any plain graph's; a frames graph's with one frame size and crop count) run merged,
    the others alone, and every request gets the probabilities it gets alone (within 1e-5)."""
    plain_path, paths = models
    path = plain_path if form == "plain" else paths[form]
    alone = Engine.load(path, providers=[CPU], intra_op_threads=1)
    batched = Engine.load(
        path,
        providers=[CPU],
        intra_op_threads=1,
        batching=BatchingOptions(max_batch_size=6, max_delay_s=2.0),
    )
    counting = CountingSession(batched.model.session)
    batched.model.session = counting  # type: ignore[assignment]
    meta = alone.meta
    rng = np.random.default_rng(1)
    requests = []
    for index, (width, crops, clips) in enumerate(
        [(56, 18, 2), (56, 18, 3), (72, 18, 2), (56, 9, 1), (56, 18, 1), (72, 1, 2)]
    ):
        frames = rng.integers(0, 256, (30 + 5 * index, meta.resize_short, width, 3), dtype=np.uint8)
        times = np.arange(len(frames)) / meta.sampling.ref_fps
        plan = plan_clip_pairs(0.0, float(times[-1]), meta.sampling, clips)
        requests.append(alone.prepare(frames, times, plan, crops))
    expected = [alone.run(feeds) for feeds in requests]
    results: dict[int, np.ndarray] = {}

    def call(index: int) -> None:
        results[index] = batched.run(requests[index])

    try:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        batched.close()
    assert sorted(results) == list(range(len(requests)))
    for index, probs in enumerate(expected):
        np.testing.assert_allclose(results[index], probs, atol=1e-5, rtol=0)
    # plain: every request in one run; frames graphs: requests 0, 1 and 4 (56 wide, 18 crops) in one
    # run, each of the others alone
    rows = [len(probs) for probs in expected]
    merged = sum(rows) if form == "plain" else rows[0] + rows[1] + rows[4]
    assert merged in counting.rows
    assert len(counting.rows) == (1 if form == "plain" else 4)


@pytest.mark.parametrize(
    ("form", "served"), [("exact", "exact"), ("shared", "shared-lower"), ("branch", "shared-branch")]
)
def test_model_endpoint_describes_the_served_frames_graph(
    models: tuple[Path, dict[str, Path]], form: str, served: str
) -> None:
    """A frames graph served with batching configured: /v1/model names its form and its uint8 frames and
    index inputs, and says batching is on (requests with one frame size and crop count share runs)."""
    _, paths = models
    settings = Settings(model_path=paths[form], providers="cpu", batching=True)
    with open_client(create_app(settings)) as client:
        body = client.get("/v1/model").json()
    assert body["form"] == served and body["batching"] is True
    inputs = {item["name"]: item for item in body["input"]["graph_inputs"]}
    crop_input = "crop_boxes" if form == "exact" else "crop_index"
    assert {"frames", "appearance_index", "clip_index", "diff_index", crop_input} <= set(inputs)
    assert "appearance" not in inputs and "motion" not in inputs
    assert inputs["frames"]["element_type"] == "uint8" and len(inputs["frames"]["shape"]) == 4
    assert inputs["frames"]["shape"][3] == 3
    assert inputs["clip_index"]["element_type"] == "int64"


@pytest.mark.parametrize("recheck_with", ["plain", "exact"])
def test_recheck_answers_close_calls_with_exact_crops(
    models: tuple[Path, dict[str, Path]], video_factory: Callable[..., Path], recheck_with: str
) -> None:
    """A video whose shared-trunk lead is under the margin gets the exact model's answer (the plain
    graph's or the exact frames graph's); over it, the shared trunk's own."""
    plain_path, paths = models
    video = video_factory("fast.mp4", seconds=3.0, width=96, height=64)
    options = PredictOptions(crops=18, clips=3)
    exact = _pipeline(plain_path).predict_file(video, options)
    alone = _pipeline(paths["branch"]).predict_file(video, options)
    checker = Engine.load(
        plain_path if recheck_with == "plain" else paths["exact"],
        providers=[CPU],
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
    plain_path, paths = models
    served = Engine.load(paths["branch"], providers=[CPU], intra_op_threads=1)
    settings = Settings(model_path=paths["branch"], recheck_model_path=plain_path, recheck_margin=0.1)
    recheck = recheck_from_settings(settings, served)
    assert recheck is not None and recheck.margin == 0.1 and recheck.engine.form == "plain"
    assert recheck_from_settings(Settings(model_path=paths["branch"]), served) is None
    with pytest.raises(ModelLoadError, match="not an exact-crops model"):
        recheck_from_settings(
            Settings(model_path=paths["branch"], recheck_model_path=paths["shared"]), served
        )
    other_plain, _ = tiny_bundle(tmp_path, resize_short=48)
    with pytest.raises(ModelLoadError, match="resize_short"):
        recheck_from_settings(Settings(model_path=paths["branch"], recheck_model_path=other_plain), served)
    with pytest.raises(ValueError, match="recheck_model_path"):
        Settings(model_path=paths["branch"], recheck_model_path=tmp_path / "missing.onnx")


def test_recheck_model_runs_where_the_served_model_runs_and_adds_no_fallback_line(
    models: tuple[Path, dict[str, Path]], caplog: pytest.LogCaptureFixture
) -> None:
    """On auto providers without a GPU the served model reports the CPU fallback in one line; the recheck
    model then opens on the served engine's providers: no second GPU probe, no second line."""
    plain_path, paths = models
    if CUDA in ort.get_available_providers():
        try:  # only meaningful where the GPU providers do not really load
            Engine.load(paths["exact"], providers=[CUDA]).close()
            pytest.skip("CUDA really loads on this machine")
        except ModelLoadError:
            pass
    settings = Settings(model_path=paths["branch"], recheck_model_path=paths["exact"], providers="auto")
    with caplog.at_level(logging.INFO, logger="fstcn.core.runtime"):
        served = engine_from_settings(settings)
        recheck = recheck_from_settings(settings, served)
    assert recheck is not None and recheck.engine.providers == served.providers == [CPU]
    # one line, INFO on a host without a GPU, WARNING where a GPU is there but did not load
    fallbacks = [r.getMessage() for r in caplog.records if "running on CPU" in r.getMessage()]
    assert len(fallbacks) == 1
    assert sum("loaded model" in r.getMessage() for r in caplog.records) == 2
