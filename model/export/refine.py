"""Refine a border calibration on what the service decides, not on feature values.

`fstcn.model.export.calibration_fit` fits each window element's line `exact ~ scale * shared + shift` by least
squares on the cut features. Those lines treat every channel and position alike, while the decision
depends on a few directions of them. This module keeps the same form (so the exported graphs, the
`.border.npz` file and the service do not change) and tunes `scale` and `shift` by gradient descent so
that the shared trunk's per-crop class probabilities match the exact crops' ones (KL(exact || shared)),
with the network frozen: the exact path, and so the served model, stays what it is.

Everything below the cut is frozen as well, so each training clip's windows are computed once
(`collect_windows`, with the exact crops' probabilities from any `fstcn.core.scoring.Runner` of the
served model) and each step only runs the layers above the cut on them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fstcn.core.frames_graph import SHARE_DEPTHS, frame_feeds
from fstcn.core.meta import ModelMeta
from fstcn.core.scoring import Runner, clip_probs
from fstcn.model.export.calibration import PATHS, BorderCalibration, WindowCalibration
from fstcn.model.export.calibration_fit import CROPS, decoded_as_served
from fstcn.model.export.shared import SharedTrunkGraph, graph_info, logits_above_cut
from fstcn.model.network import FstCN

logger = logging.getLogger(__name__)


@dataclass
class WindowSet:
    """Cut windows and exact-crop probabilities of V videos, M clip pairs each, K = 18 crops.

    windows[share][path]: float16 (V*M*K, C, s, s) spatial, (V*M*K*T, C, s, s) temporal, rows in
    (video, clip, crop[, frame]) order; exact: float32 (V, M, K, N) softmax of the exact 18 crops.
    """

    windows: dict[str, dict[str, Tensor]]
    exact: Tensor
    names: list[str]
    clip_length: int

    @property
    def num_videos(self) -> int:
        return int(self.exact.shape[0])

    def clips(self, share: str, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Clip rows (B,) of the flat (V*M) clip index -> spatial (B*K, C, s, s), temporal
        (B*K*T, C, s, s) float32 windows, and exact probabilities (B, K, N)."""
        k, t = self.exact.shape[2], self.clip_length
        spatial = self.windows[share]["spatial"].unflatten(0, (-1, k))[rows].flatten(0, 1)
        temporal = self.windows[share]["temporal"].unflatten(0, (-1, k * t))[rows].flatten(0, 1)
        exact = self.exact.flatten(0, 1)[rows]
        return spatial.float(), temporal.float(), exact


def collect_windows(
    network: FstCN,
    meta: ModelMeta,
    videos: Sequence[str | Path],
    exact: Runner,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> WindowSet:
    """Decode each video as the service does (M clip pairs), cut the shared trunk's windows at both
    cuts and score the exact 18 crops with `exact` (a plain or exact-crops model of the same weights,
    through `fstcn.core.scoring.clip_probs`). Videos the service would refuse are skipped with a warning."""
    network = network.eval()
    graphs = {share: SharedTrunkGraph(network, meta, share).eval() for share in SHARE_DEPTHS}
    info = graph_info(network, "shared", "lower")
    parts: dict[str, dict[str, list[Tensor]]] = {s: {p: [] for p in PATHS} for s in SHARE_DEPTHS}
    exact_probs: list[Tensor] = []
    names: list[str] = []
    with torch.inference_mode():
        for number, decoded, plan in decoded_as_served(videos, meta, "border refinement"):
            feeds = frame_feeds(decoded.frames, decoded.times, plan, info, CROPS)
            inputs = [torch.from_numpy(feeds[name]) for name in info.inputs]
            for share, graph in graphs.items():
                for path, cut in zip(PATHS, graph.cut_windows(*inputs), strict=True):
                    parts[share][path].append(cut.half())
            exact_probs.append(torch.from_numpy(clip_probs(exact, decoded, plan, CROPS)))  # (M, K, N)
            names.append(str(videos[number - 1]))
            if progress is not None:
                progress(number, len(videos))
    if not exact_probs:
        raise ValueError(f"none of the {len(videos)} videos could be decoded")
    windows = {s: {p: torch.cat(parts[s][p]) for p in PATHS} for s in SHARE_DEPTHS}
    return WindowSet(windows, torch.stack(exact_probs), names, meta.sampling.clip_length)


class CalibratedUpper(torch.nn.Module):
    """The layers above one cut with a trainable per-element affine map on the windows in front:
    windows (B*K, C, s, s), (B*K*T, C, s, s) -> log-probabilities (B*K, N). The network is frozen."""

    def __init__(self, network: FstCN, calibration: WindowCalibration) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.share = calibration.share
        self.scale = torch.nn.ParameterDict(
            {p: torch.nn.Parameter(torch.from_numpy(calibration.scale[p].copy())) for p in PATHS}
        )
        self.shift = torch.nn.ParameterDict(
            {p: torch.nn.Parameter(torch.from_numpy(calibration.shift[p].copy())) for p in PATHS}
        )

    def forward(self, spatial_in: Tensor, temporal_in: Tensor) -> Tensor:
        spatial_in = spatial_in * self.scale["spatial"] + self.shift["spatial"]
        temporal_in = temporal_in * self.scale["temporal"] + self.shift["temporal"]
        return F.log_softmax(logits_above_cut(self.network, self.share, spatial_in, temporal_in), dim=1)

    def calibration(self, template: WindowCalibration) -> WindowCalibration:
        return replace(
            template,
            scale={p: self.scale[p].detach().numpy().astype(np.float32) for p in PATHS},
            shift={p: self.shift[p].detach().numpy().astype(np.float32) for p in PATHS},
        )


def shared_probs(upper: CalibratedUpper, data: WindowSet, batch_clips: int = 16) -> Tensor:
    """float64 (V, M, K, N) shared-trunk probabilities of every clip of `data` under `upper`."""
    v, m, k, n = data.exact.shape
    out = []
    with torch.inference_mode():
        for start in range(0, v * m, batch_clips):
            rows = torch.arange(start, min(start + batch_clips, v * m))
            spatial, temporal, _ = data.clips(upper.share, rows)
            out.append(upper(spatial, temporal).exp().double())
    return torch.cat(out).reshape(v, m, k, n)


@dataclass(frozen=True)
class RefineOptions:
    """How `refine_calibration` trains: Adam at `lr` with a cosine schedule over `epochs` passes of
    `batch_clips` clip pairs (18 crops each) per step."""

    epochs: int = 4
    lr: float = 3e-3
    batch_clips: int = 8
    seed: int = 0


def refine_calibration(
    network: FstCN,
    calibration: WindowCalibration,
    train: WindowSet,
    options: RefineOptions = RefineOptions(),
    on_epoch: Callable[[int, float, CalibratedUpper], None] | None = None,
) -> WindowCalibration:
    """Tune `calibration`'s scale and shift on `train` to minimise the mean per-crop KL(exact || shared);
    `on_epoch(epoch, mean loss, upper)` after each epoch."""
    epochs, batch_clips = options.epochs, options.batch_clips
    torch.manual_seed(options.seed)
    upper = CalibratedUpper(network, calibration)
    params = list(upper.scale.values()) + list(upper.shift.values())
    optimizer = torch.optim.Adam(params, lr=options.lr)
    clips = train.num_videos * train.exact.shape[1]
    steps_per_epoch = math.ceil(clips / batch_clips)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(clips)
        total = 0.0
        for step in range(steps_per_epoch):
            rows = order[step * batch_clips : (step + 1) * batch_clips]
            spatial, temporal, exact = train.clips(upper.share, rows)
            log_shared = upper(spatial, temporal)  # (B*K, N)
            target = exact.flatten(0, 1).clamp_min(1e-12)  # (B*K, N)
            loss = F.kl_div(log_shared, target, reduction="batchmean")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        if on_epoch is not None:
            on_epoch(epoch, total / steps_per_epoch, upper)
    return upper.calibration(calibration)


def decision_kl(upper: CalibratedUpper, data: WindowSet) -> float:
    """Mean per-crop KL(exact || shared) of `upper` over every crop of `data`."""
    shared = shared_probs(upper, data).clamp_min(1e-12)
    exact = data.exact.double().clamp_min(1e-12)
    return float((exact * (exact.log() - shared.log())).sum(-1).mean())


def refine_border_calibration(
    network: FstCN, calibration: BorderCalibration, data: WindowSet, options: RefineOptions = RefineOptions()
) -> BorderCalibration:
    """`refine_calibration` of both cuts of `calibration` on `data`; each cut records its per-crop KL to
    exact crops on `data` before and after (`WindowCalibration.decision_kl`)."""
    cuts = {}
    for share, cut in calibration.cuts.items():
        before = decision_kl(CalibratedUpper(network, cut), data)
        refined = refine_calibration(network, cut, data, options)
        after = decision_kl(CalibratedUpper(network, refined), data)
        logger.info("border refinement (%s): per-crop KL to exact crops %.4f -> %.4f", share, before, after)
        cuts[share] = replace(refined, decision_kl=(before, after))
    return replace(calibration, cuts=cuts, refine_epochs=options.epochs)
