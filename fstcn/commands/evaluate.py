"""`fstcn evaluate`: video-level accuracy of an ONNX model or a checkpoint on a dataset split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fstcn.commands import options


def command(
    model: Annotated[Path, typer.Option("--model", help="Exported .onnx file or PyTorch checkpoint (.pt).")],
    data: Annotated[Path, typer.Option("--data", help="Dataset root.")],
    dataset_kind: options.DatasetKind = "auto",
    split: options.Split = 1,
    subset: options.Subset = None,
    splits_dir: options.SplitsDir = None,
    test_root: options.TestRoot = None,
    holdout: options.Holdout = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Folder layout: holdout seed.")] = 0,
    clips: Annotated[
        int | None, typer.Option("--clips", help="Clip pairs per video (default: the model's).")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Output folder for report.json and confusion.png.")
    ] = Path("runs/evaluate"),
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate only the first N videos.")] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Rows per forward pass of a checkpoint.")
    ] = 64,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu | cuda (default: best available).")
    ] = None,
    fusion: Annotated[str, typer.Option("--fusion", help="Headline fusion: sci | mean.")] = "sci",
    crops: Annotated[int, typer.Option("--crops", help="Headline crop count: 1 | 2 | 9 | 18.")] = 18,
    forms: Annotated[
        str | None,
        typer.Option(
            "--forms",
            help="Forms of the bundle whose NAME.onnx is --model, scored side by side from one decode: "
            "default (as served), exact (the paper's exact crops), plain (default: default,exact when the "
            "bundle holds a shared-trunk graph).",
        ),
    ] = None,
) -> None:
    """Evaluate a model: top-1/top-5 for sci vs mean fusion and 1/2/9/18 crops, per-class accuracy,
    confusion matrix (printed and saved as PNG) and a JSON report."""
    from rich.table import Table

    from fstcn.commands.console import make_console
    from fstcn.model.datasets import load_dataset
    from fstcn.model.evaluate import bundle_forms, evaluate_samples, load_form_runners, save_confusion_png

    console = make_console()
    if limit is not None and limit < 1:
        raise typer.BadParameter("--limit must be >= 1")
    if clips is not None and clips < 1:
        raise typer.BadParameter("--clips must be >= 1")
    subset, note = options.resolve_subset(
        subset, data, dataset_kind=dataset_kind, split=split, splits_dir=splits_dir
    )
    if note:
        console.print(note)
    dataset = load_dataset(
        dataset_kind,
        data,
        split,
        subset,  # type: ignore[arg-type]
        splits_dir=splits_dir,
        test_root=test_root,
        holdout=holdout,
        seed=seed,
    )
    chosen = [f.strip() for f in forms.split(",") if f.strip()] if forms else bundle_forms(model)
    runners = load_form_runners(model, chosen, batch_size=batch_size, device=device)
    runner = next(iter(runners.values()))
    samples = dataset.samples[:limit] if limit is not None else dataset.samples
    if not samples:
        raise ValueError(f"no {subset} videos in split {split} of {data}")
    console.print(
        f"[bold]{model.name}[/]: {len(samples)} {subset} videos of {data}, "
        f"{len(dataset.labels)} classes, {clips or runner.meta.sampling.num_clips} clips x 18 crops"
    )
    report = evaluate_samples(
        samples,
        dataset.labels,
        runners,
        model_name=str(model),
        num_clips=clips,
        headline=(fusion, crops),
    )
    report.dataset = {
        "root": str(data),
        "kind": dataset_kind,
        "split": split,
        "subset": subset,
        "videos": len(samples),
        "limit": limit,
    }

    table = Table(title="video-level accuracy")
    table.add_column("fusion")
    table.add_column("crops", justify="right")
    table.add_column("top-1", justify="right")
    table.add_column("top-5", justify="right")
    for row in report.results:
        top1 = "-" if row["top1"] is None else f"{100 * row['top1']:.2f}%"
        top5 = "-" if row["top5"] is None else f"{100 * row['top5']:.2f}%"
        style = "bold" if (row["fusion"], row["crops"]) == (fusion, crops) else None
        table.add_row(row["fusion"], str(row["crops"]), top1, top5, style=style)
    console.print(table)
    if report.forms:
        first = next(iter(report.forms))
        side = Table(
            title=f"forms side by side ({fusion}, {crops} crops; agreement: top-1 equal to {first}'s)"
        )
        for column in ("form", "graph", "top-1", "top-5", "agreement"):
            side.add_column(column, justify="left" if column in ("form", "graph") else "right")
        for name, entry in report.forms.items():
            row = next(r for r in entry["results"] if (r["fusion"], r["crops"]) == (fusion, crops))
            side.add_row(
                name,
                f"{entry['form']} ({Path(entry['path']).name})",
                f"{100 * row['top1']:.2f}%",
                f"{100 * row['top5']:.2f}%",
                f"{100 * entry['agreement']:.2f}%",
            )
        console.print(side)

    per_class = Table(title=f"per-class accuracy ({fusion}, {crops} crops)")
    per_class.add_column("class")
    per_class.add_column("videos", justify="right")
    per_class.add_column("accuracy", justify="right")
    for row in report.per_class:
        accuracy = "-" if row["accuracy"] is None else f"{100 * row['accuracy']:.1f}%"
        per_class.add_row(row["label"], str(row["videos"]), accuracy)
    console.print(per_class)

    labels = report.labels
    confusion = Table(title="confusion matrix (rows: true, columns: predicted)")
    confusion.add_column("")
    for index in range(len(labels)):
        confusion.add_column(str(index), justify="right")
    for index, (label, row) in enumerate(zip(labels, report.confusion, strict=True)):
        cells = [
            f"[bold green]{n}[/]" if j == index and n else (str(n) if n else ".") for j, n in enumerate(row)
        ]
        confusion.add_row(f"{index} {label}", *cells)
    console.print(confusion)

    if report.failed:
        console.print(f"[yellow]{len(report.failed)} videos could not be decoded[/] (listed in report.json)")
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(out / "report.json")
    save_confusion_png(
        report.confusion, labels, out / "confusion.png", title=f"{model.name}: {fusion} fusion, {crops} crops"
    )
    console.print(f"wrote {out / 'report.json'} and {out / 'confusion.png'} ({report.seconds:.1f} s)")
