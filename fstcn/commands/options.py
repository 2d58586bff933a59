"""Typer option types shared by the commands: those that read a dataset (`train`, `evaluate`, `tsne`)
and the subset they read when none is given; the ONNX model of those that serve it (`serve`, `predict`).

One definition per option, so `--dataset-kind`, `--split`, ... mean and read the same everywhere.
Standard library + typer only at module level (see fstcn/cli.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DatasetKind = Annotated[
    str, typer.Option("--dataset-kind", help="ucf101 | hmdb51 | folder | auto (detect the layout).")
]
Split = Annotated[int, typer.Option("--split", help="Official split number (UCF101/HMDB51: 1..3).")]
Subset = Annotated[
    str | None,
    typer.Option(
        "--subset", help="train | test (default: test, or train when DATA has only a training list)."
    ),
]
SplitsDir = Annotated[
    Path | None, typer.Option("--splits-dir", help="Folder with the split files (UCF101/HMDB51).")
]
TestRoot = Annotated[
    Path | None, typer.Option("--test-root", help="Folder layout: separate root of test videos.")
]
Holdout = Annotated[
    float, typer.Option("--holdout", help="Folder layout without --test-root: test fraction per class.")
]

ServedModel = Annotated[
    Path | None,
    typer.Option(
        "--model",
        help="ONNX model exported by `fstcn export` (default: FSTCN_MODEL_PATH, else the shipped model).",
        show_default=False,
    ),
]


def served_model_overrides(model: Path | None) -> dict[str, object]:
    """The settings override of --model, checked here so that a wrong path names the option."""
    if model is None:
        return {}
    if not model.is_file():
        what = "is a folder, not a model file" if model.is_dir() else "model file not found"
        raise ValueError(f"--model {model}: {what}; give an ONNX file written by `fstcn export`")
    return {"model_path": model}


def resolve_subset(
    subset: str | None, data: Path, *, dataset_kind: str, split: int, splits_dir: Path | None = None
) -> tuple[str, str]:
    """(the subset to read, a note to print or ""): --subset as given, else test, or train where DATA
    has only a training list (a `fstcn synth` folder of the default --split train)."""
    from fstcn.model.datasets import default_subset

    if subset is not None and subset not in ("train", "test"):
        raise typer.BadParameter(f"--subset must be train or test, got {subset!r}")
    found, why = default_subset(dataset_kind, data, split, splits_dir=splits_dir)
    if subset is None:
        return found, f"{why}: using its training videos (--subset train)" if why else ""
    if subset == "test" and found == "train":
        raise ValueError(f"{why}: use --subset train")
    return subset, ""
