"""Where the shared trunk's disagreement with exact 18 crops comes from: the snap or the crop borders.

For every n-th video of a folder it fuses (SCI and mean) the probabilities of exact crops, of exact
crops moved to the shared trunk's snapped offsets (the exact frames graph takes any crop boxes), and of
the shared trunk, and prints the top-1 agreement of each pair. Run after `fstcn bench` has exported the
fast graphs into its cache:

    python experiments/fast_paths/snap_study.py data/synth/test --every 8 \
        --exact .cache/bench/models/fstcn-small.frames.onnx \
        --shared .cache/bench/models/fstcn-small.trunk.onnx
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fstcn.core.clips import plan_clip_pairs
from fstcn.core.frames_graph import crop_box_array, frame_feeds, snapped_offsets
from fstcn.core.fusion import fuse_scores
from fstcn.core.video.decode import decode_video, probe_video
from fstcn.service.engine import Engine

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--exact", type=Path, required=True)
    parser.add_argument("--shared", type=Path, required=True)
    args = parser.parse_args()
    exact = Engine.load(args.exact, providers=["CPUExecutionProvider"])
    shared = Engine.load(args.shared, providers=["CPUExecutionProvider"])
    assert exact.graph is not None and shared.graph is not None
    meta, size = exact.meta, exact.meta.crop_size
    videos = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)[:: args.every]
    pairs = ("snapped_vs_exact", "shared_vs_exact", "shared_vs_snapped")
    agree = {f"{fusion}:{pair}": 0 for fusion in ("sci", "mean") for pair in pairs}
    for video in videos:
        info = probe_video(video)
        plan = plan_clip_pairs(0.0, info.duration_s - 1.0 / info.fps, meta.sampling, meta.sampling.num_clips)
        decoded = decode_video(video, resize_short=meta.resize_short, times=plan.all_times())
        height, width = decoded.frames.shape[1:3]
        feeds = frame_feeds(decoded.frames, decoded.times, plan, exact.graph, 18)
        boxes = crop_box_array(height, width, size, 18)
        snapped = np.array(snapped_offsets(height, width, shared.graph, 18))
        moved = boxes.copy()  # the snapped offsets back in frame coordinates, kept inside the frame
        moved[:, 0] = np.clip(snapped[:, 0], 0, height - size)
        moved[:, 1] = np.clip(
            np.where(boxes[:, 2] == 1, width - size - snapped[:, 1], snapped[:, 1]), 0, width - size
        )
        probs = {
            "exact": exact.infer_frames(feeds),
            "snapped": exact.infer_frames({**feeds, "crop_boxes": moved}),
            "shared": shared.infer_frames(frame_feeds(decoded.frames, decoded.times, plan, shared.graph, 18)),
        }
        for fusion in ("sci", "mean"):
            top = {
                name: int(np.argmax(fuse_scores(p.reshape(plan.num_clips, 18, -1), fusion).video_scores))
                for name, p in probs.items()
            }
            agree[f"{fusion}:snapped_vs_exact"] += top["snapped"] == top["exact"]
            agree[f"{fusion}:shared_vs_exact"] += top["shared"] == top["exact"]
            agree[f"{fusion}:shared_vs_snapped"] += top["shared"] == top["snapped"]
    print(json.dumps({"videos": len(videos), **{k: v / len(videos) for k, v in agree.items()}}, indent=1))


if __name__ == "__main__":
    main()
