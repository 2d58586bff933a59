"""Which border calibration: the per-element affine map (`fstcn.model.export.calibration_fit`, "diag") or a
full per-position linear map (C x C + bias at each of the s x s window positions, "linear",
ridge-regularised), for both cuts (share="lower" and "branch")? Fits both on training videos, then counts
each variant's top-1 agreement with exact 18 crops (SCI, 5 clip pairs) on one folder, in PyTorch:

    python experiments/agreement/border_linear_study.py runs/r28-gpu/last.pt data/synth/train 200 \
        data/synth/select-s7 runs/border-linear-select.json
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fstcn.core.clips import crop_boxes, plan_clip_pairs
from fstcn.core.frames_graph import SHARE_DEPTHS, frame_feeds
from fstcn.core.fusion import fuse_scores
from fstcn.core.video.decode import decode_video, probe_video
from fstcn.model.checkpoint import build_model_from_checkpoint
from fstcn.model.export.calibration import PATHS
from fstcn.model.export.calibration_fit import (
    CROPS,
    exact_cut_values,
    fit_border_calibration,
    snapped_boxes,
    snapped_crops,
    training_videos,
)
from fstcn.model.export.plain import fold_batchnorm
from fstcn.model.export.shared import SharedTrunkGraph, graph_info, logits_above_cut

logger = logging.getLogger("border_linear_study")


class LinearCalibrated(SharedTrunkGraph):
    """The shared trunk with a per-position linear map (P, C + 1, C) on each path's windows."""

    def __init__(self, network: Any, meta: Any, share: str, weights: dict[str, Tensor]) -> None:
        super().__init__(network, meta, share)
        self.weights = weights

    def cut_windows(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        mapped = []
        for path, windows in zip(PATHS, super().cut_windows(*inputs), strict=True):
            n, channels, rows, cols = windows.shape
            weight = self.weights[path]  # (P, C + 1, C): the last row is the bias
            flat = windows.reshape(n, channels, rows * cols)  # (n, C, P)
            out = torch.einsum("ncp,pcd->ndp", flat, weight[:, :channels]) + weight[:, channels].T
            mapped.append(out.reshape(n, channels, rows, cols))
        return mapped[0], mapped[1]

    def forward(self, *inputs: Tensor) -> Tensor:
        """Both cuts through `cut_windows` (the branch cut's own forward gathers channels-last windows
        without it), so the linear map applies: probs (M*K, N)."""
        spatial_in, temporal_in = self.cut_windows(*inputs)
        return torch.softmax(logits_above_cut(self.network, self.share, spatial_in, temporal_in), dim=1)


def main() -> None:
    checkpoint, calibrate, count, folder, out = sys.argv[1:6]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(2)
    network, meta = build_model_from_checkpoint(checkpoint)
    network = fold_batchnorm(network).eval()
    info = graph_info(network, "shared", "lower")
    c, t, m = meta.crop_size, meta.sampling.clip_length, meta.sampling.num_clips
    plain = {share: SharedTrunkGraph(network, meta, share).eval() for share in SHARE_DEPTHS}

    def prepare(video: Path) -> tuple[list[Tensor], int, int]:
        probe = probe_video(video)
        plan = plan_clip_pairs(0.0, probe.duration_s - 1.0 / probe.fps, meta.sampling, m)
        decoded = decode_video(video, resize_short=meta.resize_short, times=plan.all_times())
        feeds = frame_feeds(decoded.frames, decoded.times, plan, info, CROPS)
        return [torch.from_numpy(feeds[name]) for name in info.inputs], *decoded.frames.shape[1:3]

    # normal equations of the per-position linear map, per cut and path: A (P, C+1, C+1), B (P, C+1, C)
    normal: dict[tuple[str, str], list[Tensor]] = {}
    videos = training_videos(calibrate, int(count))
    started = time.monotonic()
    with torch.inference_mode():
        for number, video in enumerate(videos, 1):
            inputs, height, width = prepare(video)
            frames = plain["lower"].network_frames(*inputs[:4])
            exact = exact_cut_values(
                network, *snapped_crops(frames, m, t, snapped_boxes(height, width, info, c), c)
            )
            for share, graph in plain.items():
                for path, windows in zip(PATHS, graph.cut_windows(*inputs), strict=True):
                    n, channels = windows.shape[:2]
                    x = windows.double().reshape(n, channels, -1).permute(2, 0, 1)  # (P, n, C)
                    x = torch.cat([x, torch.ones(x.shape[0], n, 1, dtype=x.dtype)], dim=2)
                    e = exact[share][path].double().reshape(n, channels, -1).permute(2, 0, 1)
                    a, b = x.transpose(1, 2) @ x, x.transpose(1, 2) @ e
                    if (share, path) in normal:
                        normal[(share, path)][0] += a
                        normal[(share, path)][1] += b
                    else:
                        normal[(share, path)] = [a, b]
            if number % 50 == 0:
                logger.info("linear fit: %d videos, %.0f s", number, time.monotonic() - started)
    weights: dict[str, dict[str, Tensor]] = {share: {} for share in SHARE_DEPTHS}
    for (share, path), (a, b) in normal.items():
        ridge = 1e-3 * torch.diagonal(a, dim1=1, dim2=2).mean(1).reshape(-1, 1, 1) * torch.eye(a.shape[1])
        weights[share][path] = torch.linalg.solve(a + ridge, b).float()
    diag = fit_border_calibration(network, meta, videos)

    graphs: dict[str, SharedTrunkGraph] = {}
    for share in SHARE_DEPTHS:
        graphs[share] = plain[share]
        graphs[f"{share}-diag"] = SharedTrunkGraph(network, meta, share, diag.cuts[share]).eval()
        graphs[f"{share}-linear"] = LinearCalibrated(network, meta, share, weights[share]).eval()
    tops: dict[str, list[int]] = {name: [] for name in ("exact", *graphs)}
    with torch.inference_mode():
        for number, video in enumerate(training_videos(folder, 10_000), 1):
            inputs, height, width = prepare(video)
            frames = plain["lower"].network_frames(*inputs[:4])
            boxes = [
                (box.top, width - c - box.left if box.flip else box.left, box.flip)
                for box in crop_boxes(height, width, c, CROPS)
            ]
            appearance, motion = snapped_crops(frames, m, t, boxes, c)  # exact boxes: nothing to snap
            probs = {
                "exact": torch.softmax(network(appearance, motion.reshape(m * CROPS, t, 3, c, c)), dim=1)
            }
            probs.update({name: graph(*inputs) for name, graph in graphs.items()})
            for name, p in probs.items():
                fused = fuse_scores(p.numpy().reshape(m, CROPS, -1), "sci").video_scores
                tops[name].append(int(np.argmax(fused)))
            if number % 50 == 0:
                logger.info("evaluation: %d videos", number)
    exact = np.array(tops["exact"])
    agreement = {
        name: float(np.mean(np.array(top) == exact)) for name, top in tops.items() if name != "exact"
    }
    logger.info("agreement with exact 18 crops: %s", agreement)
    Path(out).write_text(json.dumps({"videos": len(exact), "agreement": agreement}, indent=1) + "\n")


if __name__ == "__main__":
    main()
