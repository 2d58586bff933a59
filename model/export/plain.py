"""The plain graph: ONNX export of a trained FstCN checkpoint, the self-describing file the service loads.

`export_model` rebuilds the network from a checkpoint (`fstcn.model.checkpoint`), folds every BatchNorm into
the conv before it, wraps the network so that it outputs softmax probabilities, exports it with
`torch.onnx.export` (opset >= 17, dynamic batch axis) and writes `ModelMeta` JSON under the metadata key
`fstcn` (the contract of `fstcn.core.meta`: inputs `appearance` (B, 3, c, c) and `motion` (B, T, 3, c, c),
float32; output `probs` (B, N), float32). The auxiliary classifier is not part of the graph.

The export verifies itself before the file appears at its final path (`verification.write_verified`):
the file as `fstcn.core.runtime.OnnxModel` opens it against the unfolded float32 PyTorch model on random
clip pairs (uint8 frames through the serving normalisation, `fstcn.core.clips.network_inputs`), on
Gaussian inputs, on an optional real batch (`real_inputs_from_videos`), and at batch sizes 1 and several.
The maximum absolute probability difference must be <= 1e-4 (fp32); anything else raises
`ExportVerificationError` and leaves no file behind.

The fp16 variant (for GPUs) casts the weights and the whole graph to float16 while the inputs and the
output stay float32 (Cast nodes at both ends; softmax runs in float32). Its tolerance is 1e-2.

Beside `NAME.onnx` the export writes `NAME.pt`: a checkpoint (`fstcn.model.checkpoint` format) of the same
network, fp16 weights by default to keep the shipped pair small, without optimizer or RNG state; the
explanation tools (saliency, t-SNE) need the PyTorch weights of the served model.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import torch
from torch import Tensor, nn

from fstcn.core.clips import network_inputs
from fstcn.core.meta import APPEARANCE_INPUT, META_KEY, MOTION_INPUT, PROBS_OUTPUT, ModelMeta
from fstcn.core.runtime import OnnxModel, PlainFeeds
from fstcn.core.scoring import decode_planned
from fstcn.core.video.decode import probe_video
from fstcn.model.checkpoint import build_model_from_checkpoint, load_checkpoint, model_meta, save_checkpoint
from fstcn.model.export.verification import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    ExportVerificationError,
    check_max_diff,
    onnx_output,
    write_verified,
)
from fstcn.model.network import ConvBlock, FstCN, LocalResponseNorm

logger = logging.getLogger(__name__)

MIN_OPSET = 17
LRN_FORMS = ("node", "expanded")  # how an LRN is written to ONNX, see onnx_graph
VERIFY_BATCH = 5  # rows of each random check; also the "several" of the dynamic-batch check


@dataclass(frozen=True)
class ExportResult:
    onnx_path: Path
    checkpoint_path: Path | None
    meta: ModelMeta
    opset: int
    max_abs_diff: dict[str, float]  # check name -> max |p_onnx - p_torch|
    tolerance: float


class ProbabilityModel(nn.Module):
    """FstCN -> softmax probabilities, float32 at the boundary whatever the weights' dtype.

    appearance float32 (B, 3, c, c), motion float32 (B, T, 3, c, c) -> probs float32 (B, N).
    """

    def __init__(self, network: FstCN, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.network = network.to(dtype)
        self.dtype = dtype

    def forward(self, appearance: Tensor, motion: Tensor) -> Tensor:
        logits = self.network(appearance.to(self.dtype), motion.to(self.dtype))
        return torch.softmax(logits.float(), dim=1)


def fold_batchnorm(model: FstCN) -> FstCN:
    """An eval-mode copy of `model` with each Conv-BN pair replaced by one conv (BN becomes Identity)."""
    folded = copy.deepcopy(model).eval()
    for block in folded.modules():
        bn = getattr(block, "bn", None)
        if (
            isinstance(block, ConvBlock)
            and isinstance(bn, nn.BatchNorm2d)
            and isinstance(block.conv, nn.Conv2d)
        ):
            block.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(block.conv, bn)
            block.bn = nn.Identity()
    return folded


def export_model(
    checkpoint: dict[str, Any] | str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    version: str | None = None,
    fp16: bool = False,
    opset: int = MIN_OPSET,
    real_inputs: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None,
    write_checkpoint: bool = True,
    checkpoint_fp16: bool = True,
    seed: int = 0,
    lrn: str = "node",
) -> ExportResult:
    """Export `checkpoint` to the ONNX file `out` (+ `out` with suffix .pt), verified; see the module doc.

    real_inputs: an optional real batch (appearance (B, 3, c, c), motion (B, T, 3, c, c), float32,
    normalised as the service does) checked in addition to the random ones.
    Raises ValueError for bad arguments and ExportVerificationError when the graph disagrees with PyTorch.
    """
    out = onnx_output(out)
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint)
    model, _ = build_model_from_checkpoint(checkpoint)
    meta = model_meta(
        checkpoint, name=name or out.stem, version=version, precision="fp16" if fp16 else "fp32"
    )
    tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
    onnx_model = onnx_graph(model, meta, opset, lrn=lrn)

    checks = _verification_batches(meta, seed, real_inputs)
    reference = ProbabilityModel(model).eval()  # unfolded float32: verifies the folding too
    diffs = write_verified(
        out, onnx_model.SerializeToString(), lambda exported: _verify(exported, reference, checks, tolerance)
    )
    checkpoint_path = None
    if write_checkpoint:
        checkpoint_path = _write_served_checkpoint(
            checkpoint, model, meta, out.with_suffix(".pt"), checkpoint_fp16
        )
    opset_used = max(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx"))
    logger.info("exported %s (%s, opset %d); max |dp| %s", out, meta.precision, opset_used, diffs)
    return ExportResult(out, checkpoint_path, meta, opset_used, diffs, tolerance)


def onnx_graph(
    model: FstCN, meta: ModelMeta, opset: int = MIN_OPSET, *, lrn: str = "node"
) -> onnx.ModelProto:
    """The served graph of `model` (batch norm folded into a copy, cast to `meta.precision`, softmax
    at the end; `model` itself is left as it is) with `meta` stored in it, checked by onnx.checker.
    Not verified against PyTorch: export_model does that. `lrn` (LRN_FORMS): "node" writes each LRN
    as ONNX's LRN operator (2.7x faster per paper-preset video on an H100 with the CUDA provider),
    "expanded" as PyTorch's Pow-Pad-AveragePool expansion (1.6x faster on the CPU provider)."""
    if lrn not in LRN_FORMS:
        raise ValueError(f"lrn must be one of {LRN_FORMS}, got {lrn!r}")
    dtype = torch.float16 if meta.precision == "fp16" else torch.float32
    folded = fold_batchnorm(model)
    for module in folded.modules():
        if isinstance(module, LocalResponseNorm):
            module.onnx_node = lrn == "node"
    graph = ProbabilityModel(folded, dtype).eval()
    onnx_model = _to_onnx(graph, meta, opset)
    onnx_model.metadata_props.add(key=META_KEY, value=meta.to_json())
    onnx.checker.check_model(onnx_model)
    return onnx_model


def _to_onnx(graph: ProbabilityModel, meta: ModelMeta, opset: int) -> onnx.ModelProto:
    """Trace `graph` with a batch of 2 (batch 1 would let the tracer specialise the batch axis)."""
    crop, clip_length = meta.crop_size, meta.sampling.clip_length
    example = (torch.zeros(2, 3, crop, crop), torch.zeros(2, clip_length, 3, crop, crop))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks: shapes are static but B
        torch.onnx.export(
            graph,
            example,
            buffer,  # type: ignore[arg-type]
            input_names=[APPEARANCE_INPUT, MOTION_INPUT],
            output_names=[PROBS_OUTPUT],
            dynamic_axes={
                APPEARANCE_INPUT: {0: "batch"},
                MOTION_INPUT: {0: "batch"},
                PROBS_OUTPUT: {0: "batch"},
            },
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter: honours the opset exactly and exports in ~1 s
        )
    onnx_model = onnx.load_from_string(buffer.getvalue())
    _restore_unused_inputs(onnx_model, meta)
    # the oldest IR version that carries this opset, so that older ONNX Runtime releases load the file
    onnx_model.ir_version = min_ir_version(opset)
    _check_io(onnx_model, meta)
    return onnx_model


def _restore_unused_inputs(onnx_model: onnx.ModelProto, meta: ModelMeta) -> None:
    """A single-path model (paths="spatial"/"temporal") ignores one input and the exporter drops it;
    the contract has both, so declare it again (unused graph inputs are valid ONNX)."""
    crop, clip_length = meta.crop_size, meta.sampling.clip_length
    shapes: dict[str, list[str | int | None]] = {
        APPEARANCE_INPUT: ["batch", 3, crop, crop],
        MOTION_INPUT: ["batch", clip_length, 3, crop, crop],
    }
    present = {value.name: value for value in onnx_model.graph.input}
    inputs = [
        present.get(name) or onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)
        for name, shape in shapes.items()
    ]
    del onnx_model.graph.input[:]
    onnx_model.graph.input.extend(inputs)


def min_ir_version(opset: int) -> int:
    return int(onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)]))


def _check_io(onnx_model: onnx.ModelProto, meta: ModelMeta) -> None:
    """The graph's inputs and outputs are exactly the contract of `fstcn.core.meta` (float32, dynamic B)."""
    float32 = onnx.TensorProto.FLOAT
    expected = {
        APPEARANCE_INPUT: [3, meta.crop_size, meta.crop_size],
        MOTION_INPUT: [meta.sampling.clip_length, 3, meta.crop_size, meta.crop_size],
        PROBS_OUTPUT: [meta.num_classes],
    }
    values = list(onnx_model.graph.input) + list(onnx_model.graph.output)
    names = [value.name for value in values]
    if sorted(names) != sorted(expected):
        raise ExportVerificationError(f"graph inputs/outputs are {names}, expected {sorted(expected)}")
    for value in values:
        tensor = value.type.tensor_type
        dims = tensor.shape.dim
        if (
            tensor.elem_type != float32
            or dims[0].dim_param == ""
            or [d.dim_value for d in dims[1:]] != (expected[value.name])
        ):
            raise ExportVerificationError(f"{value.name} does not match the ONNX contract: {value.type}")


def _verification_batches(
    meta: ModelMeta,
    seed: int,
    real_inputs: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None,
) -> dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
    """name -> (appearance, motion): frames through the serving normalisation, Gaussians, a real batch."""
    rng = np.random.default_rng(seed)
    crop, clip_length, side = meta.crop_size, meta.sampling.clip_length, meta.resize_short
    frames = rng.integers(0, 256, size=(VERIFY_BATCH, 1 + clip_length, side, side, 3), dtype=np.uint8)
    # smooth-ish motion: the second half of each V_diff pair is the first plus a small random change
    shifted = np.clip(
        frames[:, 1:].astype(np.int16) + rng.integers(-40, 41, size=frames[:, 1:].shape), 0, 255
    )
    motion_u = (shifted - frames[:, 1:].astype(np.int16)).astype(np.int16)  # (B, T, s, s, 3)
    appearance, motion = network_inputs(frames[:, 0], motion_u, meta, num_crops=1)
    checks = {
        "random frames": (appearance, motion),
        "random frames, batch 1": (appearance[:1], motion[:1]),
        "gaussian": (
            rng.standard_normal((VERIFY_BATCH, 3, crop, crop), dtype=np.float32),
            rng.standard_normal((VERIFY_BATCH, clip_length, 3, crop, crop), dtype=np.float32),
        ),
    }
    if real_inputs is not None:
        real_appearance, real_motion = (np.ascontiguousarray(x, dtype=np.float32) for x in real_inputs)
        if real_appearance.shape[1:] != (3, crop, crop) or real_motion.shape[1:] != (
            clip_length,
            3,
            crop,
            crop,
        ):
            raise ValueError(
                f"real inputs must be (B, 3, {crop}, {crop}) and (B, {clip_length}, 3, {crop}, {crop}), "
                f"got {real_appearance.shape} and {real_motion.shape}"
            )
        if real_appearance.shape[0] != real_motion.shape[0] or real_appearance.shape[0] == 0:
            raise ValueError("real inputs need the same, non-zero batch size")
        checks["real"] = (real_appearance, real_motion)
    return checks


def _verify(
    exported: OnnxModel,
    reference: ProbabilityModel,
    checks: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]],
    tolerance: float,
) -> dict[str, float]:
    """check name -> max |p_onnx - p_torch| of `exported` against `reference` on each (appearance, motion)
    batch of `checks`; ExportVerificationError above `tolerance`."""
    diffs: dict[str, float] = {}
    for name, (appearance, motion) in checks.items():
        probs = exported.run({APPEARANCE_INPUT: appearance, MOTION_INPUT: motion})  # (B, N)
        with torch.no_grad():
            expected = reference(torch.from_numpy(appearance), torch.from_numpy(motion)).numpy()
        if probs.shape != expected.shape:
            raise ExportVerificationError(f"{name}: ONNX gave {probs.shape}, PyTorch {expected.shape}")
        diffs[name] = float(np.max(np.abs(probs - expected)))
    check_max_diff(diffs, tolerance, "the ONNX graph", "PyTorch")
    return diffs


def _write_served_checkpoint(
    checkpoint: dict[str, Any], model: FstCN, meta: ModelMeta, path: Path, half: bool
) -> Path:
    """The PyTorch twin of the ONNX file: same weights and metadata, no optimizer/RNG state."""
    extra = {
        key: value
        for key, value in (checkpoint.get("extra") or {}).items()
        if key not in ("rng", "meta") and not isinstance(value, Tensor)
    }
    extra.update(
        name=meta.name,
        version=meta.version,
        normalisation={"mean": list(meta.mean), "std": list(meta.std), "diff_scale": meta.diff_scale},
        meta=replace(meta, precision="fp32").to_json(),
    )
    return save_checkpoint(
        path,
        model=model,
        config=model.config,
        labels=list(meta.labels),
        sampling=meta.sampling,
        epoch=int(checkpoint["epoch"]),
        extra=extra,
        half=half,
    )


def real_inputs_from_videos(
    paths: Sequence[str | Path], meta: ModelMeta, num_crops: int = 2
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """A real verification batch: every video decoded and sampled as the service does
    (`fstcn.core.scoring.decode_planned`, the plain graph's feeds of `fstcn.core.runtime`):
    appearance (V*M*K, 3, c, c) and motion (V*M*K, T, 3, c, c) float32."""
    feeds_of = PlainFeeds(meta)
    appearances, motions = [], []
    for path in paths:
        video, plan = decode_planned(Path(path), probe_video(path), meta, meta.sampling.num_clips)
        feeds = feeds_of(video.frames, video.times, plan, num_crops)
        appearances.append(feeds[APPEARANCE_INPUT])
        motions.append(feeds[MOTION_INPUT])
    if not appearances:
        raise ValueError("no videos given")
    return np.concatenate(appearances), np.concatenate(motions)
