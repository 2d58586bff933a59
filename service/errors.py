"""The service's errors and everything that turns an error into an HTTP response, in one place.

Domain errors (`fstcn.core.errors`) carry a code; this module says what each code is on the wire: its
status (`ERROR_STATUS`), the description `openapi.yaml` shows (`STATUS_DESCRIPTIONS`, read by every
route's `responses=` through `error_responses`), extra headers (Retry-After, WWW-Authenticate), the
body (`ErrorResponse`: `{"error": {"code", "message"}}`) and the exception handlers that write it
(`add_error_handlers`). A new code is added here and nowhere else (docs/design.md, "Errors"). Request
validation errors become 422 `invalid_parameter`, unknown routes and methods 404/405, anything
unexpected 500 `internal` without internals (the traceback goes to the log only). Under the open
inference protocol's paths (`/v2`, `/v2/models...`; `fstcn.service.api.v2`) the same error is written
in that protocol's body, `{"error": "<code>: <message>"}`, which its clients print.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from fstcn.core.errors import FstcnError
from fstcn.service import metrics
from fstcn.service.v2_codec import ProtocolError

logger = logging.getLogger(__name__)


class Unauthorized(FstcnError):
    """Missing or wrong API key."""

    code = "unauthorized"


class Overloaded(FstcnError):
    """The inference queue is full, or the model is still loading; the client should retry later."""

    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReady(FstcnError):
    """The model is not loaded and warmed up yet (readiness probes)."""

    code = "not_ready"


class ModelNotFound(FstcnError):
    """A model name or version this server does not serve (open inference protocol paths)."""

    code = "not_found"


class ErrorBody(BaseModel):
    code: str = Field(
        description="Stable machine-readable error code; the response's status description lists them."
    )
    message: str = Field(description="Human-readable explanation.")


class ErrorResponse(BaseModel):
    """Every non-2xx response body."""

    error: ErrorBody


# code -> HTTP status
ERROR_STATUS: dict[str, int] = {
    "unauthorized": 401,
    "not_found": 404,
    "video_too_large": 413,
    "unsupported_media": 415,
    "invalid_parameter": 422,
    "invalid_video": 422,
    "video_too_short": 422,
    "internal": 500,
    "overloaded": 503,
    "not_ready": 503,
    "timeout": 504,
}

# status -> what the documented error body means there (openapi.yaml's `responses`)
STATUS_DESCRIPTIONS: dict[int, str] = {
    401: "unauthorized: missing or wrong API key",
    404: "not_found: a model name or version this server does not serve",
    413: "video_too_large: bytes, duration, pixels or frames over the limits",
    415: "unsupported_media: not a video, no video stream, or a container not on the allow-list",
    422: "invalid_parameter, invalid_video or video_too_short",
    500: "internal: unexpected failure (no internals disclosed)",
    503: "overloaded: queue full or model loading; see Retry-After",
    504: "timeout: the request ran past its time limit",
}

# Starlette's own HTTP errors (routing, and the few limits enforced before our code runs) -> code
HTTP_STATUS_CODES: dict[int, str] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "video_too_large",
    415: "unsupported_media",
}

RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer"},
}


def status_of(error: FstcnError) -> int:
    """The HTTP status of a domain error (500 for a code this table does not know)."""
    return ERROR_STATUS.get(error.code, 500)


def headers_of(error: FstcnError) -> dict[str, str]:
    """Extra response headers of a domain error."""
    if isinstance(error, Overloaded):
        return {"Retry-After": str(error.retry_after_s)}
    if isinstance(error, NotReady):
        return {"Retry-After": "1"}
    if isinstance(error, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    return {}


def uses_protocol_body(path: str) -> bool:
    """Whether errors on `path` are written in the open inference protocol's body (its health aliases
    keep the house body)."""
    return path in ("/v2", "/v2/", "/v2/models") or path.startswith("/v2/models/")


def protocol_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries with the open inference protocol's `{"error": "..."}` body for `statuses`."""
    responses = error_responses(*statuses)
    for entry in responses.values():
        entry["model"] = ProtocolError
    return responses


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries of a route with the `{"error": {"code", "message"}}` body for `statuses`."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorResponse, "description": STATUS_DESCRIPTIONS[status]} for status in statuses
    }
    if 503 in responses:
        responses[503]["headers"] = {"Retry-After": copy.deepcopy(RETRY_AFTER_HEADER)}
    return responses


# ------------------------------------------------------------------------------------ handlers
def add_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error response the documented body."""
    app.add_exception_handler(FstcnError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)


def error_body(code: str, message: str) -> dict[str, Any]:
    return ErrorResponse(error=ErrorBody(code=code, message=message)).model_dump()


def _error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    metrics.record_error(code)
    if uses_protocol_body(request.url.path):
        body = ProtocolError(error=f"{code}: {message}").model_dump()
    else:
        body = error_body(code, message)
    return JSONResponse(body, status_code=status, headers=headers)


async def _service_error(request: Request, error: FstcnError) -> JSONResponse:
    status = status_of(error)
    if status >= 500 and error.code != "overloaded":
        logger.warning("%s %s -> %s: %s", request.method, request.url.path, error.code, error.message)
    return _error_response(request, status, error.code, error.message, headers_of(error))


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ()) if part not in ("query", "body"))
        problems.append(f"{location or 'request'}: {item.get('msg', 'invalid')}")
    return _error_response(request, 422, "invalid_parameter", "; ".join(problems) or "invalid request")


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    code = HTTP_STATUS_CODES.get(
        error.status_code, "internal" if error.status_code >= 500 else "invalid_request"
    )
    return _error_response(request, error.status_code, code, str(error.detail), dict(error.headers or {}))


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return _error_response(request, 500, "internal", "internal server error")
