"""Shared fixtures: generated test videos (cached per session)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.videos import write_video


@pytest.fixture(scope="session")
def video_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """make(name, **write_video_kwargs) -> path, written once per test session."""
    root = tmp_path_factory.mktemp("videos")
    cache: dict[tuple[str, str], Path] = {}

    def make(name: str, **kwargs: Any) -> Path:
        key = (name, repr(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = write_video(root / name, **kwargs)
        return cache[key]

    return make
