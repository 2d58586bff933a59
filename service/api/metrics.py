"""`GET /metrics`: the Prometheus text exposition (behind the API key only if FSTCN_METRICS_REQUIRE_KEY)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from fstcn.service import metrics
from fstcn.service.api.deps import require_metrics_key
from fstcn.service.errors import error_responses

router = APIRouter(tags=["metrics"], dependencies=[Depends(require_metrics_key)])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"},
        **error_responses(401),
    },
    summary="Prometheus metrics",
)
async def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)
