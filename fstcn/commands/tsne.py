"""`fstcn tsne`: t-SNE of the spatial, temporal and fused features of a dataset's videos, with a
separability score per panel."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fstcn.commands import options


def command(
    data: Annotated[
        Path, typer.Argument(help="Dataset root (UCF101 / HMDB51 / folder layout).", metavar="DATA")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output PNG (tsne.json and tsne.npz beside it).")] = Path(
        "runs/tsne/tsne.png"
    ),
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="PyTorch checkpoint (.pt), or an exported .onnx whose NAME.pt twin is beside it "
            "(default: models/fstcn-small.pt).",
        ),
    ] = None,
    dataset_kind: options.DatasetKind = "auto",
    split: options.Split = 1,
    subset: options.Subset = None,
    limit_per_class: Annotated[
        int | None, typer.Option("--limit-per-class", help="At most K videos per class.", min=1)
    ] = None,
    clips: Annotated[
        int | None, typer.Option("--clips", help="Clip pairs per video (default: the model's).", min=1)
    ] = None,
    perplexity: Annotated[float, typer.Option("--perplexity", help="t-SNE perplexity.")] = 30.0,
    seed: Annotated[int, typer.Option("--seed", help="t-SNE random_state.")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda.")] = "cpu",
) -> None:
    """t-SNE of the features of DATA's videos (per video: mean over its clip pairs, centre crop) from the
    spatial path's last FC, the temporal path's last FC and the fusion FC, in three panels coloured by
    class. Scores per panel (leave-one-out 5-NN accuracy in the embedding and on the raw features,
    silhouette on the raw features) are printed, written into the panel titles and into a JSON beside
    the PNG; the features and embeddings go to an .npz beside it."""
    import logging

    import numpy as np
    from rich.table import Table

    from fstcn.commands.console import make_console
    from fstcn.model.datasets import load_dataset
    from fstcn.model.explain import load_explainer, write_json
    from fstcn.model.tsne import FEATURE_SETS, collect_features, run_tsne, save_tsne_png
    from fstcn.model.tsne import limit_per_class as limit_samples

    console = make_console()
    logging.basicConfig(level=logging.WARNING)
    subset, note = options.resolve_subset(subset, data, dataset_kind=dataset_kind, split=split)
    if note:
        console.print(note)
    runner = load_explainer(checkpoint, device=device)
    meta = runner.meta
    dataset = load_dataset(dataset_kind, data, split, subset)  # type: ignore[arg-type]
    if list(dataset.labels) != list(meta.labels):
        raise ValueError(f"dataset labels {list(dataset.labels)} differ from the model's {list(meta.labels)}")
    samples = limit_samples(dataset.samples, limit_per_class)
    if len(samples) < 3:
        raise ValueError(f"need at least 3 {subset} videos in {data}, found {len(samples)}")
    console.print(
        f"[bold]{meta.name}[/]: features of {len(samples)} {subset} videos of {data} "
        f"({clips or meta.sampling.num_clips} clip pairs each, centre crop)"
    )
    features, labels, failed = collect_features(samples, runner, num_clips=clips, progress=True)
    # The spinner shows only on a terminal; the line says what the next seconds are for everywhere.
    console.print(f"t-SNE of {len(labels)} videos x {len(features)} feature sets, then the scores and figure")
    with console.status("t-SNE"):
        result = run_tsne(features, labels, meta.labels, seed=seed, perplexity=perplexity)
    result.settings.update(
        {
            "data": str(data),
            "subset": subset,
            "split": split,
            "limit_per_class": limit_per_class,
            "clips": clips or meta.sampling.num_clips,
            "model": {"name": meta.name, "version": meta.version, "preset": meta.preset},
        }
    )
    png = save_tsne_png(result, out, title=f"{meta.name} ({meta.version}) on {data.name}: {subset}")
    report = result.to_dict()
    report["failed"] = failed
    json_path = write_json(report, out.with_suffix(".json"))
    arrays: dict[str, Any] = {"labels": result.labels, "label_names": np.asarray(result.label_names)}
    arrays.update({f"features_{name}": matrix for name, matrix in features.items()})
    arrays.update({f"embedding_{name}": matrix for name, matrix in result.embeddings.items()})
    np.savez_compressed(out.with_suffix(".npz"), **arrays)

    table = Table(title=f"separability ({result.settings['knn_k']}-NN leave-one-out, Euclidean)")
    table.add_column("features")
    table.add_column("k-NN acc (t-SNE)", justify="right")
    table.add_column("k-NN acc (features)", justify="right")
    table.add_column("silhouette (features)", justify="right")
    for name, score in result.scores.items():
        silhouette = "-" if score["silhouette"] is None else f"{score['silhouette']:.3f}"
        table.add_row(
            FEATURE_SETS.get(name, name),
            f"{score['knn_embedding']:.3f}",
            f"{score['knn_features']:.3f}",
            silhouette,
        )
    console.print(table)
    if failed:
        console.print(f"[yellow]{len(failed)} videos could not be decoded[/] (listed in {json_path.name})")
    console.print(f"wrote {png}, {json_path} and {out.with_suffix('.npz')}")
