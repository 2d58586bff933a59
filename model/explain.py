"""Saliency maps of FstCN decisions (the paper's class-score back-propagation) and how much of them falls
on the actor.

For one video: decode every frame at the model's `resize_short`, cut the M clip pairs with
`fstcn.core.clips` (the code the service runs), predict the video as evaluation does (M clip pairs x K
crops, SCI fusion), pick the clip pair whose fused clip score for the explained class is highest, and
back-propagate that class's pre-softmax logit to the network inputs of its centre crop: the appearance
frame (3, c, c) and the l_t V_diff frames (T, 3, c, c). A saliency map is the maximum over the colour
channels of |gradient| (Simonyan et al. 2014), or of |gradient x input| with `method="gradient_x_input"`
(zero wherever the input is zero, i.e. wherever a V_diff frame does not change). `save_saliency_grid`
renders one PNG (row 1: the appearance frame; then one row per V_diff frame: the difference image,
its heat map, and the heat map over the clip frame it starts from).

Saliency inside the figure: Synthetic Actions written with `--masks` knows the figure's silhouette per
encoded frame (1/4 resolution, original geometry). `mask_to_crop` maps such a mask into the model's
input geometry (mask cell -> original frame pixel -> resized frame -> crop box, flipped if the crop
is), V_diff frame i uses the union of the masks of its two frames, and `saliency_mask_share` is the
share of saliency mass inside the mask, to be compared with the mask's area share (what a map spread
evenly over the crop would give). `measure_saliency_in_masks` reports both over a dataset split.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fstcn.core.clips import (
    CROP_COUNTS,
    CropBox,
    crop_boxes,
    gather_clip_pairs,
    nearest_frame_indices,
    network_inputs,
    plan_clip_pairs,
)
from fstcn.core.fusion import fuse_scores
from fstcn.core.meta import ModelMeta
from fstcn.models import default_model_path

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CHECKPOINT",
    "SALIENCY_METHODS",
    "Explanation",
    "decode_all_frames",
    "explain_frames",
    "explain_video",
    "explanation_masks",
    "load_explainer",
    "mask_mismatch",
    "mask_shares",
    "mask_to_crop",
    "measure_saliency_in_masks",
    "resolve_checkpoint",
    "saliency_maps",
    "saliency_mask_share",
    "save_saliency_grid",
    "write_json",
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


def load_explainer(path: Path | str | None, device: str = "cpu") -> tuple[Any, ModelMeta]:
    """(FstCN in eval mode, its ModelMeta) from a checkpoint path (see `resolve_checkpoint`)."""
    from fstcn.model.checkpoint import build_model_from_checkpoint

    model, meta = build_model_from_checkpoint(resolve_checkpoint(path), map_location=device)
    return model.eval(), meta


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


def _predict_probs(
    model: Any, appearance: npt.NDArray[np.float32], motion: npt.NDArray[np.float32], batch_size: int = 64
) -> npt.NDArray[np.float32]:
    """Softmax probabilities (B, N) of network inputs, without gradients."""
    import torch

    device = next(model.parameters()).device
    outputs = []
    with torch.inference_mode():
        for begin in range(0, appearance.shape[0], batch_size):
            app = torch.from_numpy(appearance[begin : begin + batch_size]).to(device)
            mot = torch.from_numpy(motion[begin : begin + batch_size]).to(device)
            outputs.append(torch.softmax(model(app, mot).float(), dim=-1).cpu().numpy())
    return np.concatenate(outputs).astype(np.float32)


@dataclass
class Explanation:
    """The saliency of one video's decision, and everything needed to draw or measure it.

    Frame indices refer to the decoded frames (every frame, in presentation order). The crop box is in
    the resized frame (`resized` = (h, w)); images are the uint8 crops the network saw (unnormalised).
    """

    labels: tuple[str, ...]
    video_scores: npt.NDArray[np.float64]  # (N,) SCI-fused over the M clip pairs and K crops
    num_clips: int
    num_crops: int
    predicted_index: int
    target_index: int
    clip_index: int  # the most confident clip pair for the target class
    clip_scores: npt.NDArray[np.float64]  # (M,) fused clip score of the target class
    clip_times: npt.NDArray[np.float64]  # (T,) s, V_clip frame times t_i of the chosen pair
    diff_times: npt.NDArray[np.float64]  # (T,) s, V_diff partner times t_i + d_t / ref_fps
    clip_frames: npt.NDArray[np.int64]  # (T,) decoded frame index of each t_i
    diff_frames: npt.NDArray[np.int64]  # (T,) decoded frame index of each partner
    appearance_frame: int  # decoded frame index of the appearance frame (V_clip position l_t // 2)
    resized: tuple[int, int]  # (h, w) of the decoded frames
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
                "clip_times_s": [round(float(t), 6) for t in self.clip_times],
                "diff_times_s": [round(float(t), 6) for t in self.diff_times],
                "clip_frames": [int(i) for i in self.clip_frames],
                "diff_frames": [int(i) for i in self.diff_frames],
                "appearance_frame": self.appearance_frame,
                "appearance_time_s": round(float(self.clip_times[self.clip_times.shape[0] // 2]), 6),
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


def explain_frames(
    model: Any,
    meta: ModelMeta,
    frames: npt.NDArray[np.uint8],
    times: npt.NDArray[np.float64],
    *,
    label: str | int | None = None,
    num_clips: int | None = None,
    num_crops: int = 18,
    method: str = "gradient",
) -> Explanation:
    """Explain the decision on decoded frames uint8 (F, h, w, 3) with times (F,) seconds.

    The video is predicted from M clip pairs x `num_crops` crops (SCI fusion, like `fstcn evaluate`);
    `label` (a name or an index; default: the predicted class) is the class explained; its most
    confident clip pair (highest fused clip score) is back-propagated at the centre crop.
    """
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"need decoded frames (F >= 2, h, w, 3), got {frames.shape}")
    if num_crops not in CROP_COUNTS:
        raise ValueError(f"num_crops must be one of {CROP_COUNTS}, got {num_crops}")
    clips = num_clips if num_clips is not None else meta.sampling.num_clips
    plan = plan_clip_pairs(float(times[0]), float(times[-1]), meta.sampling, clips)
    appearance, motion = gather_clip_pairs(frames, times, plan)  # (M, h, w, 3), (M, T, h, w, 3)
    app_in, mot_in = network_inputs(appearance, motion, meta, num_crops)  # rows clip-major
    probs = _predict_probs(model, app_in, mot_in).reshape(clips, num_crops, meta.num_classes)  # (M, K, N)
    fused = fuse_scores(probs, "sci")
    predicted = int(np.argmax(fused.video_scores))
    target = predicted if label is None else _class_index(label, meta.labels)
    clip = int(np.argmax(fused.clip_scores[:, target]))  # first clip pair on ties

    centre_app, centre_mot = network_inputs(appearance[clip : clip + 1], motion[clip : clip + 1], meta, 1)
    app_sal, mot_sal, logits = saliency_maps(model, centre_app, centre_mot, target, method=method)

    height, width = frames.shape[1:3]
    size = meta.crop_size
    box = crop_boxes(height, width, size, 1)[0]
    window = (slice(box.top, box.top + size), slice(box.left, box.left + size))
    clip_frames = nearest_frame_indices(times, plan.clip_times[clip])  # (T,)
    diff_frames = nearest_frame_indices(times, plan.diff_times[clip])  # (T,)
    return Explanation(
        labels=tuple(meta.labels),
        video_scores=fused.video_scores,
        num_clips=clips,
        num_crops=num_crops,
        predicted_index=predicted,
        target_index=target,
        clip_index=clip,
        clip_scores=fused.clip_scores[:, target],
        clip_times=plan.clip_times[clip],
        diff_times=plan.diff_times[clip],
        clip_frames=clip_frames,
        diff_frames=diff_frames,
        appearance_frame=int(clip_frames[clip_frames.shape[0] // 2]),
        resized=(int(height), int(width)),
        box=box,
        target_logit=float(logits[0, target]),
        target_prob=float(_softmax(logits[0])[target]),
        method=method,
        label_given=label is not None,
        appearance_image=np.ascontiguousarray(appearance[clip][window]),
        clip_images=np.ascontiguousarray(frames[clip_frames][:, window[0], window[1]]),
        motion_image=np.ascontiguousarray(motion[clip][:, window[0], window[1]]),
        appearance_saliency=app_sal[0],
        motion_saliency=mot_sal[0],
    )


def _class_index(label: str | int, labels: Sequence[str]) -> int:
    if isinstance(label, int | np.integer):
        index = int(label)
        if not 0 <= index < len(labels):
            raise ValueError(f"class index {index} outside [0, {len(labels)})")
        return index
    if label not in labels:
        raise ValueError(f"unknown label {label!r}; the model knows {list(labels)}")
    return list(labels).index(label)


def decode_all_frames(
    path: Path, resize_short: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64], int]:
    """Every frame of `path` (exact timestamps, no seeking) and its display rotation."""
    from fstcn.core.video.decode import decode_video

    decoded = decode_video(path, resize_short=resize_short)
    return decoded.frames, decoded.times, decoded.info.rotation


def explain_video(
    path: Path | str,
    model: Any,
    meta: ModelMeta,
    *,
    label: str | int | None = None,
    num_clips: int | None = None,
    num_crops: int = 18,
    method: str = "gradient",
) -> Explanation:
    """`explain_frames` on every decoded frame of the video file at `path`."""
    frames, times, _ = decode_all_frames(Path(path), meta.resize_short)
    return explain_frames(
        model, meta, frames, times, label=label, num_clips=num_clips, num_crops=num_crops, method=method
    )


# ----------------------------------------------------------------------------------------------------------
# Rendering.


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
            f"appearance  t={exp.clip_times[frames // 2]:.2f}s (frame {exp.appearance_frame})",
            exp.appearance_image / 255.0,
            exp.appearance_saliency,
            app_scale,
            exp.appearance_image / 255.0,
        )
    ]
    for i in range(frames):
        overlays.append(
            (
                f"V_diff {i}: f{exp.diff_frames[i]} - f{exp.clip_frames[i]}  "
                f"({exp.diff_times[i]:.2f}s - {exp.clip_times[i]:.2f}s)",
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


# ----------------------------------------------------------------------------------------------------------
# Saliency inside the figure mask (Synthetic Actions --masks).


def mask_to_crop(
    mask: npt.NDArray[np.bool_],
    *,
    stride: int,
    frame_size: tuple[int, int],
    resized: tuple[int, int],
    box: CropBox,
    crop_size: int,
) -> npt.NDArray[np.bool_]:
    """A figure mask in the model's input geometry.

    mask bool (ceil(H / stride), ceil(W / stride)) over the original (H, W) = `frame_size` frame ->
    bool (crop_size, crop_size): each pixel of the crop `box` of the frame resized to `resized` = (h, w)
    takes the mask cell under its centre (resized pixel y covers original rows [y*H/h, (y+1)*H/h), its
    centre (y + 0.5) * H / h lies in mask row floor(that / stride)); flipped crops are flipped.
    """
    height, width = frame_size
    rh, rw = resized
    if mask.ndim != 2 or mask.shape != (-(-height // stride), -(-width // stride)):
        raise ValueError(f"mask {mask.shape} does not fit a {height}x{width} frame at stride {stride}")
    if box.top < 0 or box.left < 0 or box.top + crop_size > rh or box.left + crop_size > rw:
        raise ValueError(f"crop {box} of size {crop_size} does not fit the resized {rh}x{rw} frame")
    ys = box.top + np.arange(crop_size)
    xs = box.left + np.arange(crop_size)
    rows = np.minimum(np.floor((ys + 0.5) * height / rh / stride).astype(np.int64), mask.shape[0] - 1)
    cols = np.minimum(np.floor((xs + 0.5) * width / rw / stride).astype(np.int64), mask.shape[1] - 1)
    out: npt.NDArray[np.bool_] = mask[np.ix_(rows, cols)]  # (c, c)
    return out[:, ::-1] if box.flip else out


def saliency_mask_share(
    saliency: npt.NDArray[np.floating[Any]], mask: npt.NDArray[np.bool_]
) -> tuple[float, float]:
    """(share of saliency mass inside `mask`, area share of `mask`): the second is the chance level."""
    if saliency.shape != mask.shape:
        raise ValueError(f"saliency {saliency.shape} and mask {mask.shape} differ in shape")
    total = float(np.sum(saliency, dtype=np.float64))
    inside = float(np.sum(saliency[mask], dtype=np.float64))
    return (inside / total if total > 0 else float("nan")), float(mask.mean())


def explanation_masks(
    explanation: Explanation, masks: dict[str, np.ndarray], crop_size: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Figure masks of an explanation's inputs: appearance (c, c) and V_diff (T, c, c), the latter the
    union of the masks of the two frames each difference is taken between.

    `masks` is `synth.dataset.load_masks(...)` of the same video: one mask per encoded frame, which
    is one per decoded frame (checked by the caller)."""
    stride = int(masks["stride"])
    frame_size = (int(masks["frame_size"][0]), int(masks["frame_size"][1]))
    geometry = {
        "stride": stride,
        "frame_size": frame_size,
        "resized": explanation.resized,
        "box": explanation.box,
        "crop_size": crop_size,
    }
    frame_masks = masks["mask"]

    def crop(index: int) -> npt.NDArray[np.bool_]:
        return mask_to_crop(frame_masks[index], **geometry)  # type: ignore[arg-type]

    appearance = crop(explanation.appearance_frame)
    pairs = zip(explanation.clip_frames, explanation.diff_frames, strict=True)
    motion = np.stack([crop(int(start)) | crop(int(end)) for start, end in pairs])  # (T, c, c)
    return appearance, motion


def mask_shares(explanation: Explanation, masks: dict[str, np.ndarray], crop_size: int) -> dict[str, float]:
    """Saliency share inside the figure and the chance level, for the appearance map and for the V_diff
    maps pooled (mass-weighted over the l_t frames)."""
    app_mask, mot_mask = explanation_masks(explanation, masks, crop_size)
    app_share, app_chance = saliency_mask_share(explanation.appearance_saliency, app_mask)
    mot_share, mot_chance = saliency_mask_share(explanation.motion_saliency, mot_mask)
    return {
        "appearance_share": app_share,
        "appearance_chance": app_chance,
        "motion_share": mot_share,
        "motion_chance": mot_chance,
    }


def _summary(values: Sequence[float]) -> dict[str, float | int | None]:
    array = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if array.size == 0:
        return {"n": 0, "mean": None, "median": None}
    return {"n": int(array.size), "mean": float(array.mean()), "median": float(np.median(array))}


def _aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"videos": len(rows)}
    for part in ("appearance", "motion"):
        share = [r[f"{part}_share"] for r in rows]
        chance = [r[f"{part}_chance"] for r in rows]
        lift = [s / c for s, c in zip(share, chance, strict=True) if c > 0 and np.isfinite(s)]
        above = [s > c for s, c in zip(share, chance, strict=True) if np.isfinite(s)]
        out[part] = {
            "share": _summary(share),
            "chance": _summary(chance),
            "lift": _summary(lift),  # share / chance: 1 = no better than a flat map
            "above_chance": float(np.mean(above)) if above else None,  # fraction of videos
        }
    return out


def measure_saliency_in_masks(
    root: Path | str,
    model: Any,
    meta: ModelMeta,
    *,
    subset: str = "test",
    dataset_kind: str = "auto",
    limit: int | None = None,
    num_clips: int | None = None,
    num_crops: int = 1,
    method: str = "gradient",
    target: str = "predicted",
    examples: int = 0,
    examples_dir: Path | str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Share of saliency mass inside the figure over a Synthetic Actions split written with --masks.

    For each video (the first `limit`, in list order), the chosen class (`target`: "predicted" or
    "true") is explained as in `explain_frames`, and `mask_shares` compares its maps with the figure
    masks. Returns {"settings", "all", "correct", "videos", "skipped"}: "all"/"correct" hold, for the
    appearance and the V_diff maps, mean/median of the share, of the chance level (mask area share)
    and of their ratio, and the fraction of videos above chance. The first `examples` videos also get
    their saliency grid PNG in `examples_dir`.
    """
    from tqdm import tqdm

    from fstcn.model.datasets import load_dataset
    from fstcn.model.synth.dataset import load_masks, mask_path

    if target not in ("predicted", "true"):
        raise ValueError(f"target must be 'predicted' or 'true', got {target!r}")
    root = Path(root)
    dataset = load_dataset(dataset_kind, root, 1, subset)  # type: ignore[arg-type]
    if list(dataset.labels) != list(meta.labels):
        raise ValueError(f"dataset labels {list(dataset.labels)} differ from the model's {list(meta.labels)}")
    samples = dataset.samples[:limit] if limit is not None else dataset.samples
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for number, sample in enumerate(tqdm(samples, desc="saliency", unit="video", disable=not progress)):
        relative = sample.path.relative_to(root).as_posix()
        masks_file = mask_path(root, relative)
        if not masks_file.is_file():
            skipped.append({"path": relative, "reason": f"no masks file {masks_file} (fstcn synth --masks)"})
            continue
        masks = load_masks(masks_file)
        frames, times, rotation = decode_all_frames(sample.path, meta.resize_short)
        reason = mask_mismatch(frames, rotation, masks)
        if reason:
            skipped.append({"path": relative, "reason": reason})
            continue
        explanation = explain_frames(
            model,
            meta,
            frames,
            times,
            label=sample.label_index if target == "true" else None,
            num_clips=num_clips,
            num_crops=num_crops,
            method=method,
        )
        row = {
            "path": relative,
            "label": sample.label,
            "predicted": explanation.predicted,
            "explained": explanation.target,
            "correct": explanation.predicted_index == sample.label_index,
            **mask_shares(explanation, masks, meta.crop_size),
        }
        rows.append(row)
        if number < examples and examples_dir is not None:
            save_saliency_grid(explanation, Path(examples_dir) / f"{Path(relative).stem}.png")
    correct = [r for r in rows if r["correct"]]
    return {
        "settings": {
            "root": str(root),
            "subset": subset,
            "limit": limit,
            "clips": num_clips if num_clips is not None else meta.sampling.num_clips,
            "crops": num_crops,
            "method": method,
            "target": target,
            "model": {"name": meta.name, "version": meta.version, "preset": meta.preset},
        },
        "all": _aggregate(rows),
        "correct": _aggregate(correct),
        "videos": rows,
        "skipped": skipped,
    }


def mask_mismatch(frames: npt.NDArray[np.uint8], rotation: int, masks: dict[str, np.ndarray]) -> str:
    """Why the masks cannot be aligned with the decoded frames ('' when they can)."""
    if rotation:
        return f"display rotation {rotation}: masks are in the encoded geometry"
    if masks["mask"].shape[0] != frames.shape[0]:
        return f"{frames.shape[0]} decoded frames but {masks['mask'].shape[0]} masks"
    height, width = (int(v) for v in masks["frame_size"])
    if (height <= width) != (frames.shape[1] <= frames.shape[2]):
        return f"frame orientation differs from the masks' {height}x{width}"
    return ""


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
