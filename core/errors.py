"""Domain errors, one class per documented error code (docs/design.md, "Errors").

Every layer raises these: the decoder, sampling, the scoring function, the engine. Each class carries its
stable `code` only; which HTTP status (and headers) a code becomes is the service's business
(`fstcn.service.errors`), so the core and the training side never know about HTTP.
"""

from __future__ import annotations


class FstcnError(Exception):
    """Base class: a failure with a documented error code and a message safe to show a client."""

    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedMedia(FstcnError):
    """Not a video, no video stream, or a container that is not on the allow-list."""

    code = "unsupported_media"


class InvalidVideo(FstcnError):
    """A video container we accept, whose content cannot be decoded."""

    code = "invalid_video"


class VideoTooShort(FstcnError):
    """Fewer than 2 decodable frames."""

    code = "video_too_short"


class VideoTooLarge(FstcnError):
    """Bytes, duration, pixels or frames over the configured limits."""

    code = "video_too_large"


class InvalidParameter(FstcnError):
    """A request option out of its documented range."""

    code = "invalid_parameter"


class RequestTimeout(FstcnError):
    """The request ran past its time limit."""

    code = "timeout"


class InternalError(FstcnError):
    """An unexpected failure; the message never leaks internals."""

    code = "internal"
