"""PyTorch checkpoints of FstCN models: what they hold, and how to rebuild a model from one.

A checkpoint is a plain dict saved with `torch.save` and loaded with `torch.load(weights_only=True)`
(no pickled classes, so loading a file cannot run code):

    format_version  int                  CHECKPOINT_VERSION
    preset          str                  the preset's name ("paper", "small", "tiny")
    config          dict                 `FstCNConfig.to_dict()` (the preset with its overrides)
    labels          list[str]            class names, in classifier order
    sampling        dict                 `SamplingParams` as a dict (l_t, s_t, d_t, M, ref_fps)
    state_dict      dict[str, Tensor]    the network's weights (the auxiliary classifier included)
    epoch           int
    optimizer       dict | None          optimizer.state_dict(), for resuming
    extra           dict                 anything else (training options, history, normalisation, ...):
                                         plain types and tensors only

Like nanoGPT's `model_args`, the config makes the file self-describing: `build_model_from_checkpoint`
needs nothing else. Normalisation is the `ModelMeta` default unless `extra` overrides it (keys `mean`,
`std`, `diff_scale`, at top level, in `extra["normalisation"]`, or in the `extra["meta"]` ModelMeta JSON).
"""

from __future__ import annotations

import enum
import os
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fstcn.core.meta import ModelMeta, SamplingParams
from fstcn.core.presets import FstCNConfig
from fstcn.model.network import FstCN

CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("preset", "config", "labels", "sampling", "state_dict", "epoch")


def unwrap_model(model: nn.Module) -> FstCN:
    """The FstCN inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    for attribute in ("module", "_orig_mod"):
        while hasattr(model, attribute) and isinstance(getattr(model, attribute), nn.Module):
            model = getattr(model, attribute)
    if not isinstance(model, FstCN):
        raise ValueError(f"expected an FstCN model, got {type(model).__name__}")
    return model


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    config: FstCNConfig,
    labels: list[str] | tuple[str, ...],
    sampling: SamplingParams,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write a checkpoint atomically (temp file + rename); `half` stores float weights as fp16.

    Raises ValueError when the pieces do not fit together (labels vs classifier, clip length vs the TCL).
    """
    network = unwrap_model(model)
    labels = [str(label) for label in labels]
    if len(labels) != network.num_classes:
        raise ValueError(f"{len(labels)} labels for a {network.num_classes}-class model")
    if len(set(labels)) != len(labels):
        raise ValueError("labels must be unique")
    if sampling.clip_length != config.clip_length:
        raise ValueError(
            f"sampling.clip_length {sampling.clip_length} != config.clip_length {config.clip_length}: "
            "the temporal FC is sized for the config's clip length"
        )
    if network.config != config:
        raise ValueError(f"the model was built from another config:\n{network.config}\nvs\n{config}")
    state_dict = {key: value.detach().cpu() for key, value in network.state_dict().items()}
    if half:
        state_dict = {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}
    checkpoint = {
        "format_version": CHECKPOINT_VERSION,
        "preset": config.name,
        "config": config.to_dict(),
        "labels": labels,
        "sampling": asdict(sampling),
        "state_dict": state_dict,
        "epoch": int(epoch),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "extra": _plain(extra or {}, "extra"),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint written by `save_checkpoint` (tensors mapped to `map_location`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which
        raise ValueError(f"{path} is not a readable FstCN checkpoint: {error}") from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} is not an FstCN checkpoint (top level is {type(checkpoint).__name__})")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise ValueError(f"{path} is not an FstCN checkpoint: missing {missing}")
    version = checkpoint.get("format_version", CHECKPOINT_VERSION)
    if version != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint format_version {version}")
    checkpoint.setdefault("optimizer", None)
    checkpoint["extra"] = checkpoint.get("extra") or {}
    return checkpoint


def model_meta(
    checkpoint: dict[str, Any],
    *,
    name: str | None = None,
    version: str | None = None,
    precision: str = "fp32",
) -> ModelMeta:
    """The serving metadata of a checkpoint: labels, sampling, sizes, normalisation (see module doc)."""
    config = FstCNConfig.from_dict(checkpoint["config"])
    extra = checkpoint.get("extra") or {}
    meta = ModelMeta(
        name=name or str(extra.get("name") or f"fstcn-{config.name}"),
        version=version or str(extra.get("version") or f"epoch{checkpoint['epoch']}"),
        preset=config.name,
        labels=tuple(checkpoint["labels"]),
        sampling=SamplingParams(**checkpoint["sampling"]),
        resize_short=config.resize_short,
        crop_size=config.crop_size,
        precision=precision,
    )
    return replace(meta, **_normalisation(extra))


def build_model_from_checkpoint(
    checkpoint: dict[str, Any] | str | Path, map_location: str | torch.device = "cpu"
) -> tuple[FstCN, ModelMeta]:
    """Rebuild the network (float32, eval mode) and its `ModelMeta` from a checkpoint dict or path."""
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint, map_location)
    config = FstCNConfig.from_dict(checkpoint["config"])
    sampling = SamplingParams(**checkpoint["sampling"])
    if sampling.clip_length != config.clip_length:
        raise ValueError(f"checkpoint sampling.clip_length {sampling.clip_length} != {config.clip_length}")
    model = FstCN(config, num_classes=len(checkpoint["labels"]))
    model.load_state_dict(checkpoint["state_dict"])  # copies fp16 weights into the float32 parameters
    model.to(map_location).eval()
    return model, model_meta(checkpoint)


def _normalisation(extra: dict[str, Any]) -> dict[str, Any]:
    """mean/std/diff_scale overrides from a checkpoint's extra (top level > "normalisation" > "meta")."""
    sources: list[dict[str, Any]] = []
    if isinstance(extra.get("meta"), str):
        try:
            sources.append(asdict(ModelMeta.from_json(extra["meta"])))
        except ValueError:
            pass  # a stale or foreign meta string: the explicit keys below still apply
    if isinstance(extra.get("normalisation"), dict):
        sources.append(extra["normalisation"])
    sources.append(extra)
    found: dict[str, Any] = {}
    for source in sources:
        for key in ("mean", "std"):
            if source.get(key) is not None:
                values = tuple(float(v) for v in source[key])
                if len(values) != 3:
                    raise ValueError(f"normalisation {key} needs 3 values, got {values}")
                found[key] = values
        if source.get("diff_scale") is not None:
            found["diff_scale"] = float(source["diff_scale"])
    return found


def _plain(value: Any, where: str) -> Any:
    """`value` as plain containers, scalars and tensors, so that `weights_only=True` can load it."""
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    if isinstance(value, dict):
        return {str(key): _plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value, where)
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value), where)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    raise ValueError(f"checkpoint {where} holds a {type(value).__name__}; use plain types or tensors")
