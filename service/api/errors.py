"""The error responses every route may return, for `responses=` (documents the shared error body)."""

from __future__ import annotations

import copy
from typing import Any

from fstcn.service.errors import STATUS_DESCRIPTIONS
from fstcn.service.schemas import ErrorResponse


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries with the `{"error": {"code", "message"}}` body for `statuses`."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorResponse, "description": STATUS_DESCRIPTIONS[status]} for status in statuses
    }
    if 503 in responses:
        responses[503]["headers"] = {"Retry-After": copy.deepcopy(RETRY_AFTER_HEADER)}
    return responses


RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer"},
}
