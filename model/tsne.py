"""t-SNE of FstCN's learned features: does the fused representation separate the classes best?

The paper embeds the features of similar classes with t-SNE and finds that the fused SCL+TCL features
separate them better than either path alone. Here, per video: decode the planned frames and build the
M clip pairs' centre-crop inputs as the service does (`fstcn.model.runner`: `decode_for_scoring`, then
`TorchRunner.prepare`), run `FstCN.features` and average each of the three penultimate activations over
the clip pairs: the spatial path's last FC, the temporal path's last FC and the fusion
FC (all after their ReLU; eval mode, so no dropout). Each set is embedded in 2-D with scikit-learn's
t-SNE (fixed `random_state`, PCA initialisation) and scored by
  - k-NN accuracy in the embedding (leave-one-out, k = 5),
  - k-NN accuracy on the raw features (leave-one-out, k = 5, Euclidean): the embedding's number can flatter
    or hide structure, this one does not depend on t-SNE,
  - the silhouette score of the classes on the raw features (Euclidean; -1..1, higher = tighter and
    farther apart).
`save_tsne_png` draws one panel per feature set, coloured by class, the scores in the panel titles.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fstcn.core.clips import ClipPlan
from fstcn.core.video.decode import DecodedVideo
from fstcn.model.datasets import VideoSample
from fstcn.model.runner import DECODE_ERRORS, TorchRunner, decode_for_scoring

logger = logging.getLogger(__name__)

__all__ = [
    "FEATURE_SETS",
    "TsneResult",
    "collect_features",
    "knn_loo_accuracy",
    "limit_per_class",
    "run_tsne",
    "save_tsne_png",
    "separability",
    "video_features",
]

# FstCNFeatures field -> panel title
FEATURE_SETS: dict[str, str] = {
    "spatial": "spatial path (SCL last FC)",
    "temporal": "temporal path (TCL last FC)",
    "fused": "fused (fusion FC)",
}
KNN_K = 5


def video_features(
    runner: TorchRunner, video: DecodedVideo, plan: ClipPlan
) -> dict[str, npt.NDArray[np.float32]]:
    """Penultimate features of one decoded video and its plan of M clip pairs -> {"spatial": (D_s,),
    "temporal": (D_t,), "fused": (D_f,)}, each the mean over the M clip pairs at the centre crop. A path
    the model does not have (paths="spatial"/"temporal") is left out."""
    import torch

    feeds = runner.prepare(video.frames, video.times, plan, 1)  # (M, 3, c, c), (M, T, 3, c, c)
    with torch.inference_mode():
        features = runner.model.features(*runner.inputs(feeds))
    out: dict[str, npt.NDArray[np.float32]] = {}
    for name in FEATURE_SETS:
        value = getattr(features, name)
        if value is not None:
            out[name] = value.float().mean(dim=0).cpu().numpy()  # (M, D) -> (D,)
    return out


def limit_per_class(samples: Sequence[VideoSample], limit: int | None) -> list[VideoSample]:
    """The first `limit` samples of each class, in list order (all when None)."""
    if limit is None:
        return list(samples)
    if limit < 1:
        raise ValueError(f"limit per class must be >= 1, got {limit}")
    counts: dict[int, int] = {}
    kept = []
    for sample in samples:
        if counts.get(sample.label_index, 0) < limit:
            counts[sample.label_index] = counts.get(sample.label_index, 0) + 1
            kept.append(sample)
    return kept


def collect_features(
    samples: Sequence[VideoSample],
    runner: TorchRunner,
    *,
    num_clips: int | None = None,
    progress: bool = False,
) -> tuple[dict[str, npt.NDArray[np.float32]], npt.NDArray[np.int64], list[dict[str, str]]]:
    """Features of every video: ({name: (V, D)}, label indices (V,), failed [{path, error}]).

    Videos that fail to decode are skipped and listed (as `fstcn evaluate` does)."""
    from tqdm import tqdm

    rows: dict[str, list[npt.NDArray[np.float32]]] = {}
    labels: list[int] = []
    failed: list[dict[str, str]] = []
    for sample in tqdm(samples, desc="features", unit="video", disable=not progress):
        try:
            video, plan = decode_for_scoring(sample.path, runner.meta, num_clips)
        except DECODE_ERRORS as error:
            logger.warning("skipping %s: %s", sample.path, error)
            failed.append({"path": str(sample.path), "error": f"{type(error).__name__}: {error}"})
            continue
        for name, vector in video_features(runner, video, plan).items():
            rows.setdefault(name, []).append(vector)
        labels.append(sample.label_index)
    features = {name: np.stack(vectors) for name, vectors in rows.items()}  # (V, D) each
    return features, np.asarray(labels, dtype=np.int64), failed


def knn_loo_accuracy(points: npt.ArrayLike, labels: npt.ArrayLike, k: int = KNN_K) -> float:
    """Leave-one-out k-NN accuracy: points (V, D), labels (V,) -> fraction of points whose k nearest
    other points (Euclidean) vote for their class. Ties go to the class of the nearest tied neighbour."""
    x = np.asarray(points, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"expected points (V, D) and labels (V,), got {x.shape} and {y.shape}")
    count = x.shape[0]
    if count < 2:
        raise ValueError(f"need at least 2 points, got {count}")
    k = min(k, count - 1)
    squared = np.sum(x * x, axis=1)
    distances = squared[:, None] + squared[None, :] - 2.0 * (x @ x.T)  # (V, V)
    np.fill_diagonal(distances, np.inf)  # leave the point itself out
    neighbours = np.argsort(distances, axis=1, kind="stable")[:, :k]  # (V, k), nearest first
    votes = np.zeros((count, int(y.max()) + 1), dtype=np.float64)
    for rank in range(k):
        # each vote is 1; a tiny rank penalty makes the nearest neighbour win ties
        np.add.at(votes, (np.arange(count), y[neighbours[:, rank]]), 1.0 - 1e-6 * rank)
    return float(np.mean(np.argmax(votes, axis=1) == y))


def separability(
    features: npt.ArrayLike, embedding: npt.ArrayLike, labels: npt.ArrayLike, k: int = KNN_K
) -> dict[str, float | None]:
    """knn_embedding, knn_features (leave-one-out k-NN accuracy) and silhouette (raw features; None when
    it is undefined: fewer than 2 classes, or as many classes as points)."""
    from sklearn.metrics import silhouette_score

    y = np.asarray(labels, dtype=np.int64)
    x = np.asarray(features, dtype=np.float64)
    classes = np.unique(y).size
    silhouette = float(silhouette_score(x, y, metric="euclidean")) if 2 <= classes <= y.shape[0] - 1 else None
    return {
        "knn_embedding": knn_loo_accuracy(embedding, y, k),
        "knn_features": knn_loo_accuracy(x, y, k),
        "silhouette": silhouette,
    }


@dataclass
class TsneResult:
    """Embeddings (V, 2) and scores per feature set, with the labels (V,) and the class names."""

    label_names: tuple[str, ...]
    labels: npt.NDArray[np.int64]
    embeddings: dict[str, npt.NDArray[np.float32]]
    scores: dict[str, dict[str, float | None]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        counts = np.bincount(self.labels, minlength=len(self.label_names))
        return {
            "settings": self.settings,
            "videos": int(self.labels.shape[0]),
            "videos_per_class": {name: int(n) for name, n in zip(self.label_names, counts, strict=True)},
            "scores": self.scores,
            "best": {
                metric: max(self.scores, key=lambda name: _score_key(self.scores[name][metric]))
                for metric in ("knn_embedding", "knn_features", "silhouette")
            },
        }


def _score_key(value: float | None) -> float:
    return -np.inf if value is None else value


def run_tsne(
    features: dict[str, npt.NDArray[np.float32]],
    labels: npt.ArrayLike,
    label_names: Sequence[str],
    *,
    seed: int = 0,
    perplexity: float = 30.0,
    k: int = KNN_K,
) -> TsneResult:
    """Embed every feature set (V, D) in 2-D with t-SNE and score it (see `separability`).

    The perplexity is capped at (V - 1) / 3 so that small sets (tests, few videos) still embed."""
    from sklearn.manifold import TSNE

    y = np.asarray(labels, dtype=np.int64)
    count = y.shape[0]
    if count < 3:
        raise ValueError(f"t-SNE needs at least 3 videos, got {count}")
    used = float(min(perplexity, max(1.0, (count - 1) / 3.0)))
    embeddings: dict[str, npt.NDArray[np.float32]] = {}
    scores: dict[str, dict[str, float | None]] = {}
    for name, matrix in features.items():
        if matrix.shape[0] != count:
            raise ValueError(f"{name}: {matrix.shape[0]} feature rows for {count} labels")
        tsne = TSNE(n_components=2, perplexity=used, init="pca", learning_rate="auto", random_state=seed)
        embedding = tsne.fit_transform(np.asarray(matrix, dtype=np.float64)).astype(np.float32)  # (V, 2)
        embeddings[name] = embedding
        scores[name] = separability(matrix, embedding, y, k)
    settings = {"seed": seed, "perplexity": used, "knn_k": min(k, count - 1), "metric": "euclidean"}
    return TsneResult(tuple(label_names), y, embeddings, scores, settings)


def save_tsne_png(result: TsneResult, path: Path | str, *, title: str = "") -> Path:
    """One panel per feature set, points coloured by class, one legend; scores in the panel titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.embeddings)
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 5.6), squeeze=False)
    present = np.unique(result.labels)
    cmap = plt.get_cmap("tab10" if len(result.label_names) <= 10 else "tab20")
    handles = []
    for col, name in enumerate(names):
        ax = axes[0, col]
        points = result.embeddings[name]
        for index in present:
            chosen = result.labels == index
            handle = ax.scatter(
                points[chosen, 0],
                points[chosen, 1],
                s=14,
                color=cmap(int(index) % cmap.N),
                label=result.label_names[index],
                alpha=0.85,
                linewidths=0,
            )
            if col == 0:
                handles.append(handle)
        score = result.scores[name]
        silhouette = "n/a" if score["silhouette"] is None else f"{score['silhouette']:.2f}"
        ax.set_title(
            f"{FEATURE_SETS.get(name, name)}\n"
            f"{result.settings.get('knn_k', KNN_K)}-NN acc: t-SNE {score['knn_embedding']:.2f}, "
            f"features {score['knn_features']:.2f}\nsilhouette (features) {silhouette}",
            fontsize=9,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    columns = min(len(handles), 5)
    legend_rows = -(-len(handles) // columns) if handles else 0
    fig.legend(handles=handles, loc="lower center", ncol=columns, fontsize=9, frameon=False, markerscale=1.5)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0.0, 0.06 * legend_rows, 1.0, 1.0))  # room for the legend below the panels
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
