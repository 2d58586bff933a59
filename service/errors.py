"""The service's own errors and the ONE map from error code to HTTP status and description.

Domain errors (`fstcn.core.errors`) carry a code; this module says what each code is on the wire: its
status, the description `openapi.yaml` shows, and extra headers (Retry-After, WWW-Authenticate). The
exception handlers in `fstcn.service.api.handlers` and the documented `responses=` of every route read
this table, so a new code is added here and nowhere else (docs/design.md, "Errors").
"""

from __future__ import annotations

from fstcn.core.errors import FstcnError


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


# code -> HTTP status
ERROR_STATUS: dict[str, int] = {
    "unauthorized": 401,
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
    413: "video_too_large: bytes, duration, pixels or frames over the limits",
    415: "unsupported_media: not a video, no video stream, or a container not on the allow-list",
    422: "invalid_parameter, invalid_video or video_too_short",
    500: "internal: unexpected failure (no internals disclosed)",
    503: "overloaded: queue full or model loading; see Retry-After",
    504: "timeout: the request ran past its time limit",
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
