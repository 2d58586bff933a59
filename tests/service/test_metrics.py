"""/metrics: every documented metric with its labels, values that move with traffic, promtool's check."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fstcn.service import metrics
from tests.service.fake_model import FAKE_META
from tests.service.servers import REPO, TestClient


def value(text: str, metric: str, /, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise KeyError(f"{metric}{labels} not exported")


def test_spec_metrics_are_exported_and_move(client: TestClient, video_factory: Callable[..., Path]) -> None:
    before = client.get("/metrics").text
    data = video_factory("metrics.mp4", width=160, height=120).read_bytes()
    assert client.post("/predict?crops=2", files={"file": ("v.mp4", data)}).status_code == 200
    assert client.post("/predict", files={"file": ("v.txt", b"text " * 50)}).status_code == 415
    assert client.get("/no/such/path").status_code == 404
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

    def delta(metric: str, /, **labels: str) -> float:
        try:
            old = value(before, metric, **labels)
        except KeyError:
            old = 0.0
        return value(after, metric, **labels) - old

    assert delta("fstcn_requests_total", route="/predict", status="200") == 1
    assert delta("fstcn_requests_total", route="/predict", status="415") == 1
    assert delta("fstcn_requests_total", route="unmatched", status="404") == 1  # no series per unknown path
    assert delta("fstcn_request_duration_seconds_count", route="/predict") == 2
    for stage in metrics.STAGES:  # no recheck model configured: nothing is rechecked
        assert delta("fstcn_stage_duration_seconds_count", stage=stage) == (stage != "recheck"), stage
    assert delta("fstcn_rechecks_total") == 0
    assert delta("fstcn_errors_total", code="unsupported_media") == 1
    assert delta("fstcn_errors_total", code="not_found") == 1
    assert delta("fstcn_video_duration_seconds_count") == 1
    rows = FAKE_META.sampling.num_clips * 2
    assert delta("fstcn_batch_size_count") == 1 and delta("fstcn_batch_size_sum") == rows
    assert value(after, "fstcn_inflight_requests") == 0
    assert value(after, "fstcn_queue_depth") == 0
    assert (
        value(
            after,
            "fstcn_model_info",
            name=FAKE_META.name,
            version=FAKE_META.version,
            preset="tiny",
            provider="cpu",
        )
        == 1
    )
    assert "process_cpu_seconds_total" in after and "process_resident_memory_bytes" in after


def test_promtool_accepts_the_exposition(client: TestClient, video_factory: Callable[..., Path]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus); .ci/run installs it")
    data = video_factory("metrics.mp4", width=160, height=120).read_bytes()
    client.post("/predict", files={"file": ("v.mp4", data)})
    client.post("/predict?top_k=0", files={"file": ("v.mp4", data)})
    text = client.get("/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def test_stage_timer_records_completed_blocks() -> None:
    timings: dict[str, float] = {}
    before = value(metrics_text(), "fstcn_stage_duration_seconds_count", stage="fuse")
    with metrics.stage_timer("fuse", timings):
        pass
    with pytest.raises(ZeroDivisionError), metrics.stage_timer("fuse", timings):
        _ = 1 / 0
    # the failed block is not recorded
    assert value(metrics_text(), "fstcn_stage_duration_seconds_count", stage="fuse") == before + 1
    assert set(timings) == {"fuse"} and timings["fuse"] >= 0


def metrics_text() -> str:
    return metrics.render()[0].decode()


def test_only_the_metrics_module_imports_prometheus_client() -> None:
    offenders = [
        path.relative_to(REPO)
        for folder in ("service", "fstcn", "model")
        for path in (REPO / folder).rglob("*.py")
        if "prometheus_client" in path.read_text() and path != REPO / "service" / "metrics.py"
    ]
    assert offenders == []
