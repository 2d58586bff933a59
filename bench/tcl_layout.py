"""The T-P operator and TCL in ONNX: on the transposed (T, C) plane (the default export form) against the
(C, T) plane as PyTorch computes them, same weights, side by side in one run on ONNX Runtime's CPU provider.

    python -m bench.tcl_layout                                  # the shipped model, one request's 90 rows
    python -m bench.tcl_layout --checkpoint runs/x/best.pt --rows 18

The TCL's convs see a (C, T) plane with T = l_t = 5: as the conv's width, 5 columns leave MLAS's
kernels mostly idle; transposed, the feature axis (64 for `small`) is the width. Prints the median run
time of each graph and of the TCL's convs alone (ORT profiler), the per-round speed ratio and the max
|dp| between the graphs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.checkpoint import build_model_from_checkpoint
from model.export import fold_batchnorm, onnx_graph
from model.meta import APPEARANCE_INPUT, MOTION_INPUT, PROBS_OUTPUT

SHIPPED_CHECKPOINT = Path("models/fstcn-small.pt")
FORMS = {"time-major (T, C)": True, "as trained (C, T)": False}


def _session(graph: bytes, threads: int, profile_prefix: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(profile_prefix)
    options.log_severity_level = 3
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _tcl_ms(profile: Path, runs: int) -> float:
    """Kernel milliseconds per run of the TCL's convs, from an ORT profile."""
    events = json.loads(profile.read_text())
    total_us = sum(
        event["dur"]
        for event in events
        if event.get("cat") == "Node"
        and event["name"].endswith("_kernel_time")
        and "branches." in event["name"]  # the TCL's (fused) convs in both forms
        and event["args"].get("op_name") == "Conv"
    )
    return total_us / 1000.0 / runs


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
    for name, time_major in FORMS.items():
        network.temporal.onnx_time_major = time_major
        graphs[name] = onnx_graph(network, meta).SerializeToString()
    rng = np.random.default_rng(0)
    c, t = meta.crop_size, meta.sampling.clip_length
    feeds = {
        APPEARANCE_INPUT: rng.standard_normal((args.rows, 3, c, c), dtype=np.float32),
        MOTION_INPUT: rng.standard_normal((args.rows, t, 3, c, c), dtype=np.float32),
    }
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {
            name: _session(graph, args.threads, Path(tmp) / f"form{i}")
            for i, (name, graph) in enumerate(graphs.items())
        }
        outputs = {
            name: session.run([PROBS_OUTPUT], feeds)[0] for name, session in sessions.items()
        }  # warm-up
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.repeats):  # interleaved, so that both graphs see the same machine load
            for name, session in sessions.items():
                start = time.perf_counter()
                session.run([PROBS_OUTPUT], feeds)
                times[name].append(time.perf_counter() - start)
        tcl = {
            name: _tcl_ms(Path(session.end_profiling()), args.repeats + 1)
            for name, session in sessions.items()
        }
    print(f"{args.checkpoint} ({meta.name} {meta.version}), {args.rows} rows, {args.threads} threads")
    for name, values in times.items():
        print(
            f"{name:>18}: median {1000 * statistics.median(values):7.1f} ms "
            f"(min {1000 * min(values):.1f}, max {1000 * max(values):.1f}); TCL convs {tcl[name]:.1f} ms"
        )
    fast, slow = times["time-major (T, C)"], times["as trained (C, T)"]
    ratios = sorted(s / f for s, f in zip(slow, fast, strict=True))
    diff = float(np.abs(outputs["time-major (T, C)"] - outputs["as trained (C, T)"]).max())
    tcl_ratio = tcl["as trained (C, T)"] / tcl["time-major (T, C)"]
    print(
        f"speed of the time-major form: {statistics.median(ratios):.2f}x over {args.repeats} rounds "
        f"[{ratios[0]:.2f}-{ratios[-1]:.2f}]; TCL convs {tcl_ratio:.2f}x; max |dp| {diff:.2e}"
    )


if __name__ == "__main__":
    main()
