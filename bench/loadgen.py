"""HTTP load: `fstcn serve` started as a subprocess on a free port, and a closed-loop load generator.

`served(model, env)` starts the server (its own process, settings from FSTCN_* variables), waits for
`/readyz`, yields the base URL and stops it with SIGTERM. `run_load(url, video, concurrency, requests)`
keeps `concurrency` requests in flight (one thread each, every thread posting the same video until the
shared count is used up) and returns every request's latency and the server's `timing_ms`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def served(
    model: Path, env: dict[str, str] | None = None, *, ready_timeout_s: float = 180.0
) -> Iterator[str]:
    """Run `fstcn serve` for `model` on a free port; yields its base URL once /readyz answers 200."""
    port = free_port()
    environment = {
        **os.environ,
        "FSTCN_MODEL_PATH": str(model),
        "FSTCN_LOG_LEVEL": "warning",
        "FSTCN_QUEUE_SIZE": "64",
        "FSTCN_REQUEST_TIMEOUT_S": "300",
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "fstcn.cli", "serve", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {process.returncode}: {process.stderr.read()[-2000:]}"
                )  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready within {ready_timeout_s:g} s")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class LoadResult:
    concurrency: int
    wall_s: float
    latencies_s: list[float] = field(default_factory=list)
    timings_ms: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def videos_per_s(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s > 0 else 0.0


def run_load(
    url: str, video: Path, *, concurrency: int, requests: int, params: dict[str, Any] | None = None
) -> LoadResult:
    """Post `video` to `url`/predict `requests` times with `concurrency` requests in flight."""
    if concurrency < 1 or requests < 1:
        raise ValueError("concurrency and requests must be >= 1")
    payload = video.read_bytes()
    lock = threading.Lock()
    remaining = [requests]
    result = LoadResult(concurrency=concurrency, wall_s=0.0)

    def worker() -> None:
        with httpx.Client(timeout=300.0) as client:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                start = time.perf_counter()
                try:
                    response = client.post(
                        f"{url}/predict",
                        files={"file": (video.name, payload, "video/mp4")},
                        params=params or {},
                    )
                    elapsed = time.perf_counter() - start
                    with lock:
                        if response.status_code == 200:
                            result.latencies_s.append(elapsed)
                            result.timings_ms.append(response.json()["timing_ms"])
                        else:
                            result.errors.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as error:
                    with lock:
                        result.errors.append(repr(error))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.wall_s = time.perf_counter() - start
    return result
