"""The paper preset's LRN in ONNX: one `LRN` node against PyTorch's expansion (Pow, Pad, AveragePool, ...;
`fstcn export --lrn node|expanded`), same weights, side by side in one run.

    python experiments/profiling/lrn_export.py                   # ONNX Runtime on the CPU, 6 rows per run
    python experiments/profiling/lrn_export.py --rows 90 --cuda  # CUDA provider, one video's rows

Prints the median run time of each graph, the spread, their ratio and the max |dp| between them.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from functools import partial

import numpy as np
import onnxruntime as ort
import torch

from fstcn.bench.core import interleaved, random_plain_feeds
from fstcn.core.meta import PROBS_OUTPUT
from fstcn.model.export.plain import onnx_graph
from fstcn.model.network import fstcn
from fstcn.model.train import make_meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6, help="clip-pair crops per run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cuda", action="store_true", help="run on ONNX Runtime's CUDA provider")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    network = fstcn(preset="paper", num_classes=101).eval()
    config = network.config
    meta = replace(make_meta(config, "paper", [f"c{i}" for i in range(101)]), name="lrn-bench")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if args.cuda else ["CPUExecutionProvider"]
    if args.cuda and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    forms = {"onnx LRN node": "node", "pytorch expansion": "expanded"}
    graphs = {name: onnx_graph(network, meta, lrn=lrn).SerializeToString() for name, lrn in forms.items()}
    sessions = {name: ort.InferenceSession(graph, providers=providers) for name, graph in graphs.items()}
    feeds = random_plain_feeds(args.rows, config.crop_size, config.clip_length)
    outputs = {name: session.run([PROBS_OUTPUT], feeds)[0] for name, session in sessions.items()}  # warm-up
    # interleaved, so that both graphs see the same machine load
    times = interleaved(
        {name: partial(session.run, [PROBS_OUTPUT], feeds) for name, session in sessions.items()},
        args.repeats,
        warmup=0,
    )
    print(f"providers {sessions['onnx LRN node'].get_providers()}, {args.rows} rows, {args.repeats} repeats")
    for name, values in times.items():
        print(
            f"{name:>18}: median {1000 * statistics.median(values):8.1f} ms "
            f"(min {1000 * min(values):.1f}, max {1000 * max(values):.1f})"
        )
    ratio = statistics.median(times["pytorch expansion"]) / statistics.median(times["onnx LRN node"])
    diff = float(np.abs(outputs["onnx LRN node"] - outputs["pytorch expansion"]).max())
    print(f"speed-up of the LRN node: {ratio:.2f}x; max |dp| between the graphs {diff:.2e}")


if __name__ == "__main__":
    main()
