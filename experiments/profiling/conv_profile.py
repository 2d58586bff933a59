"""Per-convolution profile of a plain ONNX graph: ONNX Runtime's kernel time of each conv layer, its
GFLOP/s and its share of the SGEMM peak measured in the same run (bench/RESULTS.md, "Per-conv profile").

    python experiments/profiling/conv_profile.py     # the shipped model, one request's 90 rows
    python experiments/profiling/conv_profile.py --model models/x.onnx --checkpoint models/x.pt --rows 18

FLOPs are 2 x the layer's multiply-accumulates from `fstcn.model.network.layer_summary` at the same batch
(the lower SCL runs on 6 frames per row); kernel times come from ORT's profiler (the layer's fused
Conv+ReLU kernels, both of them where the export runs the lower SCL twice).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from fstcn.bench.core import random_plain_feeds, sgemm_peak
from fstcn.bench.runner import cpu_session, measured_kernels
from fstcn.model.checkpoint import build_model_from_checkpoint
from fstcn.model.network import layer_summary

# ORT kernel name (fused Conv+ReLU, named after its output) -> layer_summary row of that conv
_KERNEL_LAYER = (
    (
        re.compile(r"/network/((?:lower|spatial|temporal)/[\w./]*?conv\d?)/"),
        lambda m: m.group(1).replace("/", "."),
    ),
    (
        re.compile(r"/network/temporal/(?:tcl/)?branches\.(\d+)"),
        lambda m: f"temporal.tcl.branches.{m.group(1)}",
    ),
)


def layer_of(kernel_name: str) -> str | None:
    """The conv layer an ORT kernel belongs to, as a `layer_summary` name prefix (None: not a conv)."""
    for pattern, name in _KERNEL_LAYER[::-1]:  # the TCL first: its kernels also sit under /temporal/
        match = pattern.search(kernel_name)
        if match:
            return name(match)
    return None


def conv_kernel_ms(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], runs: int
) -> dict[str, float]:
    """Layer -> Conv kernel milliseconds per run over `runs` runs after one warm-up run (the session
    must have profiling on; the warm-up's one-off work, such as reordering weights, is left out)."""
    for _ in range(runs + 1):
        session.run(None, feeds)
    kernels, measured = measured_kernels(json.loads(Path(session.end_profiling()).read_text()))
    totals: dict[str, float] = defaultdict(float)
    for event in kernels:
        if event["args"].get("op_name") != "Conv":
            continue
        layer = layer_of(event["name"])
        if layer is None:
            raise ValueError(f"a Conv kernel of no known layer: {event['name']}")
        totals[layer] += event["dur"] / 1000.0 / measured
    return dict(totals)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/fstcn-small.onnx"))
    parser.add_argument("--checkpoint", type=Path, default=Path("models/fstcn-small.pt"))
    parser.add_argument("--rows", type=int, default=90, help="clip-pair crops per run (90 = 5 clips x 18)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    network, meta = build_model_from_checkpoint(args.checkpoint)
    macs = {
        row.name: row.macs for row in layer_summary(network, batch_size=args.rows) if row.kind == "Conv2d"
    }
    feeds = random_plain_feeds(args.rows, meta.crop_size, meta.sampling.clip_length)
    peak = sgemm_peak(args.threads)["peak_gflops"]
    with tempfile.TemporaryDirectory() as tmp:
        session = cpu_session(args.model, args.threads, profile=Path(tmp) / "conv")
        kernel_ms = conv_kernel_ms(session, feeds, args.repeats)
    print(f"{args.model}, {args.rows} rows, {args.threads} threads, SGEMM peak {peak:.1f} GFLOP/s")
    print(f"| conv | output (batch {args.rows}) | ms/run | GFLOP | GFLOP/s | of SGEMM peak |")
    print("| --- | --- | --- | --- | --- | --- |")
    shapes = {row.name: row.output_shape for row in layer_summary(network, batch_size=args.rows)}
    total_ms = total_gflop = 0.0
    for layer, ms in sorted(kernel_ms.items(), key=lambda item: -item[1]):
        gflop = 2 * sum(count for name, count in macs.items() if name.startswith(layer)) / 1e9
        shape = next(shape for name, shape in shapes.items() if name.startswith(layer))
        rate = gflop / (ms / 1000.0)
        total_ms, total_gflop = total_ms + ms, total_gflop + gflop
        output = "x".join(map(str, shape))
        print(f"| {layer} | {output} | {ms:.1f} | {gflop:.2f} | {rate:.1f} | {rate / peak:.0%} |")
    rate = total_gflop / (total_ms / 1000.0)
    print(f"| all convs | | {total_ms:.1f} | {total_gflop:.2f} | {rate:.1f} | {rate / peak:.0%} |")


if __name__ == "__main__":
    main()
