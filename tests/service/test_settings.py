"""Settings: FSTCN_* parsing, validation with readable messages, the cached dependency, start-up failures."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from fstcn.models import default_model_path
from fstcn.service.app import create_app
from fstcn.service.settings import (
    Settings,
    SettingsError,
    get_settings,
    load_settings,
)
from tests.service.servers import FSTCN, REPO, open_client


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("FSTCN_"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()


def test_defaults() -> None:
    settings = load_settings()
    assert settings.model_path == default_model_path()
    assert default_model_path() == REPO / "models" / "fstcn-small.onnx"
    assert settings.providers == "auto" and settings.provider_list is None
    assert settings.api_key is None and not settings.metrics_require_key
    assert not settings.batching
    assert settings.max_concurrent_inferences >= 1 and settings.queue_size >= 0


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSTCN_MODEL_PATH", "/models/x.onnx")
    monkeypatch.setenv("FSTCN_PROVIDERS", "CUDA, cpu")
    monkeypatch.setenv("FSTCN_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("FSTCN_REQUEST_TIMEOUT_S", "2.5")
    monkeypatch.setenv("FSTCN_API_KEY", "s3cret")
    monkeypatch.setenv("FSTCN_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("FSTCN_LOG_FORMAT", "json")
    monkeypatch.setenv("FSTCN_BATCHING", "true")
    monkeypatch.setenv("FSTCN_BATCH_MAX_DELAY_MS", "7")
    settings = load_settings()
    assert settings.model_path == Path("/models/x.onnx")
    assert settings.provider_list == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert settings.max_upload_bytes == 1234 and settings.request_timeout_s == 2.5
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.log_level == "debug" and settings.log_format == "json"
    assert settings.batching and settings.batch_max_delay_s == pytest.approx(0.007)


def test_empty_api_key_means_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSTCN_API_KEY", "")
    assert load_settings().api_key is None


def test_recheck_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FSTCN_RECHECK_MODEL_PATH", "")  # as compose passes an unset variable
    assert load_settings().recheck_model_path is None
    exact = tmp_path / "exact.onnx"
    exact.write_bytes(b"")
    monkeypatch.setenv("FSTCN_RECHECK_MODEL_PATH", str(exact))
    monkeypatch.setenv("FSTCN_RECHECK_MARGIN", "0.1")
    settings = load_settings()
    assert settings.recheck_model_path == exact and settings.recheck_margin == pytest.approx(0.1)
    monkeypatch.setenv("FSTCN_RECHECK_MODEL_PATH", str(tmp_path / "missing.onnx"))
    with pytest.raises(SettingsError, match="recheck_model_path"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("FSTCN_PROVIDERS", "gpu", "unknown provider"),
        ("FSTCN_MAX_UPLOAD_BYTES", "lots", "FSTCN_MAX_UPLOAD_BYTES"),
        ("FSTCN_MAX_CONCURRENT_INFERENCES", "0", "FSTCN_MAX_CONCURRENT_INFERENCES"),
        ("FSTCN_QUEUE_SIZE", "-1", "FSTCN_QUEUE_SIZE"),
        ("FSTCN_REQUEST_TIMEOUT_S", "0", "FSTCN_REQUEST_TIMEOUT_S"),
        ("FSTCN_LOG_FORMAT", "xml", "FSTCN_LOG_FORMAT"),
        ("FSTCN_BATCH_MAX_SIZE", "0", "FSTCN_BATCH_MAX_SIZE"),
        ("FSTCN_RECHECK_MARGIN", "1.5", "FSTCN_RECHECK_MARGIN"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert fragment in str(raised.value) and variable in str(raised.value)


def test_secret_is_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSTCN_API_KEY", "top-secret-value")
    monkeypatch.setenv("FSTCN_QUEUE_SIZE", "x")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "top-secret-value" not in str(raised.value)


def test_get_settings_is_cached_and_overridable(make_settings: Callable[..., Settings]) -> None:
    assert get_settings() is get_settings()
    custom = make_settings(api_key="k")
    app = create_app(custom)
    with open_client(app) as client:
        assert client.get("/v1/model").status_code == 401  # the routes see the app's settings
        app.dependency_overrides[get_settings] = lambda: make_settings()
        assert client.get("/v1/model").status_code == 200


def run_serve(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FSTCN_")} | env
    return subprocess.run(
        [str(FSTCN), "serve", "--port", "1"],  # never reached: start-up fails first
        env=full_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_with_invalid_settings_exits_with_a_clear_message(tmp_path: Path) -> None:
    result = run_serve({"FSTCN_QUEUE_SIZE": "many", "FSTCN_PROVIDERS": "gpu"}, tmp_path)
    assert result.returncode == 2
    assert "FSTCN_QUEUE_SIZE" in result.stderr and "FSTCN_PROVIDERS" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_with_a_mismatched_recheck_model_exits_non_zero(tmp_path: Path) -> None:
    from tests.service.fake_model import fake_meta, write_fake_model

    served, other = tmp_path / "served.onnx", tmp_path / "other.onnx"
    write_fake_model(served)
    write_fake_model(other, fake_meta(mean=(0.25, 0.25, 0.25)))
    env = {"FSTCN_MODEL_PATH": str(served), "FSTCN_RECHECK_MODEL_PATH": str(other), "FSTCN_PROVIDERS": "cpu"}
    result = run_serve(env, tmp_path)
    assert result.returncode == 1
    assert "does not match the served model: different mean" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("case", ["missing", "corrupt", "no-metadata"])
def test_serve_with_a_bad_model_exits_non_zero(case: str, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    if case == "corrupt":
        path.write_bytes(b"\x08\x07garbage" * 100)
    elif case == "no-metadata":
        from tests.service.fake_model import write_fake_model

        write_fake_model(path, metadata="")
    result = run_serve({"FSTCN_MODEL_PATH": str(path), "FSTCN_PROVIDERS": "cpu"}, tmp_path)
    assert result.returncode == 1
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    expected = {"missing": "model file not found", "corrupt": "cannot load model", "no-metadata": "metadata"}
    assert expected[case] in result.stderr
