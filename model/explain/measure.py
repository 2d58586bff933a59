"""Does the saliency fall on the figure? Synthetic Actions masks in the model's input geometry.

Synthetic Actions written with `--masks` knows the figure's silhouette per encoded frame (1/4
resolution, original geometry, one mask per 1/fps). `mask_to_crop` maps such a mask into the model's
input geometry (mask cell -> original frame pixel -> resized frame -> crop box, flipped if the crop is),
a decoded frame takes the mask of its timestamp, V_diff frame i uses the union of the masks of its two
frames, and `saliency_mask_share` is the share of saliency mass inside the mask, to be compared with
the mask's area share (what a map spread evenly over the crop would give). `measure_saliency_in_masks`
reports both over a dataset split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fstcn.core.clips import CropBox
from fstcn.model.explain.render import save_saliency_grid
from fstcn.model.explain.saliency import Explanation, explain_video
from fstcn.model.runner import TorchRunner

__all__ = [
    "explanation_masks",
    "mask_mismatch",
    "mask_shares",
    "mask_to_crop",
    "measure_saliency_in_masks",
    "saliency_mask_share",
]

# A decoded frame's time may sit this far (in frames) from the masks' 1/fps grid: container time bases
# round the timestamps (WebM counts milliseconds), but never by a quarter of a frame.
MASK_GRID_TOLERANCE = 0.25


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

    `masks` is `synth.dataset.load_masks(...)` of the same video: one mask per encoded frame, found by
    the decoded frames' times (`mask_mismatch` checks that they fit)."""
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

    def crop(time_s: float) -> npt.NDArray[np.bool_]:
        return mask_to_crop(frame_masks[_mask_index(time_s, masks)], **geometry)  # type: ignore[arg-type]

    appearance = crop(explanation.appearance_frame_time)
    pairs = zip(explanation.clip_frame_times, explanation.diff_frame_times, strict=True)
    motion = np.stack([crop(float(start)) | crop(float(end)) for start, end in pairs])  # (T, c, c)
    return appearance, motion


def _mask_index(time_s: float, masks: dict[str, np.ndarray]) -> int:
    """The encoded frame (and so the mask) shown at `time_s` seconds: masks are one per 1/fps."""
    return int(np.rint(time_s * float(masks["fps"])))


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
    runner: TorchRunner,
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
    "true") is explained as in `explain_video`, and `mask_shares` compares its maps with the figure
    masks. Returns {"settings", "all", "correct", "videos", "skipped"}: "all"/"correct" hold, for the
    appearance and the V_diff maps, mean/median of the share, of the chance level (mask area share)
    and of their ratio, and the fraction of videos above chance. The first `examples` videos also get
    their saliency grid PNG in `examples_dir`.
    """
    from tqdm import tqdm

    from fstcn.model.datasets import load_dataset
    from fstcn.model.synth.dataset import load_masks, mask_path

    meta = runner.meta
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
        explanation = explain_video(
            sample.path,
            runner,
            label=sample.label_index if target == "true" else None,
            num_clips=num_clips,
            num_crops=num_crops,
            method=method,
        )
        reason = mask_mismatch(explanation, masks)
        if reason:
            skipped.append({"path": relative, "reason": reason})
            continue
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


def mask_mismatch(explanation: Explanation, masks: dict[str, np.ndarray]) -> str:
    """Why the masks cannot be aligned with the frames of an explanation ('' when they can)."""
    if explanation.rotation:
        return f"display rotation {explanation.rotation}: masks are in the encoded geometry"
    fps = float(masks["fps"])
    count = int(masks["mask"].shape[0])
    times = np.concatenate(
        [explanation.clip_frame_times, explanation.diff_frame_times, [explanation.appearance_frame_time]]
    )
    positions = times * fps  # in frames of the masks' grid
    if np.any(np.abs(positions - np.rint(positions)) > MASK_GRID_TOLERANCE):
        return f"decoded frame times are not on the masks' 1/{fps:g} s grid"
    if np.any(np.rint(positions) >= count):
        return f"decoded frames reach {float(times.max()):.3f} s, beyond the {count} masks at {fps:g} fps"
    height, width = (int(v) for v in masks["frame_size"])
    resized_height, resized_width = explanation.resized
    if (height <= width) != (resized_height <= resized_width):
        return f"frame orientation differs from the masks' {height}x{width}"
    return ""
