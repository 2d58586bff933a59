"""Fitting the shared trunk's border calibration (`fstcn.model.export.calibration`) on training videos.

For each path (spatial: appearance frames; temporal: V_diff frames) and each element (channel, row,
column) of the s x s cut window, `fit_border_calibration` fits the least-squares line

    exact ~ scale * shared + shift

where `exact` is the same layer's output for the exact crop at the window's snapped offset (so the fit
sees the border effect only, not the snap) and `shared` the cut window. The difference is largest on the
window's outer ring. One pass over the videos, each decoded as the service decodes it
(`fstcn.core.scoring.decode_planned`), fits both cuts.

Fit once per trained model: `fstcn export ... --calibrate-shared DATA` (`fstcn.model.export.workflow`)
writes NAME.border.npz beside NAME.onnx, and the shared-trunk exports pick it up. Measured effect on the
shipped model: docs/performance.md ("Border calibration").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from fstcn.core.clips import ClipPlan, crop_boxes
from fstcn.core.errors import FstcnError
from fstcn.core.frames_graph import SHARE_DEPTHS, GraphInfo, frame_feeds, snapped_offsets
from fstcn.core.meta import ModelMeta
from fstcn.core.scoring import decode_planned
from fstcn.core.video.decode import DecodedVideo, probe_video
from fstcn.model.export.calibration import PATHS, BorderCalibration, WindowCalibration
from fstcn.model.export.shared import SharedTrunkGraph, graph_info
from fstcn.model.network import FstCN

logger = logging.getLogger(__name__)

CROPS = 18
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")


class _Moments:
    """Running sums over samples of shared values s and exact values e, per element (float64)."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: dict[str, Tensor] = {}

    def add(self, shared: Tensor, exact: Tensor) -> None:
        """shared, exact (N, C, s, s): N samples of each element."""
        s, e = shared.double(), exact.double()
        terms = {"s": s, "e": e, "ss": s * s, "se": s * e, "ee": e * e}
        for key, value in terms.items():
            total = value.sum(0)
            self.sums[key] = self.sums[key] + total if key in self.sums else total
        self.count += shared.shape[0]

    def fit(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], float, float]:
        """Least-squares (scale, shift) per element, and the mean squared difference before and after.

        An element that never varies (a channel the ReLU keeps at 0) gets scale 1 and the mean offset."""
        if self.count < 2:
            raise ValueError("a calibration needs at least two samples")
        n, sums = self.count, self.sums
        mean_s, mean_e = sums["s"] / n, sums["e"] / n
        var_s = sums["ss"] / n - mean_s**2
        cov = sums["se"] / n - mean_s * mean_e
        varies = var_s > 1e-10
        scale = torch.where(varies, cov / var_s.clamp_min(1e-10), torch.ones_like(var_s))
        shift = mean_e - scale * mean_s
        before = (sums["ee"] - 2 * sums["se"] + sums["ss"]) / n
        var_e = sums["ee"] / n - mean_e**2
        after = torch.where(varies, var_e - scale * cov, var_e - 2 * cov + var_s)  # residual of the line
        return (
            scale.float().numpy(),
            shift.float().numpy(),
            float(before.mean()),
            float(after.clamp_min(0).mean()),
        )


def fit_border_calibration(
    network: FstCN,
    meta: ModelMeta,
    videos: Sequence[str | Path],
    *,
    data: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> BorderCalibration:
    """Fit both cuts' calibrations of `network` (eval mode, BatchNorm folded or not) on `videos`
    (each sampled as the service samples it: M clip pairs x 18 crops). A video the service would
    refuse (unreadable, too short) is skipped with a warning; ValueError when none is left."""
    if len(videos) < 1:
        raise ValueError("no videos to calibrate on")
    network = network.eval()
    graphs = {share: SharedTrunkGraph(network, meta, share).eval() for share in SHARE_DEPTHS}
    info = graph_info(network, "shared", "lower")
    moments = {(share, path): _Moments() for share in SHARE_DEPTHS for path in PATHS}
    c, t, m = meta.crop_size, meta.sampling.clip_length, meta.sampling.num_clips
    with torch.inference_mode():
        used = 0
        for number, decoded, plan in decoded_as_served(videos, meta, "border calibration"):
            used += 1
            height, width = decoded.frames.shape[1:3]
            feeds = frame_feeds(decoded.frames, decoded.times, plan, info, CROPS)
            inputs = [torch.from_numpy(feeds[name]) for name in info.inputs]
            frames = graphs["lower"].network_frames(*inputs[:4])  # (M + M*T, 3, H, W)
            boxes = snapped_boxes(height, width, info, c)
            exact = exact_cut_values(network, *snapped_crops(frames, m, t, boxes, c))
            for share, graph in graphs.items():
                shared = dict(zip(PATHS, graph.cut_windows(*inputs), strict=True))
                for path in PATHS:
                    moments[(share, path)].add(shared[path], exact[share][path])
            if progress is not None:
                progress(number, len(videos))
    if used < 1:
        raise ValueError(f"none of the {len(videos)} videos could be decoded")
    cuts = {}
    for share in SHARE_DEPTHS:
        fitted = {path: moments[(share, path)].fit() for path in PATHS}
        cuts[share] = WindowCalibration(
            share=share,
            scale={path: fit[0] for path, fit in fitted.items()},
            shift={path: fit[1] for path, fit in fitted.items()},
            mse_before={path: fit[2] for path, fit in fitted.items()},
            mse_after={path: fit[3] for path, fit in fitted.items()},
        )
        logger.info(
            "border calibration (%s): mse %s -> %s", share, cuts[share].mse_before, cuts[share].mse_after
        )
    return BorderCalibration(cuts=cuts, videos=used, data=data)


def decoded_as_served(
    videos: Sequence[str | Path], meta: ModelMeta, purpose: str
) -> Iterator[tuple[int, DecodedVideo, ClipPlan]]:
    """(1-based number, decoded frames, plan) of each video decoded as the service does
    (`fstcn.core.scoring.decode_planned`: M clip pairs spread over the video, only their frames decoded).
    A video the service would refuse (unreadable, too short) is skipped with a warning naming `purpose`."""
    for number, video in enumerate(videos, 1):
        path = Path(video)
        try:
            decoded, plan = decode_planned(path, probe_video(path), meta, meta.sampling.num_clips)
        except (FstcnError, OSError, ValueError) as error:
            logger.warning("%s: skipping %s: %s", purpose, video, error)
            continue
        yield number, decoded, plan


def snapped_boxes(height: int, width: int, info: GraphInfo, crop_size: int) -> list[tuple[int, int, bool]]:
    """The 18 crops as the shared trunk takes them: (top, left in its view, flipped view)."""
    offsets = snapped_offsets(height, width, info, CROPS)
    boxes = crop_boxes(height, width, crop_size, CROPS)
    return [(top, left, box.flip) for (top, left), box in zip(offsets, boxes, strict=True)]


def exact_cut_values(network: FstCN, appearance: Tensor, motion: Tensor) -> dict[str, dict[str, Tensor]]:
    """The exact crops' values at each cut: share -> path -> (N, C, s, s), from crops in window order
    (`snapped_crops`): the lower SCL's output, and the branch convs' on top of it."""
    assert network.spatial is not None and network.temporal is not None
    lower = {"spatial": network.lower(appearance), "temporal": network.lower(motion)}
    branch = {
        "spatial": network.spatial.branch.conv(lower["spatial"]),
        "temporal": network.temporal.branch.conv(lower["temporal"]),
    }
    return {"lower": lower, "branch": branch}


def snapped_crops(
    frames: Tensor, num_clips: int, clip_length: int, boxes: Sequence[tuple[int, int, bool]], crop: int
) -> tuple[Tensor, Tensor]:
    """frames (M + M*T, 3, H, W), boxes (top, left in the view, flipped view) -> the crops in the shared
    trunk's window order: appearance (M*K, 3, c, c) rows (M, K), motion (M*K*T, 3, c, c) rows (M, K, T).

    A snapped window may reach past the frame's bottom or right edge; the frame is padded with zeros
    there, as the whole-frame convs pad it."""
    bottom = max(top + crop for top, _, _ in boxes) - frames.shape[2]
    right = max(left + crop for _, left, _ in boxes) - frames.shape[3]
    frames = torch.nn.functional.pad(frames, (0, max(right, 0), 0, max(bottom, 0)))
    views = {False: frames, True: frames.flip(3)}
    crops = torch.stack(
        [views[flip][:, :, top : top + crop, left : left + crop] for top, left, flip in boxes], dim=1
    )  # (n, K, 3, c, c)
    k, m, t = len(boxes), num_clips, clip_length
    appearance = crops[:m].reshape(m * k, 3, crop, crop)
    motion = crops[m:].reshape(m, t, k, 3, crop, crop).transpose(1, 2).reshape(m * k * t, 3, crop, crop)
    return appearance, motion


def training_videos(root: str | Path, limit: int) -> list[Path]:
    """Up to `limit` videos under `root`, spread evenly over its sorted list (so over all classes)."""
    videos = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise ValueError(f"no videos under {root}")
    if limit >= len(videos):
        return videos
    step = len(videos) / limit
    return [videos[int(i * step)] for i in range(limit)]
