"""ONNX export of a trained FstCN checkpoint: the self-describing file the service loads.

`export_model` rebuilds the network from a checkpoint (`fstcn.model.checkpoint`), folds every BatchNorm into
the conv before it, wraps the network so that it outputs softmax probabilities, exports it with
`torch.onnx.export` (opset >= 17, dynamic batch axis) and writes `ModelMeta` JSON under the metadata key
`fstcn` (the contract of `fstcn.core.meta`: inputs `appearance` (B, 3, c, c) and `motion` (B, T, 3, c, c),
float32; output `probs` (B, N), float32). The auxiliary classifier is not part of the graph.

The export verifies itself before the file appears at its final path: ONNX Runtime (CPU) against the
unfolded float32 PyTorch model on random clip pairs (uint8 frames through the serving normalisation,
`fstcn.core.clips.network_inputs`), on Gaussian inputs, on an optional real batch, and at batch sizes 1 and
several. The maximum absolute probability difference must be <= 1e-4 (fp32); anything else raises
`ExportVerificationError` and leaves no file behind.

The fp16 variant (for GPUs) casts the weights and the whole graph to float16 while the inputs and the
output stay float32 (Cast nodes at both ends; softmax runs in float32). Its tolerance is 1e-2: float16
has a 2^-11 relative step, and errors accumulate over ~10 layers.

Beside `NAME.onnx` the export writes `NAME.pt`: a checkpoint (`fstcn.model.checkpoint` format) of the same
network, fp16 weights by default to keep the shipped pair small, without optimizer or RNG state; the
explanation tools (saliency, t-SNE) need the PyTorch weights of the served model.
"""

from __future__ import annotations

import copy
import io
import logging
import os
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

from fstcn.core.meta import APPEARANCE_INPUT, META_KEY, MOTION_INPUT, PROBS_OUTPUT, ModelMeta
from fstcn.model.checkpoint import build_model_from_checkpoint, load_checkpoint, model_meta, save_checkpoint
from fstcn.model.network import ConvBlock, FstCN, LocalResponseNorm

logger = logging.getLogger(__name__)

FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2
MIN_OPSET = 17
LRN_FORMS = ("node", "expanded")  # how an LRN is written to ONNX, see onnx_graph
VERIFY_BATCH = 5  # rows of each random check; also the "several" of the dynamic-batch check


class ExportVerificationError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model within tolerance."""


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


def write_atomic(out: Path, data: bytes) -> None:
    """Write `data` to `out` through a temporary file and a rename: a reader never sees half a model."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


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
    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"the output must end in .onnx, got {out}")
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
    serialised = onnx_model.SerializeToString()

    checks = _verification_batches(meta, seed, real_inputs)
    reference = ProbabilityModel(model).eval()  # unfolded float32: verifies the folding too
    diffs = _verify(serialised, reference, checks, tolerance)

    write_atomic(out, serialised)
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
    from fstcn.core.clips import network_inputs

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
    serialised: bytes,
    reference: ProbabilityModel,
    checks: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]],
    tolerance: float,
) -> dict[str, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(serialised, options, providers=["CPUExecutionProvider"])
    diffs: dict[str, float] = {}
    for name, (appearance, motion) in checks.items():
        (probs,) = session.run([PROBS_OUTPUT], {APPEARANCE_INPUT: appearance, MOTION_INPUT: motion})
        with torch.no_grad():
            expected = reference(torch.from_numpy(appearance), torch.from_numpy(motion)).numpy()
        if probs.shape != expected.shape or probs.dtype != np.float32:
            raise ExportVerificationError(
                f"{name}: ONNX gave {probs.dtype} {probs.shape}, PyTorch {expected.dtype} {expected.shape}"
            )
        diffs[name] = float(np.max(np.abs(probs - expected)))
    worst = max(diffs, key=diffs.__getitem__)
    if not diffs[worst] <= tolerance:  # also catches NaN
        raise ExportVerificationError(
            f"the ONNX graph disagrees with PyTorch: max |p_onnx - p_torch| = {diffs[worst]:.3g} on "
            f"{worst!r} > tolerance {tolerance:g} (all checks: {diffs})"
        )
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
    """A real verification batch: every video decoded and sampled exactly as the service does."""
    from fstcn.core.clips import gather_clip_pairs, network_inputs, plan_clip_pairs
    from fstcn.core.video.decode import decode_video

    appearances, motions = [], []
    for path in paths:
        video = decode_video(path, resize_short=meta.resize_short)
        plan = plan_clip_pairs(0.0, float(video.times[-1]), meta.sampling, meta.sampling.num_clips)
        appearance_u8, motion_i16 = gather_clip_pairs(video.frames, video.times, plan)
        appearance, motion = network_inputs(appearance_u8, motion_i16, meta, num_crops)
        appearances.append(appearance)
        motions.append(motion)
    if not appearances:
        raise ValueError("no videos given")
    return np.concatenate(appearances), np.concatenate(motions)
