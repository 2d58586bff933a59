"""README.md's first-hour commands run as written on a fresh folder (scripts/readme-quickpath): synth,
train tiny, evaluate, export, serve with --model, curl, predict, explain (one video and --measure), tsne."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.servers import REPO


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_readme_quickpath_runs_as_written(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "readme-quickpath"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # curl's answer ends without a newline: the next command's output follows it on the same line
    decode = json.JSONDecoder().raw_decode
    answers = [decode(line)[0] for line in result.stdout.splitlines() if line.startswith('{"model"')]
    assert len(answers) == 1 and len(answers[0]["predictions"]) == 3  # the curl to the served model
    assert answers[0]["model"]["name"] == "tiny"
    run = tmp_path / "runs" / "tiny"
    for written in ("best.pt", "tiny.onnx", "tiny.pt", "eval/report.json", "measure/saliency_in_mask.json"):
        assert (run / written).is_file(), written
    assert "t-SNE of 30 videos" in result.stdout  # said before the silent seconds of the embedding
    assert (run / "tsne.png").is_file()
