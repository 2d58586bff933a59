"""`fstcn train` on a small dataset still writes `best.pt` (a class of two or more videos keeps one for
validation at any --val-fraction > 0) and says which checkpoint to use, at the start and at the end; its
per-epoch lines are for people while log.jsonl stays JSON."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fstcn.model.train.data import VideoItem, split_holdout
from tests.service.servers import FSTCN, REPO
from tests.videos import write_video


def test_every_class_of_two_or_more_keeps_a_validation_video() -> None:
    items = [VideoItem(f"v{i}", i % 3) for i in range(9)]  # 3 videos per class
    train, val = split_holdout(items, 0.1, seed=0)
    assert sorted(items[i].label for i in val) == [0, 1, 2]
    assert len(train) == 6
    single = [VideoItem("a", 0), VideoItem("b", 1)]
    assert split_holdout(single, 0.1, seed=0) == ([0, 1], [])  # the only video stays for training
    assert split_holdout(items, 0.0, seed=0) == (list(range(9)), [])  # 0 turns validation off


@pytest.mark.slow
def test_a_small_run_writes_best_and_names_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for label in ("wave", "clap"):
        (data / label).mkdir(parents=True)
        for index in range(3):
            write_video(data / label / f"{label}{index}.mp4", width=64, height=48, seconds=1.2, fps=25)
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--dataset-kind", "folder", "--holdout", "0", "--preset", "tiny"]
    args += ["--out", str(out), "--epochs-stage1", "1", "--epochs-stage2", "1", "--batch-size", "4"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSTCN_")} | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(FSTCN), *args, "--threads", "1", "--no-progress"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "best.pt").is_file()
    assert f"checkpoints: {out}/last.pt every epoch, {out}/best.pt by stage-2 accuracy on 2" in result.stderr
    assert f"use {out}/best.pt (best validation accuracy" in result.stdout.splitlines()[-1]
    assert "stage 2 epoch 1/1, loss " in result.stderr and '"event"' not in result.stderr
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["epoch", "epoch", "end"]
