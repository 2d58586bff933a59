"""DynamicBatcher: construction checks, list-in/list-out mapping, size and delay bounds, failure fan-out."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fstcn.service.batching import BatcherClosed, DynamicBatcher


class Recorder:
    """A batch function that records the batches it saw and returns x * 10 per item."""

    def __init__(self, pause_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.pause_s = pause_s

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        time.sleep(self.pause_s)
        return [item * 10 for item in items]


@pytest.mark.parametrize(
    ("size", "delay"),
    [(0, 0.01), (-1, 0.01), (1.5, 0.01), (True, 0.01), (4, -0.1), (4, float("inf")), (4, float("nan"))],
)
def test_invalid_construction_is_refused(size: object, delay: float) -> None:
    with pytest.raises(ValueError):
        DynamicBatcher(Recorder(), max_batch_size=size, max_delay_s=delay)  # type: ignore[arg-type]


def test_each_caller_gets_its_own_result_under_concurrency() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(Recorder(), max_batch_size=4, max_delay_s=0.01)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(batcher, range(40)))
        assert results == [i * 10 for i in range(40)]
    finally:
        batcher.close()


def test_concurrent_items_are_batched_up_to_the_limit() -> None:
    recorder = Recorder()
    batcher: DynamicBatcher[int, int] = DynamicBatcher(recorder, max_batch_size=3, max_delay_s=0.5)
    try:
        futures = [batcher.submit(i) for i in range(7)]  # all queued well within the delay
        assert [f.result(5) for f in futures] == [i * 10 for i in range(7)]
    finally:
        batcher.close()
    assert [len(batch) for batch in recorder.batches] == [3, 3, 1]
    assert sorted(i for batch in recorder.batches for i in batch) == list(range(7))


def test_a_lone_item_waits_at_most_the_delay() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(Recorder(), max_batch_size=64, max_delay_s=0.05)
    try:
        start = time.perf_counter()
        assert batcher(3, timeout=5) == 30
        assert time.perf_counter() - start < 1.0
    finally:
        batcher.close()


def test_a_failing_batch_fails_every_waiter_and_the_next_batch_works() -> None:
    calls = []

    def flaky(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [-item for item in items]

    batcher: DynamicBatcher[int, int] = DynamicBatcher(flaky, max_batch_size=4, max_delay_s=0.5)
    try:
        futures = [batcher.submit(i) for i in range(4)]
        for future in futures:
            with pytest.raises(RuntimeError, match="boom"):
                future.result(5)
        assert batcher(5, timeout=5) == -5
    finally:
        batcher.close()


def test_wrong_number_of_outputs_fails_every_waiter() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        lambda items: items[:-1], max_batch_size=3, max_delay_s=0.5
    )
    try:
        futures = [batcher.submit(i) for i in range(3)]
        for future in futures:
            with pytest.raises(RuntimeError, match="returned 2 results for 3 items"):
                future.result(5)
    finally:
        batcher.close()


def test_close_finishes_queued_items_then_refuses_new_ones() -> None:
    gate = threading.Event()

    def slow(items: list[int]) -> list[int]:
        gate.wait(5)
        return items

    batcher: DynamicBatcher[int, int] = DynamicBatcher(slow, max_batch_size=1, max_delay_s=0.0)
    futures = [batcher.submit(i) for i in range(3)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    gate.set()
    closer.join(5)
    assert [f.result(5) for f in futures] == [0, 1, 2]
    with pytest.raises(BatcherClosed):
        batcher.submit(9)
