"""Frames graphs beside a plain model, their verification, and the exact one (crops inside the graph).

A frames graph (contract in `fstcn.core.frames_graph`; docs/design.md, "Frames graphs") takes the decoded
uint8 frames and the sampling's index arrays and computes V_diff, the normalisation and the crops in ONNX
Runtime, so the host hands each frame over once instead of building (M*K, T, 3, c, c) float32 arrays.
The fast graphs of `models/NAME.onnx` live beside it as NAME.frames.onnx (exact) and NAME.trunk.onnx
(shared trunk, `fstcn.model.export.shared`): `fstcn.core.frames_graph.bundle_graph_paths`.

`export_exact_graph(plain.onnx, out)` composes hand-built ONNX preprocessing (gathers, arithmetic, one
Loop of Slices for the crops) with the unchanged plain graph: the same numbers as the plain graph fed by
`fstcn.core.clips.network_inputs`. It needs no PyTorch weights.

Every frames graph verifies itself before the file lands (`verify_frames_graph`, max |dp| <= 1e-4): the
file as `fstcn.core.runtime.OnnxModel` opens it against a reference `Runner` (`fstcn.core.scoring`), at
two frame sizes other than the traced one (H and W are dynamic axes) and 18, 2 and 1 crops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from fstcn.core.clips import plan_clip_pairs
from fstcn.core.frames_graph import (
    APPEARANCE_INDEX_INPUT,
    CLIP_INDEX_INPUT,
    CROP_BOXES_INPUT,
    DIFF_INDEX_INPUT,
    FRAMES_INPUT,
    GRAPH_KEY,
    GraphInfo,
)
from fstcn.core.meta import APPEARANCE_INPUT, META_KEY, MOTION_INPUT, PROBS_OUTPUT, ModelMeta
from fstcn.core.runtime import CPU, OnnxModel
from fstcn.core.scoring import Runner
from fstcn.model.export.verification import (
    FP32_TOLERANCE,
    ExportVerificationError,
    check_max_diff,
    onnx_output,
    write_verified,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FramesExportResult:
    onnx_path: Path
    meta: ModelMeta
    info: GraphInfo
    max_abs_diff: dict[str, float]  # check name -> max |p_graph - p_reference|


def plain_graph_meta(plain: onnx.ModelProto) -> ModelMeta:
    """The `ModelMeta` of a plain graph written by `fstcn export`, or ValueError."""
    props = {prop.key: prop.value for prop in plain.metadata_props}
    if META_KEY not in props:
        raise ValueError(f"the plain graph has no '{META_KEY}' metadata: not an `fstcn export` file")
    return ModelMeta.from_json(props[META_KEY])


def example_frames(
    meta: ModelMeta, height: int, width: int, *, num_clips: int = 2, seed: int = 0
) -> dict[str, Any]:
    """Random frames (F, H, W, 3) uint8, their times at ref_fps and a plan of `num_clips` pairs."""
    rng = np.random.default_rng(seed)
    params = meta.sampling
    num_frames = params.span_frames + 8
    frames = rng.integers(0, 256, size=(num_frames, height, width, 3), dtype=np.uint8)
    times = np.arange(num_frames) / params.ref_fps
    plan = plan_clip_pairs(0.0, float(times[-1]), params, num_clips)
    return {"frames": frames, "times": times, "plan": plan}


def verify_frames_graph(graph: OnnxModel, reference: Runner, *, seed: int = 0) -> dict[str, float]:
    """max |p_graph - p_reference| at two frame sizes and 18/2/1 crops, each fed by its own `prepare`
    (`reference`: any `fstcn.core.scoring.Runner`); ExportVerificationError above 1e-4."""
    meta = graph.meta
    size = meta.resize_short
    diffs: dict[str, float] = {}
    for height, width in ((size, size + 43), (size + 29, size)):
        example = example_frames(meta, height, width, seed=seed)
        frames, times, plan = example["frames"], example["times"], example["plan"]
        for num_crops in (18, 2, 1):
            probs = graph.run(graph.prepare(frames, times, plan, num_crops))  # (M*K, N)
            expected = reference.run(reference.prepare(frames, times, plan, num_crops))
            if probs.shape != expected.shape:
                raise ExportVerificationError(f"graph gave {probs.shape}, reference {expected.shape}")
            diffs[f"{height}x{width}, {num_crops} crops"] = float(np.max(np.abs(probs - expected)))
    check_max_diff(diffs, FP32_TOLERANCE, f"the {graph.form} frames graph", "its reference")
    return diffs


def exact_frames_graph(plain: onnx.ModelProto) -> onnx.ModelProto:
    """The exact-crops frames graph: hand-built ONNX preprocessing in front of the plain graph `plain`.

    frames (F, H, W, 3) uint8 -> appearance (M, H, W, 3), V_diff (M*T, H, W, 3) float32 normalised as
    `fstcn.core.clips.network_inputs` does -> NCHW -> one Loop over crop_boxes (K, 3) slicing (n, 3, c, c)
    crops (flip = a second Slice with step -1) -> (M*K, 3, c, c), (M*K, T, 3, c, c) -> the plain graph.
    """
    from onnx import TensorProto, compose, helper

    meta = plain_graph_meta(plain)
    c, t = meta.crop_size, meta.sampling.clip_length
    scale = float(np.float32(meta.diff_scale / 255.0))

    def const(name: str, values: Any, dtype: Any = np.int64) -> onnx.NodeProto:
        array = np.asarray(values, dtype=dtype)
        return helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(array, name))

    # Loop body: iteration i -> crop i of x (n, 3, H, W) by one Slice; a flipped crop walks its columns
    # backwards (step -1 from left + c - 1 down to left - 1, or past the start when left is 0)
    body_nodes = [
        const("b_zero", [0]),
        helper.make_node("Unsqueeze", ["i", "b_zero"], ["i1"]),
        helper.make_node("Gather", ["boxes", "i1"], ["box2"], axis=0),  # (1, 3)
        const("b_three", [3]),
        helper.make_node("Reshape", ["box2", "b_three"], ["box"]),  # (3,) top, left, flip
        const("b_at0", [0]),
        const("b_at1", [1]),
        const("b_at2", [2]),
        helper.make_node("Gather", ["box", "b_at0"], ["top"]),  # (1,)
        helper.make_node("Gather", ["box", "b_at1"], ["left"]),
        helper.make_node("Gather", ["box", "b_at2"], ["flip"]),
        const("b_c", [c]),
        const("b_c1", [c - 1]),
        const("b_one", [1]),
        const("b_two", [2]),
        const("b_past", [-(2**62)]),
        helper.make_node("Add", ["top", "b_c"], ["bottom"]),
        helper.make_node("Mul", ["flip", "b_c1"], ["flip_shift"]),
        helper.make_node("Add", ["left", "flip_shift"], ["start_w"]),
        helper.make_node("Add", ["left", "b_c"], ["right"]),
        helper.make_node("Sub", ["left", "b_one"], ["left_1"]),
        helper.make_node("Equal", ["left", "b_zero"], ["at_edge"]),
        helper.make_node("Where", ["at_edge", "b_past", "left_1"], ["end_flipped"]),
        helper.make_node("Cast", ["flip"], ["is_flip"], to=TensorProto.BOOL),
        helper.make_node("Where", ["is_flip", "end_flipped", "right"], ["end_w"]),
        helper.make_node("Mul", ["flip", "b_two"], ["flip2"]),
        helper.make_node("Sub", ["b_one", "flip2"], ["step_w"]),
        helper.make_node("Concat", ["top", "start_w"], ["starts"], axis=0),
        helper.make_node("Concat", ["bottom", "end_w"], ["ends"], axis=0),
        helper.make_node("Concat", ["b_one", "step_w"], ["steps"], axis=0),
        const("b_axes", [2, 3]),
        helper.make_node("Slice", ["x", "starts", "ends", "b_axes", "steps"], ["crop_out"]),  # (n, 3, c, c)
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
    ]
    body = helper.make_graph(
        body_nodes,
        "crop_body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("crop_out", TensorProto.FLOAT, None),
        ],
    )
    nodes = [
        const("minus_one", [-1]),
        const("zero", [0]),
        # (1, 3, 1, 1): the arithmetic runs on whole NCHW planes (channels-last broadcasting is slow)
        const("mean", np.asarray(meta.mean, np.float32).reshape(1, 3, 1, 1), np.float32),
        const("std", np.asarray(meta.std, np.float32).reshape(1, 3, 1, 1), np.float32),
        const("f255", np.float32(255.0), np.float32),
        const("scale", np.float32(scale), np.float32),
        helper.make_node("Reshape", [CLIP_INDEX_INPUT, "minus_one"], ["clip_flat"]),
        helper.make_node("Reshape", [DIFF_INDEX_INPUT, "minus_one"], ["diff_flat"]),
        # one Gather of every needed frame, transposed to NCHW while still uint8, then one Cast
        helper.make_node("Concat", [APPEARANCE_INDEX_INPUT, "clip_flat", "diff_flat"], ["needed"], axis=0),
        helper.make_node("Gather", [FRAMES_INPUT, "needed"], ["needed_u8"], axis=0),  # (M+2MT, H, W, 3)
        helper.make_node("Transpose", ["needed_u8"], ["needed_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["needed_nchw"], ["needed_f"], to=TensorProto.FLOAT),  # (M+2MT, 3, H, W)
        helper.make_node("Shape", [APPEARANCE_INDEX_INPUT], ["m1"]),  # (1,) = M
        helper.make_node("Shape", ["clip_flat"], ["mt1"]),  # (1,) = M*T
        helper.make_node("Add", ["m1", "mt1"], ["m_mt"]),
        const("big", [np.iinfo(np.int64).max]),
        helper.make_node("Slice", ["needed_f", "zero", "m1", "zero"], ["app_f"]),
        helper.make_node("Slice", ["needed_f", "m1", "m_mt", "zero"], ["clip_f"]),
        helper.make_node("Slice", ["needed_f", "m_mt", "big", "zero"], ["diff_f"]),
        helper.make_node("Div", ["app_f", "f255"], ["app_01"]),
        helper.make_node("Sub", ["app_01", "mean"], ["app_c"]),
        helper.make_node("Div", ["app_c", "std"], ["app_n"]),  # (M, 3, H, W)
        helper.make_node("Sub", ["diff_f", "clip_f"], ["mot_d"]),
        helper.make_node("Mul", ["mot_d", "scale"], ["mot_n"]),  # (M*T, 3, H, W)
        helper.make_node("Concat", ["app_n", "mot_n"], ["x"], axis=0),  # (n, 3, H, W)
        helper.make_node("Shape", [CROP_BOXES_INPUT], ["boxes_shape"]),
        helper.make_node("Gather", ["boxes_shape", "zero"], ["num_crops"]),  # (1,)
        helper.make_node("Reshape", ["num_crops", "minus_one"], ["k1"]),
        helper.make_node("Squeeze", ["k1"], ["trip"]),
        helper.make_node("Identity", [CROP_BOXES_INPUT], ["boxes"]),
        const("true_c", np.array(True), np.bool_),
        helper.make_node("Loop", ["trip", "true_c"], ["crops"], body=body),  # (K, n, 3, c, c)
        const("axis1", [1]),
        helper.make_node("Slice", ["crops", "zero", "m1", "axis1"], ["app_k"]),  # (K, M, 3, c, c)
        helper.make_node("Slice", ["crops", "m1", "big", "axis1"], ["mot_k"]),  # (K, M*T, 3, c, c)
        helper.make_node("Transpose", ["app_k"], ["app_mk"], perm=[1, 0, 2, 3, 4]),  # (M, K, 3, c, c)
        const("app_shape", [-1, 3, c, c]),
        helper.make_node("Reshape", ["app_mk", "app_shape"], ["pre_appearance"]),  # (M*K, 3, c, c)
        helper.make_node("Concat", ["k1", "m1"], ["km"], axis=0),
        const("mot_tail", [t, 3, c, c]),
        helper.make_node("Concat", ["km", "mot_tail"], ["mot_shape6"], axis=0),  # (K, M, T, 3, c, c)
        helper.make_node("Reshape", ["mot_k", "mot_shape6"], ["mot_6"]),
        helper.make_node("Transpose", ["mot_6"], ["mot_mk"], perm=[1, 0, 2, 3, 4, 5]),  # (M, K, T, 3, c, c)
        const("mot_shape", [-1, t, 3, c, c]),
        helper.make_node("Reshape", ["mot_mk", "mot_shape"], ["pre_motion"]),  # (M*K, T, 3, c, c)
    ]
    pre = helper.make_graph(
        nodes,
        "fstcn_frames_preprocessing",
        [
            helper.make_tensor_value_info(FRAMES_INPUT, TensorProto.UINT8, ["frames", "height", "width", 3]),
            helper.make_tensor_value_info(APPEARANCE_INDEX_INPUT, TensorProto.INT64, ["clips"]),
            helper.make_tensor_value_info(CLIP_INDEX_INPUT, TensorProto.INT64, ["clips", t]),
            helper.make_tensor_value_info(DIFF_INDEX_INPUT, TensorProto.INT64, ["clips", t]),
            helper.make_tensor_value_info(CROP_BOXES_INPUT, TensorProto.INT64, ["crops", 3]),
        ],
        [
            helper.make_tensor_value_info("pre_appearance", TensorProto.FLOAT, ["rows", 3, c, c]),
            helper.make_tensor_value_info("pre_motion", TensorProto.FLOAT, ["rows", t, 3, c, c]),
        ],
    )
    opset = max(o.version for o in plain.opset_import if o.domain in ("", "ai.onnx"))
    pre_model = helper.make_model(pre, opset_imports=[helper.make_opsetid("", opset)])
    pre_model.ir_version = plain.ir_version
    merged = compose.merge_models(
        pre_model,
        plain,
        io_map=[("pre_appearance", APPEARANCE_INPUT), ("pre_motion", MOTION_INPUT)],
        prefix2="net_",
    )
    _rename_output(merged, f"net_{PROBS_OUTPUT}", PROBS_OUTPUT)
    del merged.metadata_props[:]
    return merged


def _rename_output(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
    for value in model.graph.output:
        if value.name == old:
            value.name = new


def export_exact_graph(plain_path: str | Path, out: str | Path, *, seed: int = 0) -> FramesExportResult:
    """Write the exact-crops frames graph of the plain model `plain_path` to `out`, verified against it."""
    out = onnx_output(out)
    plain = onnx.load(str(plain_path))
    meta = plain_graph_meta(plain)
    if meta.precision != "fp32":
        raise ValueError("frames graphs are built from the fp32 model")
    info = GraphInfo(crops="exact", crop_size=meta.crop_size)
    merged = exact_frames_graph(plain)
    merged.metadata_props.add(key=META_KEY, value=meta.to_json())
    merged.metadata_props.add(key=GRAPH_KEY, value=info.to_json())
    onnx.checker.check_model(merged)
    reference = OnnxModel.load(plain_path, providers=[CPU])
    diffs = write_verified(
        out, merged.SerializeToString(), lambda exported: verify_frames_graph(exported, reference, seed=seed)
    )
    logger.info("exported exact frames graph %s; max |dp| %s", out, diffs)
    return FramesExportResult(out, meta, info, diffs)
