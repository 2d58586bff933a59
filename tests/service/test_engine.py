"""Engine: loading and checking models, provider selection, inference, warm-up, batching, admission."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from fstcn.core.meta import APPEARANCE_INPUT, MOTION_INPUT, ModelMeta
from fstcn.core.runtime import CPU, CUDA, MAX_TENSOR_ELEMENTS, ModelLoadError, max_rows_per_run
from fstcn.service.admission import ConcurrencyLimiter
from fstcn.service.engine import BatchingOptions, Engine
from fstcn.service.errors import Overloaded, headers_of
from tests.service.fake_model import FAKE_META, fake_meta, write_fake_model


def inputs(rows: int, meta: ModelMeta = FAKE_META, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c, t = meta.crop_size, meta.sampling.clip_length
    appearance = rng.standard_normal((rows, 3, c, c)).astype(np.float32)
    motion = rng.standard_normal((rows, t, 3, c, c)).astype(np.float32)
    return appearance, motion


def infer(engine: Engine, appearance: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """The plain graph's run on host-made inputs (B, 3, c, c) and (B, T, 3, c, c) -> (B, N)."""
    return engine.run({APPEARANCE_INPUT: appearance, MOTION_INPUT: motion})


def test_load_reads_metadata_and_runs(fake_model_path: Path) -> None:
    engine = Engine.load(fake_model_path, providers=[CPU])
    assert engine.meta == FAKE_META
    assert engine.providers == [CPU] and engine.provider == "cpu"
    assert not engine.ready
    engine.warm_up()
    assert engine.ready
    probs = infer(engine, *inputs(7))
    assert probs.shape == (7, FAKE_META.num_classes) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert len({int(row.argmax()) for row in infer(engine, *inputs(64, seed=1))}) > 1  # not constant


def test_infer_checks_shapes(fake_model_path: Path) -> None:
    engine = Engine.load(fake_model_path, providers=[CPU])
    appearance, motion = inputs(2)
    with pytest.raises(ValueError, match="expected appearance"):
        infer(engine, appearance, motion[:1])
    with pytest.raises(ValueError, match="expected appearance"):
        infer(engine, appearance[:, :, :16], motion)
    with pytest.raises(ValueError, match="at least one row"):
        infer(engine, appearance[:0], motion[:0])


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found"):
        Engine.load(tmp_path / "nope.onnx")


def test_corrupt_model_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelLoadError, match="cannot load model"):
        Engine.load(path, providers=[CPU])


def test_model_without_or_with_bad_metadata(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        Engine.load(write_fake_model(tmp_path / "a.onnx", metadata="{nope"), providers=[CPU])
    with pytest.raises(ModelLoadError, match="format_version"):
        Engine.load(write_fake_model(tmp_path / "b.onnx", metadata='{"name": "x"}'), providers=[CPU])


def test_metadata_that_does_not_match_the_graph(tmp_path: Path) -> None:
    path = write_fake_model(tmp_path / "m.onnx")
    import onnx

    model = onnx.load(str(path))
    wrong = fake_meta(crop_size=24)  # the graph takes 32 x 32 crops
    for prop in model.metadata_props:
        prop.value = wrong.to_json()
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match="does not match its metadata"):
        Engine.load(path, providers=[CPU])


def test_auto_providers_fall_back_to_cpu_in_one_log_line(
    fake_model_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        try:  # only meaningful where the GPU providers do not really load
            Engine.load(fake_model_path, providers=[CUDA])
            pytest.skip("CUDA really loads on this machine")
        except ModelLoadError:
            pass
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="fstcn.core.runtime"):
        engine = Engine.load(fake_model_path)  # providers=None: auto
    assert engine.providers == [CPU]
    # one line, INFO on a host without a GPU, WARNING where a GPU is there but did not load
    fallbacks = [r for r in caplog.records if "running on CPU" in r.getMessage()]
    assert len(fallbacks) == 1
    out, err = capfd.readouterr()
    assert "EP Error" not in out + err and "Failed to load" not in out + err


def test_explicit_provider_that_does_not_load_is_an_error(fake_model_path: Path) -> None:
    try:
        engine = Engine.load(fake_model_path, providers=[CUDA])
    except ModelLoadError as error:
        assert "cuda" in str(error)
    else:
        assert engine.providers[0] == CUDA  # a machine with a working GPU


def test_max_rows_per_run_keeps_every_tensor_within_32_bit_element_counts() -> None:
    paper = replace(FAKE_META, preset="paper", resize_short=240, crop_size=204)
    # conv1's LRN input per clip pair, padded by the LRN: (1 + l_t) frames x (96 + 4) x 102 x 102 =
    # 6,242,400 elements -> 344 rows. On an H100, 360 rows failed in cuDNN at conv1 and 358 at the LRN.
    assert 6 * 100 * 102 * 102 * 344 <= MAX_TENSOR_ELEMENTS < 6 * 100 * 102 * 102 * 345
    assert max_rows_per_run(paper) == 344
    assert max_rows_per_run(replace(paper, preset="someone-elses")) == 344  # widest widths when unknown
    assert max_rows_per_run(FAKE_META) > 32 * 18  # small models never split a request


class CountingSession:
    """Wraps an InferenceSession and records the batch size of every run."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session, self.batches = session, list[int]()

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.batches.append(len(next(iter(feeds.values()))))
        return self.session.run(outputs, feeds)


def test_runs_beyond_max_rows_per_run_are_split_and_joined_in_order(fake_model_path: Path) -> None:
    whole = Engine.load(fake_model_path, providers=[CPU])
    split = Engine.load(fake_model_path, providers=[CPU])
    counting = CountingSession(split.model.session)
    split.model.session = counting  # type: ignore[assignment]
    split.model.max_rows_per_run = 4
    appearance, motion = inputs(11, seed=3)
    expected = infer(whole, appearance, motion)
    np.testing.assert_allclose(infer(split, appearance, motion), expected, rtol=1e-5, atol=1e-6)
    assert counting.batches == [4, 4, 3]


def test_batched_engine_gives_the_same_results_as_plain(fake_model_path: Path) -> None:
    plain = Engine.load(fake_model_path, providers=[CPU])
    batched = Engine.load(
        fake_model_path, providers=[CPU], batching=BatchingOptions(max_batch_size=4, max_delay_s=0.05)
    )
    try:
        requests = [inputs(rows, seed=rows) for rows in (1, 3, 5, 2, 4, 6)]
        results: dict[int, np.ndarray] = {}

        def call(i: int) -> None:
            results[i] = infer(batched, *requests[i])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        for i, (appearance, motion) in enumerate(requests):
            np.testing.assert_allclose(results[i], infer(plain, appearance, motion), rtol=1e-5, atol=1e-6)
    finally:
        batched.close()


def test_limiter_refuses_beyond_the_queue_and_holds_abandoned_slots() -> None:
    async def scenario() -> None:
        limiter = ConcurrencyLimiter(1, 1, retry_after_s=3)
        gate = threading.Event()
        first = asyncio.create_task(limiter.run(lambda: gate.wait(10)))
        second = asyncio.create_task(limiter.run(lambda: "second"))
        while limiter.running != 1 or limiter.waiting != 1:
            await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await limiter.run(lambda: "third")
        assert headers_of(refused.value) == {"Retry-After": "3"}
        # the first caller gives up (timeout): its thread still runs, so its slot stays taken
        first.cancel()
        await asyncio.sleep(0.05)
        assert limiter.running == 1 and not second.done()
        gate.set()
        assert await asyncio.wait_for(second, 5) == "second"
        assert limiter.running == 0 and limiter.waiting == 0
        with pytest.raises(ZeroDivisionError):
            await limiter.run(lambda: 1 / 0)
        assert limiter.running == 0
        limiter.close()

    asyncio.run(scenario())


def test_limiter_validates_its_sizes() -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimiter(0, 1)
    with pytest.raises(ValueError):
        ConcurrencyLimiter(1, -1)
