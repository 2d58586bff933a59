"""Admission control of the data plane: a bounded number of jobs run, a bounded queue waits.

`ConcurrencyLimiter` runs blocking jobs in worker threads; anything beyond the queue is refused at once
with `Overloaded` (503 with Retry-After). A job's slot is held until its thread really finishes, even
when the caller has given up (timeout), so abandoned work can never push the machine past its limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fstcn.service import metrics
from fstcn.service.errors import Overloaded

T = TypeVar("T")


class ConcurrencyLimiter:
    """Run blocking jobs in worker threads: `max_concurrent` at once, `queue_size` waiting, else 503.

    Use from one event loop. `run(fn)` raises `Overloaded` immediately when the queue is full.
    """

    def __init__(self, max_concurrent: int, queue_size: int, *, retry_after_s: int = 1) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        self.max_concurrent = max_concurrent
        self.queue_size = queue_size
        self.retry_after_s = retry_after_s
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="fstcn-work")
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self.running = 0
        self.waiting = 0

    def check(self) -> None:
        """Raise `Overloaded` when a new job would find the queue full."""
        if self.running + self.waiting >= self.max_concurrent + self.queue_size:
            raise Overloaded(
                f"server busy: {self.running} running and {self.waiting} queued; retry later",
                retry_after_s=self.retry_after_s,
            )

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn()` in a worker thread once a slot is free; its result or exception."""
        self.check()
        self._set_waiting(self.waiting + 1)
        try:
            await self._semaphore.acquire()
        finally:
            self._set_waiting(self.waiting - 1)
        self.running += 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        try:
            return await asyncio.shield(future)
        finally:
            if future.done():
                self._release(future)
            else:  # the caller gave up (timeout): keep the slot until the thread is really done
                future.add_done_callback(self._release)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _release(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()  # mark retrieved: an abandoned job's error is not "never retrieved"
        self.running -= 1
        self._semaphore.release()

    def _set_waiting(self, value: int) -> None:
        self.waiting = value
        metrics.set_queue_depth(value)
