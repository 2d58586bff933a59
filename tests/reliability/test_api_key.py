"""The optional API key over real HTTP: 401 `unauthorized`, constant-time comparison, open health probes.

`tests/service/test_api.py` covers the basic accept/refuse matrix in-process; here a live `fstcn serve`
with `FSTCN_API_KEY` set (and `/metrics` left open, the default) answers near-miss keys (prefix, suffix,
other case, non-ASCII, a doubled scheme), refuses an unauthenticated upload before writing any of it to
disk, and keeps every health probe and `/metrics` open. The comparison itself is observed, not read:
a spy around `hmac.compare_digest` sees every key check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fstcn.service.api import deps
from fstcn.service.app import create_app
from fstcn.service.settings import Settings
from tests.reliability.conftest import assert_error, live_server, post_file
from tests.service.servers import ServerProcess, open_client, temp_uploads
from tests.videos import write_video

KEY = "k3y-Of-The-Service-0123456789"
NEAR_MISSES = [
    KEY[:-1],
    KEY + "x",
    KEY.upper(),
    "x" + KEY,
    KEY[:-1] + "\u00e9",  # sent as latin-1
    "0",
    "Bearer " + KEY,
]


@pytest.fixture(scope="module")
def server(fake_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with live_server(
        fake_model_path,
        tmp_path_factory.mktemp("key-server"),
        FSTCN_API_KEY=KEY,
        FSTCN_MAX_UPLOAD_BYTES=str(64 * 1024 * 1024),
        FSTCN_LOG_LEVEL="warning",
    ) as process:
        yield process


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("key-video") / "v.mp4"
    return write_video(path, seconds=0.6, width=64, height=48).read_bytes()


def _headers(scheme: str, key: str) -> dict[str, bytes]:
    """The key in the scheme's header, as latin-1 bytes (what HTTP/1.1 carries; httpx would want ASCII)."""
    value = f"Bearer {key}" if scheme == "bearer" else key
    return {"Authorization" if scheme == "bearer" else "X-API-Key": value.encode("latin-1")}


@pytest.mark.parametrize("scheme", ["bearer", "x-api-key"])
def test_wrong_and_missing_keys_get_401_on_every_protected_route(
    scheme: str, http: httpx.Client, video: bytes
) -> None:
    attempts: list[dict[str, bytes]] = [{}, *(_headers(scheme, key) for key in NEAR_MISSES)]
    for headers in attempts:
        for response in (
            http.post("/predict", headers=headers, files={"file": ("v.mp4", video)}),
            http.get("/v1/model", headers=headers),
        ):
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
            assert KEY not in response.text
    good = _headers(scheme, KEY)
    assert http.post("/predict", headers=good, files={"file": ("v.mp4", video)}).status_code == 200
    assert http.get("/v1/model", headers=good).status_code == 200


def test_health_probes_and_metrics_stay_open(http: httpx.Client) -> None:
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"):
        assert http.get(path).status_code == 200, path
    assert "fstcn_errors_total" in http.get("/metrics").text


def test_an_unauthenticated_upload_is_refused_before_it_is_stored(
    http: httpx.Client, server: ServerProcess
) -> None:
    body = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * (32 * 1024 * 1024)
    start = time.perf_counter()
    try:
        response = post_file(http, body)
    except httpx.TransportError:  # the server may answer and close before the client finishes sending
        pass
    else:
        assert_error(response, 401, "unauthorized")
    assert time.perf_counter() - start < 10
    assert temp_uploads(server.tmpdir) == []
    assert http.get("/healthz").status_code == 200


def test_the_key_is_compared_with_hmac_compare_digest(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, Any]] = []
    real = deps.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", spy)
    with open_client(create_app(make_settings(api_key=KEY, metrics_require_key=True))) as client:
        assert client.get("/v1/model", headers={"X-API-Key": "nope"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert calls == [(b"nope", KEY.encode()), (KEY.encode(), KEY.encode())]


@pytest.fixture
def make_settings(fake_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    import os

    for key in list(os.environ):
        if key.startswith("FSTCN_"):
            monkeypatch.delenv(key)

    def make(**overrides: Any) -> Settings:
        return Settings(model_path=fake_model_path, providers="cpu", **overrides)

    return make
