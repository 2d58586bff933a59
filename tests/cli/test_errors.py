"""One error path for every command: a domain error, a missing file, a folder or a bad dataset is one line
`fstcn <command>: <message>` on stderr and exit 2 (fstcn/cli.py), never a traceback or a raw errno; and
the inputs a new user gives by mistake get the command that fixes them."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fstcn.cli import EXIT_USAGE, app
from tests.service.servers import FSTCN, REPO

LABELS = ["wave", "clap"]


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FSTCN_")} | (env or {})
    return subprocess.run(
        [str(FSTCN), *args], env=full_env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def synth_like(root: Path, *, split: str = "train", masks: bool = False) -> Path:
    """A folder laid out as `fstcn synth` writes it (UCF101 layout, synth.json), videos not needed."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(LABELS, 1)))
    (lists / f"{split}list01.txt").write_text("".join(f"{name}/v_{name}_g01_c01.mp4\n" for name in LABELS))
    args = {"videos_per_class": 1, "seed": 7, "difficulty": 1.0, "split": split, "masks": masks}
    (root / "synth.json").write_text(json.dumps({"generator": "fstcn-synthetic-actions", "args": args}))
    return root


def test_explain_on_a_non_video_a_missing_file_and_a_folder_is_one_line_each(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    for target, expected in [
        (text, "not a video"),
        (tmp_path / "missing.mp4", f"no such file: {tmp_path / 'missing.mp4'}"),
        (tmp_path, "is a folder, not a video file"),
    ]:
        result = run(["explain", str(target), "--out", str(tmp_path / "out"), "--crops", "1"])
        assert result.returncode == EXIT_USAGE, result.stderr
        assert result.stderr.startswith("fstcn explain: ") and expected in result.stderr
        assert "Traceback" not in result.stderr and "Errno" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_predict_expands_folders_and_names_an_empty_one(
    fake_model_path: Path, video_factory: Callable[..., Path], tmp_path: Path
) -> None:
    folder = tmp_path / "videos"
    (folder / "wave").mkdir(parents=True)
    source = video_factory("folder.mp4", width=160, height=120)
    (folder / "wave" / "b.mp4").write_bytes(source.read_bytes())
    (folder / "a.mp4").write_bytes(source.read_bytes())
    (folder / "notes.txt").write_text("not listed: not a video name")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(
        ["predict", str(folder), str(empty), "--crops", "1"], {"FSTCN_MODEL_PATH": str(fake_model_path)}
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == [str(folder / "a.mp4"), str(folder / "wave" / "b.mp4"), str(empty)]
    assert all("predictions" in r for r in records[:2])
    assert records[2]["error"]["message"] == f"{empty} is a folder without video files"
    assert result.returncode == 1
    duration = records[0]["video"]["duration_s"]
    assert duration == round(duration, 4)  # rounded like the clip times, not 16 digits


def test_predict_model_option_is_named_in_its_error(tmp_path: Path) -> None:
    result = run(["predict", "--model", str(tmp_path / "missing.onnx"), str(tmp_path / "v.mp4")])
    assert result.returncode == EXIT_USAGE
    assert result.stderr.startswith("fstcn predict: --model ") and "FSTCN_MODEL_PATH" not in result.stderr


@pytest.mark.parametrize("command", ["tsne", "evaluate"])
def test_a_folder_with_only_a_training_list_is_read_as_train(command: str, tmp_path: Path) -> None:
    data = synth_like(tmp_path / "synth-train")
    missing = str(tmp_path / "none.pt")
    args = [command, str(data)] if command == "tsne" else [command, "--data", str(data)]
    args += ["--checkpoint" if command == "tsne" else "--model", missing]
    result = CliRunner().invoke(app, args)
    # the subset is chosen (and said) before the model loads, which then fails on the missing file
    assert f"{data} has no test list (testlist01.txt): using its training videos (--subset train)" in (
        result.output
    )
    assert result.exit_code == EXIT_USAGE and "Traceback" not in result.output
    explicit = CliRunner().invoke(app, [*args, "--subset", "test"])
    assert explicit.exit_code == EXIT_USAGE
    assert "has no test list (testlist01.txt): use --subset train" in explicit.output


def test_explain_measure_without_masks_gives_the_command_that_writes_them(tmp_path: Path) -> None:
    data = synth_like(tmp_path / "synth-test", split="test")
    result = CliRunner().invoke(app, ["explain", "--measure", str(data), "--out", str(tmp_path / "out")])
    assert result.exit_code == EXIT_USAGE
    command = f"fstcn synth --out {data} --videos-per-class 1 --seed 7 --split test --difficulty 1.0 --masks"
    assert command in result.output
    plain = tmp_path / "plain"
    plain.mkdir()
    result = CliRunner().invoke(app, ["explain", "--measure", str(plain)])
    assert result.exit_code == EXIT_USAGE and "not a Synthetic Actions folder" in result.output


def test_piped_output_is_not_wrapped(tmp_path: Path) -> None:
    data = synth_like(tmp_path / ("a-rather-long-folder-name-" * 3) / "synth-train")
    result = run(["tsne", str(data), "--checkpoint", str(tmp_path / "none.pt")])
    note = f"{data} has no test list (testlist01.txt): using its training videos (--subset train)"
    assert len(note) > 100 and note in result.stdout.splitlines()
