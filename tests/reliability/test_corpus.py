"""The hostile-input corpus against a live `fstcn serve` over HTTP, with resource bounds over the whole run.

One server (fake model, 4 MiB upload limit, debug logging, its own TMPDIR) serves every case of
`tests/reliability/corpus.py` in order. After each case: the documented status and code, a body that
matches `openapi.yaml`'s schema for that status and leaks no path or canary bytes, the process alive
and `/healthz` answering, no canary touched (a FIFO at the path the case names, a TCP listener at the
URL it names). After the corpus: a valid video still gives 200, the server's whole log never mentions
the canary, the temp dir holds only what it held before, and the server's peak RSS (VmHWM) stayed under
`PEAK_RSS_BOUND_MIB`; bombs were refused within `BOMB_SECONDS` without raising the peak by more than
`BOMB_HWM_GROWTH_MIB`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import (
    SocketCanary,
    assert_error,
    check_against_openapi,
    live_server,
    post_file,
    vm_kib,
)
from tests.reliability.corpus import CASES, CORPUS_MAX_UPLOAD_BYTES, Case, Workspace
from tests.service.hostile_media import FifoCanary
from tests.service.servers import ServerProcess, temp_uploads

# Peak RSS of the server over the whole corpus (the fake model; a real model adds its own size).
# Measured ~215 MiB on the development machine; the bound leaves room for allocator noise, and is far
# below what one 16000x16000 frame (~370 MiB as yuv420p, ~730 MiB as RGB) would add on its own.
PEAK_RSS_BOUND_MIB = 400
BOMB_SECONDS = 2.0  # a declared-size/duration bomb is refused from its headers, fast
BOMB_HWM_GROWTH_MIB = 128  # H.264 per-macroblock tables: see test_resources.py; a frame is >= 366 MiB


@pytest.fixture(scope="module")
def corpus_server(fake_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with live_server(
        fake_model_path,
        tmp_path_factory.mktemp("corpus-server"),
        FSTCN_MAX_UPLOAD_BYTES=str(CORPUS_MAX_UPLOAD_BYTES),
        FSTCN_LOG_LEVEL="debug",
        FSTCN_INTRA_OP_THREADS="1",
    ) as server:
        server.tmp_at_start = sorted(p.name for p in server.tmpdir.iterdir())  # type: ignore[attr-defined]
        yield server


@pytest.fixture(scope="module")
def http(corpus_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=corpus_server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, url_canary: SocketCanary) -> Workspace:
    root = tmp_path_factory.mktemp("corpus")
    (root / "canaries").mkdir()
    return Workspace(root, root / "canaries" / "canary-secret.ts", url_canary.url)


def _send(http: httpx.Client, case: Case, data: bytes) -> tuple[int, str | None, str]:
    """(status, error code or None, body text); a connection cut mid-upload reads as status 0."""
    try:
        response = post_file(http, data, case.filename)
    except httpx.TransportError as error:
        return 0, None, f"connection closed: {type(error).__name__}"
    check_against_openapi(response)
    if response.status_code == 200:
        return 200, None, response.text
    assert_error(response, response.status_code, response.json()["error"]["code"])
    return response.status_code, response.json()["error"]["code"], response.text


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_case(
    case: Case,
    http: httpx.Client,
    corpus_server: ServerProcess,
    workspace: Workspace,
    url_canary: SocketCanary,
    report: dict[str, Any],
) -> None:
    canary = FifoCanary(workspace.file_canary) if case.references_canary else None
    try:
        data = case.build(workspace)
        pid = corpus_server.process.pid
        hwm_before = vm_kib(pid)
        start = time.perf_counter()
        status, code, text = _send(http, case, data)
        elapsed = time.perf_counter() - start
        hwm_after = vm_kib(pid)
    finally:
        opened = canary.release() if canary is not None else False
        workspace.file_canary.unlink(missing_ok=True)
    report.setdefault("corpus", {})[case.name] = {
        "group": case.group,
        "description": case.description,
        "bytes": len(data),
        "expected": [case.status, case.code],
        "observed": [status, code],
        "seconds": round(elapsed, 3),
        "hwm_mib_after": round(hwm_after / 1024, 1),
    }
    assert not opened, f"{case.name}: the server opened the file named by the upload"
    assert url_canary.connections == 0, f"{case.name}: the server connected to the URL named by the upload"
    assert (status, code) == (case.status, case.code), text[:500]
    for secret in ("CANARY", str(workspace.file_canary), url_canary.url, "fstcn-upload", "Traceback"):
        assert secret not in text, f"{case.name}: the response mentions {secret!r}"
    if status == 200:
        assert text.startswith('{"model"'), text[:200]
    if case.group == "bomb" and status == 413:
        assert elapsed < BOMB_SECONDS, f"{case.name}: refusing a bomb took {elapsed:.2f} s"
        growth = (hwm_after - hwm_before) / 1024
        assert growth < BOMB_HWM_GROWTH_MIB, f"{case.name}: peak RSS grew by {growth:.0f} MiB"
    assert corpus_server.process.poll() is None, "the server died"
    assert http.get("/healthz").status_code == 200


def test_after_the_corpus_the_server_is_intact_and_bounded(
    http: httpx.Client,
    corpus_server: ServerProcess,
    workspace: Workspace,
    url_canary: SocketCanary,
    report: dict[str, Any],
) -> None:
    # still serving real work
    response = post_file(http, workspace.bytes_of("base.mp4"))
    assert response.status_code == 200, response.text
    # no temporary file left behind: the server's TMPDIR holds what it held before the corpus, which is
    # at most ONNX Runtime's `.ses` (a 51-byte telemetry session id it writes once, when imported)
    assert temp_uploads(corpus_server.tmpdir) == []
    left = sorted(p.name for p in corpus_server.tmpdir.iterdir())
    assert left == corpus_server.tmp_at_start  # type: ignore[attr-defined]
    assert set(left) <= {".ses"}, left
    # the canary never shows up in the log (not its bytes, not its path, not its URL)
    log = corpus_server.log()
    assert "predict" in log  # the log is really captured (access lines)
    for secret in (
        FifoCanary.PAYLOAD.decode().strip().split("\n")[0],
        workspace.file_canary.name,
        url_canary.url,
    ):
        assert secret not in log, f"the server log mentions {secret!r}"
    assert url_canary.connections == 0
    # peak memory over the whole corpus
    peak_mib = vm_kib(corpus_server.process.pid) / 1024
    report["corpus_peak_rss_mib"] = round(peak_mib, 1)
    report["corpus_rss_bound_mib"] = PEAK_RSS_BOUND_MIB
    assert peak_mib < PEAK_RSS_BOUND_MIB, f"peak RSS {peak_mib:.0f} MiB over the corpus"
