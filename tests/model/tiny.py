"""A tiny-preset checkpoint with random weights, and its exported bundle, for the export and fast-path
tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fstcn.model.checkpoint import save_checkpoint
from fstcn.model.export import export_bundle
from fstcn.model.export.shared import export_trunk_graph
from fstcn.model.network import fstcn

LABELS = ["a", "b", "c", "d"]


def tiny_checkpoint(path: Path, **overrides: Any) -> Path:
    """A seeded `tiny` FstCN (config `overrides` applied) with moved BatchNorm statistics and spread
    logits (so that probabilities are not all ~1/N), saved to `path`."""
    torch.manual_seed(0)
    model = fstcn(preset="tiny", num_classes=len(LABELS), **overrides)
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    model.train()
    model(torch.randn(8, 3, 32, 32), torch.randn(8, 5, 3, 32, 32))  # move the BN statistics
    model.eval()
    return save_checkpoint(
        path, model=model, config=model.config, labels=LABELS, sampling=model.config.sampling, epoch=1
    )


def tiny_bundle(root: Path, **overrides: Any) -> tuple[Path, dict[str, Path]]:
    """A `tiny_checkpoint` (config `overrides`) exported into `root`: the plain graph tiny.onnx, and the
    frames graphs by form: "exact" (tiny.frames.onnx), "shared" (tiny.trunk.onnx, lower cut) and
    "branch" (tiny.trunk-branch.onnx)."""
    checkpoint = tiny_checkpoint(root / "ckpt.pt", **overrides)
    bundle = export_bundle(checkpoint, root / "tiny.onnx", write_checkpoint=False, fast_graphs="lower")
    paths = {mode: result.onnx_path for mode, result in bundle.fast_graphs.items()}
    paths["branch"] = export_trunk_graph(
        checkpoint, root / "tiny.trunk-branch.onnx", name="tiny", share="branch"
    ).onnx_path
    return bundle.plain_path, paths
