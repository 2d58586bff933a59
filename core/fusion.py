"""Score fusion over clip pairs and test-time crops: the Sparsity Concentration Index (docs/design.md,
"Fusion").

For clip pair i and crop k the network gives class probabilities p_{k,i}. SCI(p) = (N * max_j p_j /
||p||_1 - 1) / (N - 1) is 1 for a one-hot p and 0 for a uniform one, so confident crops weigh more:
the clip score is q_i = sum_k SCI(p_{k,i}) p_{k,i} / sum_k SCI(p_{k,i}) (the plain mean if every weight
is 0) and the video score is the class-wise max over clips. The `mean` baseline averages everything.
Pure numpy, shared by the service and the evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["FUSION_METHODS", "FusionMethod", "FusionResult", "fuse_scores", "sci"]

FusionMethod = Literal["sci", "mean"]
FUSION_METHODS: tuple[str, ...] = ("sci", "mean")

FloatArray = npt.NDArray[np.float64]


def sci(probs: npt.ArrayLike) -> FloatArray:
    """Sparsity Concentration Index over the last axis: (..., N) -> (...), in [0, 1].

    (N * max_j p_j / ||p||_1 - 1) / (N - 1); an all-zero vector gets 0. Requires N >= 2 and p >= 0.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim < 1 or p.shape[-1] < 2:
        raise ValueError(f"SCI needs at least 2 classes on the last axis, got shape {p.shape}")
    if np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError("probabilities must be finite and non-negative")
    n = p.shape[-1]
    total = p.sum(axis=-1)
    peak = p.max(axis=-1)
    ratio = np.divide(peak, total, out=np.zeros_like(total), where=total > 0)
    # Rounding can push a one-hot or uniform vector a hair outside [0, 1].
    result: FloatArray = np.asarray(np.clip((n * ratio - 1.0) / (n - 1.0), 0.0, 1.0), dtype=np.float64)
    return np.where(total > 0, result, 0.0)


@dataclass(frozen=True)
class FusionResult:
    """video_scores (N,), clip_scores (M, N) = q_i (crop mean per clip for `mean`), clip_sci (M,)."""

    video_scores: FloatArray
    clip_scores: FloatArray
    clip_sci: FloatArray


def fuse_scores(probs: npt.ArrayLike, method: str = "sci") -> FusionResult:
    """Fuse per-clip, per-crop probabilities (M, K, N) into one video score (N,).

    `sci`: q_i = SCI-weighted mean over crops (plain mean when all of clip i's weights are 0), video
    score = max_i q_i. `mean`: video score = mean over all clips and crops; clip_scores are then the
    crop means. clip_sci is the SCI of each clip score. N >= 2 is required.
    """
    if method not in FUSION_METHODS:
        raise ValueError(f"fusion method must be one of {FUSION_METHODS}, got {method!r}")
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 3:
        raise ValueError(f"expected probabilities of shape (M, K, N), got {p.shape}")
    num_clips, num_crops, num_classes = p.shape
    if num_clips < 1 or num_crops < 1:
        raise ValueError(f"need at least one clip and one crop, got shape {p.shape}")
    if num_classes < 2:
        raise ValueError(f"fusion needs N >= 2 classes, got {num_classes}")
    crop_mean = p.mean(axis=1)  # (M, N)
    if method == "mean":
        clip_scores: FloatArray = crop_mean
        video_scores: FloatArray = p.mean(axis=(0, 1))
    else:
        weights = sci(p)  # (M, K)
        weight_sum = weights.sum(axis=1)  # (M,)
        weighted = np.einsum("mk,mkn->mn", weights, p)  # (M, N)
        safe_sum = np.where(weight_sum > 0, weight_sum, 1.0)[:, None]
        clip_scores = np.where(weight_sum[:, None] > 0, weighted / safe_sum, crop_mean)
        video_scores = clip_scores.max(axis=0)
    return FusionResult(video_scores=video_scores, clip_scores=clip_scores, clip_sci=sci(clip_scores))
