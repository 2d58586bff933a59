"""A tiny FstCN-contract ONNX model built with onnx.helper (no torch), for fast service tests.

The graph honours the I/O contract of `fstcn.core.meta`: inputs `appearance` (B, 3, c, c) and `motion`
(B, T, 3, c, c) float32, output `probs` (B, N) float32 = softmax of a fixed random linear map of the
per-channel means of the appearance frame and of every motion frame (plus the mean absolute motion),
so different videos, clips and crops give different, deterministic probabilities. The `ModelMeta` JSON
is stored under metadata key `fstcn`, exactly like `fstcn export` does.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fstcn.core.meta import (
    APPEARANCE_INPUT,
    META_KEY,
    MOTION_INPUT,
    PROBS_OUTPUT,
    ModelMeta,
    SamplingParams,
)

FAKE_LABELS = ("wave", "clap", "jump", "squat", "punch", "kick")
FAKE_META = ModelMeta(
    name="fake-fstcn",
    version="0.0.1",
    preset="tiny",
    labels=FAKE_LABELS,
    sampling=SamplingParams(clip_length=5, stride=5, diff_offset=9, num_clips=5, ref_fps=25.0),
    resize_short=40,
    crop_size=32,
)


def build_fake_model(meta: ModelMeta = FAKE_META, *, metadata: str | None = None) -> onnx.ModelProto:
    """The ONNX model; `metadata` overrides the stored `fstcn` JSON (e.g. to test bad metadata)."""
    t, n = meta.sampling.clip_length, meta.num_classes
    features = 3 + 3 * t + 1
    rng = np.random.default_rng(0)
    weights = (rng.standard_normal((features, n)) * 6.0).astype(np.float32)
    bias = (rng.standard_normal(n) * 0.5).astype(np.float32)
    nodes = [
        # (B, 3, c, c) -> (B, 3)
        helper.make_node("ReduceMean", [APPEARANCE_INPUT], ["appearance_mean"], axes=[2, 3], keepdims=0),
        # (B, T, 3, c, c) -> (B, T, 3) -> (B, 3T)
        helper.make_node("ReduceMean", [MOTION_INPUT], ["motion_mean"], axes=[3, 4], keepdims=0),
        helper.make_node("Reshape", ["motion_mean", "flat_shape"], ["motion_flat"]),
        # mean |motion| over everything but B: (B, 1)
        helper.make_node("Abs", [MOTION_INPUT], ["motion_abs"]),
        helper.make_node("ReduceMean", ["motion_abs"], ["motion_energy_5d"], axes=[1, 2, 3, 4], keepdims=1),
        helper.make_node("Reshape", ["motion_energy_5d", "column_shape"], ["motion_energy"]),
        helper.make_node("Concat", ["appearance_mean", "motion_flat", "motion_energy"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "weights"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [PROBS_OUTPUT], axis=1),
    ]
    initializers = [
        numpy_helper.from_array(np.array([0, 3 * t], dtype=np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([0, 1], dtype=np.int64), "column_shape"),
        numpy_helper.from_array(weights, "weights"),
        numpy_helper.from_array(bias, "bias"),
    ]
    return contract_model(meta, nodes, initializers, name="fake_fstcn", metadata=metadata)


def contract_model(
    meta: ModelMeta,
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    *,
    name: str,
    metadata: str | None = None,
) -> onnx.ModelProto:
    """`nodes` (reading `appearance` and `motion`, writing `probs`) as a checked model of the contract."""
    c, t, n = meta.crop_size, meta.sampling.clip_length, meta.num_classes
    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info(APPEARANCE_INPUT, TensorProto.FLOAT, ["B", 3, c, c]),
            helper.make_tensor_value_info(MOTION_INPUT, TensorProto.FLOAT, ["B", t, 3, c, c]),
        ],
        [helper.make_tensor_value_info(PROBS_OUTPUT, TensorProto.FLOAT, ["B", n])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fake")
    model.ir_version = 8  # readable by every onnxruntime >= 1.14
    helper.set_model_props(model, {META_KEY: meta.to_json() if metadata is None else metadata})
    onnx.checker.check_model(model)
    return model


def write_fake_model(path: Path, meta: ModelMeta = FAKE_META, *, metadata: str | None = None) -> Path:
    """Write the fake model to `path` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build_fake_model(meta, metadata=metadata), str(path))
    return path


def fake_meta(**changes: object) -> ModelMeta:
    """FAKE_META with some fields replaced."""
    return replace(FAKE_META, **changes)  # type: ignore[arg-type]
