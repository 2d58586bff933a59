"""Ways to run the app in tests: an in-process TestClient, uvicorn on a thread, `fstcn serve` in a subprocess.

- `open_client(app)`: a TestClient (lifespan run, model warm).
- `live_app(app)`: serves an app with uvicorn on a thread (real HTTP, in-process objects reachable).
- `serve_process(model, tmp)`: `fstcn serve` in a subprocess (real HTTP, real process, own TMPDIR).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

with warnings.catch_warnings():  # starlette's TestClient warns about httpx at import time
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]
FSTCN = Path(sys.executable).parent / "fstcn"


def wait_ready(get: Callable[[str], Any], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError("the server did not become ready")


@contextmanager
def open_client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client.get)
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_app(app: FastAPI, *, ready: bool = True) -> Iterator[str]:
    """Serve `app` with uvicorn on a thread; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        if ready:
            with httpx.Client(base_url=url) as http:
                wait_ready(http.get)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    tmpdir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def serve_process(
    model_path: Path, tmp: Path, env: dict[str, str] | None = None, args: list[str] | None = None
) -> Iterator[ServerProcess]:
    """`fstcn serve` in a subprocess with its own TMPDIR (to check temporary files)."""
    port = free_port()
    tmpdir = tmp / "server-tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "server.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FSTCN_")}
    full_env.update(
        {"FSTCN_MODEL_PATH": str(model_path), "FSTCN_PROVIDERS": "cpu", "TMPDIR": str(tmpdir)}, **(env or {})
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(FSTCN), "serve", "--host", "127.0.0.1", "--port", str(port), *(args or [])],
            env=full_env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, tmpdir, log_path)
    try:
        with httpx.Client(base_url=server.url) as http:
            try:
                wait_ready(http.get, timeout_s=60)
            except TimeoutError:
                raise RuntimeError(f"fstcn serve did not become ready:\n{server.log()}") from None
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def temp_uploads(directory: Path | None = None) -> list[Path]:
    """Upload temp files (prefix fstcn-upload-) left in `directory` (default: the temp dir)."""
    root = Path(directory or tempfile.gettempdir())
    return sorted(root.glob("fstcn-upload-*"))
