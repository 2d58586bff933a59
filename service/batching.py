"""Cross-request dynamic batching: a list-in/list-out component in the manner of Ray Serve's `@batch`.

`DynamicBatcher(fn, max_batch_size=, max_delay_s=)` collects items submitted from any thread, calls
`fn(items) -> results` on one background thread with up to `max_batch_size` items, waiting at most
`max_delay_s` after the first item for the batch to fill, and hands each caller its own result. It
checks that `fn` returned exactly one result per item, and when `fn` fails (or returns the wrong
number of results) every waiter of that batch gets the exception. It knows nothing about ONNX Runtime
or HTTP; the engine uses it to merge the clip x crop rows of concurrent requests into one run.

Threads, not asyncio: the data plane runs in worker threads (decode, preprocessing and inference of
one request stay on one thread), so callers block on a `concurrent.futures.Future`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

logger = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """Raised to callers that submit to, or wait on, a batcher that has been closed."""


@dataclass
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    future: Future[ResultT]


_STOP = object()


class DynamicBatcher(Generic[ItemT, ResultT]):
    """Run `fn` on batches of items submitted concurrently.

    Args:
        fn: list of items -> list of results, same length and order.
        max_batch_size: most items per call of `fn` (>= 1).
        max_delay_s: longest wait after the first item of a batch for more items (>= 0, seconds).
        name: thread name, for logs.
    """

    def __init__(
        self,
        fn: Callable[[list[ItemT]], Sequence[ResultT]],
        *,
        max_batch_size: int,
        max_delay_s: float,
        name: str = "fstcn-batcher",
    ) -> None:
        if not isinstance(max_batch_size, int) or isinstance(max_batch_size, bool) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
        if not max_delay_s >= 0 or max_delay_s == float("inf"):
            raise ValueError(f"max_delay_s must be a finite number >= 0, got {max_delay_s!r}")
        self._fn = fn
        self.max_batch_size = max_batch_size
        self.max_delay_s = float(max_delay_s)
        self._queue: queue.SimpleQueue[_Pending[ItemT, ResultT] | object] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: ItemT) -> Future[ResultT]:
        """Queue `item`; the future resolves to its result (or the batch's exception)."""
        future: Future[ResultT] = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosed("the batcher is closed")
            self._queue.put(_Pending(item, future))
        return future

    def __call__(self, item: ItemT, timeout: float | None = None) -> ResultT:
        """Submit and wait (blocking) for the result."""
        return self.submit(item).result(timeout=timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Finish the queued items, then stop the thread. Later submits raise `BatcherClosed`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Pending[ItemT, ResultT]] = [first]  # type: ignore[list-item]
            deadline = time.monotonic() + self.max_delay_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)  # type: ignore[arg-type]
            self._run(batch)

    def _run(self, batch: list[_Pending[ItemT, ResultT]]) -> None:
        live = [pending for pending in batch if pending.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = self._fn([pending.item for pending in live])
            if len(results) != len(live):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} items")
        except BaseException as error:  # every waiter of a failed batch gets the failure
            logger.debug("batch of %d failed: %r", len(live), error)
            for pending in live:
                pending.future.set_exception(error)
            return
        for pending, result in zip(live, results, strict=True):
            pending.future.set_result(result)
