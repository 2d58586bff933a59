"""On a host without a GPU, `auto` running on CPU is expected: one INFO line, and `fstcn predict` (which
shows warnings only) says nothing about providers. Where a GPU is there but its provider did not load,
it stays a WARNING."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import pytest

from fstcn.core import runtime
from fstcn.core.runtime import OnnxModel, cuda_device_count
from tests.service.servers import FSTCN, REPO


@pytest.mark.parametrize(
    ("devices", "level"), [(0, logging.INFO), (1, logging.WARNING), (None, logging.WARNING)]
)
def test_cpu_fallback_is_info_without_a_gpu_and_a_warning_with_one(
    devices: int | None,
    level: int,
    fake_model_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(runtime, "cuda_device_count", lambda: devices)
    # every GPU provider "exists" but fails to load, as on a CPU host with onnxruntime-gpu
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(runtime.SHORT_NAMES))
    real_create = runtime._create_session

    def cpu_only(path: Path, options: ort.SessionOptions, providers: list[str], **kwargs: object) -> object:
        if providers != [runtime.CPU]:
            raise runtime.ModelLoadError("no GPU here")
        return real_create(path, options, providers, **kwargs)

    monkeypatch.setattr(runtime, "_create_session", cpu_only)
    with caplog.at_level(logging.INFO, logger="fstcn.core.runtime"):
        model = OnnxModel.load(fake_model_path)
    assert model.provider == "cpu"
    lines = [r for r in caplog.records if "running on CPU" in r.getMessage()]
    assert [r.levelno for r in lines] == [level]


@pytest.mark.skipif(cuda_device_count() != 0, reason="this host has a GPU")
def test_predict_on_a_cpu_host_says_nothing_about_gpus(
    fake_model_path: Path, video_factory: Callable[..., Path]
) -> None:
    video = video_factory("providers.mp4", width=160, height=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSTCN_")}
    env["FSTCN_MODEL_PATH"] = str(fake_model_path)
    result = subprocess.run(
        [str(FSTCN), "predict", str(video), "--crops", "1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "running on CPU" not in result.stderr and "execution provider" not in result.stderr, result.stderr
