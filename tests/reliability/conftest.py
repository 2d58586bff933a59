"""Reliability fixtures: live `fstcn serve` processes, process memory, canaries, and a report sink.

- `live_server(tmp, **env)`: `fstcn serve` in a subprocess with the fake model, its own TMPDIR and a
  captured log (built on `tests.service.servers.serve_process`).
- `vm_kib(pid, field)`: a `/proc/<pid>/status` memory field (VmHWM = peak RSS, VmRSS = current RSS).
- `SocketCanary`: a listening TCP socket that records every connection (the URL twin of `FifoCanary`).
- `check_against_openapi(response)`: the body against `openapi.yaml`'s schema for its status.
- `report`: a session-wide dict the tests fill with what they observed; when `FSTCN_RELIABILITY_REPORT`
  names a file, it is written there as JSON at the end (docs/reliability.md is made from it).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs  # comes with schemathesis
import pytest
import yaml

from tests.service.fake_model import write_fake_model
from tests.service.servers import ServerProcess, serve_process

REPORT_ENV = "FSTCN_RELIABILITY_REPORT"
OPENAPI = Path(__file__).resolve().parents[2] / "openapi.yaml"
_SPEC: dict[str, Any] = {}


def check_against_openapi(response: httpx.Response, path: str = "/predict", method: str = "post") -> None:
    """Validate a JSON response body against the schema `openapi.yaml` gives for its status."""
    if not _SPEC:
        _SPEC.update(yaml.safe_load(OPENAPI.read_text()))
    responses = _SPEC["paths"][path][method]["responses"]
    documented = responses.get(str(response.status_code))
    assert documented is not None, f"{method.upper()} {path}: status {response.status_code} is not documented"
    schema = documented["content"]["application/json"]["schema"]
    jsonschema_rs.Draft202012Validator({**schema, "components": _SPEC["components"]}).validate(
        response.json()
    )


def vm_kib(pid: int, field: str = "VmHWM") -> int:
    """A memory figure of process `pid` from /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def metric_value(text: str, name: str) -> float:
    """The value of an unlabelled sample `name` in a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise KeyError(name)


@contextmanager
def live_server(model: Path, tmp: Path, **env: str) -> Iterator[ServerProcess]:
    """`fstcn serve` with the fake model; `env` adds FSTCN_* settings (e.g. FSTCN_QUEUE_SIZE="1")."""
    with serve_process(model, tmp, env=env) as server:
        yield server


class SocketCanary:
    """A TCP listener on 127.0.0.1 that records each connection; `url` is an http URL pointing at it."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self._socket.settimeout(0.2)
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()


@pytest.fixture(scope="session")
def fake_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_model(tmp_path_factory.mktemp("model") / "fake.onnx")


@pytest.fixture(scope="session")
def report() -> Iterator[dict[str, Any]]:
    data: dict[str, Any] = {}
    yield data
    target = os.environ.get(REPORT_ENV)
    if target:
        Path(target).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def url_canary() -> Iterator[SocketCanary]:
    canary = SocketCanary()
    yield canary
    canary.close()


def post_file(http: httpx.Client, data: bytes, filename: str = "upload.mp4", **params: Any) -> httpx.Response:
    return http.post("/predict", params=params, files={"file": (filename, data, "application/octet-stream")})


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code and body["error"]["message"], body
