"""The export workflow: checkpoint -> the model bundle beside NAME.onnx, in one function.

`export_bundle` is what `fstcn export` and `fstcn bench --write-fast-graphs` run (the commands only parse
options, call it and print its `BundleResult`). In order, each step optional but the first:

  plain graph     NAME.onnx and its PyTorch twin NAME.pt (`fstcn.model.export.plain`), verified; or an
                  existing plain export kept as it is (`export_plain=False`)
  calibration     NAME.border.npz: the shared trunk's border calibration fitted on a folder of training
                  videos (`calibration_fit`), then refined on the exact crops' decisions (`refine`)
  fast graphs     NAME.frames.onnx (exact crops, `frames`) and NAME.trunk.onnx (shared trunk to the
                  `lower` SCL or the `branch` convs, `shared`), with the calibration beside the model

Arguments are checked before any work starts (ValueError), so a bad combination costs no export. The
files and their forms: docs/design.md, "Model file" and "Frames graphs".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from fstcn.core.frames_graph import SHARE_DEPTHS, bundle_graph_paths
from fstcn.core.meta import ModelMeta
from fstcn.core.runtime import CPU, OnnxModel
from fstcn.model.checkpoint import build_model_from_checkpoint, load_checkpoint, model_meta
from fstcn.model.export.calibration import BorderCalibration, calibration_beside, calibration_path
from fstcn.model.export.calibration_fit import fit_border_calibration, training_videos
from fstcn.model.export.frames import (
    FramesExportResult,
    export_exact_graph,
    plain_graph_meta,
)
from fstcn.model.export.plain import (
    MIN_OPSET,
    ExportResult,
    export_model,
    fold_batchnorm,
    real_inputs_from_videos,
)
from fstcn.model.export.refine import RefineOptions, collect_windows, refine_border_calibration
from fstcn.model.export.shared import export_trunk_graph

logger = logging.getLogger(__name__)

FAST_GRAPHS = ("none", *SHARE_DEPTHS)  # "none", or how deep NAME.trunk.onnx shares the whole-frame work


@dataclass(frozen=True)
class BundleResult:
    plain_path: Path
    plain: ExportResult | None  # None when an existing plain export was kept
    calibration: BorderCalibration | None
    calibration_path: Path | None
    fast_graphs: dict[str, FramesExportResult]  # "exact", "shared"; empty without fast graphs


def export_bundle(
    checkpoint: dict[str, Any] | str | Path,
    out: str | Path,
    *,
    export_plain: bool = True,
    name: str | None = None,
    version: str | None = None,
    fp16: bool = False,
    opset: int = MIN_OPSET,
    lrn: str = "node",
    videos: Sequence[str | Path] = (),
    write_checkpoint: bool = True,
    calibrate: str | Path | None = None,
    calibration_videos: int = 200,
    refine_epochs: int = 4,
    fast_graphs: str = "none",
    progress: Callable[[str], None] | None = None,
) -> BundleResult:
    """Export `checkpoint` as the bundle beside `out` (models/NAME.onnx); see the module doc.

    Args:
        checkpoint: a training checkpoint (path or loaded dict): the weights of every graph.
        out: the plain ONNX file; with `export_plain=False` an existing plain export of `checkpoint`,
            kept as it is (name, version, fp16, opset, lrn, videos and write_checkpoint then do nothing).
        name, version: the metadata's model name (default: the file stem) and version (default: epoch<N>).
        fp16: float16 weights and compute in the plain graph (the calibration refinement and the fast
            graphs need the fp32 one).
        opset, lrn: the plain graph's ONNX opset (>= 17) and LRN form (`plain.LRN_FORMS`).
        videos: real videos for the plain graph's verification batch.
        write_checkpoint: also write the PyTorch twin NAME.pt.
        calibrate: a folder of training videos: fit the border calibration on up to `calibration_videos`
            of them (spread over its sorted list) and write NAME.border.npz.
        refine_epochs: epochs of refinement on the exact crops' decisions after the fit; 0 = none.
        fast_graphs: one of FAST_GRAPHS: "none", or write NAME.frames.onnx and NAME.trunk.onnx sharing
            the whole-frame work up to the "lower" SCL or the "branch" convs.
        progress: called with a one-line description of the step under way.

    Raises ValueError (bad arguments, no usable videos), FileNotFoundError and ExportVerificationError
    (a graph that disagrees with its reference; that file is not written).
    """
    say = progress or (lambda message: None)
    out = Path(out)
    if fast_graphs not in FAST_GRAPHS:
        raise ValueError(f"fast_graphs must be one of {FAST_GRAPHS}, got {fast_graphs!r}")
    kept_meta = None if export_plain else plain_graph_meta(onnx.load(str(out), load_external_data=False))
    half = fp16 if kept_meta is None else kept_meta.precision == "fp16"
    if half and fast_graphs != "none":
        raise ValueError("the fast graphs are float32 graphs: export without fp16")
    if half and calibrate is not None and refine_epochs:
        raise ValueError(
            "refining the calibration scores exact crops with the fp32 export: export without fp16, "
            "or refine for 0 epochs"
        )
    calibration_set = training_videos(calibrate, calibration_videos) if calibrate is not None else []
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint)

    plain, meta = None, kept_meta
    if meta is None:
        real = None
        if videos:
            say(f"decoding {len(videos)} verification video(s)")
            real = real_inputs_from_videos(videos, model_meta(checkpoint))
        say(f"exporting {out}")
        plain = export_model(
            checkpoint,
            out,
            name=name,
            version=version,
            fp16=fp16,
            opset=opset,
            real_inputs=real,
            write_checkpoint=write_checkpoint,
            lrn=lrn,
        )
        meta = plain.meta

    calibration, calibration_file = None, None
    if calibrate is not None:
        calibration = _calibrate(checkpoint, meta, out, calibration_set, str(calibrate), refine_epochs, say)
        calibration_file = calibration.save(calibration_path(out))

    written: dict[str, FramesExportResult] = {}
    if fast_graphs != "none":
        say(f"exporting the fast graphs ({fast_graphs} shared trunk)")
        paths = bundle_graph_paths(out)
        written["exact"] = export_exact_graph(out, paths["exact"])
        written["shared"] = export_trunk_graph(
            checkpoint,
            paths["shared"],
            name=meta.name,
            version=meta.version,
            share=fast_graphs,
            calibration=calibration_beside(out),
        )
    return BundleResult(out, plain, calibration, calibration_file, written)


def _calibrate(
    checkpoint: dict[str, Any],
    meta: ModelMeta,
    plain_path: Path,
    videos: list[Path],
    data: str,
    refine_epochs: int,
    say: Callable[[str], None],
) -> BorderCalibration:
    """The border calibration of `checkpoint` fitted on `videos`, refined for `refine_epochs` epochs
    against the exact crops of the plain graph at `plain_path`."""
    network = fold_batchnorm(build_model_from_checkpoint(checkpoint)[0])  # as the exported graphs compute
    say(f"border calibration on {len(videos)} videos of {data}")
    calibration = fit_border_calibration(
        network,
        meta,
        videos,
        data=data,
        progress=lambda done, total: say(f"border calibration: {done}/{total} videos"),
    )
    if not refine_epochs:
        return calibration
    exact = OnnxModel.load(plain_path, providers=[CPU])
    windows = collect_windows(
        network,
        meta,
        videos,
        exact,
        progress=lambda done, total: say(f"border refinement: {done}/{total} videos"),
    )
    say(f"border refinement: {refine_epochs} epochs")
    return refine_border_calibration(network, calibration, windows, RefineOptions(epochs=refine_epochs))
