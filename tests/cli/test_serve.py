"""`fstcn serve --model PATH` serves that file, and FSTCN_* variables that are not settings (compose's
FSTCN_MODEL_DIR / FSTCN_MODEL_FILE among them) are named in a warning at start instead of being
silently ignored."""

from __future__ import annotations

from pathlib import Path

import httpx

from fstcn.service.settings import COMPOSE_VARIABLES, unknown_variables
from tests.service.fake_model import FAKE_META
from tests.service.servers import serve_process


def test_unknown_and_compose_variables_are_named() -> None:
    environ = {
        "FSTCN_MODEL_PATH": "m.onnx",
        "FSTCN_MODEL_DIR": "/models",
        "FSTCN_MODLE_PATH": "typo.onnx",
        "FSTCN_LOG_LEVEL": "info",
        "OTHER": "x",
    }
    warnings = unknown_variables(environ)
    assert len(warnings) == 2
    compose, typo = warnings
    assert compose.startswith("FSTCN_MODEL_DIR is a docker compose variable") and "--model" in compose
    assert typo.startswith("FSTCN_MODLE_PATH is not a setting") and "did you mean FSTCN_MODEL_PATH" in typo
    assert unknown_variables({"FSTCN_MODEL_PATH": "m.onnx"}) == []
    assert {"FSTCN_MODEL_DIR", "FSTCN_MODEL_FILE"} <= set(COMPOSE_VARIABLES)


def test_compose_files_use_only_settings_or_named_compose_variables() -> None:
    import re

    docker = Path(__file__).resolve().parents[2] / "docker"
    used = {
        name
        for path in docker.rglob("*")
        if path.is_file() and path.suffix in {".yml", ".yaml", ".sh", ""}
        for name in re.findall(r"FSTCN_[A-Z0-9_]+", path.read_text(errors="replace"))
    }
    assert used, "no FSTCN_ variables found under docker/"
    assert [w for w in unknown_variables(dict.fromkeys(used, "x")) if "is not a setting" in w] == []


def test_serve_model_option_overrides_the_variable_and_warns_about_compose_ones(
    fake_model_path: Path, tmp_path: Path
) -> None:
    env = {"FSTCN_MODEL_PATH": str(tmp_path / "not-this.onnx"), "FSTCN_MODEL_FILE": "my.onnx"}
    with serve_process(fake_model_path, tmp_path, env=env, args=["--model", str(fake_model_path)]) as server:
        model = httpx.get(f"{server.url}/v1/model", timeout=10).json()
        assert model["name"] == FAKE_META.name
        log = server.log()
    assert "FSTCN_MODEL_FILE is a docker compose variable" in log
