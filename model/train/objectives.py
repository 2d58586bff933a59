"""What each stage of a run optimises, and which parameters it may change.

Stage 1 (`FrameObjective`): the lower SCL and the auxiliary classifier as a single-frame classifier.
Stage 2 (`PairObjective`): the whole network on clip pairs, optionally with the auxiliary frame loss at a
small weight and with the spatial path dropped for some samples. `stage_loss` is the label-smoothed
cross entropy of either. `stage_objective` picks the trainable parameters: those the objective really
uses (DDP needs every trainable parameter in the loss) and not frozen (`--freeze` prefixes); frozen
modules also keep their BatchNorm statistics and dropout as in eval (`train_mode`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from fstcn.core.meta import ModelMeta
from fstcn.model.train.config import TrainConfig

__all__ = [
    "FrameObjective",
    "PairObjective",
    "check_freeze",
    "stage_loss",
    "stage_objective",
    "train_mode",
    "under",
    "used_parameters",
]


def under(name: str, module: str) -> bool:
    """Whether the dotted parameter/module `name` is `module` or lies inside it ("lower.conv1" in "lower")."""
    return name == module or name.startswith(module + ".")


class FrameObjective(nn.Module):
    """Stage 1: the auxiliary classifier on single frames (B, 3, c, c) -> logits (B, N)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.frame_logits(frames)  # type: ignore[operator,no-any-return]


class PairObjective(nn.Module):
    """Stage 2: (appearance (B,3,c,c), motion (B,T,3,c,c)) -> (logits (B,N), aux logits (B,N) | None)."""

    def __init__(self, model: nn.Module, with_aux: bool, drop_spatial_path: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.with_aux = with_aux
        self.drop_spatial_path = drop_spatial_path

    def forward(
        self, appearance: torch.Tensor, motion: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        drop = None
        if self.training and self.drop_spatial_path > 0:  # (B,) bool, from torch's per-epoch generator
            drop = torch.rand(appearance.shape[0], device=appearance.device) < self.drop_spatial_path
        logits = self.model(appearance, motion, drop)
        aux = self.model.frame_logits(appearance) if self.with_aux else None
        return logits, aux


def used_parameters(objective: nn.Module, inputs: Sequence[torch.Tensor]) -> set[str]:
    """Names of the parameters that receive a gradient from `objective(*inputs)` (a dry run in eval mode).

    DDP needs every trainable parameter to take part in the loss; stage 1 touches only the lower SCL and
    the auxiliary head, and `--paths spatial|temporal` leaves a whole path out.
    """
    was_training = objective.training
    objective.eval()
    for parameter in objective.parameters():
        parameter.requires_grad_(True)
        parameter.grad = None
    with torch.enable_grad():
        outputs = objective(*inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        total = sum(output.float().sum() for output in outputs if output is not None)
        assert isinstance(total, torch.Tensor)
        total.backward()
    names = {name for name, p in objective.named_parameters() if p.grad is not None}
    for parameter in objective.parameters():
        parameter.grad = None
    objective.train(was_training)
    return names


def stage_objective(
    model: nn.Module, meta: ModelMeta, config: TrainConfig, stage: int, device: torch.device
) -> tuple[nn.Module, list[nn.Parameter]]:
    """The objective of `stage` over `model`, and its trainable parameters (`requires_grad` set on all)."""
    if stage == 1:
        objective: nn.Module = FrameObjective(model)
        inputs: tuple[torch.Tensor, ...] = (_example_inputs(meta, device)[0],)
    else:
        objective = PairObjective(
            model, with_aux=config.aux_weight > 0, drop_spatial_path=config.drop_spatial_path
        )
        inputs = _example_inputs(meta, device)
    used = used_parameters(objective, inputs)
    trainable = []
    for name, parameter in objective.named_parameters():
        train_it = name in used and not _frozen(name.removeprefix("model."), config.freeze)
        parameter.requires_grad_(train_it)
        if train_it:
            trainable.append(parameter)
    if not trainable:
        raise ValueError(f"--freeze {', '.join(config.freeze)} leaves nothing to train in stage {stage}")
    return objective, trainable


def stage_loss(
    stage: int,
    objective: nn.Module,
    inputs: Sequence[torch.Tensor],
    labels: torch.Tensor,
    config: TrainConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits (B, N)) of one batch: stage 1 frames (B, 3, c, c), stage 2 appearance and motion."""
    smoothing = config.label_smoothing
    if stage == 1:
        logits = objective(*inputs)
        return F.cross_entropy(logits.float(), labels, label_smoothing=smoothing), logits
    logits, aux = objective(*inputs)
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
    if aux is not None:
        aux_loss = F.cross_entropy(aux.float(), labels, label_smoothing=smoothing)
        loss = loss + config.aux_weight * aux_loss
    return loss, logits


def train_mode(module: nn.Module, model: nn.Module, freeze: Sequence[str]) -> None:
    """`module` (the model or an objective over it) in training mode, except that the frozen parts of
    `model` keep BatchNorm statistics and dropout as in eval."""
    module.train()
    for name, sub in model.named_modules():
        if name and _frozen(name, freeze):
            sub.eval()


def check_freeze(model: nn.Module, freeze: Sequence[str]) -> None:
    """Every `--freeze` prefix must name a module of `model` (ValueError)."""
    modules = [name for name, _ in model.named_modules() if name]
    unknown = [p for p in freeze if not any(under(n, p) for n in modules)]
    if unknown:
        tops = sorted({name.split(".")[0] for name in modules})
        raise ValueError(f"--freeze {', '.join(unknown)}: no such module (this model has {', '.join(tops)})")


def _frozen(name: str, freeze: Sequence[str]) -> bool:
    return any(under(name, prefix) for prefix in freeze)


def _example_inputs(meta: ModelMeta, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero inputs of the network for the dry run: appearance (2, 3, c, c), motion (2, T, 3, c, c)."""
    c = meta.crop_size
    appearance = torch.zeros(2, 3, c, c, device=device)
    motion = torch.zeros(2, meta.sampling.clip_length, 3, c, c, device=device)
    return appearance, motion
