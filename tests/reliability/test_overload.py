"""Overload against a live `fstcn serve`: bursts above capacity, 1000 requests of memory, a trickling client.

The server runs with one inference at a time and a queue of one (`FSTCN_MAX_CONCURRENT_INFERENCES=1`,
`FSTCN_QUEUE_SIZE=1`) and a 3 s request timeout. The load generator is a small bounded asyncio client
on httpx (`run_load`): `total` requests, at most `concurrency` in flight, every status counted.

- A burst of 32 simultaneous heavy requests (32 clips x 18 crops) gets only 200 and 503 `overloaded`
  with `Retry-After`, never another 5xx; afterwards the in-flight and queue gauges are back to 0 and no
  upload is left in the server's TMPDIR.
- 1000 small requests within capacity: the server's RSS after them is within `MEMORY_GROWTH_BOUND_MIB`
  of its RSS after the first 100 (warm-up).
- A raw-socket client that trickles its upload a few bytes per second is answered 504 at the request
  timeout, while other clients get 200s in the meantime.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import live_server, metric_value, vm_kib
from tests.service.servers import ServerProcess, temp_uploads
from tests.videos import write_video

REQUEST_TIMEOUT_S = 3.0
MEMORY_GROWTH_BOUND_MIB = 100
BURST = 32


@dataclass
class LoadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    retry_after: set[str | None] = field(default_factory=set)
    transport_errors: int = 0
    seconds: float = 0.0


async def run_load(
    url: str, data: bytes, *, total: int, concurrency: int, params: dict[str, Any] | None = None
) -> LoadResult:
    """POST `data` to /predict `total` times with at most `concurrency` requests in flight."""
    result = LoadResult()
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one() -> None:
            async with semaphore:
                try:
                    response = await client.post(
                        "/predict", params=params or {}, files={"file": ("v.mp4", data, "video/mp4")}
                    )
                except httpx.TransportError:
                    result.transport_errors += 1
                    return
                result.statuses[response.status_code] += 1
                if response.status_code != 200:
                    result.codes[response.json()["error"]["code"]] += 1
                if response.status_code == 503:
                    result.retry_after.add(response.headers.get("retry-after"))

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(total)))
        result.seconds = time.perf_counter() - start
    return result


@pytest.fixture(scope="module")
def server(fake_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with live_server(
        fake_model_path,
        tmp_path_factory.mktemp("overload-server"),
        FSTCN_MAX_CONCURRENT_INFERENCES="1",
        FSTCN_QUEUE_SIZE="1",
        FSTCN_RETRY_AFTER_S="2",
        FSTCN_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S),
        FSTCN_INTRA_OP_THREADS="1",
        FSTCN_LOG_LEVEL="warning",
    ) as process:
        yield process


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("overload-videos")
    return {
        "tiny": write_video(root / "tiny.mp4", seconds=0.4, width=64, height=48).read_bytes(),
        "heavy": write_video(root / "heavy.mp4", seconds=2.0, width=160, height=120).read_bytes(),
    }


def gauges(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return metric_value(text, "fstcn_inflight_requests"), metric_value(text, "fstcn_queue_depth")


def test_a_burst_above_capacity_gets_only_200_and_503_with_retry_after(
    server: ServerProcess, videos: dict[str, bytes], report: dict[str, Any]
) -> None:
    result = asyncio.run(
        run_load(
            server.url, videos["heavy"], total=BURST, concurrency=BURST, params={"clips": 32, "crops": 18}
        )
    )
    report["overload_burst"] = {
        "requests": BURST,
        "statuses": dict(result.statuses),
        "seconds": round(result.seconds, 2),
    }
    assert result.transport_errors == 0
    assert set(result.statuses) == {200, 503}, result.statuses  # both happen, nothing else
    assert result.codes == Counter({"overloaded": result.statuses[503]})
    assert result.retry_after == {"2"}
    assert server.process.poll() is None
    deadline = time.monotonic() + 5
    while gauges(server.url) != (0.0, 0.0):
        assert time.monotonic() < deadline, gauges(server.url)
        time.sleep(0.05)
    assert temp_uploads(server.tmpdir) == []


@pytest.mark.slow
def test_memory_growth_over_1000_requests(
    server: ServerProcess, videos: dict[str, bytes], report: dict[str, Any]
) -> None:
    params = {"clips": 2, "crops": 2}
    pid = server.process.pid
    warm_up = asyncio.run(run_load(server.url, videos["tiny"], total=100, concurrency=2, params=params))
    rss_warm = vm_kib(pid, "VmRSS")
    rest = asyncio.run(run_load(server.url, videos["tiny"], total=900, concurrency=2, params=params))
    rss_end = vm_kib(pid, "VmRSS")
    growth_mib = (rss_end - rss_warm) / 1024
    report["memory_1000"] = {
        "rss_after_100_mib": round(rss_warm / 1024, 1),
        "rss_after_1000_mib": round(rss_end / 1024, 1),
        "growth_mib": round(growth_mib, 1),
        "seconds_for_900": round(rest.seconds, 1),
        "requests_per_s": round(900 / rest.seconds, 1),
        "bound_mib": MEMORY_GROWTH_BOUND_MIB,
    }
    # two clients within capacity (1 running + 1 queued): every request succeeds
    assert warm_up.statuses == Counter({200: 100}) and rest.statuses == Counter({200: 900})
    assert growth_mib < MEMORY_GROWTH_BOUND_MIB, f"RSS grew {growth_mib:.0f} MiB over 900 requests"
    assert gauges(server.url) == (0.0, 0.0)
    assert temp_uploads(server.tmpdir) == []


async def _trickle(port: int, *, bytes_per_s: int = 4, limit_s: float = 15.0) -> tuple[bytes, float]:
    """A raw client announcing a 1 MB multipart upload and sending it `bytes_per_s` at a time.

    Returns the status line the server answers with (b"" if it just closes) and when it came.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    boundary = "slowloris"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n\r\n'.encode()
    writer.write(
        b"POST /predict HTTP/1.1\r\nHost: fstcn\r\nContent-Length: 1000000\r\n"
        + f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
        + head
    )
    start = time.monotonic()

    async def send() -> None:
        while True:
            writer.write(b"\x00" * bytes_per_s)
            await writer.drain()
            await asyncio.sleep(1.0)

    sender = asyncio.create_task(send())
    try:
        status_line = await asyncio.wait_for(reader.readline(), limit_s)
    finally:
        sender.cancel()
        writer.close()
    return status_line, time.monotonic() - start


def test_a_trickling_upload_is_cut_at_the_timeout_while_others_are_served(
    server: ServerProcess, videos: dict[str, bytes], report: dict[str, Any]
) -> None:
    port = int(server.url.rsplit(":", 1)[1])

    async def scenario() -> tuple[bytes, float, list[tuple[int, float]]]:
        slow = asyncio.create_task(_trickle(port))
        served: list[tuple[int, float]] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            while not slow.done():
                start = time.perf_counter()
                response = await client.post("/predict", files={"file": ("v.mp4", videos["tiny"])})
                served.append((response.status_code, time.perf_counter() - start))
                await asyncio.sleep(0.2)
        status_line, elapsed = await slow
        return status_line, elapsed, served

    status_line, elapsed, served = asyncio.run(scenario())
    report["trickle"] = {
        "timeout_s": REQUEST_TIMEOUT_S,
        "cut_after_s": round(elapsed, 2),
        "others_served": len(served),
        "others_max_s": round(max(s for _, s in served), 3),
    }
    assert status_line.startswith(b"HTTP/1.1 504"), status_line
    assert REQUEST_TIMEOUT_S - 0.5 < elapsed < REQUEST_TIMEOUT_S + 2.0
    assert len(served) >= 3 and all(status == 200 for status, _ in served), served
    assert temp_uploads(server.tmpdir) == []
