"""Service configuration: every `FSTCN_*` environment variable, validated once at start (docs/design.md,
"Settings").

`Settings` is a pydantic-settings model; `get_settings()` is the cached FastAPI dependency that tests
override (`app.dependency_overrides[get_settings] = ...`) or bypass by passing `Settings` to
`create_app`. Validation errors surface as `SettingsError` with one readable line per bad variable, so
`fstcn serve` can exit non-zero with a clear message instead of a traceback.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fstcn.models import default_model_path

ENV_PREFIX = "FSTCN_"


# Short provider names accepted in FSTCN_PROVIDERS, in the order `auto` tries them.
PROVIDER_NAMES: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


class SettingsError(ValueError):
    """Invalid configuration; the message names each bad `FSTCN_*` variable."""


class Settings(BaseSettings):
    """All service settings. Each field is read from `FSTCN_<FIELD NAME IN UPPER CASE>`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        protected_namespaces=(),  # `model_path` is a field, not pydantic's model_* namespace
        validate_default=True,
    )

    # Model and execution
    model_path: Path = Field(
        default_factory=default_model_path,
        description="ONNX model exported by `fstcn export` (its plain NAME.onnx): the fastest graph of its "
        "bundle is served, NAME.trunk.onnx, else NAME.frames.onnx, else NAME.onnx.",
    )
    exact_crops: bool = Field(
        default=False,
        description="Serve the paper's exact crops (NAME.frames.onnx, else the plain NAME.onnx) instead of "
        "the bundle's shared-trunk graph.",
    )
    providers: str = Field(
        default="auto",
        description="`auto` (TensorRT, then CUDA, when they really load; else CPU) or a comma list of "
        "tensorrt, cuda, cpu.",
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime intra-op threads; 0 = chosen from the cores."
    )
    decode_threads: int = Field(
        default=0, ge=0, description="FFmpeg decoder threads per video; 0 = chosen from the cores."
    )
    trt_cache_dir: Path | None = Field(
        default=None, description="TensorRT engine cache folder (default: ~/.cache/fstcn/tensorrt)."
    )
    recheck_model_path: Path | None = Field(
        default=None,
        description="Exact-crops model of the same weights (the plain ONNX file or its .frames.onnx) that "
        "re-scores a video when the served model's top-1 leads by less than recheck_margin; for a "
        "shared-trunk model (docs/performance.md). Unset: never.",
    )
    recheck_margin: float = Field(
        default=0.05, ge=0, le=1, description="Top-1 lead (fused scores) under which a video is rechecked."
    )

    # Input limits (error code video_too_large)
    max_upload_bytes: int = Field(default=200 * 1024 * 1024, ge=1, description="Largest accepted upload.")
    max_duration_s: float = Field(default=600.0, gt=0, description="Longest accepted video, seconds.")
    max_frames: int = Field(default=100_000, ge=2, description="Most frames a video may declare or decode.")
    max_pixels: int = Field(default=3840 * 2160, ge=1, description="Largest width x height.")

    # Admission control
    max_concurrent_inferences: int = Field(
        default=2, ge=1, description="Predictions (decode + inference) processed at once."
    )
    queue_size: int = Field(
        default=16, ge=0, description="Predictions waiting for a slot; beyond: 503 overloaded."
    )
    request_timeout_s: float = Field(
        default=60.0, gt=0, description="Per-request limit, upload included; 504."
    )
    retry_after_s: int = Field(default=1, ge=1, description="Retry-After header of 503 responses.")

    # Cross-request dynamic batching (off by default: on CPU it did not help, see docs/serving.md)
    batching: bool = Field(default=False, description="Batch concurrent requests into one ONNX Runtime run.")
    batch_max_size: int = Field(default=8, ge=1, description="Most requests per batch.")
    batch_max_delay_ms: float = Field(default=5.0, ge=0, description="Longest wait for a batch to fill, ms.")

    # Security
    api_key: SecretStr | None = Field(
        default=None, description="When set, /predict and /v1/model require `Authorization: Bearer <key>`."
    )
    metrics_require_key: bool = Field(default=False, description="Whether /metrics needs the API key too.")

    # Logging
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    log_format: Literal["text", "json"] = Field(
        default="text", description="`text` or `json` (one object per line, uvicorn's logs included)."
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, value: str) -> str:
        names = [name.strip().lower() for name in value.split(",") if name.strip()]
        if names == ["auto"]:
            return "auto"
        unknown = [name for name in names if name not in PROVIDER_NAMES]
        if not names or unknown:
            allowed = ", ".join(["auto", *PROVIDER_NAMES])
            raise ValueError(f"unknown provider(s) {unknown or value!r}; use {allowed} (comma-separated)")
        return ",".join(names)

    @field_validator("recheck_model_path", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: Any) -> Any:
        return None if value == "" else value  # compose passes unset variables as ""

    @field_validator("api_key")
    @classmethod
    def _empty_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        return value

    @model_validator(mode="after")
    def _check_model_file(self) -> Settings:
        if self.model_path.exists() and not self.model_path.is_file():
            raise ValueError(f"model_path {self.model_path} is not a file")
        if self.recheck_model_path is not None and not self.recheck_model_path.is_file():
            raise ValueError(f"recheck_model_path {self.recheck_model_path} is not a file")
        return self

    @property
    def provider_list(self) -> list[str] | None:
        """ONNX Runtime provider names in order, or None for `auto`."""
        if self.providers == "auto":
            return None
        return [PROVIDER_NAMES[name] for name in self.providers.split(",")]

    @property
    def batch_max_delay_s(self) -> float:
        return self.batch_max_delay_ms / 1000.0


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and `overrides`), or `SettingsError` with a readable message."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(format_validation_error(error)) from None


def format_validation_error(error: ValidationError) -> str:
    lines = ["invalid settings:"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "settings"
        env = f"{ENV_PREFIX}{field.upper()}" if field != "settings" else "settings"
        given = item.get("input")
        shown = "" if isinstance(given, dict) or field == "api_key" else f" (got {given!r})"
        lines.append(f"  {env}: {item['msg']}{shown}")
    return "\n".join(lines)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached). A FastAPI dependency; tests override it."""
    return load_settings()


def env_snapshot() -> dict[str, str]:
    """The FSTCN_* variables currently set (API key redacted), for a start-up log line."""
    return {
        key: ("***" if key == f"{ENV_PREFIX}API_KEY" else value)
        for key, value in sorted(os.environ.items())
        if key.startswith(ENV_PREFIX)
    }


# FSTCN_* variables that docker/ reads (compose files and smoke.sh) and the service never does.
COMPOSE_VARIABLES: dict[str, str] = {
    "FSTCN_MODEL_DIR": "the host folder compose mounts as the models folder",
    "FSTCN_MODEL_FILE": "the file in FSTCN_MODEL_DIR compose serves",
    "FSTCN_PORT": "the host port of compose's load balancer",
    "FSTCN_IMAGE": "the image compose runs",
    "FSTCN_GPU_COUNT": "the GPUs compose gives each replica",
    "FSTCN_SMOKE_MODEL": "the model docker/smoke.sh serves",
}


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per FSTCN_* variable that is set but is not a setting: the service ignores it.

    Compose's own variables are named as such, with what serves a model outside compose."""
    environ = os.environ if environ is None else environ
    known = sorted(f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields)
    warnings = []
    for key in sorted(environ):
        if not key.startswith(ENV_PREFIX) or key in known:
            continue
        if key in COMPOSE_VARIABLES:
            warnings.append(
                f"{key} is a docker compose variable ({COMPOSE_VARIABLES[key]}); outside compose it is "
                f"ignored: serve a model with `fstcn serve --model PATH` or {ENV_PREFIX}MODEL_PATH"
            )
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"{key} is not a setting and is ignored{hint}; the settings: docs/serving.md")
    return warnings
