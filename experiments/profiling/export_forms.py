"""The export forms of the plain ONNX graph, side by side in one run on ONNX Runtime's CPU provider, same
weights: as trained (PyTorch's own layout), and each of the two rewrites `fstcn.model.network` makes when
exporting, alone and together (the default):

- time-major TCL (`TemporalPath.onnx_time_major`): the T-P operator and the TCL on the transposed (T, C)
  plane, the first temporal FC taking its columns in that order. As the convs' width, T = l_t = 5 leaves
  MLAS's kernels mostly idle; transposed, the feature axis (64 for `small`) is the width.
- split lower SCL (`FstCN.onnx_split_lower`): the lower SCL runs on the appearance and the V_diff frames
  separately instead of on their concatenation (one request's 540 frames copied into one batch).

    python experiments/profiling/export_forms.py     # the shipped model, one request's 90 rows
    python experiments/profiling/export_forms.py --checkpoint runs/x/best.pt --rows 18

Prints each form's median run time and spread, its speed against "as trained" per interleaved round, the
TCL convs' and Concat kernels' time (ORT profiler, warm-up run left out) and the max |dp| between the forms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from fstcn.bench.core import interleaved, random_plain_feeds
from fstcn.bench.runner import cpu_session, measured_kernels
from fstcn.core.meta import PROBS_OUTPUT
from fstcn.model.checkpoint import build_model_from_checkpoint
from fstcn.model.export.plain import fold_batchnorm, onnx_graph

SHIPPED_CHECKPOINT = Path("models/fstcn-small.pt")
AS_TRAINED = "as trained"
# form -> (time-major TCL, split lower SCL)
FORMS = {
    AS_TRAINED: (False, False),
    "time-major TCL": (True, False),
    "split lower SCL": (False, True),
    "both (default)": (True, True),
}


def _kernel_ms(profile: Path) -> dict[str, float]:
    """Kernel milliseconds per run (warm-up left out) of the TCL's convs and of the Concat nodes."""
    totals = {"tcl": 0.0, "concat": 0.0}
    kernels, runs = measured_kernels(json.loads(profile.read_text()))
    for event in kernels:
        op = event["args"].get("op_name")
        if op == "Conv" and "branches." in event["name"]:  # the TCL's (fused) convs in every form
            totals["tcl"] += event["dur"]
        elif op == "Concat":
            totals["concat"] += event["dur"]
    return {name: total / 1000.0 / runs for name, total in totals.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--rows", type=int, default=90, help="clip-pair crops per run (90 = 5 clips x 18)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    network, meta = build_model_from_checkpoint(args.checkpoint)
    network = fold_batchnorm(network)
    assert network.temporal is not None, "the TCL belongs to the temporal path"
    graphs = {}
    for name, (time_major, split_lower) in FORMS.items():
        network.temporal.onnx_time_major = time_major
        network.onnx_split_lower = split_lower
        graphs[name] = onnx_graph(network, meta).SerializeToString()
    feeds = random_plain_feeds(args.rows, meta.crop_size, meta.sampling.clip_length)
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {
            name: cpu_session(graph, args.threads, profile=Path(tmp) / f"form{i}")
            for i, (name, graph) in enumerate(graphs.items())
        }
        outputs = {
            name: session.run([PROBS_OUTPUT], feeds)[0] for name, session in sessions.items()
        }  # warm-up
        # interleaved, so that every form sees the same machine load
        times = interleaved(
            {name: partial(session.run, [PROBS_OUTPUT], feeds) for name, session in sessions.items()},
            args.repeats,
            warmup=0,
        )
        kernels = {name: _kernel_ms(Path(s.end_profiling())) for name, s in sessions.items()}
    print(f"{args.checkpoint} ({meta.name} {meta.version}), {args.rows} rows, {args.threads} threads")
    baseline = times[AS_TRAINED]
    for name, values in times.items():
        ratios = sorted(b / v for b, v in zip(baseline, values, strict=True))
        diff = float(np.abs(outputs[name] - outputs[AS_TRAINED]).max())
        tcl, concat = kernels[name]["tcl"], kernels[name]["concat"]
        print(
            f"{name:>16}: median {1000 * statistics.median(values):6.1f} ms "
            f"[{1000 * min(values):.1f}-{1000 * max(values):.1f}], "
            f"speed {statistics.median(ratios):.2f}x [{ratios[0]:.2f}-{ratios[-1]:.2f}]; "
            f"TCL convs {tcl:.1f} ms, Concat {concat:.1f} ms; max |dp| {diff:.1e}"
        )


if __name__ == "__main__":
    main()
