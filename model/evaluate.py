"""Video-level evaluation of an FstCN model (an exported ONNX file or a PyTorch checkpoint) on a dataset.

For each video: decode every frame (short side = the model's `resize_short`, via the service's
decoder), plan and gather the M clip pairs and cut all 18 crops with `fstcn.core.clips` (the same code the
service runs), run the network once, and reshape its probabilities to (M, 18, N). The 1-, 2- and
9-crop results are subsets of those 18 rows (`CROP_SUBSETS`: `crop_boxes(..., 18)[:9]` are the nine
unflipped positions, index 4 is the centre and 9 + 4 its flip), fused with `fstcn.core.fusion` both with
SCI weighting and the plain mean. The report holds top-1/top-5 for every (fusion, crops) pair, and
per-class accuracy, the confusion matrix and per-video predictions for the headline setting (SCI, 18
crops by default). torch is imported only when a checkpoint is evaluated.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
import numpy.typing as npt

from fstcn.core.clips import CROP_COUNTS, crop_boxes, gather_clip_pairs, network_inputs, plan_clip_pairs
from fstcn.core.errors import FstcnError
from fstcn.core.fusion import FUSION_METHODS, fuse_scores
from fstcn.core.meta import APPEARANCE_INPUT, MOTION_INPUT, PROBS_OUTPUT, ModelMeta
from fstcn.model.datasets import VideoSample

logger = logging.getLogger(__name__)

__all__ = [
    "CROP_SUBSETS",
    "EvaluationReport",
    "OnnxPredictor",
    "Predictor",
    "TorchPredictor",
    "confusion_matrix",
    "evaluate_samples",
    "frames_probs",
    "load_predictor",
    "save_confusion_png",
    "topk_correct",
    "video_probs",
]

# Rows of the 18-crop output that make up each smaller crop set (see model.clips.crop_boxes).
CROP_SUBSETS: dict[int, tuple[int, ...]] = {
    1: (4,),
    2: (4, 13),
    9: tuple(range(9)),
    18: tuple(range(18)),
}
FULL_CROPS = 18


class Predictor(Protocol):
    """A model as evaluation sees it: its metadata and a batch function to probabilities."""

    meta: ModelMeta

    def __call__(
        self, appearance: npt.NDArray[np.float32], motion: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """appearance (B, 3, c, c), motion (B, T, 3, c, c) float32 -> probs (B, N) float32."""
        ...


def _check_probs(probs: npt.NDArray[Any], rows: int, num_classes: int) -> npt.NDArray[np.float32]:
    if probs.shape != (rows, num_classes):
        raise ValueError(
            f"model returned probabilities of shape {probs.shape}, expected ({rows}, {num_classes})"
        )
    return probs.astype(np.float32, copy=False)


class OnnxPredictor:
    """An exported FstCN ONNX file run with ONNX Runtime, in batches of at most `batch_size` rows."""

    def __init__(
        self, path: Path | str, *, batch_size: int = 64, providers: Sequence[str] | None = None
    ) -> None:
        from fstcn.service.engine import Engine, ModelLoadError

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # The service's loader: providers None = GPU when one loads, else CPU with one log line.
        try:
            engine = Engine.load(path, providers=providers)
        except ModelLoadError as error:
            raise ValueError(str(error)) from None
        if engine.graph is not None:
            raise ValueError(f"{path} is a frames graph (a serving fast path); evaluate the plain export")
        self.session = engine.session
        self.meta = engine.meta
        self.batch_size = batch_size

    def __call__(
        self, appearance: npt.NDArray[np.float32], motion: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        outputs = []
        for begin in range(0, appearance.shape[0], self.batch_size):
            feed = {
                APPEARANCE_INPUT: appearance[begin : begin + self.batch_size],
                MOTION_INPUT: motion[begin : begin + self.batch_size],
            }
            outputs.append(self.session.run([PROBS_OUTPUT], feed)[0])
        return _check_probs(np.concatenate(outputs), appearance.shape[0], self.meta.num_classes)


class TorchPredictor:
    """A PyTorch checkpoint (model/checkpoint.py) in eval mode; softmax over the network's logits."""

    def __init__(self, path: Path | str, *, batch_size: int = 32, device: str | None = None) -> None:
        import torch

        from fstcn.model.checkpoint import build_model_from_checkpoint

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        model, self.meta = build_model_from_checkpoint(path)  # float32, eval mode, meta as export writes it
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size

    def __call__(
        self, appearance: npt.NDArray[np.float32], motion: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        import torch

        outputs = []
        with torch.inference_mode():
            for begin in range(0, appearance.shape[0], self.batch_size):
                app = torch.from_numpy(appearance[begin : begin + self.batch_size]).to(self.device)
                mot = torch.from_numpy(motion[begin : begin + self.batch_size]).to(self.device)
                outputs.append(torch.softmax(self.model(app, mot).float(), dim=-1).cpu().numpy())
        return _check_probs(np.concatenate(outputs), appearance.shape[0], self.meta.num_classes)


def load_predictor(path: Path | str, *, batch_size: int = 64, device: str | None = None) -> Predictor:
    """An ONNX file (suffix .onnx) or a PyTorch checkpoint (anything else, e.g. .pt)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {path} does not exist")
    if path.suffix.lower() == ".onnx":
        providers = ["CPUExecutionProvider"] if device == "cpu" else None
        return OnnxPredictor(path, batch_size=batch_size, providers=providers)
    return TorchPredictor(path, batch_size=batch_size, device=device)


# What a broken or unsupported file raises while decoding (anything else is a bug and propagates).
DECODE_ERRORS: tuple[type[Exception], ...] = (FstcnError, av.error.FFmpegError, OSError, ValueError)

DecodeFn = Callable[[Path, int], tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]]


def _decode_all_frames(
    path: Path, resize_short: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    from fstcn.core.video.decode import decode_video

    decoded = decode_video(path, resize_short=resize_short)
    return decoded.frames, decoded.times


def frames_probs(
    frames: npt.NDArray[np.uint8],
    times: npt.NDArray[np.float64],
    predictor: Predictor,
    *,
    num_clips: int | None = None,
) -> npt.NDArray[np.float32]:
    """Probabilities (M, 18, N) of decoded frames (F, h, w, 3) with times (F,): every clip pair under
    every crop of `crop_boxes(.., 18)`."""
    meta = predictor.meta
    clips = num_clips if num_clips is not None else meta.sampling.num_clips
    if frames.shape[0] < 2:
        raise ValueError(f"need at least 2 decoded frames, got {frames.shape[0]}")
    plan = plan_clip_pairs(float(times[0]), float(times[-1]), meta.sampling, clips)
    appearance, motion = gather_clip_pairs(frames, times, plan)
    app, mot = network_inputs(appearance, motion, meta, FULL_CROPS)  # (M*18, ...) clip-major
    probs = predictor(app, mot)
    return probs.reshape(clips, FULL_CROPS, meta.num_classes)  # (M*18, N) -> (M, 18, N)


def video_probs(
    path: Path,
    predictor: Predictor,
    *,
    num_clips: int | None = None,
    decode: DecodeFn | None = None,
) -> npt.NDArray[np.float32]:
    """Probabilities (M, 18, N) of one video file (see `frames_probs`).

    Decodes every frame (exact timestamps, no seeking), so evaluation samples exactly as planned.
    """
    frames, times = (decode or _decode_all_frames)(path, predictor.meta.resize_short)
    return frames_probs(frames, times, predictor, num_clips=num_clips)


def topk_correct(scores: npt.NDArray[np.floating[Any]], label: int, k: int) -> bool:
    """Whether `label` is among the k highest scores (ties broken towards the lower index, like argmax)."""
    order = np.argsort(-scores, kind="stable")
    return bool(label in order[: min(k, scores.shape[-1])])


def confusion_matrix(
    labels: Sequence[int], predicted: Sequence[int], num_classes: int
) -> npt.NDArray[np.int64]:
    """(N, N) counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


@dataclass
class EvaluationReport:
    """Everything `fstcn evaluate` writes to report.json (see `to_dict`)."""

    model: str
    labels: list[str]
    num_clips: int
    headline: dict[str, Any]  # {"fusion": ..., "crops": ...}
    results: list[dict[str, Any]]  # one per (fusion, crops): top1, top5, correct1, correct5, videos
    per_class: list[dict[str, Any]]  # headline setting: label, videos, correct, accuracy (None if no videos)
    confusion: list[list[int]]  # headline setting: row = true, column = predicted
    videos: list[dict[str, Any]]  # path, label, predicted (headline), score
    failed: list[dict[str, str]]  # path, error: videos that could not be decoded
    dataset: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def result(self, fusion: str, crops: int) -> dict[str, Any]:
        for row in self.results:
            if row["fusion"] == fusion and row["crops"] == crops:
                return row
        raise KeyError(f"no result for fusion={fusion!r} crops={crops}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def evaluate_samples(
    samples: Sequence[VideoSample],
    labels: Sequence[str],
    predictor: Predictor,
    *,
    model_name: str = "",
    num_clips: int | None = None,
    crop_counts: Sequence[int] = CROP_COUNTS,
    headline: tuple[str, int] = ("sci", 18),
    progress: bool = True,
    decode: DecodeFn | None = None,
) -> EvaluationReport:
    """Evaluate `predictor` on `samples` (dataset labels `labels`) at video level.

    The dataset's labels must equal the model's (same names, same order): label index i must mean the
    same class on both sides. Videos that fail to decode are listed in `failed` and left out.
    """
    from tqdm import tqdm

    if list(labels) != list(predictor.meta.labels):
        raise ValueError(
            f"dataset labels {list(labels)} differ from the model's {list(predictor.meta.labels)} "
            "(names and order must match)"
        )
    for count in crop_counts:
        if count not in CROP_SUBSETS:
            raise ValueError(f"crop count must be one of {tuple(CROP_SUBSETS)}, got {count}")
    if headline[0] not in FUSION_METHODS or headline[1] not in crop_counts:
        raise ValueError(f"headline {headline} is not among the evaluated settings")
    _check_crop_subsets(predictor.meta)
    num_classes = len(labels)
    clips = num_clips if num_clips is not None else predictor.meta.sampling.num_clips
    settings = [(fusion, count) for fusion in ("sci", "mean") for count in crop_counts]
    correct1 = dict.fromkeys(settings, 0)
    correct5 = dict.fromkeys(settings, 0)
    truth: list[int] = []
    predicted: list[int] = []
    videos: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    decode_fn = decode or _decode_all_frames
    started = time.perf_counter()
    for sample in tqdm(samples, desc="evaluate", unit="video", disable=not progress):
        try:
            frames, times = decode_fn(sample.path, predictor.meta.resize_short)
            if frames.shape[0] < 2:
                raise ValueError(f"only {frames.shape[0]} decodable frame(s)")
        except DECODE_ERRORS as error:  # one broken file must not end a long evaluation
            logger.warning("skipping %s: %s", sample.path, error)
            failed.append({"path": str(sample.path), "error": f"{type(error).__name__}: {error}"})
            continue
        probs = frames_probs(frames, times, predictor, num_clips=clips)  # (M, 18, N)
        truth.append(sample.label_index)
        for fusion, count in settings:
            scores = fuse_scores(probs[:, list(CROP_SUBSETS[count])], fusion).video_scores
            correct1[(fusion, count)] += topk_correct(scores, sample.label_index, 1)
            correct5[(fusion, count)] += topk_correct(scores, sample.label_index, 5)
            if (fusion, count) == headline:
                guess = int(np.argmax(scores))
                predicted.append(guess)
                videos.append(
                    {
                        "path": str(sample.path),
                        "label": sample.label,
                        "predicted": labels[guess],
                        "score": float(scores[guess]),
                    }
                )
    total = len(truth)
    results = [
        {
            "fusion": fusion,
            "crops": count,
            "videos": total,
            "correct1": correct1[(fusion, count)],
            "correct5": correct5[(fusion, count)],
            "top1": correct1[(fusion, count)] / total if total else None,
            "top5": correct5[(fusion, count)] / total if total else None,
        }
        for fusion, count in settings
    ]
    matrix = confusion_matrix(truth, predicted, num_classes)
    per_class = []
    for index, label in enumerate(labels):
        count = int(matrix[index].sum())
        hits = int(matrix[index, index])
        per_class.append(
            {"label": label, "videos": count, "correct": hits, "accuracy": hits / count if count else None}
        )
    return EvaluationReport(
        model=model_name,
        labels=list(labels),
        num_clips=clips,
        headline={"fusion": headline[0], "crops": headline[1]},
        results=results,
        per_class=per_class,
        confusion=matrix.tolist(),
        videos=videos,
        failed=failed,
        seconds=time.perf_counter() - started,
    )


def _check_crop_subsets(meta: ModelMeta) -> None:
    """CROP_SUBSETS must pick exactly crop_boxes(.., K) out of crop_boxes(.., 18)."""
    size = meta.crop_size
    full = crop_boxes(meta.resize_short, meta.resize_short, size, FULL_CROPS)
    for count, rows in CROP_SUBSETS.items():
        if [full[row] for row in rows] != crop_boxes(meta.resize_short, meta.resize_short, size, count):
            raise AssertionError(f"CROP_SUBSETS[{count}] does not match model.clips.crop_boxes")


def save_confusion_png(matrix: npt.ArrayLike, labels: Sequence[str], path: Path, *, title: str = "") -> None:
    """Write the confusion matrix (row = true, column = predicted) as a PNG, counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    n = len(labels)
    side = max(4.0, 0.45 * n + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(n), labels=list(labels), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=list(labels), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    colour = "white" if fractions[i, j] > 0.5 else "black"
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color=colour)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
