"""FastAPI dependencies shared by the routers: settings, engine, pipeline, API-key checks.

`EngineDep`/`PipelineDep` give the objects created in the app's lifespan (503 `overloaded` with
Retry-After while the model is still loading or warming up). The API-key checks compare in constant time
(`hmac.compare_digest`) and accept `Authorization: Bearer <key>` or `X-API-Key: <key>`.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from fstcn.service.engine import Engine
from fstcn.service.errors import Overloaded, Unauthorized
from fstcn.service.pipeline import Pipeline
from fstcn.service.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <FSTCN_API_KEY>`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <FSTCN_API_KEY>`")


def _check_key(
    settings: Settings, bearer: HTTPAuthorizationCredentials | None, header_key: str | None
) -> None:
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    given = bearer.credentials if bearer is not None else header_key
    # compare_digest on equal-type bytes: the time does not depend on where the keys differ
    if given is None or not hmac.compare_digest(given.encode(), expected):
        raise Unauthorized("missing or invalid API key")


def require_api_key(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """401 `unauthorized` unless the request carries the configured API key (no-op without one)."""
    _check_key(settings, bearer, header_key)


def require_metrics_key(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """Like `require_api_key`, but only when FSTCN_METRICS_REQUIRE_KEY is on."""
    if settings.metrics_require_key:
        _check_key(settings, bearer, header_key)


def get_pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline | None = getattr(request.app.state, "pipeline", None)
    if pipeline is None or not pipeline.engine.ready:
        raise Overloaded("the model is still loading; retry shortly", retry_after_s=1)
    return pipeline


def get_engine(request: Request) -> Engine:
    return get_pipeline(request).engine


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
EngineDep = Annotated[Engine, Depends(get_engine)]
