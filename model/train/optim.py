"""The optimiser and the per-step learning-rate schedule of a stage.

`build_optimizer`: AdamW or Nesterov SGD, weight decay on weights of rank >= 2 only. `learning_rate`:
linear warm-up to the stage's peak, then cosine to 0 or steps of /10; the loop sets it before every step.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from fstcn.model.train.config import TrainConfig

__all__ = ["build_optimizer", "learning_rate"]


def build_optimizer(params: list[nn.Parameter], config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW (or Nesterov SGD) over `params` at learning rate `lr`."""
    # Weight decay only on weights of rank >= 2 (convs, FCs, P); biases and norm scales stay free.
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


def learning_rate(step: int, total_steps: int, peak: float, warmup_steps: int, schedule: str) -> float:
    """Linear warm-up to `peak`, then cosine to 0 (or /10 at 50% and 75% of the steps for "step")."""
    if total_steps <= 0:
        return peak
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return peak * (0.1 ** int(progress >= 0.5)) * (0.1 ** int(progress >= 0.75))
