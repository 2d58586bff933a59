"""`fstcn train`: train an FstCN (stage 1 then stage 2) on UCF101, HMDB51 or labelled folders.

Runs as one process or under torchrun (one process per GPU or CPU share):
`torchrun --standalone --nproc_per_node=2 -m fstcn.cli train ...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fstcn.commands import options


def command(
    data: Annotated[Path, typer.Option("--data", help="Dataset root.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: last.pt, best.pt, log.jsonl, frame cache.")],
    dataset_kind: options.DatasetKind = "auto",
    split: options.Split = 1,
    splits_dir: options.SplitsDir = None,
    test_root: options.TestRoot = None,
    holdout: options.Holdout = 0.2,
    preset: Annotated[str, typer.Option("--preset", help="Network preset: paper | small | tiny.")] = "small",
    paths: Annotated[
        str, typer.Option("--paths", help="both | spatial | temporal (the paper's control experiment).")
    ] = "both",
    epochs_stage1: Annotated[
        int, typer.Option("--epochs-stage1", help="Epochs of stage 1 (lower SCL + auxiliary classifier).")
    ] = 4,
    epochs_stage2: Annotated[
        int, typer.Option("--epochs-stage2", help="Epochs of stage 2 (whole network).")
    ] = 12,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per step and process.")] = 32,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adamw | sgd (Nesterov momentum).")] = "adamw",
    lr: Annotated[
        float, typer.Option("--lr", help="Peak learning rate (stage 1; stage 2 too by default).")
    ] = 2e-3,
    lr_stage2: Annotated[
        float | None, typer.Option("--lr-stage2", help="Peak learning rate of stage 2.")
    ] = None,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="On conv/FC weights only.")] = 0.05,
    schedule: Annotated[
        str, typer.Option("--schedule", help="cosine | step (/10 at 50% and 75%), after a linear warm-up.")
    ] = "cosine",
    warmup_epochs: Annotated[float, typer.Option("--warmup-epochs", help="Linear warm-up per stage.")] = 0.5,
    label_smoothing: Annotated[
        float, typer.Option("--label-smoothing", help="Cross-entropy smoothing.")
    ] = 0.1,
    aux_weight: Annotated[
        float, typer.Option("--aux-weight", help="Weight of the auxiliary frame loss in stage 2 (0: off).")
    ] = 0.0,
    scale_min: Annotated[
        float, typer.Option("--scale-min", help="Random crop side, as a fraction of the short side: min.")
    ] = 0.8,
    flip: Annotated[bool, typer.Option("--flip/--no-flip", help="Random horizontal flips.")] = True,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Seeded per-class hold-out of the training videos.")
    ] = 0.1,
    val_on_test: Annotated[
        bool, typer.Option("--val-on-test", help="Validate (best.pt) on the test list instead.")
    ] = False,
    val_clips: Annotated[
        int, typer.Option("--val-clips", help="Clip pairs per validation video (centre crop).")
    ] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialisation, order and augmentation.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue exactly from OUT/last.pt.")] = False,
    init_from: Annotated[
        list[Path] | None,
        typer.Option(
            "--init-from",
            metavar="CHECKPOINT",
            help="Start from this checkpoint's weights (same preset) with a fresh optimiser and schedule: "
            "fine-tuning, or more epochs after a finished run. Every tensor whose name and shape fit is "
            "copied (classifiers only when the labels are the same); repeat the option to fill what the "
            "first file lacks from the next.",
        ),
    ] = None,
    freeze: Annotated[
        list[str] | None,
        typer.Option(
            "--freeze",
            metavar="MODULE",
            help="Keep the parameters under this module name as they are (e.g. lower, temporal, "
            "spatial; repeatable); their BatchNorm statistics stay fixed too.",
        ),
    ] = None,
    drop_spatial_path: Annotated[
        float,
        typer.Option(
            "--drop-spatial-path",
            help="Stage 2: probability that a sample's spatial-path features are zeroed before the "
            "fusion, so that the temporal path must classify it alone (path dropout).",
        ),
    ] = 0.0,
    reverse_pair: Annotated[
        list[str] | None,
        typer.Option(
            "--reverse-pair",
            metavar="A:B",
            help="A:B, two classes that are each other played backwards (e.g. sit_down:stand_up; "
            "repeatable): stage 2 also trains on every A video reversed as B and every B video reversed "
            "as A, so that only the order of frames tells them apart. A:A: a class that is its own "
            "reversal (e.g. squat:squat), whose videos also train played backwards.",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda.")] = "cpu",
    threads: Annotated[
        int | None, typer.Option("--threads", help="Torch threads per process (default: cores / processes).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes per process.")] = 0,
    decode_workers: Annotated[
        int, typer.Option("--decode-workers", help="Processes decoding videos into the frame cache.")
    ] = 1,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Frame cache (default OUT/frame-cache; shareable).")
    ] = None,
    max_minutes: Annotated[
        float | None, typer.Option("--max-minutes", help="Stop (and save last.pt) after this wall time.")
    ] = None,
    max_videos_per_class: Annotated[
        int | None, typer.Option("--max-videos-per-class", help="Train on a seeded subset (quick runs).")
    ] = None,
    amp: Annotated[bool, typer.Option("--amp", help="bfloat16 autocast (CUDA).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")] = True,
) -> None:
    """Train FstCN: stage 1 (lower SCL + auxiliary frame classifier), then stage 2 (the whole network on
    clip pairs). Writes OUT/last.pt every epoch, OUT/best.pt by validation accuracy and OUT/log.jsonl;
    --resume continues exactly. Under torchrun it trains with DistributedDataParallel."""
    import logging
    import os

    from fstcn.commands.console import make_console
    from fstcn.model.train import TrainConfig, train

    console = make_console()
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = TrainConfig(
        data=str(data),
        out=str(out),
        dataset_kind=dataset_kind,
        split=split,
        splits_dir=str(splits_dir) if splits_dir is not None else None,
        test_root=str(test_root) if test_root is not None else None,
        holdout=holdout,
        preset=preset,
        paths=paths,
        epochs_stage1=epochs_stage1,
        epochs_stage2=epochs_stage2,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        lr_stage2=lr_stage2,
        weight_decay=weight_decay,
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing,
        aux_weight=aux_weight,
        scale_min=scale_min,
        flip=flip,
        val_fraction=val_fraction,
        val_on_test=val_on_test,
        val_clips=val_clips,
        seed=seed,
        resume=resume,
        init_from=tuple(str(path) for path in init_from or ()),
        freeze=tuple(freeze or ()),
        reverse_pairs=tuple(reverse_pair or ()),
        drop_spatial_path=drop_spatial_path,
        device=device,
        threads=threads,
        workers=workers,
        decode_workers=decode_workers,
        cache_dir=str(cache_dir) if cache_dir is not None else None,
        max_minutes=max_minutes,
        max_videos_per_class=max_videos_per_class,
        amp=amp,
        progress=progress,
    )
    result = train(config)
    if rank != 0:
        return
    state = "finished" if result.completed else "stopped by --max-minutes (resume with --resume)"
    use = f"use {result.checkpoint}"
    if result.best_val_accuracy is not None:
        use += f" (best validation accuracy {result.best_val_accuracy:.3f})"
    console.print(f"[bold]{state}[/]: stage {result.stage} epoch {result.epoch}; {use}")
