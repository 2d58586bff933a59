"""`fstcn export`: checkpoint -> verified, self-describing ONNX file (+ its PyTorch twin NAME.pt)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def command(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Training checkpoint (.pt) to export.")],
    out: Annotated[Path, typer.Option("--out", help="Output ONNX file, e.g. models/NAME.onnx.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Model name in the metadata (default: file stem).")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Model version in the metadata (default: epoch<N>).")
    ] = None,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="float16 weights and compute for GPUs; float32 inputs/outputs.")
    ] = False,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (>= 17).", min=17)] = 17,
    lrn: Annotated[
        str,
        typer.Option(
            "--lrn",
            help="How LRN layers (the paper preset's) are written: node = ONNX's LRN operator (fast on "
            "GPUs), expanded = PyTorch's Pow-Pad-AveragePool expansion (faster on ONNX Runtime's CPU).",
        ),
    ] = "node",
    video: Annotated[
        list[Path] | None,
        typer.Option(
            "--video", help="Real video(s) for the verification batch (repeatable).", metavar="VIDEO"
        ),
    ] = None,
    write_checkpoint: Annotated[
        bool, typer.Option("--write-checkpoint/--no-write-checkpoint", help="Also write NAME.pt beside it.")
    ] = True,
    calibrate_shared: Annotated[
        Path | None,
        typer.Option(
            "--calibrate-shared",
            help="Folder of training videos: fit the shared trunk's border calibration on them and write "
            "NAME.border.npz beside the ONNX file (used by the shared-trunk fast graphs).",
        ),
    ] = None,
    calibration_videos: Annotated[
        int,
        typer.Option(
            "--calibration-videos", help="Videos for --calibrate-shared (spread over classes).", min=1
        ),
    ] = 200,
    refine_epochs: Annotated[
        int,
        typer.Option(
            "--refine-epochs",
            help="Epochs of tuning the calibration on the decision (per-crop KL to exact crops, the network "
            "frozen) after its least-squares fit; 0 = the least-squares lines only.",
            min=0,
        ),
    ] = 4,
    keep_plain: Annotated[
        bool,
        typer.Option(
            "--keep-plain",
            help="--out is an existing plain export of --checkpoint: keep it as it is and add only the "
            "calibration and fast graphs beside it (--name, --version, --fp16, --opset, --lrn, --video "
            "do nothing).",
        ),
    ] = False,
    fast_graphs: Annotated[
        str,
        typer.Option(
            "--fast-graphs",
            help="Also write the fast-path frames graphs beside it (after the calibration, which they "
            "use): NAME.frames.onnx (exact crops) and NAME.trunk.onnx sharing the whole-frame work up to "
            "'lower' (the lower SCL) or 'branch' (the branch convs too: faster); 'none' = neither.",
        ),
    ] = "none",
) -> None:
    """Export a checkpoint to ONNX (softmax probs, dynamic batch, metadata key "fstcn"), verify it with
    ONNX Runtime against PyTorch (max |dp| <= 1e-4, fp16: 1e-2) and write NAME.pt (fp16 weights) beside it.
    With --calibrate-shared, also fit the shared trunk's border calibration (NAME.border.npz) and refine
    it on the decision for --refine-epochs epochs; with --fast-graphs, write the frames graphs the
    service serves fastest (docs/performance.md)."""
    import logging

    from rich.console import Console

    from fstcn.model.export import ExportVerificationError, export_bundle
    from fstcn.model.export.workflow import FAST_GRAPHS

    console = Console()
    logging.basicConfig(level=logging.WARNING)
    if fast_graphs not in FAST_GRAPHS:
        choices = ", ".join(FAST_GRAPHS)
        console.print(f"[bold red]error[/]: --fast-graphs must be one of {choices}, got {fast_graphs!r}")
        raise typer.Exit(code=2)
    try:
        with console.status(f"exporting {checkpoint} -> {out}") as status:
            bundle = export_bundle(
                checkpoint,
                out,
                export_plain=not keep_plain,
                name=name,
                version=version,
                fp16=fp16,
                opset=opset,
                lrn=lrn,
                videos=video or (),
                write_checkpoint=write_checkpoint,
                calibrate=calibrate_shared,
                calibration_videos=calibration_videos,
                refine_epochs=refine_epochs,
                fast_graphs=fast_graphs,
                progress=status.update,
            )
    except ExportVerificationError as error:
        console.print(f"[bold red]export verification failed[/]: {error}")
        raise typer.Exit(code=1) from error
    except (ValueError, FileNotFoundError) as error:
        console.print(f"[bold red]error[/]: {error}")
        raise typer.Exit(code=2) from error
    result = bundle.plain
    if result is None:  # --keep-plain
        console.print(f"[bold green]kept[/] {out}")
    else:
        _print_plain(console, result)
    if bundle.calibration is not None:
        for share, cut in bundle.calibration.cuts.items():
            fits = ", ".join(
                f"{p} {cut.mse_before[p]:.4f} -> {cut.mse_after[p]:.4f}" for p in ("spatial", "temporal")
            )
            console.print(
                f"  border calibration ({share} cut), mean squared difference to exact crops: {fits}"
            )
            if cut.decision_kl is not None:
                before, after = cut.decision_kl
                console.print(f"    refined: per-crop KL to exact crops {before:.4f} -> {after:.4f}")
        console.print(f"  border calibration: {bundle.calibration_path}")
    for mode, graph in bundle.fast_graphs.items():
        console.print(
            f"  {mode} frames graph: {graph.onnx_path} (max |dp| {max(graph.max_abs_diff.values()):.2g})"
        )


def _print_plain(console: Any, result: Any) -> None:
    """The exported plain graph, its verification and its PyTorch twin."""
    meta = result.meta
    console.print(
        f"[bold green]exported[/] {result.onnx_path} ({result.onnx_path.stat().st_size / 1e6:.2f} MB, "
        f"{meta.precision}, opset {result.opset}): {meta.name} {meta.version}, preset {meta.preset}, "
        f"{meta.num_classes} classes, crop {meta.crop_size}/{meta.resize_short}"
    )
    for check, diff in result.max_abs_diff.items():
        console.print(
            f"  verified {check}: max |p_onnx - p_torch| = {diff:.2e} (tolerance {result.tolerance:g})"
        )
    if result.checkpoint_path is not None:
        size = result.checkpoint_path.stat().st_size / 1e6
        console.print(f"  checkpoint for explain/tsne: {result.checkpoint_path} ({size:.2f} MB)")
