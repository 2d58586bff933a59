"""The shared-trunk frames graph: the lower SCL once per frame, the layers above per crop window.

`export_trunk_graph(checkpoint, out, share=...)` traces `SharedTrunkGraph` from PyTorch into a frames graph
(contract in `fstcn.core.frames_graph`; docs/design.md, "Frames graphs"). The lower SCL runs once per frame
and view (as is, flipped) on the whole frame and each crop's s x s window is cut out of the feature map
(offsets snapped to the trunk stride, see `fstcn.core.frames_graph.shared_window_index`); only the layers
above run per crop. With share="branch" the paths' stride-1 branch convs run on the whole maps too. For
the `small` preset the lower SCL is ~89% of a clip pair's MACs and a 128 x 171 frame is 1.7 crops' worth
of pixels, so 18 crops cost ~2 x 1.7 trunk passes instead of 18. A border calibration
(`fstcn.model.export.calibration`) adds one Mul and one Add per cut window.

The graph is traced at a frame size other than the ones it is verified at (H and W are dynamic axes) and
verified against its own PyTorch module (`TrunkGraphRunner`) by `fstcn.model.export.frames`.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import torch
from torch import Tensor, nn

from fstcn.core.clips import ClipPlan
from fstcn.core.frames_graph import (
    APPEARANCE_INDEX_INPUT,
    CLIP_INDEX_INPUT,
    CROP_INDEX_INPUT,
    DIFF_INDEX_INPUT,
    FRAMES_INPUT,
    GRAPH_KEY,
    SHARE_DEPTHS,
    VIEWS_INPUT,
    GraphInfo,
    frame_feeds,
    trunk_layers,
)
from fstcn.core.meta import META_KEY, PROBS_OUTPUT, ModelMeta
from fstcn.model.checkpoint import build_model_from_checkpoint, load_checkpoint, model_meta
from fstcn.model.export.calibration import BorderCalibration, WindowCalibration
from fstcn.model.export.frames import FramesExportResult, example_frames, verify_frames_graph
from fstcn.model.export.plain import MIN_OPSET, fold_batchnorm, min_ir_version
from fstcn.model.export.verification import onnx_output, write_verified
from fstcn.model.network import FstCN

logger = logging.getLogger(__name__)

INT64_MIN = -(2**63)  # a Slice end that runs past the first element of a negative step


def graph_info(network: FstCN, crops: str, share: str = "lower", *, calibrated: bool = False) -> GraphInfo:
    """The `GraphInfo` of `network`'s lower SCL for crop mode `crops`."""
    config = network.config
    trunk = trunk_layers(config.lower_kernels, config.lower_strides, config.pool_kernel, config.pool_stride)
    return GraphInfo(crops=crops, crop_size=config.crop_size, trunk=trunk, share=share, calibrated=calibrated)


class _FramesGraph(nn.Module):
    """Common part: normalisation constants and the appearance / V_diff arithmetic of `fstcn.core.clips`."""

    def __init__(self, network: FstCN, meta: ModelMeta) -> None:
        super().__init__()
        if network.spatial is None or network.temporal is None:
            raise ValueError("frames graphs need a two-path network (paths='both')")
        self.network = network
        self.crop = meta.crop_size
        self.clip_length = meta.sampling.clip_length
        # (1, 3, 1, 1): broadcasting over whole planes, not every third element of channels-last data
        self.register_buffer("mean", torch.tensor(meta.mean, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(meta.std, dtype=torch.float32).reshape(1, 3, 1, 1))
        # the very float32 constant of network_inputs: d * float32(diff_scale / 255)
        self.diff_scale = float(np.float32(meta.diff_scale / 255.0))

    def network_frames(
        self, frames: Tensor, appearance_index: Tensor, clip_index: Tensor, diff_index: Tensor
    ) -> Tensor:
        """frames uint8 (F, H, W, 3) -> float32 (M + M*T, 3, H, W): the M appearance frames
        (x / 255 - mean) / std, then the M*T V_diff frames (V[t + d_t] - V[t]) * diff_scale / 255."""
        motion = self.frame_differences(frames, clip_index, diff_index) * self.diff_scale
        return torch.cat([self.appearance_frames(frames, appearance_index), motion])

    def appearance_frames(self, frames: Tensor, index: Tensor) -> Tensor:
        """frames uint8 (F, H, W, 3), index (M,) -> normalised float32 (M, 3, H, W)."""
        return (_planes(frames, index) / 255.0 - self.mean) / self.std

    def frame_differences(self, frames: Tensor, clip_index: Tensor, diff_index: Tensor) -> Tensor:
        """frames uint8 (F, H, W, 3), indices (M, T) -> V[t + d_t] - V[t], unscaled float32 (M*T, 3, H, W)."""
        return _planes(frames, diff_index) - _planes(frames, clip_index)


def _planes(frames: Tensor, index: Tensor) -> Tensor:
    """frames uint8 (F, H, W, 3) -> the indexed frames as float32 planes (n, 3, H, W).

    The frames are gathered and transposed to NCHW while still uint8 (a quarter of the bytes)."""
    return frames.index_select(0, index.reshape(-1)).permute(0, 3, 1, 2).float()


def logits_above_cut(network: FstCN, share: str, spatial_in: Tensor, temporal_in: Tensor) -> Tensor:
    """The layers above a shared trunk's cut: windows spatial (M*K, C, s, s) and temporal
    (M*K*T, C, s, s), rows as `SharedTrunkGraph.cut_windows` gives them -> logits (M*K, N).
    share="lower": both paths whole; share="branch": the windows are branch-conv maps, so each path
    starts at its branch pool."""
    assert network.spatial is not None and network.temporal is not None
    if share == "branch":
        spatial = network.spatial.fc(torch.flatten(network.spatial.branch.pool(spatial_in), 1))
        temporal = network.temporal.branch.pool(temporal_in)  # (M*K*T, C', h, w)
        temporal = network.temporal.above_branch(temporal)  # T-P, TCL, FC: (M*K, F)
    else:
        spatial, temporal = network.spatial(spatial_in), network.temporal(temporal_in)
    return _classify(network, spatial, temporal)


def logits_above_branch_channels_last(network: FstCN, spatial_in: Tensor, temporal_in: Tensor) -> Tensor:
    """`logits_above_cut(network, "branch", ...)` on channels-last windows: spatial (M*K, s, s, C'),
    temporal (M*K, s, s, T, C') -> logits (M*K, N).

    The same function in the layout the window gather yields: the branch pools reduce the window axes,
    the spatial FC takes its columns in (h, w, C) order, and the T-P operator starts from
    (M*K, h*w, T, C'), its time-major form, so no window is transposed.
    """
    assert network.spatial is not None and network.temporal is not None
    config = network.config
    pooled = _max_pool_channels_last(spatial_in, config.branch_pool)  # (M*K, h, w, C')
    first, rest = network.spatial.fc[0], network.spatial.fc[1:]
    assert isinstance(first, nn.Linear)
    side, channels = config.feature_size, config.branch_width  # plain ints: the permuted weight folds
    # (D, C*h*w) -> (D, C, h, w) -> (D, h, w, C) -> (D, h*w*C)
    weight = (
        first.weight.reshape(-1, channels, side, side).permute(0, 2, 3, 1).reshape(first.out_features, -1)
    )
    spatial = rest(nn.functional.linear(torch.flatten(pooled, 1), weight, first.bias))
    temporal = _max_pool_channels_last(temporal_in, config.temporal_pool_size)  # (M*K, h, w, T, C')
    temporal = temporal.reshape(temporal.shape[0], -1, config.clip_length, channels)  # (M*K, h*w, T, C')
    temporal = network.temporal.time_major_head(network.temporal.tp.on_time_major(temporal))  # (M*K, F)
    return _classify(network, spatial, temporal)


def _classify(network: FstCN, spatial: Tensor, temporal: Tensor) -> Tensor:
    """The two paths' FC vectors (B, F) each -> logits (B, N)."""
    fused = network.fusion(torch.cat([spatial, temporal], dim=1))
    logits: Tensor = network.classifier(fused)
    return logits


def _max_pool_channels_last(x: Tensor, pool: int) -> Tensor:
    """MaxPool2d(pool, pool) over axes 1, 2 of (N, s, s, ...) -> (N, s // pool, s // pool, ...)."""
    if pool == 1:
        return x
    side = x.shape[1] // pool
    x = x[:, : side * pool, : side * pool]
    return x.reshape(x.shape[0], side, pool, side, pool, *x.shape[3:]).amax(dim=(2, 4))


class _FlippedView(torch.autograd.Function):
    """`flipped_view` written as one ONNX Slice over two axes; traced, it was a Slice of the leading
    frames and a negative-step Slice of that copy (0.9 ms of the branch graph's kernel time)."""

    @staticmethod
    def forward(ctx: Any, frames: Tensor, views: Tensor) -> Tensor:
        return _flipped_view(frames, views)

    @staticmethod
    def symbolic(g: Any, frames: Any, views: Any) -> Any:
        def const(values: list[int]) -> Any:
            return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

        rows = g.op("Slice", g.op("Shape", frames), const([0]), const([1]))  # [n]
        num_views = g.op("Slice", g.op("Shape", views), const([0]), const([1]))  # [V]
        count = g.op("Mul", rows, g.op("Sub", num_views, const([1])))  # [n * (V - 1)]
        ends = g.op("Concat", count, const([INT64_MIN]), axis_i=0)
        return g.op("Slice", frames, const([0, -1]), ends, const([0, -1]), const([1, -1]))


def _flipped_view(frames: Tensor, views: Tensor) -> Tensor:
    return frames[: frames.shape[0] * (views.shape[0] - 1)].flip(-1)


def flipped_view(frames: Tensor, views: Tensor) -> Tensor:
    """frames (n, 3, H, W), views (V,) -> view 1, the frames mirrored left-right, when V = 2; no frames
    (0, 3, H, W) when V = 1 (no flipped crop asked for)."""
    if torch.onnx.is_in_onnx_export():
        return _FlippedView.apply(frames, views)  # type: ignore[no-any-return]
    return _flipped_view(frames, views)


class SharedTrunkGraph(_FramesGraph):
    """frames, indices, crop_index (K, s, s) into the (V, fh, fw) trunk maps, views (V,) -> probs.

    share="lower": the lower SCL runs on whole frames, everything above it per crop window.
    share="branch": each path's branch conv (Conv(3, 1), stride 1: windows stay aligned) runs on the
    whole maps too; only its Pool(3, 3) and the layers above run per window, on channels-last windows
    (`logits_above_branch_channels_last`).
    calibration: `scale * window + shift` on each cut window (`fstcn.model.export.calibration`), or none.
    forward cuts the windows channels-last and calibrates them in that layout; `cut_windows` gives the
    same windows NCHW, as the calibration is fitted on them: softmax of `logits_above_cut` on the
    calibrated NCHW windows is forward's function.
    """

    def __init__(
        self,
        network: FstCN,
        meta: ModelMeta,
        share: str = "lower",
        calibration: WindowCalibration | None = None,
    ) -> None:
        super().__init__(network, meta)
        if share not in SHARE_DEPTHS:
            raise ValueError(f"share must be one of {SHARE_DEPTHS}, got {share!r}")
        self.side = network.config.lower_size
        self.share = share
        self.calibrated = calibration is not None
        if calibration is not None:
            if calibration.share != share:
                raise ValueError(f"a calibration of the {calibration.share!r} cut for share={share!r}")
            for path in ("spatial", "temporal"):  # (C, s, s), as fitted on NCHW windows (N, C, s, s)
                self.register_buffer(f"{path}_scale", torch.from_numpy(calibration.scale[path]))
                self.register_buffer(f"{path}_shift", torch.from_numpy(calibration.shift[path]))

    def forward(
        self,
        frames: Tensor,
        appearance_index: Tensor,
        clip_index: Tensor,
        diff_index: Tensor,
        crop_index: Tensor,
        views: Tensor,
    ) -> Tensor:
        time_last = self.share == "branch"  # the branch head reads (M*K, s, s, T, C')
        spatial, temporal = self._channels_last_windows(
            frames, appearance_index, clip_index, diff_index, crop_index, views, time_last=time_last
        )
        if self.calibrated:  # (C, s, s) -> (s, s, C), and (s, s, 1, C) across the T frames when time-last
            spatial = spatial * self.spatial_scale.permute(1, 2, 0) + self.spatial_shift.permute(1, 2, 0)
            scale, shift = (line.permute(1, 2, 0) for line in (self.temporal_scale, self.temporal_shift))
            if time_last:
                scale, shift = scale.unsqueeze(2), shift.unsqueeze(2)
            temporal = temporal * scale + shift
        if time_last:
            logits = logits_above_branch_channels_last(self.network, spatial, temporal)
        else:  # NCHW right at the per-window branch convs: ORT folds this transpose into their input reorder
            logits = logits_above_cut(
                self.network, "lower", spatial.permute(0, 3, 1, 2), temporal.permute(0, 3, 1, 2)
            )
        return torch.softmax(logits, dim=1)

    def cut_windows(
        self,
        frames: Tensor,
        appearance_index: Tensor,
        clip_index: Tensor,
        diff_index: Tensor,
        crop_index: Tensor,
        views: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """The whole-frame layers and the windows cut from their maps: spatial (M*K, C, s, s), rows
        (M, K); temporal (M*K*T, C, s, s), rows (M, K, T). C is the lower SCL's width, or the branch
        convs' with share="branch"."""
        spatial, temporal = self._channels_last_windows(
            frames, appearance_index, clip_index, diff_index, crop_index, views, time_last=False
        )
        return spatial.permute(0, 3, 1, 2), temporal.permute(0, 3, 1, 2)

    def trunk_maps(
        self, frames: Tensor, appearance_index: Tensor, clip_index: Tensor, diff_index: Tensor, views: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The whole-frame layers of every view, view-major: appearance (V*M, C, fh, fw), motion
        (V*M*T, C, fh, fw); C is the lower SCL's width, or the branch convs' with share="branch".

        Appearance and V_diff frames take separate passes (whole frames are never concatenated), the
        flipped view is one Slice of each (`flipped_view`), and the V_diff scale is folded into the
        motion passes' conv1 weights (its zero padding stays zero), so no pass of the graph multiplies
        whole frames by it.
        """
        appearance = self.appearance_frames(frames, appearance_index)  # (M, 3, H, W)
        motion = self.frame_differences(frames, clip_index, diff_index)  # (M*T, 3, H, W), unscaled
        lower = self.network.lower
        app_maps = torch.cat([lower(appearance), lower(flipped_view(appearance, views))])
        mot_maps = torch.cat([self._motion_lower(motion), self._motion_lower(flipped_view(motion, views))])
        if self.share == "branch":
            net = self.network
            assert net.spatial is not None and net.temporal is not None
            app_maps = net.spatial.branch.conv(app_maps)  # (V*M, C', fh, fw)
            mot_maps = net.temporal.branch.conv(mot_maps)  # (V*M*T, C', fh, fw)
        return app_maps, mot_maps

    def _motion_lower(self, differences: Tensor) -> Tensor:
        """The lower SCL on unscaled V_diff frames (n, 3, H, W), diff_scale folded into conv1's weights."""
        first_block, *above = self.network.lower.children()  # conv1's block: conv, [bn], relu, [lrn]
        conv, *after_conv = first_block.children()
        assert (
            isinstance(conv, nn.Conv2d) and conv.padding_mode == "zeros"
        )  # the fold keeps zero padding zero
        assert conv.groups == 1 and conv.dilation == (1, 1)
        x = nn.functional.conv2d(
            differences, conv.weight * self.diff_scale, conv.bias, conv.stride, conv.padding
        )
        for layer in (*after_conv, *above):
            x = layer(x)
        return x

    def _channels_last_windows(
        self,
        frames: Tensor,
        appearance_index: Tensor,
        clip_index: Tensor,
        diff_index: Tensor,
        crop_index: Tensor,
        views: Tensor,
        *,
        time_last: bool,
    ) -> tuple[Tensor, Tensor]:
        """The windows channels-last: spatial (M*K, s, s, C); temporal (M*K*T, s, s, C), rows (M, K, T),
        or with `time_last` (M*K, s, s, T, C), each crop's T frames side by side at every position."""
        t, num_clips, s = self.clip_length, appearance_index.shape[0], self.side
        app_maps, mot_maps = self.trunk_maps(frames, appearance_index, clip_index, diff_index, views)
        channels = app_maps.shape[1]
        spatial = self._window_rows(app_maps, num_clips, 1, crop_index, time_last=False)
        temporal = self._window_rows(mot_maps, num_clips, t, crop_index, time_last=time_last)
        temporal_shape = (-1, s, s, t, channels) if time_last else (-1, s, s, channels)
        return spatial.reshape(-1, s, s, channels), temporal.reshape(temporal_shape)

    def _window_rows(
        self, maps: Tensor, outer: int, inner: int, crop_index: Tensor, *, time_last: bool
    ) -> Tensor:
        """maps (V*outer*inner, C, fh, fw), view-major -> the K crops' windows as rows of C features,
        ordered (outer, K, inner, s*s) or, with `time_last`, (outer, K, s*s, inner): (rows, C).

        The maps become channels-last rows with one transpose that moves only C (the kind ONNX Runtime
        does fast), and one Gather of C-float rows cuts every window in the order the layers above read.
        """
        channels, plane = maps.shape[1], maps.shape[2] * maps.shape[3]
        count = outer * inner
        rows = maps.permute(0, 2, 3, 1).reshape(-1, channels)  # (V*count*fh*fw, C)
        view = torch.div(crop_index, plane, rounding_mode="floor")  # crop_index = view*fh*fw + position
        first = (crop_index + view * ((count - 1) * plane)).reshape(1, crop_index.shape[0], -1)  # (1, K, s*s)
        frame = torch.arange(count, device=maps.device).reshape(outer, 1, inner) * plane  # (outer, 1, inner)
        if time_last:
            index = frame.unsqueeze(2) + first.unsqueeze(3)  # (outer, K, s*s, inner)
        else:
            index = frame.unsqueeze(3) + first.unsqueeze(2)  # (outer, K, inner, s*s)
        return rows.index_select(0, index.reshape(-1))


class TrunkGraphRunner:
    """A `SharedTrunkGraph` in PyTorch as a `fstcn.core.scoring.Runner`: the reference its export is
    verified against. prepare -> the frames graph's feeds (`info`), run -> probs (M*K, N) float32."""

    def __init__(self, graph: SharedTrunkGraph, meta: ModelMeta, info: GraphInfo) -> None:
        self.graph, self.meta, self.info = graph, meta, info

    def prepare(
        self, frames: npt.NDArray[np.uint8], frame_times: npt.ArrayLike, plan: ClipPlan, num_crops: int
    ) -> dict[str, npt.NDArray[Any]]:
        return frame_feeds(frames, frame_times, plan, self.info, num_crops)

    def run(self, feeds: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        with torch.no_grad():
            probs: Tensor = self.graph(*(torch.from_numpy(feeds[name]) for name in self.info.inputs))
        return probs.numpy()


def export_trunk_graph(
    checkpoint: dict[str, Any] | str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    version: str | None = None,
    share: str = "lower",
    calibration: BorderCalibration | None = None,
    seed: int = 0,
) -> FramesExportResult:
    """Write the verified shared-trunk frames graph of `checkpoint` to `out` (see the module doc);
    `share` is how deep the whole-frame computation goes ("lower" SCL, or up to the "branch" convs);
    `calibration` (fitted on this checkpoint's weights) adds its border calibration of that cut."""
    out = onnx_output(out)
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint)
    network, _ = build_model_from_checkpoint(checkpoint)
    meta = model_meta(checkpoint, name=name, version=version)
    cut = calibration.cuts[share] if calibration is not None else None
    info = graph_info(network, "shared", share, calibrated=cut is not None)
    graph = SharedTrunkGraph(fold_batchnorm(network), meta, share, cut).eval()
    onnx_model = trace_frames_graph(graph, meta, info)
    onnx_model.metadata_props.add(key=META_KEY, value=meta.to_json())
    onnx_model.metadata_props.add(key=GRAPH_KEY, value=info.to_json())
    onnx.checker.check_model(onnx_model)
    reference = TrunkGraphRunner(graph, meta, info)
    diffs = write_verified(
        out,
        onnx_model.SerializeToString(),
        lambda exported: verify_frames_graph(exported, reference, seed=seed),
    )
    logger.info("exported shared-trunk graph %s; max |dp| %s", out, diffs)
    return FramesExportResult(out, meta, info, diffs)


def trace_frames_graph(graph: SharedTrunkGraph, meta: ModelMeta, info: GraphInfo) -> onnx.ModelProto:
    """Trace at a non-square size bigger than the crop; every axis but channels and T is dynamic."""
    size = meta.resize_short
    example = example_frames(meta, size + 3, size + 21, seed=1)
    feeds = frame_feeds(example["frames"], example["times"], example["plan"], info, 18)
    names = list(info.inputs)
    dynamic: dict[str, dict[int, str]] = {
        FRAMES_INPUT: {0: "frames", 1: "height", 2: "width"},
        APPEARANCE_INDEX_INPUT: {0: "clips"},
        CLIP_INDEX_INPUT: {0: "clips"},
        DIFF_INDEX_INPUT: {0: "clips"},
        CROP_INDEX_INPUT: {0: "crops"},
        VIEWS_INPUT: {0: "views"},
        PROBS_OUTPUT: {0: "rows"},
    }
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: sizes are recorded as graph values on purpose
        torch.onnx.export(
            graph,
            tuple(torch.from_numpy(feeds[name]) for name in names),
            buffer,  # type: ignore[arg-type]
            input_names=names,
            output_names=[PROBS_OUTPUT],
            dynamic_axes=dynamic,
            opset_version=MIN_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx_model = onnx.load_from_string(buffer.getvalue())
    onnx_model.ir_version = min_ir_version(MIN_OPSET)
    return onnx_model
