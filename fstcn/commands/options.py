"""Typer option types shared by the commands that read a dataset (`train`, `evaluate`, `tsne`).

One definition per option, so `--dataset-kind`, `--split`, ... mean and read the same everywhere.
Standard library + typer only (see fstcn/cli.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DatasetKind = Annotated[
    str, typer.Option("--dataset-kind", help="ucf101 | hmdb51 | folder | auto (detect the layout).")
]
Split = Annotated[int, typer.Option("--split", help="Official split number (UCF101/HMDB51: 1..3).")]
Subset = Annotated[str, typer.Option("--subset", help="train | test.")]
SplitsDir = Annotated[
    Path | None, typer.Option("--splits-dir", help="Folder with the split files (UCF101/HMDB51).")
]
TestRoot = Annotated[
    Path | None, typer.Option("--test-root", help="Folder layout: separate root of test videos.")
]
Holdout = Annotated[
    float, typer.Option("--holdout", help="Folder layout without --test-root: test fraction per class.")
]
