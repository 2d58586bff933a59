"""The request metrics middleware: every HTTP request counted and timed, predictions tracked in flight.

A pure-ASGI middleware (no `BaseHTTPMiddleware`, which would buffer streamed bodies) that records
`fstcn_requests_total{route, status}` and `fstcn_request_duration_seconds{route}` for every request, and
`fstcn_inflight_requests` for the paths it is told are predictions (route templates such as
`/v2/models/{name}/infer` included). The metrics themselves are declared
in `fstcn.service.metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fstcn.service import metrics


class RequestMetricsMiddleware:
    """Counts requests by route template and status, times them, tracks in-flight predictions.

    Args:
        app: the wrapped application.
        inflight_paths: request paths or route templates counted in `fstcn_inflight_requests` while they
            are handled.
    """

    def __init__(self, app: ASGIApp, *, inflight_paths: Collection[str] = ()) -> None:
        self.app = app
        self.inflight_paths = [compile_path(path)[0] for path in inflight_paths]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        path = scope.get("path", "")
        in_flight = any(pattern.match(path) for pattern in self.inflight_paths)
        if in_flight:
            metrics.inflight_add(1)

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            route = scope.get("route")
            # route templates only: unknown paths must not create one series each
            label = getattr(route, "path", None) or "unmatched"
            metrics.observe_request(label, status, time.perf_counter() - start)
            if in_flight:
                metrics.inflight_add(-1)
