"""Border calibration of the shared trunk, side by side: how often do the shared trunk without and with
its border calibration (`fstcn.model.export.calibration_fit`) pick the same top-1 class as exact 18 crops?

Fits the calibration on training videos (as `fstcn export --calibrate-shared` does), then, per
evaluation folder, runs exact 18 crops (the plain network on `fstcn.core.clips` crops), the shared trunk and
the calibrated shared trunk (share="lower", PyTorch) on every video and fuses each (SCI, 5 clip pairs):

    python experiments/agreement/border_calibration.py runs/r28-gpu/last.pt \
        --calibrate data/synth/train --calibrate-videos 200 \
        --evaluate data/synth/select-s7 --evaluate data/synth/test --out runs/border-calibration-r28.json
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

from fstcn.core.clips import crop_boxes, plan_clip_pairs
from fstcn.core.frames_graph import frame_feeds
from fstcn.core.fusion import fuse_scores
from fstcn.core.video.decode import decode_video, probe_video
from fstcn.model.checkpoint import build_model_from_checkpoint
from fstcn.model.export.calibration_fit import fit_border_calibration, snapped_crops, training_videos
from fstcn.model.export.plain import fold_batchnorm
from fstcn.model.export.shared import SharedTrunkGraph, graph_info

logger = logging.getLogger("border_calibration")
CROPS = 18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--calibrate", type=Path, required=True)
    parser.add_argument("--calibrate-videos", type=int, default=200)
    parser.add_argument("--evaluate", type=Path, action="append", required=True)
    parser.add_argument("--evaluate-videos", type=int, default=10_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    network, meta = build_model_from_checkpoint(args.checkpoint)
    network = fold_batchnorm(network).eval()
    videos = training_videos(args.calibrate, args.calibrate_videos)
    calibration = fit_border_calibration(network, meta, videos, data=str(args.calibrate))
    report: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "calibrate": str(args.calibrate),
        "calibrate_videos": len(videos),
        "fit": {
            share: {"mse_before": c.mse_before, "mse_after": c.mse_after}
            for share, c in calibration.cuts.items()
        },
    }
    graphs = {
        "shared": SharedTrunkGraph(network, meta, "lower").eval(),
        "calibrated": SharedTrunkGraph(network, meta, "lower", calibration.cuts["lower"]).eval(),
    }
    info = graph_info(network, "shared", "lower")
    c, t, m = meta.crop_size, meta.sampling.clip_length, meta.sampling.num_clips
    for root in args.evaluate:
        tops: dict[str, list[int]] = {"exact": [], "shared": [], "calibrated": []}
        labels: list[str] = []
        started = time.monotonic()
        with torch.inference_mode():
            for number, video in enumerate(training_videos(root, args.evaluate_videos), 1):
                probe = probe_video(video)
                plan = plan_clip_pairs(0.0, probe.duration_s - 1.0 / probe.fps, meta.sampling, m)
                decoded = decode_video(video, resize_short=meta.resize_short, times=plan.all_times())
                height, width = decoded.frames.shape[1:3]
                feeds = frame_feeds(decoded.frames, decoded.times, plan, info, CROPS)
                inputs = [torch.from_numpy(feeds[name]) for name in info.inputs]
                frames = graphs["shared"].network_frames(*inputs[:4])
                # exact crops: a flipped crop is the mirrored crop of the flipped frame
                boxes = [
                    (box.top, width - c - box.left if box.flip else box.left, box.flip)
                    for box in crop_boxes(height, width, c, CROPS)
                ]
                appearance, motion = snapped_crops(frames, m, t, boxes, c)  # the boxes as given: not snapped
                probs = {
                    "exact": torch.softmax(network(appearance, motion.reshape(m * CROPS, t, 3, c, c)), dim=1),
                    **{name: graph(*inputs) for name, graph in graphs.items()},
                }
                for name, p in probs.items():
                    fused = fuse_scores(p.numpy().reshape(m, CROPS, -1), "sci").video_scores
                    tops[name].append(int(np.argmax(fused)))
                labels.append(video.parent.name)
                if number % 50 == 0:
                    logger.info("%s: %d videos, %.0f s", root, number, time.monotonic() - started)
        exact_top = np.array(tops["exact"])
        result: dict[str, Any] = {"videos": len(labels)}
        for name, top in tops.items():
            predicted = [meta.labels[i] for i in top]
            result[f"accuracy_{name}"] = float(
                np.mean([p == label for p, label in zip(predicted, labels, strict=True)])
            )
            if name != "exact":
                result[f"agreement_{name}"] = float(np.mean(np.array(top) == exact_top))
        report[str(root)] = result
        logger.info("%s: %s", root, result)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
