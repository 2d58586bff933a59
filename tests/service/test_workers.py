"""`fstcn serve --workers 2`: two worker processes behind one port, one /metrics over both.

The real CLI in a subprocess with the fake model. Each worker writes its metrics to its own files in the
multiprocess directory `fstcn serve` creates (`fstcn-metrics-*` under the server's TMPDIR, files named
`<kind>_<pid>.db`); /metrics, answered by whichever worker gets the connection, must aggregate them.
Reading each pid's files alone shows which worker served what.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.service.servers import ServerProcess, serve_process

PREDICT = "/predict"
ROUND = 4  # concurrent requests per round, each on its own connection: the kernel hands them out
MAX_ROUNDS = 15  # rounds until both workers have served at least once


def predict_requests(exposition: str) -> float:
    """`fstcn_requests_total` of the predict route, over every status."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "fstcn_requests_total" and sample.labels.get("route") == PREDICT
    )


def metrics_dir(server: ServerProcess) -> Path:
    (directory,) = server.tmpdir.glob("fstcn-metrics-*")
    return directory


def per_worker(directory: Path, scratch: Path) -> dict[int, float]:
    """pid -> predict requests that worker counted, read from that pid's files alone."""
    pids = {int(path.stem.rpartition("_")[2]) for path in directory.glob("*.db")}
    counts = {}
    for pid in pids:
        own = scratch / str(pid)
        shutil.rmtree(own, ignore_errors=True)
        own.mkdir(parents=True)
        for path in directory.glob(f"*_{pid}.db"):
            shutil.copy(path, own)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(own))
        counts[pid] = sum(
            sample.value
            for metric in registry.collect()
            for sample in metric.samples
            if sample.name == "fstcn_requests_total" and sample.labels.get("route") == PREDICT
        )
    return counts


def post(url: str, data: bytes) -> int:
    with httpx.Client(base_url=url, timeout=60) as http:  # a fresh connection per request
        response = http.post(PREDICT, params={"crops": 1}, files={"file": ("v.mp4", data)})
        return response.status_code


def test_two_workers_share_the_port_and_metrics_count_all_requests(
    fake_model_path: Path, tmp_path: Path, video_factory: Callable[..., Path]
) -> None:
    data = video_factory("workers.mp4", width=160, height=120).read_bytes()
    with serve_process(fake_model_path, tmp_path / "run", args=["--workers", "2"]) as server:
        directory = metrics_dir(server)
        statuses: list[int] = []
        with ThreadPoolExecutor(ROUND) as pool:
            for _ in range(MAX_ROUNDS):
                statuses += pool.map(post, [server.url] * ROUND, [data] * ROUND)
                served = per_worker(directory, tmp_path / "scratch")
                if sum(count > 0 for count in served.values()) == 2:
                    break
        # a worker still warming up answers 503; every answer is counted all the same
        assert statuses.count(200) >= len(statuses) // 2, statuses
        assert set(statuses) <= {200, 503}, statuses

        deadline = time.monotonic() + 10  # a worker counts a request just after its response went out
        while True:
            total = predict_requests(httpx.get(f"{server.url}/metrics", timeout=10).text)
            if total == len(statuses) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert total == len(statuses)

        served = per_worker(directory, tmp_path / "scratch")
        assert len(served) == 2 and server.process.pid not in served, served  # the workers, not the parent
        assert all(count > 0 for count in served.values()), served
        assert sum(served.values()) == len(statuses)

        server.process.terminate()
        assert server.process.wait(30) == 0, server.log()
    assert not directory.exists()  # `fstcn serve` removes the directory it made
