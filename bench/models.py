"""The models a benchmark run compares: the plain graph, its fast-path graphs and the PyTorch network.

With a model (default: the shipped one, `fstcn.models.default_model_path()`) the fast graphs are its
sidecars NAME.frames.onnx and NAME.trunk.onnx when they exist, else they are exported into the bench
cache from the model's checkpoint twin NAME.pt (or `--checkpoint`), with the border calibration
NAME.border.npz beside the model when there is one. Without a model file a randomly initialised `small`
network is exported into the cache: speed does not depend on the weights (agreement does: it needs a
trained model).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fstcn.models import default_model_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchModels:
    plain: Path
    exact: Path  # frames graph, exact crops
    shared: Path  # frames graph, shared trunk (lower SCL)
    shared_branch: Path  # frames graph, shared trunk up to the branch convs
    checkpoint: Path
    trained: bool  # False for the random-weights stand-in


def prepare_models(model: Path | None, checkpoint: Path | None, cache: Path) -> BenchModels:
    from fstcn.core.frames_graph import bundle_graph_paths
    from fstcn.model.export.calibration import calibration_beside, calibration_path
    from fstcn.model.export.frames import export_exact_graph
    from fstcn.model.export.shared import export_trunk_graph

    trained = True
    if model is None:
        model = default_model_path() if default_model_path().is_file() else None
    if model is None:
        model, checkpoint = _random_small(cache / "models")
        trained = False
    checkpoint = checkpoint or model.with_suffix(".pt")
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint for {model}: expected {checkpoint} (or pass --checkpoint)")
    sidecars = bundle_graph_paths(model)
    cached = bundle_graph_paths(cache / "models" / model.name)
    # a bundle's own graphs are timed as they are: they are what the service serves (and a checkout's
    # file times say nothing about which was written first)
    exact = sidecars["exact"] if sidecars["exact"].is_file() else cached["exact"]
    shared = sidecars["shared"] if sidecars["shared"].is_file() else cached["shared"]
    if exact == cached["exact"] and not _fresh(exact, model):
        logger.info("exporting the exact frames graph of %s to %s", model, exact)
        export_exact_graph(model, exact)
    calibration = calibration_beside(model)
    sources = [checkpoint, calibration_path(model)] if calibration is not None else [checkpoint]
    if shared == cached["shared"] and not _fresh(shared, *sources):
        logger.info("exporting the shared-trunk graph of %s to %s", checkpoint, shared)
        export_trunk_graph(checkpoint, shared, calibration=calibration)
    branch = cache / "models" / f"{model.stem}.trunk-branch.onnx"
    if not _fresh(branch, *sources):
        logger.info("exporting the shared-trunk (branch) graph of %s to %s", checkpoint, branch)
        export_trunk_graph(checkpoint, branch, share="branch", calibration=calibration)
    return BenchModels(model, exact, shared, branch, checkpoint, trained)


def _fresh(path: Path, *sources: Path) -> bool:
    return path.is_file() and all(path.stat().st_mtime >= source.stat().st_mtime for source in sources)


def _random_small(root: Path) -> tuple[Path, Path]:
    """A randomly initialised `small` FstCN (10 classes), exported once into `root`."""
    import torch

    from fstcn.model.checkpoint import save_checkpoint
    from fstcn.model.export import export_model
    from fstcn.model.network import fstcn

    onnx_path, checkpoint = root / "random-small.onnx", root / "random-small.pt"
    if onnx_path.is_file() and checkpoint.is_file():
        return onnx_path, checkpoint
    torch.manual_seed(0)
    network = fstcn(preset="small", num_classes=10)
    save_checkpoint(
        checkpoint,
        model=network,
        config=network.config,
        labels=[f"class{i}" for i in range(10)],
        sampling=network.config.sampling,
        epoch=0,
    )
    export_model(checkpoint, onnx_path, write_checkpoint=False, version="random")
    return onnx_path, checkpoint
