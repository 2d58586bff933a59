"""Border calibration of the shared trunk: can a per-position, per-channel affine map on the cut windows
bring the shared trunk's answers closer to exact 18 crops?

A window cut from the whole-frame trunk map sees the frame around its crop where an exact crop's convs
saw zero padding; the difference is largest on the window's outer ring. This fits, on training videos,
for each path (appearance, V_diff) and each (channel, row, column) of the s x s window, the least-squares
line  exact_snapped ~ a * shared + b, where exact_snapped is the lower SCL run on the exact crop at the
shared trunk's snapped offset (so that the fit sees the border effect only, not the snap). It then
counts, on each evaluation folder, how often the shared trunk without and with the calibration picks
the same top-1 class as exact 18 crops (SCI fusion, 5 clip pairs), all in PyTorch:

    python experiments/agreement/border_calibration.py runs/r28-gpu/last.pt \
        --calibrate data/synth/train --calibrate-videos 100 \
        --evaluate data/synth/select-s7 --evaluate data/synth/test --out runs/border-calibration.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from model.checkpoint import build_model_from_checkpoint
from model.clips import crop_boxes, plan_clip_pairs
from model.export import fold_batchnorm
from model.fastpaths import SharedTrunkGraph, graph_info
from model.frames_graph import frame_feeds, snapped_offsets
from service.fusion import fuse_scores
from service.video.decode import decode_video, probe_video

logger = logging.getLogger("border_calibration")
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov")
CROPS = 18


class CalibratedTrunkGraph(SharedTrunkGraph):
    """The shared trunk (share="lower") with `scale * window + shift` on each cut window (per path, each
    (C, s, s)); it keeps the last windows it cut (before calibration) in `captured`."""

    def __init__(
        self, network: Any, meta: Any, calibration: dict[str, tuple[Tensor, Tensor]] | None = None
    ) -> None:
        super().__init__(network, meta, "lower")
        self.calibration = calibration
        self.captured: dict[str, Tensor] = {}

    def _windows(self, maps: Tensor, outer: int, inner: int, crop_index: Tensor) -> Tensor:
        windows = super()._windows(maps, outer, inner, crop_index)  # (outer*K*inner, C, s, s)
        path = "spatial" if inner == 1 else "temporal"
        self.captured[path] = windows
        if self.calibration is None:
            return windows
        scale, shift = self.calibration[path]
        return windows * scale + shift


def videos_of(root: Path, limit: int | None) -> list[Path]:
    videos = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if limit is None or limit >= len(videos):
        return videos
    step = len(videos) / limit  # spread over the classes (the folders are sorted by class)
    return [videos[int(i * step)] for i in range(limit)]


def prepare(video: Path, meta: Any, info: Any) -> tuple[dict[str, Tensor], Any, int, int]:
    probe = probe_video(video)
    plan = plan_clip_pairs(0.0, probe.duration_s - 1.0 / probe.fps, meta.sampling, meta.sampling.num_clips)
    decoded = decode_video(video, resize_short=meta.resize_short, times=plan.all_times())
    feeds = frame_feeds(decoded.frames, decoded.times, plan, info, CROPS)
    height, width = decoded.frames.shape[1:3]
    return {name: torch.from_numpy(array) for name, array in feeds.items()}, plan, height, width


def exact_inputs(
    x: Tensor, m: int, t: int, boxes: list[tuple[int, int, bool]], c: int
) -> tuple[Tensor, Tensor]:
    """x (M + M*T, 3, H, W) normalised frames -> crops at `boxes` (top, left in the view, flipped view):
    appearance (M*K, 3, c, c), motion (M*K, T, 3, c, c), rows clip-major."""
    # a snapped window may reach past the frame's right or bottom edge: zeros there, as the convs pad
    bottom = max(top + c for top, _, _ in boxes) - x.shape[2]
    right = max(left + c for _, left, _ in boxes) - x.shape[3]
    x = torch.nn.functional.pad(x, (0, max(right, 0), 0, max(bottom, 0)))
    flipped = x.flip(3)
    crops = [(flipped if flip else x)[:, :, top : top + c, left : left + c] for top, left, flip in boxes]
    stacked = torch.stack(crops, dim=1)  # (n, K, 3, c, c)
    k = len(boxes)
    appearance = stacked[:m].reshape(m * k, 3, c, c)
    motion = stacked[m:].reshape(m, t, k, 3, c, c).permute(0, 2, 1, 3, 4, 5).reshape(m * k, t, 3, c, c)
    return appearance, motion


def exact_boxes(height: int, width: int, c: int) -> list[tuple[int, int, bool]]:
    """model.clips' 18 crops as (top, left in the view, flip): a flipped crop is the mirrored crop of the
    flipped frame."""
    return [
        (box.top, width - c - box.left if box.flip else box.left, box.flip)
        for box in crop_boxes(height, width, c, CROPS)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--calibrate", type=Path, required=True)
    parser.add_argument("--calibrate-videos", type=int, default=100)
    parser.add_argument("--evaluate", type=Path, action="append", required=True)
    parser.add_argument("--evaluate-videos", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)

    network, meta = build_model_from_checkpoint(args.checkpoint)
    network = fold_batchnorm(network).eval()
    info = graph_info(network, "shared", "lower")
    graph = CalibratedTrunkGraph(network, meta).eval()
    c, t, m = meta.crop_size, meta.sampling.clip_length, meta.sampling.num_clips

    # 1. fit: sums over calibration videos of s, e, s*s, s*e per path and (C, s, s) element
    sums: dict[str, dict[str, Tensor]] = {}
    count: dict[str, int] = {"spatial": 0, "temporal": 0}
    started = time.monotonic()
    with torch.inference_mode():
        for number, video in enumerate(videos_of(args.calibrate, args.calibrate_videos), 1):
            feeds, plan, height, width = prepare(video, meta, info)
            graph(*(feeds[name] for name in info.inputs))
            x = graph.network_frames(
                feeds["frames"], feeds["appearance_index"], feeds["clip_index"], feeds["diff_index"]
            )
            snapped = [
                (top, left, box.flip)
                for (top, left), box in zip(
                    snapped_offsets(height, width, info, CROPS),
                    crop_boxes(height, width, c, CROPS),
                    strict=True,
                )
            ]
            app, mot = exact_inputs(x, m, t, snapped, c)
            exact = {"spatial": network.lower(app), "temporal": network.lower(mot.reshape(-1, 3, c, c))}
            for path, target in exact.items():
                shared = graph.captured[path]  # same row order: (M, K) and (M, K, T)
                entry = sums.setdefault(
                    path,
                    {
                        k: torch.zeros(target.shape[1:], dtype=torch.float64)
                        for k in ("s", "e", "ss", "se", "ee")
                    },
                )
                s64, e64 = shared.double(), target.double()
                entry["s"] += s64.sum(0)
                entry["e"] += e64.sum(0)
                entry["ss"] += (s64 * s64).sum(0)
                entry["se"] += (s64 * e64).sum(0)
                entry["ee"] += (e64 * e64).sum(0)
                count[path] += target.shape[0]
            if number % 20 == 0:
                logger.info("calibration: %d videos, %.0f s", number, time.monotonic() - started)
    calibration: dict[str, tuple[Tensor, Tensor]] = {}
    report: dict[str, Any] = {"checkpoint": str(args.checkpoint), "calibrate": str(args.calibrate)}
    for path, entry in sums.items():
        n = count[path]
        var_s = entry["ss"] / n - (entry["s"] / n) ** 2
        cov = entry["se"] / n - (entry["s"] / n) * (entry["e"] / n)
        scale = torch.where(var_s > 1e-8, cov / var_s.clamp_min(1e-12), torch.ones_like(var_s))
        shift = entry["e"] / n - scale * entry["s"] / n
        mse_before = (entry["ee"] - 2 * entry["se"] + entry["ss"]) / n
        mse_after = (entry["ee"] / n - (entry["e"] / n) ** 2) - scale * cov  # residual of the fitted line
        ring = torch.ones_like(var_s, dtype=torch.bool)
        ring[:, 1:-1, 1:-1] = False
        report[path] = {
            "samples": n,
            "mse_before_ring": float(mse_before[ring].mean()),
            "mse_after_ring": float(mse_after[ring].mean()),
            "mse_before_inner": float(mse_before[~ring].mean()),
            "mse_after_inner": float(mse_after[~ring].mean()),
            "mean_square_exact": float((entry["ee"] / n).mean()),
        }
        calibration[path] = (scale.float(), shift.float())
        logger.info("%s: %s", path, report[path])

    # 2. agreement with exact 18 crops, without and with the calibration
    calibrated = CalibratedTrunkGraph(network, meta, calibration).eval()
    for root in args.evaluate:
        tops: dict[str, list[int]] = {"exact": [], "shared": [], "calibrated": []}
        labels: list[str] = []
        started = time.monotonic()
        with torch.inference_mode():
            for number, video in enumerate(videos_of(root, args.evaluate_videos), 1):
                feeds, plan, height, width = prepare(video, meta, info)
                inputs = [feeds[name] for name in info.inputs]
                x = graph.network_frames(*inputs[:4])
                app, mot = exact_inputs(x, m, t, exact_boxes(height, width, c), c)
                probs = {
                    "exact": torch.softmax(network(app, mot), dim=1),
                    "shared": graph(*inputs),
                    "calibrated": calibrated(*inputs),
                }
                for name, p in probs.items():
                    fused = fuse_scores(p.numpy().reshape(plan.num_clips, CROPS, -1), "sci").video_scores
                    tops[name].append(int(np.argmax(fused)))
                labels.append(video.parent.name)
                if number % 50 == 0:
                    logger.info("%s: %d videos, %.0f s", root, number, time.monotonic() - started)
        names = meta.labels
        exact_top = np.array(tops["exact"])
        result: dict[str, Any] = {"videos": len(labels)}
        for name, top in tops.items():
            top_array = np.array(top)
            result[f"accuracy_{name}"] = float(
                np.mean([names[i] == label for i, label in zip(top, labels, strict=True)])
            )
            if name != "exact":
                result[f"agreement_{name}"] = float(np.mean(top_array == exact_top))
        report[str(root)] = result
        logger.info("%s: %s", root, result)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
