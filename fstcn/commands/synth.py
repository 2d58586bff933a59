"""`fstcn synth`: write one split of the Synthetic Actions dataset in the UCF101 layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write (created if missing).")],
    videos_per_class: Annotated[int, typer.Option("--videos-per-class", min=1, help="Videos of each class.")],
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Dataset seed; use different seeds for train and test.")
    ],
    difficulty: Annotated[
        float, typer.Option("--difficulty", min=0.0, help="Nuisance scale: 0 clean, 1 moderate, 2 hard.")
    ] = 1.0,
    split: Annotated[
        str, typer.Option("--split", help="train -> trainlist01.txt, test -> testlist01.txt.")
    ] = "train",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Parallel worker processes.")] = 2,
    masks: Annotated[
        bool, typer.Option("--masks/--no-masks", help="Also write per-frame figure boxes and masks (masks/).")
    ] = False,
) -> None:
    """Generate Synthetic Actions (10 classes, UCF101 layout): rendered figures, random scenes and encodings.

    Train and test are separate runs into separate folders with different seeds, e.g.
    `fstcn synth --out data/synth/train --videos-per-class 150 --seed 1` and
    `fstcn synth --out data/synth/test --videos-per-class 30 --seed 2 --split test`.
    """
    import time

    from rich.console import Console
    from tqdm import tqdm

    from fstcn.model.synth.dataset import CLASSES, generate_dataset

    if split not in ("train", "test"):
        raise typer.BadParameter(f"--split must be train or test, got {split!r}")
    console = Console(stderr=True)
    total = videos_per_class * len(CLASSES)
    started = time.perf_counter()
    with tqdm(total=total, unit="video", desc=f"synth {split}", dynamic_ncols=True) as progress:
        records = generate_dataset(
            out,
            videos_per_class=videos_per_class,
            seed=seed,
            difficulty=difficulty,
            split=split,
            workers=workers,
            masks=masks,
            on_video=lambda record: progress.update(1),
        )
    elapsed = time.perf_counter() - started
    frames = sum(record.frames for record in records)
    containers: dict[str, int] = {}
    for record in records:
        containers[record.container] = containers.get(record.container, 0) + 1
    console.print(
        f"wrote {len(records)} videos ({frames} frames; "
        + ", ".join(f"{count} {name}" for name, count in sorted(containers.items()))
        + f") to {out} in {elapsed:.1f} s: {len(records) / elapsed:.2f} videos/s with {workers} worker(s)"
    )
