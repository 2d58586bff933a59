"""The shipped default model bundle (package data): `default_model_path()` is what `fstcn serve` loads
when FSTCN_MODEL_PATH is not set, from a checkout and from an installed wheel alike."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "fstcn-small.onnx"
BUNDLE_DIR = Path(__file__).resolve().parent


def default_model_path() -> Path:
    """The shipped ONNX model."""
    return BUNDLE_DIR / DEFAULT_MODEL_NAME
