"""Domain errors of the service, one class per documented error code (SPEC 4).

Every layer raises these; the HTTP layer maps them to status codes in one place (`status_code` and
`code` live on the class) and renders `{"error": {"code", "message"}}`. Nothing here knows about HTTP
frameworks, so the decoder and the engine can raise them too.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: a failure with a documented error code and HTTP status."""

    code: str = "internal"
    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. Retry-After)."""
        return {}


class UnsupportedMedia(ServiceError):
    """Not a video, no video stream, or a container that is not on the allow-list."""

    code = "unsupported_media"
    status_code = 415


class InvalidVideo(ServiceError):
    """A video container we accept, whose content cannot be decoded."""

    code = "invalid_video"
    status_code = 422


class VideoTooShort(ServiceError):
    """Fewer than 2 decodable frames."""

    code = "video_too_short"
    status_code = 422


class VideoTooLarge(ServiceError):
    """Bytes, duration, pixels or frames over the configured limits."""

    code = "video_too_large"
    status_code = 413


class InvalidParameter(ServiceError):
    """A query parameter or form field out of its documented range."""

    code = "invalid_parameter"
    status_code = 422


class Unauthorized(ServiceError):
    """Missing or wrong API key."""

    code = "unauthorized"
    status_code = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Overloaded(ServiceError):
    """The inference queue is full; the client should retry later."""

    code = "overloaded"
    status_code = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class NotReady(ServiceError):
    """The model is not loaded and warmed up yet (readiness probes)."""

    code = "not_ready"
    status_code = 503

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class RequestTimeout(ServiceError):
    """The request ran past its time limit."""

    code = "timeout"
    status_code = 504


class InternalError(ServiceError):
    """An unexpected failure; the message never leaks internals."""

    code = "internal"
    status_code = 500
