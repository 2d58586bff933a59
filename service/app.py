"""The composition root: `create_app(settings)` builds the FastAPI application and nothing else.

It includes the routers (`fstcn.service.api`), registers the error handlers (`fstcn.service.errors`)
and the request metrics middleware (`fstcn.service.middleware`), and wires the lifespan: load the model
(unless one is handed in; `fstcn.service.loading`), build the admission control and the data plane,
publish `fstcn_model_info`, and warm the model up in the background. The server answers `/healthz` at
once, `/readyz` turns 200 once the model is warm.

`uvicorn --factory fstcn.service.app:create_app` works as is (settings from the environment).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata

from fastapi import FastAPI

from fstcn.service import metrics
from fstcn.service.admission import ConcurrencyLimiter
from fstcn.service.api import demo, health, model, predict
from fstcn.service.api import metrics as metrics_api
from fstcn.service.api import v2 as inference_protocol
from fstcn.service.engine import Engine
from fstcn.service.errors import add_error_handlers
from fstcn.service.loading import engine_from_settings, recheck_from_settings, thread_split, video_limits
from fstcn.service.middleware import RequestMetricsMiddleware
from fstcn.service.pipeline import Pipeline, Recheck
from fstcn.service.settings import Settings, get_settings

logger = logging.getLogger(__name__)

TITLE = "FstCN action recognition"
DESCRIPTION = (
    "Upload a video, get ranked human-action classes: FstCN (Sun et al., ICCV 2015) on ONNX Runtime, "
    "M clip pairs x up to 18 test-time crops fused with the Sparsity Concentration Index. Every non-2xx "
    'body is `{"error": {"code": "...", "message": "..."}}`.'
)


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
            {
                "name": "inference protocol",
                "description": "The open inference protocol (KServe v2, Triton HTTP): metadata, readiness, "
                'inference; errors as `{"error": "<code>: <message>"}`.',
            },
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
    app.include_router(inference_protocol.router)
    app.include_router(demo.router)

    add_error_handlers(app)
    inflight = [predict.PATH, *inference_protocol.INFER_PATHS]
    app.add_middleware(RequestMetricsMiddleware, inflight_paths=inflight)
    return app


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
        decode_threads=thread_split(settings).decode,
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


def _version() -> str:
    try:
        return metadata.version("fstcn")
    except metadata.PackageNotFoundError:
        return "0.0.0"
