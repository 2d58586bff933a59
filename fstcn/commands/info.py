"""`fstcn info`: the layer table of a preset (output shapes, parameters, MACs) and its parameter count."""

from __future__ import annotations

from typing import Annotated

import typer


def command(
    preset: Annotated[str, typer.Option("--preset", help="paper | small | tiny.")] = "small",
    num_classes: Annotated[int, typer.Option("--num-classes", help="Classifier size.", min=2)] = 10,
) -> None:
    """Print a preset's layers with output shapes for one clip pair, ending with `total parameters: <N>`
    (exported parts only: the stage-1 auxiliary classifier is not counted)."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from fstcn.core.presets import PRESETS
    from fstcn.model.network import fstcn, layer_summary

    if preset not in PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    with torch.device("meta"):  # shapes only: no memory for the paper preset's 0.8 GB of weights
        model = fstcn(preset=preset, num_classes=num_classes)
    rows = layer_summary(model, batch_size=1, device="meta")
    config = model.config
    frames = 1 + config.clip_length
    table = Table(
        title=f"FstCN {preset}: crop {config.crop_size} from short side {config.resize_short}, "
        f"l_t={config.clip_length}, norm={config.norm}, paths={config.paths}",
        caption=f"one clip pair; the lower SCL runs on {frames} frames (appearance + {frames - 1} V_diff)",
    )
    table.add_column("layer")
    table.add_column("type")
    table.add_column("output shape")
    table.add_column("parameters", justify="right")
    table.add_column("MMACs", justify="right")
    for row in rows:
        shape = "(" + ", ".join(str(d) for d in row.output_shape) + ")"
        mmacs = f"{row.macs / 1e6:,.2f}" if row.macs else ""
        table.add_row(row.name, row.kind, shape, f"{row.parameters:,}" if row.parameters else "", mmacs)
    console = Console()
    if console.width < 110:  # pipes and narrow terminals: keep layer names and shapes on one line
        console = Console(width=110)
    console.print(table)
    aux = sum(p.numel() for p in model.aux_classifier.parameters())
    macs = sum(r.macs for r in rows)
    console.print(f"per clip pair: {macs / 1e9:.3f} GMACs = {2 * macs / 1e9:.3f} GFLOPs (convs, FCs, P)")
    console.print(f"auxiliary classifier (training only, not counted): {aux:,} parameters")
    console.print(f"total parameters: {model.num_exported_parameters()}", highlight=False)
