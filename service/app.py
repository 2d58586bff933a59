"""The FastAPI application: `create_app(settings)` wires routers, lifespan, error mapping and metrics.

The lifespan loads the model (unless one is handed in), builds the admission control and the data plane,
publishes `fstcn_model_info`, and warms the model up in the background: the server answers `/healthz`
at once, `/readyz` turns 200 once the model is warm. Every error leaves as `{"error": {"code",
"message"}}`: domain errors (`fstcn.core.errors`) with their own status, request validation errors as 422
`invalid_parameter`, unknown routes and methods as 404/405, anything unexpected as 500 `internal`
without internals (the traceback goes to the log only). A pure-ASGI middleware records
`fstcn_requests_total`, `fstcn_request_duration_seconds` and `fstcn_inflight_requests`.

`uvicorn --factory service.app:create_app` works as is (settings from the environment).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fstcn.core.errors import FstcnError
from fstcn.core.video.decode import VideoLimits
from fstcn.service import metrics
from fstcn.service.admission import ConcurrencyLimiter
from fstcn.service.api import health, model, predict
from fstcn.service.api import metrics as metrics_api
from fstcn.service.engine import BatchingOptions, Engine, ModelLoadError
from fstcn.service.errors import headers_of, status_of
from fstcn.service.pipeline import Pipeline, Recheck
from fstcn.service.settings import Settings, get_settings

logger = logging.getLogger(__name__)

TITLE = "FstCN action recognition"
DESCRIPTION = (
    "Upload a video, get ranked human-action classes: FstCN (Sun et al., ICCV 2015) on ONNX Runtime, "
    "M clip pairs x up to 18 test-time crops fused with the Sparsity Concentration Index. Every non-2xx "
    'body is `{"error": {"code": "...", "message": "..."}}`.'
)
PREDICT_ROUTE = "/predict"
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "video_too_large", 415: "unsupported_media"}


def create_app(
    settings: Settings | None = None, *, engine: Engine | None = None, recheck: Recheck | None = None
) -> FastAPI:
    """The application. `settings` default to the environment's; `engine` (and `recheck`, the recheck
    model of `settings`) skip loading in the lifespan."""
    explicit = settings is not None
    settings = settings if settings is not None else get_settings()
    app = FastAPI(
        title=TITLE,
        description=DESCRIPTION,
        version=_version(),
        lifespan=_lifespan,
        openapi_tags=[
            {"name": "predict", "description": "Action recognition."},
            {"name": "model", "description": "The served model."},
            {"name": "health", "description": "Liveness and readiness probes (never need the API key)."},
            {"name": "metrics", "description": "Prometheus metrics."},
        ],
    )
    app.state.settings = settings
    app.state.preloaded_engine = engine
    app.state.preloaded_recheck = recheck
    app.state.pipeline = None
    if explicit:
        app.dependency_overrides[get_settings] = lambda: settings

    app.include_router(predict.router)
    app.include_router(model.router)
    app.include_router(health.router)
    app.include_router(metrics_api.router)

    app.add_exception_handler(FstcnError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(RequestMetricsMiddleware)
    return app


def engine_from_settings(settings: Settings, recheck_of: Engine | None = None) -> Engine:
    """Load the configured model (raises `ModelLoadError`); with `recheck_of`, the recheck
    model instead, unbatched, on the providers that engine runs on (a GPU that did not load is then
    neither probed nor reported a second time)."""
    providers: list[str] | None
    if recheck_of is not None:
        assert settings.recheck_model_path is not None
        path, providers, batching = settings.recheck_model_path, recheck_of.providers, None
    else:
        path, providers = settings.model_path, settings.provider_list
        batching = (
            BatchingOptions(max_batch_size=settings.batch_max_size, max_delay_s=settings.batch_max_delay_s)
            if settings.batching
            else None
        )
    return Engine.load(
        path,
        providers=providers,
        intra_op_threads=settings.intra_op_threads,
        trt_cache_dir=settings.trt_cache_dir,
        batching=batching,
    )


def recheck_from_settings(settings: Settings, engine: Engine) -> Recheck | None:
    """Load the recheck model, if one is configured, and check that it answers for the same classes
    with the same sampling as the served `engine` (raises `ModelLoadError`)."""
    if settings.recheck_model_path is None:
        return None
    exact = engine_from_settings(settings, recheck_of=engine)
    served, other = engine.meta, exact.meta
    mismatched = [
        name
        for name in ("labels", "crop_size", "resize_short", "sampling", "mean", "std", "diff_scale")
        if getattr(served, name) != getattr(other, name)
    ]
    if mismatched:
        exact.close()
        raise ModelLoadError(
            f"recheck model {settings.recheck_model_path} does not match the served model: "
            f"different {', '.join(mismatched)}"
        )
    if exact.form not in ("plain", "exact"):
        exact.close()
        raise ModelLoadError(f"recheck model {settings.recheck_model_path} is not an exact-crops model")
    logger.info(
        "recheck: videos whose top-1 leads by less than %g are re-scored by %s",
        settings.recheck_margin,
        settings.recheck_model_path,
    )
    return Recheck(exact, settings.recheck_margin)


def video_limits(settings: Settings) -> VideoLimits:
    return VideoLimits(
        max_duration_s=settings.max_duration_s, max_frames=settings.max_frames, max_pixels=settings.max_pixels
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine: Engine = app.state.preloaded_engine or await asyncio.to_thread(engine_from_settings, settings)
    recheck: Recheck | None = app.state.preloaded_recheck or await asyncio.to_thread(
        recheck_from_settings, settings, engine
    )
    limiter = ConcurrencyLimiter(
        settings.max_concurrent_inferences, settings.queue_size, retry_after_s=settings.retry_after_s
    )
    app.state.pipeline = Pipeline(
        engine,
        limits=video_limits(settings),
        limiter=limiter,
        max_upload_bytes=settings.max_upload_bytes,
        request_timeout_s=settings.request_timeout_s,
        decode_threads=settings.decode_threads,
        recheck=recheck,
    )
    meta = engine.meta
    metrics.set_model_info(name=meta.name, version=meta.version, preset=meta.preset, provider=engine.provider)
    warm_up = asyncio.create_task(asyncio.to_thread(_warm_up, engine, recheck), name="fstcn-warm-up")
    warm_up.add_done_callback(_log_warm_up_failure)
    try:
        yield
    finally:
        app.state.pipeline = None
        if not warm_up.done():
            warm_up.cancel()
        limiter.close()
        engine.close()
        if recheck is not None:
            recheck.engine.close()


def _warm_up(engine: Engine, recheck: Recheck | None) -> None:
    """Warm the recheck model first: the served engine's warm-up marks the service ready."""
    if recheck is not None:
        recheck.engine.warm_up()
    engine.warm_up()


def _log_warm_up_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("model warm-up failed; the service stays not ready", exc_info=task.exception())


# ------------------------------------------------------------------------------ error mapping
def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    metrics.record_error(code)
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


async def _service_error(request: Request, error: FstcnError) -> JSONResponse:
    status = status_of(error)
    if status >= 500 and error.code != "overloaded":
        logger.warning("%s %s -> %s: %s", request.method, request.url.path, error.code, error.message)
    return _error_response(status, error.code, error.message, headers_of(error))


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ()) if part not in ("query", "body"))
        problems.append(f"{location or 'request'}: {item.get('msg', 'invalid')}")
    return _error_response(422, "invalid_parameter", "; ".join(problems) or "invalid request")


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(error.status_code, "internal" if error.status_code >= 500 else "invalid_request")
    return _error_response(error.status_code, code, str(error.detail), dict(error.headers or {}))


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return _error_response(500, "internal", "internal server error")


# ------------------------------------------------------------------------------------ metrics
class RequestMetricsMiddleware:
    """Counts requests by route template and status, times them, tracks in-flight predictions."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        is_predict = scope.get("path") == PREDICT_ROUTE
        if is_predict:
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
            if is_predict:
                metrics.inflight_add(-1)


def _version() -> str:
    try:
        return metadata.version("fstcn")
    except metadata.PackageNotFoundError:
        return "0.0.0"
