"""`fstcn explain`: saliency maps of one video's decision, or the share of saliency on the figure over a
Synthetic Actions split (`--measure`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fstcn.commands import options


def command(
    video: Annotated[
        Path | None, typer.Argument(help="Video to explain (not with --measure).", metavar="VIDEO")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/explain"),
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="PyTorch checkpoint (.pt), or an exported .onnx whose NAME.pt twin is beside it "
            "(default: models/fstcn-small.pt).",
        ),
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="Class to explain (default: the predicted one).")
    ] = None,
    clips: Annotated[
        int | None, typer.Option("--clips", help="Clip pairs per video (default: the model's).", min=1)
    ] = None,
    crops: Annotated[
        int | None,
        typer.Option(
            "--crops", help="Crops for the prediction: 1 | 2 | 9 | 18 (default: 18; 1 with --measure)."
        ),
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="gradient (|d score / d input|) | gradient_x_input.")
    ] = "gradient",
    mask: Annotated[
        Path | None,
        typer.Option(
            "--mask", help="Figure masks .npz of this video (fstcn synth --masks): report the share."
        ),
    ] = None,
    measure: Annotated[
        Path | None,
        typer.Option("--measure", help="Synthetic Actions root written with --masks: measure over a split."),
    ] = None,
    subset: Annotated[
        str | None,
        typer.Option(
            "--subset",
            help="--measure: train | test (default: test, or train when DATA has only a training list).",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="--measure: only the first N videos.", min=1)
    ] = None,
    target: Annotated[
        str, typer.Option("--target", help="--measure: explain the predicted | true class.")
    ] = "predicted",
    examples: Annotated[
        int, typer.Option("--examples", help="--measure: also draw the grids of the first N videos.", min=0)
    ] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda.")] = "cpu",
) -> None:
    """Explain a prediction: the gradient of the class score (pre-softmax) with respect to the appearance
    frame and each V_diff frame of the most confident clip pair, as heat maps in OUT/NAME.png, and the
    prediction in OUT/NAME.json. With --measure DATA: the share of saliency mass inside the figure masks
    over a Synthetic Actions split vs the masks' area share (chance), in OUT/saliency_in_mask.json."""
    import logging

    from fstcn.commands.console import make_console
    from fstcn.model.explain import (
        SALIENCY_METHODS,
        explain_video,
        load_explainer,
        mask_mismatch,
        mask_shares,
        measure_saliency_in_masks,
        save_saliency_grid,
        write_json,
    )

    console = make_console()
    logging.basicConfig(level=logging.WARNING)
    if method not in SALIENCY_METHODS:
        raise typer.BadParameter(f"--method must be one of {', '.join(SALIENCY_METHODS)}")
    if crops is not None and crops not in (1, 2, 9, 18):
        raise typer.BadParameter("--crops must be 1, 2, 9 or 18")
    if (video is None) == (measure is None):
        raise typer.BadParameter("give either VIDEO or --measure DATA (not both)")
    if measure is not None:
        subset, note = options.resolve_subset(subset, measure, dataset_kind="auto", split=1)
        _check_masks(measure)
        if note:
            console.print(note)
    runner = load_explainer(checkpoint, device=device)
    meta = runner.meta
    if measure is not None:
        report = measure_saliency_in_masks(
            measure,
            runner,
            subset=subset or "test",
            limit=limit,
            num_clips=clips,
            num_crops=crops or 1,
            method=method,
            target=target,
            examples=examples,
            examples_dir=out / "examples",
            progress=True,
        )
        path = write_json(report, out / "saliency_in_mask.json")
        if not report["all"]["videos"]:
            reasons = report["skipped"][0]["reason"] if report["skipped"] else "the list is empty"
            console.print(f"wrote {path}")
            raise RuntimeError(f"measured no video of {measure} ({subset}): {reasons}")
        for part in ("all", "correct"):
            summary = report[part]
            console.print(f"[bold]{part}[/] videos: {summary['videos']}")
            for kind in ("appearance", "motion"):
                row = summary[kind]
                if row["share"]["n"]:
                    share, chance, lift = row["share"], row["chance"], row["lift"]
                    console.print(
                        f"  {kind:10s} share in figure mean {share['mean']:.3f} median "
                        f"{share['median']:.3f} | chance mean {chance['mean']:.3f} | lift median "
                        f"{lift['median']:.2f} | above chance {row['above_chance']:.0%}"
                    )
        if report["skipped"]:
            console.print(f"[yellow]{len(report['skipped'])} videos skipped[/] (listed in the JSON)")
        console.print(f"wrote {path}")
        return

    assert video is not None
    if not video.exists():
        raise FileNotFoundError(f"no such file: {video}")
    if video.is_dir():
        raise IsADirectoryError(21, "is a folder", str(video))
    explanation = explain_video(
        video, runner, label=label, num_clips=clips, num_crops=crops or 18, method=method
    )
    result: dict[str, Any] = {"video": str(video), "model": {"name": meta.name, "version": meta.version}}
    result.update(explanation.to_dict())
    if mask is not None:
        from fstcn.model.synth.dataset import load_masks

        masks = load_masks(mask)
        reason = mask_mismatch(explanation, masks)
        if reason:
            raise ValueError(f"masks {mask} do not fit {video}: {reason}")
        result["figure_mask"] = mask_shares(explanation, masks, meta.crop_size)
    png = save_saliency_grid(explanation, out / f"{video.stem}.png")
    path = write_json(result, out / f"{video.stem}.json")
    top = ", ".join(f"{row['label']} {row['score']:.2f}" for row in result["top5"])
    console.print(f"predicted [bold]{explanation.predicted}[/] (top-5: {top})")
    console.print(
        f"explained [bold]{explanation.target}[/] at clip pair {explanation.clip_index + 1}/"
        f"{explanation.num_clips} ({explanation.clip_times[0]:.2f}s-{explanation.diff_times[-1]:.2f}s), "
        f"centre crop: logit {explanation.target_logit:.2f}"
    )
    if "figure_mask" in result:
        shares = result["figure_mask"]
        console.print(
            f"saliency in the figure: appearance {shares['appearance_share']:.2f} "
            f"(chance {shares['appearance_chance']:.2f}), V_diff {shares['motion_share']:.2f} "
            f"(chance {shares['motion_chance']:.2f})"
        )
    console.print(f"wrote {png} and {path}")


def _check_masks(data: Path) -> None:
    """--measure needs a Synthetic Actions folder written with --masks: say which command writes one."""
    import json

    manifest = data / "synth.json"
    if not manifest.is_file():
        raise ValueError(
            f"{data} is not a Synthetic Actions folder (no synth.json); --measure needs one written with "
            f"`fstcn synth --out {data} --videos-per-class N --seed S --split test --masks`"
        )
    args = json.loads(manifest.read_text()).get("args", {})
    if not args.get("masks"):
        again = (
            f"fstcn synth --out {data} --videos-per-class {args.get('videos_per_class', 'N')} "
            f"--seed {args.get('seed', 'S')} --split {args.get('split', 'test')} "
            f"--difficulty {args.get('difficulty', 1.0)} --masks"
        )
        raise ValueError(f"{data} has no figure masks; write the same videos with them: `{again}`")
