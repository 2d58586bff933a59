"""Liveness and readiness probes, plus the KServe v2 aliases; never behind the API key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from fstcn.service.errors import NotReady, error_responses
from fstcn.service.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


def _ready(request: Request) -> ReadyResponse:
    pipeline = getattr(request.app.state, "pipeline", None)
    if pipeline is None or not pipeline.engine.ready:
        raise NotReady("the model is not loaded and warmed up yet")
    return ReadyResponse(status="ready")


_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {**error_responses(503)[503], "description": "not_ready: model not loaded or warming up"}
}


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the process is up")
async def healthz() -> HealthResponse:
    return HealthResponse()


@router.get("/v2/health/live", response_model=HealthResponse, summary="Liveness (KServe v2 alias)")
async def live() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/readyz", response_model=ReadyResponse, responses=_NOT_READY, summary="Readiness: model loaded and warm"
)
async def readyz(request: Request) -> ReadyResponse:
    return _ready(request)


@router.get(
    "/v2/health/ready",
    response_model=ReadyResponse,
    responses=_NOT_READY,
    summary="Readiness (KServe v2 alias)",
)
async def ready(request: Request) -> ReadyResponse:
    return _ready(request)
