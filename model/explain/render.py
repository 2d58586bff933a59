"""What `fstcn explain` writes: the saliency grid PNG of one explanation, and JSON reports.

`save_saliency_grid` renders one PNG (row 1: the appearance frame; then one row per V_diff frame: the
difference image, its heat map, and the heat map over the clip frame it starts from). `write_json`
writes a report with numpy values made plain and NaN as null.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fstcn.model.explain.saliency import Explanation

__all__ = ["save_saliency_grid", "write_json"]


def _heat(saliency: npt.NDArray[np.floating[Any]], scale: float) -> npt.NDArray[np.float64]:
    """Saliency -> [0, 1] with `scale` (a high percentile) as full heat."""
    if scale <= 0:
        return np.zeros(saliency.shape, dtype=np.float64)
    return np.clip(np.asarray(saliency, dtype=np.float64) / scale, 0.0, 1.0)


def _scale(saliency: npt.NDArray[np.floating[Any]]) -> float:
    """99.5th percentile: one hot pixel must not wash the rest of the map out."""
    return float(np.percentile(saliency, 99.5)) if saliency.size else 0.0


def _difference_image(diff: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    """V_diff frame (c, c, 3) int16 -> RGB in [0, 1]: grey = no change, contrast-stretched."""
    peak = max(float(np.abs(diff).max()), 1.0)
    return np.clip(0.5 + 0.5 * diff.astype(np.float64) / peak, 0.0, 1.0)


def save_saliency_grid(explanation: Explanation, path: Path | str, *, title: str | None = None) -> Path:
    """One PNG: rows = the appearance frame, then the l_t V_diff frames; columns = input, saliency heat
    map, heat map over the frame. V_diff maps share one colour scale (so their strengths compare)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exp = explanation
    frames = exp.motion_saliency.shape[0]
    rows = 1 + frames
    fig, axes = plt.subplots(rows, 3, figsize=(7.2, 2.35 * rows + 0.6), squeeze=False)
    app_scale = _scale(exp.appearance_saliency)
    mot_scale = _scale(exp.motion_saliency)
    overlays: list[tuple[str, Any, Any, float, Any]] = [
        (
            f"appearance  t={exp.appearance_frame_time:.2f}s",
            exp.appearance_image / 255.0,
            exp.appearance_saliency,
            app_scale,
            exp.appearance_image / 255.0,
        )
    ]
    for i in range(frames):
        overlays.append(
            (
                f"V_diff {i}: {exp.diff_frame_times[i]:.2f}s - {exp.clip_frame_times[i]:.2f}s",
                _difference_image(exp.motion_image[i]),
                exp.motion_saliency[i],
                mot_scale,
                exp.clip_images[i] / 255.0,
            )
        )
    for row, (label, image, saliency, scale, background) in enumerate(overlays):
        heat = _heat(saliency, scale)
        axes[row, 0].imshow(image, interpolation="nearest")
        axes[row, 0].set_ylabel(label.split(":")[0].split("  ")[0], fontsize=8)
        axes[row, 1].imshow(heat, cmap="inferno", vmin=0.0, vmax=1.0, interpolation="nearest")
        grey = background.mean(axis=-1)  # (c, c, 3) -> (c, c): the heat carries the colour
        axes[row, 2].imshow(grey, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axes[row, 2].imshow(heat, cmap="jet", alpha=0.6 * heat, vmin=0.0, vmax=1.0, interpolation="nearest")
        axes[row, 1].set_title(label, fontsize=7)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    for col, name in enumerate(("network input", f"saliency ({exp.method})", "saliency over frame")):
        axes[0, col].set_xlabel(name, fontsize=8)
        axes[0, col].xaxis.set_label_position("top")
    headline = (
        f"explained: {exp.target} (video score {exp.video_scores[exp.target_index]:.2f}; "
        f"predicted {exp.predicted} {exp.video_scores[exp.predicted_index]:.2f})\n"
        f"clip pair {exp.clip_index + 1}/{exp.num_clips}, centre crop, logit {exp.target_logit:.2f}, "
        f"p {exp.target_prob:.2f}"
    )
    fig.suptitle(title or headline, fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_json(data: dict[str, Any], path: Path | str) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_plain_json(data), indent=2, allow_nan=False)
    out.write_text(text + "\n", encoding="utf-8")
    return out


def _plain_json(value: Any) -> Any:
    """numpy scalars -> Python, NaN/inf -> None (an all-zero saliency map has no share), recursively."""
    if isinstance(value, dict):
        return {str(key): _plain_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_json(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
