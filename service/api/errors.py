"""The error responses every route may return, for `responses=` (documents the shared error body)."""

from __future__ import annotations

import copy
from typing import Any

from service.schemas import ErrorResponse


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries with the `{"error": {"code", "message"}}` body for `statuses`."""
    descriptions = {
        401: "unauthorized: missing or wrong API key",
        413: "video_too_large: bytes, duration, pixels or frames over the limits",
        415: "unsupported_media: not a video, no video stream, or a container not on the allow-list",
        422: "invalid_parameter, invalid_video or video_too_short",
        500: "internal: unexpected failure (no internals disclosed)",
        503: "overloaded: queue full or model loading; see Retry-After",
        504: "timeout: the request ran past its time limit",
    }
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorResponse, "description": descriptions[status]} for status in statuses
    }
    if 503 in responses:
        responses[503]["headers"] = {"Retry-After": copy.deepcopy(RETRY_AFTER_HEADER)}
    return responses


RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer"},
}
