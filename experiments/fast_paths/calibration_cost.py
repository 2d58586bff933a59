"""What the shared trunk's border calibration costs: the shipped model's shared-trunk graphs (share
"lower" and "branch") without and with models/fstcn-small.border.npz, timed round-robin in one run on
one request (5 clip pairs x 18 crops of a 128 x 171 frame sequence):

    python experiments/fast_paths/calibration_cost.py --repeats 9
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from fstcn.bench.core import interleaved
from fstcn.bench.runner import cpu_session
from fstcn.core.frames_graph import frame_feeds
from fstcn.model.export.calibration import calibration_beside
from fstcn.model.export.frames import example_frames
from fstcn.model.export.shared import export_trunk_graph

MODEL = Path("models/fstcn-small.onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench/calibration"))
    args = parser.parse_args()
    calibration = calibration_beside(MODEL)
    if calibration is None:
        raise SystemExit(f"no border calibration beside {MODEL}")
    args.cache.mkdir(parents=True, exist_ok=True)
    candidates, feeds = {}, None
    for share in ("lower", "branch"):
        for calibrated in (False, True):
            name = f"{share}{'_calibrated' if calibrated else ''}"
            result = export_trunk_graph(
                MODEL.with_suffix(".pt"),
                args.cache / f"{name}.onnx",
                share=share,
                calibration=calibration if calibrated else None,
            )
            if feeds is None:
                example = example_frames(result.meta, 128, 171, num_clips=5, seed=0)
                feeds = frame_feeds(example["frames"], example["times"], example["plan"], result.info, 18)
            session = cpu_session(result.onnx_path, args.threads)
            candidates[name] = lambda session=session, feeds=feeds: session.run(None, feeds)
    times = interleaved(candidates, args.repeats)
    report = {name: round(1000 * statistics.median(values), 1) for name, values in times.items()}
    for share in ("lower", "branch"):
        ratios = [a / b for a, b in zip(times[f"{share}_calibrated"], times[share], strict=True)]
        report[f"{share}_calibrated_vs_plain_time"] = round(statistics.median(ratios), 3)
        report[f"{share}_ratio_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
