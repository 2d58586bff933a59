"""Video-level evaluation of an FstCN model (an exported ONNX file or a PyTorch checkpoint) on a dataset.

Every video goes the service's way, through the core's one scoring path: `decode_for_scoring`
(headers, clip-pair plan, only the planned frames decoded at the model's `resize_short`), then
`fstcn.core.scoring.clip_probs` with all 18 crops, i.e. probabilities (M, 18, N). The runner is
`fstcn.core.runtime.OnnxModel` for an .onnx file (any graph form) and `fstcn.model.runner.TorchRunner` for a
checkpoint. The 1-, 2- and 9-crop results are subsets of those 18 rows (`CROP_SUBSETS`:
`crop_boxes(..., 18)[:9]` are the nine unflipped positions, index 4 is the centre and 9 + 4 its flip), fused
with `fstcn.core.fusion` both with SCI weighting and the plain mean. The report holds top-1/top-5 for every
(fusion, crops) pair, and per-class accuracy, the confusion matrix and per-video predictions for the
headline setting (SCI, 18 crops by default).

Forms: given a bundle's plain NAME.onnx, `load_form_runners` opens the forms of it that are asked for
(`default`: what the service serves by default, the shared-trunk graph when the bundle holds one;
`exact`: the paper's exact crops; `plain`: the plain graph itself), and `evaluate_samples` scores every
video with each of them from ONE decode, reporting each form's top-1/top-5 side by side with its
agreement with the first form's headline decisions (`EvaluationReport.forms`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fstcn.core.clips import CROP_COUNTS, crop_boxes
from fstcn.core.frames_graph import served_graph_path
from fstcn.core.fusion import FUSION_METHODS, fuse_scores
from fstcn.core.meta import ModelMeta
from fstcn.core.runtime import CPU, ModelLoadError, OnnxModel
from fstcn.core.scoring import Runner, clip_probs
from fstcn.model.datasets import VideoSample
from fstcn.model.runner import DECODE_ERRORS, TorchRunner, decode_for_scoring

logger = logging.getLogger(__name__)

__all__ = [
    "CROP_SUBSETS",
    "FORMS",
    "EvaluationReport",
    "bundle_forms",
    "confusion_matrix",
    "evaluate_samples",
    "load_form_runners",
    "load_runner",
    "save_confusion_png",
    "topk_correct",
    "video_probs",
]

# Rows of the 18-crop output that make up each smaller crop set (see fstcn.core.clips.crop_boxes).
CROP_SUBSETS: dict[int, tuple[int, ...]] = {
    1: (4,),
    2: (4, 13),
    9: tuple(range(9)),
    18: tuple(range(18)),
}
FULL_CROPS = 18
# The forms of a bundle `--forms` may name: the served default, the paper's exact crops, the plain graph.
FORMS = ("default", "exact", "plain")


def load_runner(path: Path | str, *, batch_size: int = 64, device: str | None = None) -> Runner:
    """An ONNX file (suffix .onnx) or a PyTorch checkpoint (anything else, e.g. .pt) as a runner.

    An ONNX file runs on ONNX Runtime's CPU provider with `device="cpu"`, else on the GPU when one
    loads (one log line otherwise); `batch_size` is the rows of one forward pass of a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {path} does not exist")
    if path.suffix.lower() == ".onnx":
        try:
            return OnnxModel.load(path, providers=[CPU] if device == "cpu" else None)
        except ModelLoadError as error:
            raise ValueError(str(error)) from None
    return TorchRunner.from_checkpoint(path, batch_size=batch_size, device=device)


def bundle_forms(path: Path | str) -> tuple[str, ...]:
    """The forms worth comparing for `path`: ("default", "exact") when it is a bundle's plain NAME.onnx
    whose default form is not the exact crops (a shared-trunk graph lies beside it), else ()."""
    path = Path(path)
    if path.suffix.lower() != ".onnx" or served_graph_path(path, exact_crops=False) == served_graph_path(
        path, exact_crops=True
    ):
        return ()
    return ("default", "exact")


def load_form_runners(
    path: Path | str, forms: Sequence[str] = (), *, batch_size: int = 64, device: str | None = None
) -> dict[str, Runner]:
    """{form: runner} for the `forms` (of FORMS) of the bundle whose plain file is `path`; with no forms,
    {"model": load_runner(path)}: the file itself. Raises ValueError for an unknown form, for forms of
    a file that is not an ONNX bundle, and for repeated forms."""
    if not forms:
        return {"model": load_runner(path, batch_size=batch_size, device=device)}
    unknown = [form for form in forms if form not in FORMS]
    if unknown:
        raise ValueError(f"unknown form(s) {unknown}: use {', '.join(FORMS)}")
    if len(set(forms)) != len(forms):
        raise ValueError(f"forms repeat: {list(forms)}")
    if Path(path).suffix.lower() != ".onnx":
        raise ValueError(f"forms are files of an ONNX bundle; {path} is not an .onnx file")
    files = {
        "default": served_graph_path(path, exact_crops=False),
        "exact": served_graph_path(path, exact_crops=True),
        "plain": Path(path),
    }
    return {form: load_runner(files[form], batch_size=batch_size, device=device) for form in forms}


def video_probs(path: Path | str, runner: Runner, *, num_clips: int | None = None) -> npt.NDArray[np.float32]:
    """Probabilities (M, 18, N) of one video file: every clip pair under every crop of
    `crop_boxes(.., 18)`, decoded and scored as the service does."""
    video, plan = decode_for_scoring(path, runner.meta, num_clips)
    return clip_probs(runner, video, plan, FULL_CROPS)


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
    # several forms: name -> path, graph form, results (as above), the share of videos whose headline
    # top-1 equals the first form's ("agreement") and each video's headline top-1 label ("predicted", in
    # the order of `videos`); the fields above are the first form's
    forms: dict[str, dict[str, Any]] = field(default_factory=dict)

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
    runner: Runner | Mapping[str, Runner],
    *,
    model_name: str = "",
    num_clips: int | None = None,
    crop_counts: Sequence[int] = CROP_COUNTS,
    headline: tuple[str, int] = ("sci", 18),
    progress: bool = True,
) -> EvaluationReport:
    """Evaluate `runner` on `samples` (dataset labels `labels`) at video level.

    `runner` may be several forms of one model ({name: runner}, `load_form_runners`): each video is
    decoded once and scored by each; the report is the first form's, with every form's results and
    agreement in `forms`. The dataset's labels must equal the model's (same names, same order): label
    index i must mean the same class on both sides. Videos that fail to decode are listed in `failed`
    and left out.
    """
    from tqdm import tqdm

    runners = dict(runner) if isinstance(runner, Mapping) else {"model": runner}
    if not runners:
        raise ValueError("no runner to evaluate")
    first = next(iter(runners.values()))
    for name, each in runners.items():
        if each.meta.labels != first.meta.labels or each.meta.sampling != first.meta.sampling:
            raise ValueError(f"form {name!r} has other labels or sampling than {next(iter(runners))!r}")
    if list(labels) != list(first.meta.labels):
        raise ValueError(
            f"dataset labels {list(labels)} differ from the model's {list(first.meta.labels)} "
            "(names and order must match)"
        )
    for count in crop_counts:
        if count not in CROP_SUBSETS:
            raise ValueError(f"crop count must be one of {tuple(CROP_SUBSETS)}, got {count}")
    if headline[0] not in FUSION_METHODS or headline[1] not in crop_counts:
        raise ValueError(f"headline {headline} is not among the evaluated settings")
    _check_crop_subsets(first.meta)
    clips = num_clips if num_clips is not None else first.meta.sampling.num_clips
    settings = [(fusion, count) for fusion in ("sci", "mean") for count in crop_counts]
    tallies = {name: _Tally(settings, headline) for name in runners}
    truth: list[int] = []
    videos: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    started = time.perf_counter()
    for sample in tqdm(samples, desc="evaluate", unit="video", disable=not progress):
        try:
            video, plan = decode_for_scoring(sample.path, first.meta, clips)
        except DECODE_ERRORS as error:  # one broken file must not end a long evaluation
            logger.warning("skipping %s: %s", sample.path, error)
            failed.append({"path": str(sample.path), "error": f"{type(error).__name__}: {error}"})
            continue
        truth.append(sample.label_index)
        for name, each in runners.items():
            probs = clip_probs(each, video, plan, FULL_CROPS)  # (M, 18, N)
            tallies[name].add(probs, sample.label_index)
        main = tallies[next(iter(runners))]
        guess, score = main.predicted[-1], main.scores[-1]
        videos.append(
            {"path": str(sample.path), "label": sample.label, "predicted": labels[guess], "score": score}
        )
    total = len(truth)
    main = tallies[next(iter(runners))]
    matrix = confusion_matrix(truth, main.predicted, len(labels))
    per_class = []
    for index, label in enumerate(labels):
        count = int(matrix[index].sum())
        hits = int(matrix[index, index])
        per_class.append(
            {"label": label, "videos": count, "correct": hits, "accuracy": hits / count if count else None}
        )
    forms: dict[str, dict[str, Any]] = {}
    if len(runners) > 1:
        for name, each in runners.items():
            same = sum(a == b for a, b in zip(tallies[name].predicted, main.predicted, strict=True))
            forms[name] = {
                "path": str(getattr(each, "path", "")),
                "form": getattr(each, "form", type(each).__name__),
                "results": tallies[name].results(total),
                "agreement": same / total if total else None,
                "predicted": [labels[guess] for guess in tallies[name].predicted],  # as `videos`
            }
    return EvaluationReport(
        model=model_name,
        labels=list(labels),
        num_clips=clips,
        headline={"fusion": headline[0], "crops": headline[1]},
        results=main.results(total),
        per_class=per_class,
        confusion=matrix.tolist(),
        videos=videos,
        failed=failed,
        seconds=time.perf_counter() - started,
        forms=forms,
    )


class _Tally:
    """One runner's counts over the videos: top-1/top-5 hits per (fusion, crops), headline decisions."""

    def __init__(self, settings: list[tuple[str, int]], headline: tuple[str, int]) -> None:
        self.settings, self.headline = settings, headline
        self.correct1 = dict.fromkeys(settings, 0)
        self.correct5 = dict.fromkeys(settings, 0)
        self.predicted: list[int] = []  # headline top-1 per video
        self.scores: list[float] = []  # its fused score

    def add(self, probs: npt.NDArray[np.float32], label: int) -> None:
        """One video's probabilities (M, 18, N) and its true class."""
        for fusion, count in self.settings:
            scores = fuse_scores(probs[:, list(CROP_SUBSETS[count])], fusion).video_scores
            self.correct1[(fusion, count)] += topk_correct(scores, label, 1)
            self.correct5[(fusion, count)] += topk_correct(scores, label, 5)
            if (fusion, count) == self.headline:
                guess = int(np.argmax(scores))
                self.predicted.append(guess)
                self.scores.append(float(scores[guess]))

    def results(self, total: int) -> list[dict[str, Any]]:
        return [
            {
                "fusion": fusion,
                "crops": count,
                "videos": total,
                "correct1": self.correct1[(fusion, count)],
                "correct5": self.correct5[(fusion, count)],
                "top1": self.correct1[(fusion, count)] / total if total else None,
                "top5": self.correct5[(fusion, count)] / total if total else None,
            }
            for fusion, count in self.settings
        ]


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
