"""Prometheus metrics of the service (docs/design.md, "Metrics"): declared once here; nothing else imports
prometheus_client.

The data plane times its stages with `stage_timer(...)`, the request middleware records requests with
`observe_request(...)`, the engine records batch sizes, the app sets `fstcn_model_info` once the model
is loaded. `render()` produces the text exposition served at `/metrics` (with the default process,
platform and GC collectors).

With several uvicorn workers each worker keeps its own metrics; when `PROMETHEUS_MULTIPROC_DIR` is set
(`fstcn serve --workers N` sets it) `render()` aggregates all workers' files instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series double the exposition and nobody graphs them

Stage = Literal["decode", "preprocess", "infer", "fuse", "recheck"]
STAGES: tuple[Stage, ...] = ("decode", "preprocess", "infer", "fuse", "recheck")
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Latency buckets from 5 ms to 2 min: a tiny CPU model answers in tens of ms, a paper-size model on CPU
# with 18 crops takes seconds, and the request timeout caps the tail.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Rows per ONNX Runtime run: clips x crops per request (1..576), times requests when batching.
_BATCH_BUCKETS = (1, 2, 4, 9, 18, 36, 72, 90, 144, 288, 576, 1152, 4608)
_VIDEO_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

REQUESTS = Counter("fstcn_requests", "HTTP requests by route and status code.", ["route", "status"])
REQUEST_DURATION = Histogram(
    "fstcn_request_duration_seconds",
    "HTTP request latency by route, upload included.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
STAGE_DURATION = Histogram(
    "fstcn_stage_duration_seconds",
    "Time per prediction stage (decode, preprocess, infer, fuse; recheck: the exact-crops re-scoring).",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
INFLIGHT = Gauge(
    "fstcn_inflight_requests",
    "Prediction requests being handled (uploading, queued or running).",
    multiprocess_mode="livesum",
)
QUEUE_DEPTH = Gauge(
    "fstcn_queue_depth", "Predictions waiting for a processing slot.", multiprocess_mode="livesum"
)
BATCH_SIZE = Histogram("fstcn_batch_size", "Rows per ONNX Runtime run.", buckets=_BATCH_BUCKETS)
ERRORS = Counter("fstcn_errors", "Error responses by error code.", ["code"])
RECHECKS = Counter(
    "fstcn_rechecks", "Videos re-scored by the exact-crops recheck model (close calls of the served model)."
)
VIDEO_DURATION = Histogram(
    "fstcn_video_duration_seconds", "Duration of the videos predicted on.", buckets=_VIDEO_BUCKETS
)
MODEL_INFO = Gauge(
    "fstcn_model_info",
    "The served model (value 1).",
    ["name", "version", "preset", "provider"],
    multiprocess_mode="livemax",
)

for _stage in STAGES:  # export every stage series from the start, so dashboards see zeros, not gaps
    STAGE_DURATION.labels(stage=_stage)


@contextmanager
def stage_timer(stage: Stage, timings: dict[str, float] | None = None) -> Iterator[None]:
    """Time the block into `fstcn_stage_duration_seconds{stage}`; also add its seconds to `timings`.

    Only blocks that complete are recorded: a file rejected after 1 ms of probing must not drag the
    decode-time distribution down (rejections are counted in `fstcn_errors_total`).
    """
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    STAGE_DURATION.labels(stage=stage).observe(elapsed)
    if timings is not None:
        timings[stage] = timings.get(stage, 0.0) + elapsed


def observe_request(route: str, status: int, duration_s: float) -> None:
    REQUESTS.labels(route=route, status=str(status)).inc()
    REQUEST_DURATION.labels(route=route).observe(duration_s)


def record_error(code: str) -> None:
    ERRORS.labels(code=code).inc()


def count_recheck() -> None:
    RECHECKS.inc()


def observe_batch(rows: int) -> None:
    BATCH_SIZE.observe(rows)


def observe_video(duration_s: float) -> None:
    VIDEO_DURATION.observe(max(0.0, duration_s))


def inflight_add(delta: int) -> None:
    INFLIGHT.inc(delta)


def set_queue_depth(depth: int) -> None:
    QUEUE_DEPTH.set(depth)


def set_model_info(*, name: str, version: str, preset: str, provider: str) -> None:
    """Publish the served model; replaces any previous model's series."""
    MODEL_INFO.clear()
    MODEL_INFO.labels(name=name, version=version, preset=preset, provider=provider).set(1)


def render() -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text exposition."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE
