"""`fstcn predict FILE...`: the serving pipeline without a server, JSON lines out, per-file error codes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fstcn.service.schemas import PredictResponse
from tests.service.fake_model import FAKE_META
from tests.service.servers import FSTCN, REPO


def run_predict(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FSTCN_")} | env
    return subprocess.run(
        [str(FSTCN), "predict", *args], env=full_env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_many_files_give_one_json_line_each_with_errors_coded(
    fake_model_path: Path, video_factory: Callable[..., Path], tmp_path: Path
) -> None:
    good_mp4 = video_factory("cli.mp4", width=160, height=120)
    good_avi = video_factory("cli.avi", width=160, height=120, fps=15)
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 20)
    missing = tmp_path / "missing.mp4"
    result = run_predict(
        [str(good_mp4), str(text), str(good_avi), str(missing), "--crops", "2", "--top-k", "3"],
        {"FSTCN_MODEL_PATH": str(fake_model_path), "FSTCN_PROVIDERS": "cpu"},
    )
    assert result.returncode == 1, result.stderr  # some files failed
    records = lines(result.stdout)
    assert [r["file"] for r in records] == [str(good_mp4), str(text), str(good_avi), str(missing)]
    for record in (records[0], records[2]):
        body = PredictResponse.model_validate({k: v for k, v in record.items() if k != "file"})
        assert len(body.predictions) == 3 and len(body.clips) == FAKE_META.sampling.num_clips
    assert records[1]["error"]["code"] == "unsupported_media"
    assert records[3]["error"]["code"] == "not_found"
    assert "4/4" in result.stderr  # the progress bar


def test_the_cli_and_the_server_agree(
    fake_model_path: Path, video_factory: Callable[..., Path], client: Any
) -> None:
    video = video_factory("agree.mp4", width=160, height=120)
    result = run_predict(
        [str(video), "--clips", "3", "--fusion", "mean"],
        {"FSTCN_MODEL_PATH": str(fake_model_path), "FSTCN_PROVIDERS": "cpu"},
    )
    assert result.returncode == 0, result.stderr
    (record,) = lines(result.stdout)
    served = client.post("/predict?clips=3&fusion=mean", files={"file": ("v.mp4", video.read_bytes())}).json()
    assert record["predictions"] == served["predictions"] and record["clips"] == served["clips"]
    assert "predict" not in result.stderr  # one file: no progress bar


def test_bad_options_and_models_exit_with_a_message(fake_model_path: Path, tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    result = run_predict([str(video), "--crops", "7"], {"FSTCN_MODEL_PATH": str(fake_model_path)})
    assert result.returncode == 2 and "crops" in result.stderr and result.stdout == ""
    result = run_predict([str(video), "--model", str(tmp_path / "none.onnx")], {})
    assert result.returncode == 2 and "--model" in result.stderr and "model file not found" in result.stderr
    assert "FSTCN_MODEL_PATH" not in result.stderr  # the option the user gave, not a variable they did not
    result = run_predict([str(video)], {"FSTCN_MODEL_PATH": str(tmp_path / "none.onnx")})
    assert result.returncode == 1 and "model file not found" in result.stderr  # loads, then fails
    assert "Traceback" not in result.stderr
