"""Saliency maps of FstCN decisions: the paper's class-score back-propagation to the network inputs.

For one video: decode and score it as the service does (`fstcn.model.runner.decode_for_scoring`, then
`fstcn.core.scoring.score_video` over M clip pairs x K crops, SCI fusion, with a `TorchRunner`), pick the
clip pair whose fused clip score for the explained class is highest, and back-propagate that class's
pre-softmax logit to the network inputs of its centre crop: the appearance frame (3, c, c) and the l_t
V_diff frames (T, 3, c, c). A saliency map is the maximum over the colour channels of |gradient|
(Simonyan et al. 2014), or of |gradient x input| with `method="gradient_x_input"` (zero wherever the
input is zero, i.e. wherever a V_diff frame does not change). An `Explanation` holds the maps, the
crops the network saw and the times of the decoded frames they come from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fstcn.core.clips import (
    CROP_COUNTS,
    ClipPlan,
    CropBox,
    crop_boxes,
    gather_clip_pairs,
    nearest_frame_indices,
)
from fstcn.core.meta import APPEARANCE_INPUT, MOTION_INPUT
from fstcn.core.scoring import score_video
from fstcn.core.video.decode import DecodedVideo
from fstcn.model.runner import TorchRunner, decode_for_scoring
from fstcn.models import default_model_path

__all__ = [
    "DEFAULT_CHECKPOINT",
    "SALIENCY_METHODS",
    "Explanation",
    "explain_decoded",
    "explain_video",
    "load_explainer",
    "resolve_checkpoint",
    "saliency_maps",
]

# The PyTorch twin of the shipped default model (`fstcn export` writes NAME.pt beside NAME.onnx).
DEFAULT_CHECKPOINT = default_model_path().with_suffix(".pt")
SALIENCY_METHODS = ("gradient", "gradient_x_input")
FloatArray = npt.NDArray[np.float32]


# ----------------------------------------------------------------------------------------------------------
# Model loading.


def resolve_checkpoint(path: Path | str | None) -> Path:
    """The checkpoint to explain: `path`, its .pt twin when `path` is an exported .onnx file, or the
    default model's twin (`models/fstcn-small.pt`) when None. Raises ValueError when it does not exist."""
    checkpoint = DEFAULT_CHECKPOINT if path is None else Path(path)
    if checkpoint.suffix.lower() == ".onnx":
        checkpoint = checkpoint.with_suffix(".pt")  # saliency needs the PyTorch weights of the ONNX model
    if not checkpoint.is_file():
        exported = path is None or str(path).lower().endswith(".onnx")
        hint = " (fstcn export writes NAME.pt beside NAME.onnx)" if exported else ""
        raise ValueError(f"checkpoint {checkpoint} does not exist{hint}")
    return checkpoint


def load_explainer(path: Path | str | None, device: str = "cpu") -> TorchRunner:
    """The checkpoint at `path` (see `resolve_checkpoint`) as a runner, in eval mode on `device`."""
    return TorchRunner.from_checkpoint(resolve_checkpoint(path), device=device)


# ----------------------------------------------------------------------------------------------------------
# Saliency.


def saliency_maps(
    model: Any,
    appearance: npt.NDArray[np.float32],
    motion: npt.NDArray[np.float32],
    class_index: int | Sequence[int],
    *,
    method: str = "gradient",
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Input saliency of class logits.

    appearance float32 (B, 3, c, c), motion float32 (B, T, 3, c, c) (network inputs, normalised),
    class_index: one class for every row or one per row -> (appearance saliency (B, c, c), motion
    saliency (B, T, c, c), logits (B, N)). Saliency = max over colour channels of |d logit / d input|
    (`gradient`) or of |d logit / d input * input| (`gradient_x_input`). The model runs in eval mode
    (dropout off, BatchNorm frozen), so the rows are independent and one backward pass of the summed
    logits gives every row's own gradient.
    """
    import torch

    if method not in SALIENCY_METHODS:
        raise ValueError(f"method must be one of {SALIENCY_METHODS}, got {method!r}")
    if appearance.ndim != 4 or motion.ndim != 5 or appearance.shape[0] != motion.shape[0]:
        raise ValueError(f"expected (B, 3, c, c) and (B, T, 3, c, c), got {appearance.shape}, {motion.shape}")
    batch = appearance.shape[0]
    classes = np.array(np.broadcast_to(np.asarray(class_index, dtype=np.int64), (batch,)))  # writable copy
    if np.any(classes < 0) or np.any(classes >= model.num_classes):
        raise ValueError(f"class_index must be in [0, {model.num_classes}), got {classes.tolist()}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        app = torch.tensor(appearance, dtype=torch.float32, device=device, requires_grad=True)
        mot = torch.tensor(motion, dtype=torch.float32, device=device, requires_grad=True)
        with torch.enable_grad():
            logits = model(app, mot)  # (B, N)
            rows = torch.arange(batch, device=device)
            picked = logits[rows, torch.from_numpy(classes).to(device)]  # (B,)
            grad_app, grad_mot = torch.autograd.grad(picked.sum(), (app, mot))
    finally:
        model.train(was_training)
    if method == "gradient_x_input":
        grad_app, grad_mot = grad_app * app.detach(), grad_mot * mot.detach()
    app_sal = grad_app.abs().amax(dim=1)  # (B, 3, c, c) -> (B, c, c)
    mot_sal = grad_mot.abs().amax(dim=2)  # (B, T, 3, c, c) -> (B, T, c, c)
    return (
        app_sal.cpu().numpy().astype(np.float32),
        mot_sal.cpu().numpy().astype(np.float32),
        logits.detach().cpu().numpy().astype(np.float32),
    )


def _softmax(logits: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    probs: npt.NDArray[np.float32] = (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
    return probs


@dataclass
class Explanation:
    """The saliency of one video's decision, and everything needed to draw or measure it.

    Frame times are those of the decoded frames the network saw (nearest to the planned times). The
    crop box is in the resized frame (`resized` = (h, w), `rotation` the display rotation applied by the
    decoder); images are the uint8 crops the network saw (unnormalised).
    """

    labels: tuple[str, ...]
    video_scores: npt.NDArray[np.float64]  # (N,) SCI-fused over the M clip pairs and K crops
    num_clips: int
    num_crops: int
    predicted_index: int
    target_index: int
    clip_index: int  # the most confident clip pair for the target class
    clip_scores: npt.NDArray[np.float64]  # (M,) fused clip score of the target class
    clip_times: npt.NDArray[np.float64]  # (T,) s, V_clip times t_i of the chosen pair (planned)
    diff_times: npt.NDArray[np.float64]  # (T,) s, V_diff partner times t_i + d_t / ref_fps (planned)
    clip_frame_times: npt.NDArray[np.float64]  # (T,) s, the decoded frame taken for each t_i
    diff_frame_times: npt.NDArray[np.float64]  # (T,) s, the decoded frame taken for each partner
    appearance_frame_time: float  # s, the decoded appearance frame (V_clip position l_t // 2)
    resized: tuple[int, int]  # (h, w) of the decoded frames
    rotation: int  # display rotation (degrees clockwise) the decoder applied
    box: CropBox  # the centre crop, where saliency is computed
    target_logit: float  # pre-softmax score of the target class at that crop
    target_prob: float  # its softmax probability at that crop
    method: str
    label_given: bool  # the class was given (--label), not the prediction
    appearance_image: npt.NDArray[np.uint8]  # (c, c, 3)
    clip_images: npt.NDArray[np.uint8]  # (T, c, c, 3) V_clip frames t_i (overlay background)
    motion_image: npt.NDArray[np.int16]  # (T, c, c, 3) V_diff frames
    appearance_saliency: FloatArray  # (c, c)
    motion_saliency: FloatArray  # (T, c, c)

    @property
    def predicted(self) -> str:
        return self.labels[self.predicted_index]

    @property
    def target(self) -> str:
        return self.labels[self.target_index]

    def top(self, k: int = 5) -> list[dict[str, Any]]:
        order = np.argsort(-self.video_scores, kind="stable")[:k]
        return [{"label": self.labels[i], "score": float(self.video_scores[i])} for i in order]

    def saliency_stats(self) -> dict[str, Any]:
        """Mass, peak and concentration of each map (see `_map_stats`), and how the motion mass spreads
        over the V_diff frames."""
        motion_mass = self.motion_saliency.reshape(self.motion_saliency.shape[0], -1).sum(axis=1)  # (T,)
        total = float(motion_mass.sum())
        return {
            "appearance": _map_stats(self.appearance_saliency),
            "motion": _map_stats(self.motion_saliency),
            "motion_per_frame": [_map_stats(frame) for frame in self.motion_saliency],
            "motion_mass_share_per_frame": [float(m / total) if total > 0 else 0.0 for m in motion_mass],
        }

    def to_dict(self) -> dict[str, Any]:
        def seconds(values: npt.NDArray[np.float64]) -> list[float]:
            return [round(float(t), 6) for t in values]

        return {
            "predicted": {"label": self.predicted, "score": float(self.video_scores[self.predicted_index])},
            "top5": self.top(5),
            "explained": {
                "label": self.target,
                "score": float(self.video_scores[self.target_index]),
                "given": self.label_given,
            },
            "clips": self.num_clips,
            "crops": self.num_crops,
            "fusion": "sci",
            "clip_pair": {
                "index": self.clip_index,
                "clip_scores": [float(v) for v in self.clip_scores],
                "clip_times_s": seconds(self.clip_times),
                "diff_times_s": seconds(self.diff_times),
                "clip_frame_times_s": seconds(self.clip_frame_times),
                "diff_frame_times_s": seconds(self.diff_frame_times),
                "appearance_frame_time_s": round(self.appearance_frame_time, 6),
                "crop": {
                    "top": self.box.top,
                    "left": self.box.left,
                    "flip": self.box.flip,
                    "size": int(self.appearance_saliency.shape[0]),
                    "resized": list(self.resized),
                },
                "logit": self.target_logit,
                "prob": self.target_prob,
            },
            "saliency": {"method": self.method, **self.saliency_stats()},
        }


def _map_stats(saliency: npt.NDArray[np.floating[Any]]) -> dict[str, float]:
    """sum, max, mean, and top10_share: the share of the mass in the 10% most salient pixels (0.1 for a
    flat map, 1.0 when everything sits in a tenth of the pixels)."""
    values = np.sort(np.asarray(saliency, dtype=np.float64).ravel())[::-1]
    total = float(values.sum())
    top = max(1, math.ceil(0.1 * values.size))
    return {
        "sum": total,
        "max": float(values[0]) if values.size else 0.0,
        "mean": float(values.mean()) if values.size else 0.0,
        "top10_share": float(values[:top].sum() / total) if total > 0 else 0.0,
    }


def explain_decoded(
    runner: TorchRunner,
    video: DecodedVideo,
    plan: ClipPlan,
    *,
    label: str | int | None = None,
    num_crops: int = 18,
    method: str = "gradient",
) -> Explanation:
    """Explain the decision on a decoded video (frames uint8 (F, h, w, 3), times (F,)) and its clip plan.

    The video is scored from the M clip pairs of `plan` x `num_crops` crops (SCI fusion, like `fstcn
    evaluate`); `label` (a name or an index; default: the predicted class) is the class explained; its
    most confident clip pair (highest fused clip score) is back-propagated at the centre crop.
    """
    meta = runner.meta
    if num_crops not in CROP_COUNTS:
        raise ValueError(f"num_crops must be one of {CROP_COUNTS}, got {num_crops}")
    fused = score_video(runner, video, plan, crops=num_crops, fusion="sci")
    predicted = int(np.argmax(fused.video_scores))
    target = predicted if label is None else _class_index(label, meta.labels)
    clip = int(np.argmax(fused.clip_scores[:, target]))  # first clip pair on ties
    pair = ClipPlan(  # the chosen clip pair alone: M = 1
        starts=plan.starts[clip : clip + 1],
        clip_times=plan.clip_times[clip : clip + 1],
        diff_times=plan.diff_times[clip : clip + 1],
    )

    feeds = runner.prepare(video.frames, video.times, pair, 1)  # (1, 3, c, c), (1, T, 3, c, c)
    app_sal, mot_sal, logits = saliency_maps(
        runner.model, feeds[APPEARANCE_INPUT], feeds[MOTION_INPUT], target, method=method
    )
    appearance, motion = gather_clip_pairs(video.frames, video.times, pair)  # (1, h, w, 3), (1, T, h, w, 3)

    height, width = video.frames.shape[1:3]
    size = meta.crop_size
    box = crop_boxes(height, width, size, 1)[0]
    window = (slice(box.top, box.top + size), slice(box.left, box.left + size))
    clip_frames = nearest_frame_indices(video.times, pair.clip_times[0])  # (T,)
    diff_frames = nearest_frame_indices(video.times, pair.diff_times[0])  # (T,)
    return Explanation(
        labels=tuple(meta.labels),
        video_scores=fused.video_scores,
        num_clips=plan.num_clips,
        num_crops=num_crops,
        predicted_index=predicted,
        target_index=target,
        clip_index=clip,
        clip_scores=fused.clip_scores[:, target],
        clip_times=pair.clip_times[0],
        diff_times=pair.diff_times[0],
        clip_frame_times=video.times[clip_frames],
        diff_frame_times=video.times[diff_frames],
        appearance_frame_time=float(video.times[clip_frames[clip_frames.shape[0] // 2]]),
        resized=(int(height), int(width)),
        rotation=int(video.info.rotation),
        box=box,
        target_logit=float(logits[0, target]),
        target_prob=float(_softmax(logits[0])[target]),
        method=method,
        label_given=label is not None,
        appearance_image=np.ascontiguousarray(appearance[0][window]),
        clip_images=np.ascontiguousarray(video.frames[clip_frames][:, window[0], window[1]]),
        motion_image=np.ascontiguousarray(motion[0][:, window[0], window[1]]),
        appearance_saliency=app_sal[0],
        motion_saliency=mot_sal[0],
    )


def explain_video(
    path: Path | str,
    runner: TorchRunner,
    *,
    label: str | int | None = None,
    num_clips: int | None = None,
    num_crops: int = 18,
    method: str = "gradient",
) -> Explanation:
    """`explain_decoded` on the video file at `path`, decoded as the service decodes an upload."""
    video, plan = decode_for_scoring(path, runner.meta, num_clips)
    return explain_decoded(runner, video, plan, label=label, num_crops=num_crops, method=method)


def _class_index(label: str | int, labels: Sequence[str]) -> int:
    if isinstance(label, int | np.integer):
        index = int(label)
        if not 0 <= index < len(labels):
            raise ValueError(f"class index {index} outside [0, {len(labels)})")
        return index
    if label not in labels:
        raise ValueError(f"unknown label {label!r}; the model knows {list(labels)}")
    return list(labels).index(label)
