"""A tiny-preset checkpoint with random weights for the fast-path tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fstcn.model.checkpoint import save_checkpoint
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
