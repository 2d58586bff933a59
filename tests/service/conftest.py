"""Service test fixtures: the fake contract model, settings, an in-process client, a `fstcn serve` process.

- `fake_model_path`: the tiny ONNX model of `tests/service/fake_model.py` (session-wide).
- `tiny_models`: a random-weight `tiny` FstCN as plain, exact, shared-trunk and branch graphs (session-wide).
- `make_settings(**overrides)`: `Settings` for the fake model, independent of the caller's FSTCN_* env.
- `client`: a TestClient (lifespan run, model warm) for the default settings.
- `server`: `fstcn serve` in a subprocess with the fake model and a 2 MiB upload limit, module-wide.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fstcn.service.app import create_app
from fstcn.service.settings import Settings
from tests.service.fake_model import write_fake_model
from tests.service.servers import ServerProcess, TestClient, open_client, serve_process


@pytest.fixture(scope="session")
def fake_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_model(tmp_path_factory.mktemp("model") / "fake.onnx")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A random-weight `tiny` model exported with every graph form (`tests.model.tiny.tiny_bundle`)."""
    from tests.model.tiny import tiny_bundle  # torch: only the tests that ask for it import it

    return tiny_bundle(tmp_path_factory.mktemp("tiny-bundle"))


@pytest.fixture
def make_settings(fake_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    for key in list(os.environ):
        if key.startswith("FSTCN_"):
            monkeypatch.delenv(key)

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("model_path", fake_model_path)
        overrides.setdefault("providers", "cpu")
        return Settings(**overrides)

    return make


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with open_client(create_app(make_settings())) as client:
        yield client


@pytest.fixture(scope="module")
def server(fake_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serve_process(
        fake_model_path,
        tmp_path_factory.mktemp("server"),
        env={"FSTCN_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024)},
    ) as process:
        yield process
