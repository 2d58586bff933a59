"""The contract of the "frames" graph variants (fast paths), shared by their export and the service.

The plain FstCN ONNX graph (`fstcn.core.meta`) takes float32 crops prepared on the host. A frames graph takes
the decoded uint8 frames themselves, each frame once, plus small int64 index arrays, and computes
V_diff, the normalisation and the crops inside ONNX Runtime:

  inputs   frames            uint8 (F, H, W, 3)   decoded RGB frames (short side = resize_short)
           appearance_index  int64 (M,)           frame of each clip pair's appearance input
           clip_index        int64 (M, T)         frames t_i of each V_clip
           diff_index        int64 (M, T)         frames t_i + d_t (V_diff = frames[diff] - frames[clip])
           crop_boxes        int64 (K, 3)         "exact": top, left, flip of each crop
           crop_index        int64 (K, s, s)      "shared": each crop's window in the trunk maps
           views             int64 (V,)           "shared": arange(V); V = 2 runs the flipped view too
  output   probs             float32 (M*K, N)     rows clip-major (row = i*K + k), as the plain graph

Two crop modes (`GraphInfo.crops`):
- "exact": `crop_boxes` are `fstcn.core.clips.crop_boxes` as rows (top, left, flip); the graph slices the
  crops (an ONNX Loop over K with Slice, flips by a negative step) out of the normalised frames and
  runs the unchanged plain network graph on them. Same result as the plain graph (same crops, same
  float32 arithmetic).
- "shared": the lower SCL (the trunk) runs once per frame and view on the whole frame (view 0 = as is,
  view 1 = flipped when a flipped crop is asked for), and each crop's s x s window is cut out of the
  trunk's feature map: `crop_index[k]` holds flat indices into the (V, fh, fw) feature maps. Crop
  offsets are snapped to the nearest multiple of the trunk's total stride, where the crop's feature
  grid coincides with the frame's; the windows differ from exact crops near crop borders (they see the
  frame around the crop instead of zero padding) and by the snap, so this mode approximates.
  `share="branch"` also runs each path's stride-1 branch conv on the whole maps (same window grid).
  `calibrated`: the windows pass through a per-element affine map fitted to exact crops
  (`fstcn.model.export.calibration`), which narrows the border difference.

The index arrays are built here, on the host, from `fstcn.core.clips` (the one sampling and crop-box
implementation). Metadata: `fstcn` (the usual `ModelMeta` JSON) and `fstcn_graph` (`GraphInfo` JSON).
numpy and the standard library only: the service imports this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fstcn.core.clips import ClipPlan, crop_boxes, nearest_frame_indices

__all__ = [
    "CROP_MODES",
    "GRAPH_KEY",
    "GraphInfo",
    "TrunkLayer",
    "bundle_graph_paths",
    "crop_box_array",
    "frame_feeds",
    "frame_indices",
    "served_graph_path",
    "shared_window_index",
]

GRAPH_KEY = "fstcn_graph"
GRAPH_FORMAT_VERSION = 1
CROP_MODES = ("exact", "shared")
SHARE_DEPTHS = ("lower", "branch")

FRAMES_INPUT = "frames"
APPEARANCE_INDEX_INPUT = "appearance_index"
CLIP_INDEX_INPUT = "clip_index"
DIFF_INDEX_INPUT = "diff_index"
CROP_BOXES_INPUT = "crop_boxes"
CROP_INDEX_INPUT = "crop_index"
VIEWS_INPUT = "views"

# The fast graphs of a bundle live beside its plain graph NAME.onnx under these names.
EXACT_GRAPH_SUFFIX = ".frames.onnx"
TRUNK_GRAPH_SUFFIX = ".trunk.onnx"


def bundle_graph_paths(model_path: str | Path) -> dict[str, Path]:
    """Where the fast graphs of the plain graph `NAME.onnx` live: "exact" -> NAME.frames.onnx (exact
    crops inside the graph), "shared" -> NAME.trunk.onnx (shared trunk)."""
    stem = Path(model_path).with_suffix("")
    return {
        "exact": stem.with_name(stem.name + EXACT_GRAPH_SUFFIX),
        "shared": stem.with_name(stem.name + TRUNK_GRAPH_SUFFIX),
    }


def served_graph_path(model_path: str | Path, *, exact_crops: bool) -> Path:
    """The file of the bundle whose plain graph is `model_path` that serves it: the fastest graph beside
    it, NAME.trunk.onnx, else NAME.frames.onnx, else NAME.onnx itself; with `exact_crops`, the paper's
    exact crops, NAME.frames.onnx, else NAME.onnx (docs/design.md, "Frames graphs")."""
    graphs = bundle_graph_paths(model_path)
    order = ("exact",) if exact_crops else ("shared", "exact")
    return next((graphs[kind] for kind in order if graphs[kind].is_file()), Path(model_path))


@dataclass(frozen=True)
class TrunkLayer:
    """One conv or pool of the lower SCL: output = (size + 2 * padding - kernel) // stride + 1."""

    kernel: int
    stride: int
    padding: int

    def out(self, size: int) -> int:
        return (size + 2 * self.padding - self.kernel) // self.stride + 1


@dataclass(frozen=True)
class GraphInfo:
    """What a frames graph is: crop mode, crop size, and the trunk's layers (for the window geometry)."""

    crops: str
    crop_size: int
    trunk: tuple[TrunkLayer, ...] = ()  # the lower SCL's convs and pools ("shared" only)
    share: str = "lower"  # "shared": whole-frame layers: the lower SCL, or up to the branch convs
    calibrated: bool = False  # "shared": the cut windows go through a border calibration
    format_version: int = GRAPH_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.crops not in CROP_MODES:
            raise ValueError(f"crops must be one of {CROP_MODES}, got {self.crops!r}")
        if self.crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {self.crop_size}")
        if self.share not in SHARE_DEPTHS:
            raise ValueError(f"share must be one of {SHARE_DEPTHS}, got {self.share!r}")
        if self.calibrated and self.crops != "shared":
            raise ValueError("only a shared-trunk graph has a border calibration")
        if self.crops == "shared" and not self.trunk:
            raise ValueError("a shared-trunk graph needs its trunk's layers")
        if self.feature_size(self.crop_size) < 1:
            raise ValueError(f"the trunk maps a {self.crop_size} crop to nothing")

    @property
    def stride(self) -> int:
        """Total stride of the trunk: one feature step is this many pixels."""
        return math.prod(layer.stride for layer in self.trunk)

    def feature_size(self, size: int) -> int:
        """Side of the trunk's output for an input side `size` (floors included)."""
        for layer in self.trunk:
            size = layer.out(size)
        return size

    @property
    def inputs(self) -> tuple[str, ...]:
        names = (FRAMES_INPUT, APPEARANCE_INDEX_INPUT, CLIP_INDEX_INPUT, DIFF_INDEX_INPUT)
        if self.crops == "shared":
            return (*names, CROP_INDEX_INPUT, VIEWS_INPUT)
        return (*names, CROP_BOXES_INPUT)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GraphInfo:
        try:
            raw: dict[str, Any] = json.loads(text)
            if raw.get("format_version") != GRAPH_FORMAT_VERSION:
                raise ValueError(f"unsupported graph format_version {raw.get('format_version')!r}")
            return cls(
                crops=str(raw["crops"]),
                crop_size=int(raw["crop_size"]),
                trunk=tuple(TrunkLayer(**layer) for layer in raw["trunk"]),
                share=str(raw.get("share", "lower")),
                calibrated=bool(raw.get("calibrated", False)),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"malformed {GRAPH_KEY} metadata: {error!r}") from None


def trunk_layers(
    kernels: tuple[int, ...], strides: tuple[int, ...], pool_kernel: int, pool_stride: int
) -> tuple[TrunkLayer, ...]:
    """The layers of the network's LowerSCL: convs (pad k//2), an unpadded pool after the first two."""
    layers: list[TrunkLayer] = []
    for index, (kernel, stride) in enumerate(zip(kernels, strides, strict=True)):
        layers.append(TrunkLayer(kernel, stride, kernel // 2))
        if index < 2:
            layers.append(TrunkLayer(pool_kernel, pool_stride, 0))
    return tuple(layers)


def crop_box_array(height: int, width: int, crop_size: int, num_crops: int) -> npt.NDArray[np.int64]:
    """`fstcn.core.clips.crop_boxes` as an int64 (K, 3) array of rows (top, left, flip)."""
    boxes = crop_boxes(height, width, crop_size, num_crops)
    return np.array([(box.top, box.left, int(box.flip)) for box in boxes], dtype=np.int64)


def shared_window_index(
    height: int, width: int, info: GraphInfo, num_crops: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(views (V,), windows (K, s, s)) for a shared-trunk graph and an H x W frame.

    Each crop box of `fstcn.core.clips.crop_boxes` is mapped to the trunk's feature map: a flipped crop is
    the crop at the mirrored left offset of the flipped frame (view 1), and the pixel offsets are
    snapped to the nearest multiple of the trunk stride that keeps the s x s window inside the map.
    `windows` holds flat indices into the stacked (V, fh, fw) maps.
    """
    size = info.crop_size
    boxes = crop_boxes(height, width, size, num_crops)
    side = info.feature_size(size)
    fh, fw = info.feature_size(height), info.feature_size(width)
    if fh < side or fw < side:
        raise ValueError(f"a {height}x{width} frame gives a {fh}x{fw} trunk map, smaller than {side}")
    num_views = 2 if any(box.flip for box in boxes) else 1
    views = np.arange(num_views, dtype=np.int64)  # (V,)
    steps = np.arange(side, dtype=np.int64)
    windows = []
    for box in boxes:
        view = int(box.flip)
        left = width - size - box.left if box.flip else box.left
        row = _snap(box.top, info.stride, fh - side)
        col = _snap(left, info.stride, fw - side)
        windows.append(view * fh * fw + (row + steps)[:, None] * fw + (col + steps)[None, :])  # (s, s)
    return views, np.stack(windows)  # (V,), (K, s, s)


def snapped_offsets(height: int, width: int, info: GraphInfo, num_crops: int) -> list[tuple[int, int]]:
    """Pixel (top, left-in-its-view) of each crop as the shared trunk takes it (for reports and tests)."""
    side = info.feature_size(info.crop_size)
    fh, fw = info.feature_size(height), info.feature_size(width)
    out = []
    for box in crop_boxes(height, width, info.crop_size, num_crops):
        left = width - info.crop_size - box.left if box.flip else box.left
        out.append(
            (
                _snap(box.top, info.stride, fh - side) * info.stride,
                _snap(left, info.stride, fw - side) * info.stride,
            )
        )
    return out


def _snap(offset: int, stride: int, last: int) -> int:
    """Feature offset nearest to pixel `offset` (half-way rounds up), within [0, last]."""
    return min(max(math.floor(offset / stride + 0.5), 0), last)


def frame_indices(
    frame_times: npt.ArrayLike, plan: ClipPlan, appearance_position: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(appearance (M,), clip (M, T), diff (M, T)) frame indices, as `fstcn.core.clips.gather_clip_pairs`
    picks them (nearest frame by timestamp; appearance = clip frame at position l_t // 2)."""
    clip = nearest_frame_indices(frame_times, plan.clip_times)  # (M, l_t)
    diff = nearest_frame_indices(frame_times, plan.diff_times)  # (M, l_t)
    position = clip.shape[1] // 2 if appearance_position is None else appearance_position
    if not 0 <= position < clip.shape[1]:
        raise ValueError(f"appearance_position must be in [0, {clip.shape[1]}), got {position}")
    return np.ascontiguousarray(clip[:, position]), clip, diff


def frame_feeds(
    frames: npt.NDArray[np.uint8],
    frame_times: npt.ArrayLike,
    plan: ClipPlan,
    info: GraphInfo,
    num_crops: int,
) -> dict[str, npt.NDArray[Any]]:
    """The ONNX feeds of a frames graph: decoded frames uint8 (F, H, W, 3) with their times (F,)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames of shape (F, H, W, 3), got {frames.dtype} {frames.shape}")
    appearance, clip, diff = frame_indices(frame_times, plan)
    _, height, width, _ = frames.shape
    feeds: dict[str, npt.NDArray[Any]] = {
        FRAMES_INPUT: np.ascontiguousarray(frames),
        APPEARANCE_INDEX_INPUT: appearance,
        CLIP_INDEX_INPUT: clip,
        DIFF_INDEX_INPUT: diff,
    }
    if info.crops == "exact":
        feeds[CROP_BOXES_INPUT] = crop_box_array(height, width, info.crop_size, num_crops)
    else:
        feeds[VIEWS_INPUT], feeds[CROP_INDEX_INPUT] = shared_window_index(height, width, info, num_crops)
    return feeds
