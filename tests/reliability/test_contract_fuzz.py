"""Contract fuzzing: schemathesis drives every operation of `openapi.yaml` against a live `fstcn serve`.

The server runs with an API key and `/metrics` behind it, so the security the schema declares is really
enforced and schemathesis's auth checks (missing or wrong credentials must give 401) are meaningful; it
gets the key per security scheme from a `schemathesis.toml`. Bounded for CI: a fixed seed, at most
`MAX_EXAMPLES` examples per operation and phase, and a `MAX_TIME_S` budget for the run; no example
database is kept. Every check runs except `positive_data_acceptance`, whose premise ("any schema-valid
request succeeds") the contract deliberately does not promise: `file` is `format: binary` (a PNG or
random bytes are schema-valid and rightly get 415), and `top_k`'s upper bound is the number of classes
of the model being served, which a static schema cannot state.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import live_server
from tests.service.servers import REPO, ServerProcess, temp_uploads

MAX_EXAMPLES = 15
MAX_TIME_S = 30
SEED = 20240601
API_KEY = "fuzz-key-0123456789"
ST = Path(sys.executable).parent / "st"


@pytest.fixture(scope="module")
def server(fake_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with live_server(
        fake_model_path,
        tmp_path_factory.mktemp("fuzz-server"),
        FSTCN_API_KEY=API_KEY,
        FSTCN_METRICS_REQUIRE_KEY="true",
        FSTCN_MAX_UPLOAD_BYTES=str(1024 * 1024),
        FSTCN_INTRA_OP_THREADS="1",
        FSTCN_LOG_LEVEL="warning",
    ) as process:
        yield process


@pytest.mark.slow
def test_schemathesis_finds_no_contract_violation(
    server: ServerProcess, tmp_path: Path, report: dict[str, Any]
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f'[auth.openapi.HTTPBearer]\nbearer = "{API_KEY}"\n\n'
        f'[auth.openapi.APIKeyHeader]\napi_key = "{API_KEY}"\n'
    )
    command = [
        str(ST),
        "--config-file",
        str(config),
        "run",
        str(REPO / "openapi.yaml"),
        "--url",
        server.url,
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_TIME_S),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=MAX_TIME_S + 60, check=False
    )
    output = done.stdout + done.stderr
    summary = re.search(r"(\d+) generated, (\d+) passed", output)
    report["contract_fuzz"] = {
        "command": "st " + " ".join(command[1:]).replace(str(REPO) + "/", "").replace(str(config), "<toml>"),
        "summary": summary.group(0) if summary else None,
    }
    assert done.returncode == 0, output[-6000:]
    assert summary is not None and summary.group(1) == summary.group(2), output[-3000:]
    assert int(summary.group(1)) >= 50  # it really exercised the API
    assert "Tested: 14" in output  # every operation of openapi.yaml
    assert server.process.poll() is None
    assert temp_uploads(server.tmpdir) == []
    assert "Traceback" not in server.log()
