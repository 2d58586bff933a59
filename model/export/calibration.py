"""The shared trunk's border calibration as data: per cut and path, a scale and shift for every element of
the cut window, and its file NAME.border.npz beside the model NAME.onnx.

A window of the shared trunk (`fstcn.model.export.shared.SharedTrunkGraph`) is cut from feature maps
computed on the whole frame, so near its edges it has seen the frame around the crop where an exact
crop's convs saw zero padding. The calibration maps each window element x to `scale * x + shift` (one
Mul and one Add per window in the exported graph) to bring it closer to what exact crops compute; it is
fitted by `fstcn.model.export.calibration_fit` and refined by `fstcn.model.export.refine`. The cut is
after the lower SCL (share="lower") or after the paths' branch convs (share="branch"); one file holds
both. numpy only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fstcn.core.frames_graph import SHARE_DEPTHS

PATHS = ("spatial", "temporal")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class WindowCalibration:
    """scale and shift (C, s, s) float32 per path, for one cut (`share`), and how well the lines fit."""

    share: str
    scale: dict[str, npt.NDArray[np.float32]]
    shift: dict[str, npt.NDArray[np.float32]]
    # mean squared difference to the exact crops' values, per path, before and after, on the fit's data
    mse_before: dict[str, float]
    mse_after: dict[str, float]
    # refined on the decision (`fstcn.model.export.refine`): mean per-crop KL(exact || shared), before, after
    decision_kl: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.share not in SHARE_DEPTHS:
            raise ValueError(f"share must be one of {SHARE_DEPTHS}, got {self.share!r}")
        for path in PATHS:
            if self.scale[path].shape != self.shift[path].shape or self.scale[path].ndim != 3:
                raise ValueError(f"{path}: scale and shift must both be (C, s, s)")


@dataclass(frozen=True)
class BorderCalibration:
    """The calibrations of both cuts, fitted on `videos` videos of `data`."""

    cuts: dict[str, WindowCalibration]
    videos: int
    data: str
    refine_epochs: int = 0  # epochs of `fstcn.model.export.refine` after the least-squares fit; 0 = none

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays: dict[str, npt.NDArray[Any]] = {}
        for share, cut in self.cuts.items():
            for name in PATHS:
                arrays[f"{share}/{name}/scale"] = cut.scale[name]
                arrays[f"{share}/{name}/shift"] = cut.shift[name]
        info = {
            "format_version": FORMAT_VERSION,
            "videos": self.videos,
            "data": self.data,
            "refine_epochs": self.refine_epochs,
            "fit": {
                share: {"mse_before": c.mse_before, "mse_after": c.mse_after, "decision_kl": c.decision_kl}
                for share, c in self.cuts.items()
            },
        }
        arrays["info"] = np.frombuffer(json.dumps(info).encode(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            np.savez(handle, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> BorderCalibration:
        with np.load(Path(path), allow_pickle=False) as archive:
            info = json.loads(archive["info"].tobytes().decode())
            if info.get("format_version") != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: unsupported border calibration format {info.get('format_version')!r}"
                )
            cuts = {
                share: WindowCalibration(
                    share=share,
                    scale={name: archive[f"{share}/{name}/scale"].astype(np.float32) for name in PATHS},
                    shift={name: archive[f"{share}/{name}/shift"].astype(np.float32) for name in PATHS},
                    mse_before=fit["mse_before"],
                    mse_after=fit["mse_after"],
                    decision_kl=None if fit.get("decision_kl") is None else tuple(fit["decision_kl"]),
                )
                for share, fit in info["fit"].items()
            }
        return cls(
            cuts=cuts,
            videos=int(info["videos"]),
            data=str(info["data"]),
            refine_epochs=int(info.get("refine_epochs", 0)),
        )


def calibration_path(model_path: str | Path) -> Path:
    """Where the calibration of models/NAME.onnx lives: models/NAME.border.npz."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}.border.npz")


def calibration_beside(model_path: str | Path) -> BorderCalibration | None:
    """The border calibration of models/NAME.onnx (models/NAME.border.npz), or None without one."""
    path = calibration_path(model_path)
    return BorderCalibration.load(path) if path.is_file() else None
