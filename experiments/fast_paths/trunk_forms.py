"""The shared-trunk graphs in their previous and current layout, side by side in one run on ONNX Runtime's
CPU provider, same weights and calibration, one request of the bench clip (5 clips x 18 crops):

- previous (up to the sixth session): the appearance and V_diff frames concatenated into one batch, the
  V_diff scale multiplied in, the flipped view sliced off and then flipped (two copies), the windows
  gathered in frame-major order after a general transpose of the maps, and every window transposed
  back to NCHW before the layers above;
- current (`fstcn.model.export.shared.SharedTrunkGraph`): separate passes, the scale folded into the motion
  conv1, one Slice for the flipped view, view-major rows, and for share="branch" channels-last windows
  all the way into the head (docs/performance.md, "What the shared graphs spend outside the convs").

    python experiments/fast_paths/trunk_forms.py     # the shipped model with its border calibration
    python experiments/fast_paths/trunk_forms.py --checkpoint runs/x/best.pt --repeats 15

Prints each graph's median run time and spread, the current form's speed over the previous per
interleaved round, and the max |dp| between the two forms of each cut.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fstcn.bench.core import interleaved, ratio_stats
from fstcn.bench.media import CLIP, bench_video
from fstcn.bench.runner import cpu_session
from fstcn.core.clips import plan_clip_pairs
from fstcn.core.frames_graph import GraphInfo, frame_feeds
from fstcn.core.meta import PROBS_OUTPUT, ModelMeta
from fstcn.model.checkpoint import build_model_from_checkpoint, load_checkpoint, model_meta
from fstcn.model.export.calibration import BorderCalibration, calibration_path
from fstcn.model.export.plain import fold_batchnorm
from fstcn.model.export.shared import (
    SHARE_DEPTHS,
    SharedTrunkGraph,
    graph_info,
    logits_above_cut,
    trace_frames_graph,
)

SHIPPED_CHECKPOINT = Path("models/fstcn-small.pt")
CLIPS, CROPS = 5, 18


class PreviousTrunkGraph(SharedTrunkGraph):
    """The sixth session's layout of the same function, kept only for this comparison."""

    def forward(self, *inputs: Tensor) -> Tensor:
        """probs (M*K, N) from the NCHW windows of `cut_windows` for both cuts, as then."""
        spatial_in, temporal_in = self.cut_windows(*inputs)
        if self.calibrated:
            spatial_in = spatial_in * self.spatial_scale + self.spatial_shift
            temporal_in = temporal_in * self.temporal_scale + self.temporal_shift
        return torch.softmax(logits_above_cut(self.network, self.share, spatial_in, temporal_in), dim=1)

    def cut_windows(
        self,
        frames: Tensor,
        appearance_index: Tensor,
        clip_index: Tensor,
        diff_index: Tensor,
        crop_index: Tensor,
        views: Tensor,
    ) -> tuple[Tensor, Tensor]:
        t, num_clips, num_views = self.clip_length, appearance_index.shape[0], views.shape[0]
        x = self.network_frames(frames, appearance_index, clip_index, diff_index)  # (n, 3, H, W)
        n = x.shape[0]
        flipped = x[: n * (num_views - 1)].flip(3)  # ((V-1)*n, 3, H, W)
        features = torch.cat([self.network.lower(x), self.network.lower(flipped)])  # (V*n, C, fh, fw)
        channels, fh, fw = features.shape[1], features.shape[2], features.shape[3]
        maps = features.reshape(-1, n, channels, fh, fw)  # (V, n, C, fh, fw)
        app_maps = maps[:, :num_clips].reshape(-1, channels, fh, fw)  # (V*M, C, fh, fw)
        mot_maps = maps[:, num_clips:].reshape(-1, channels, fh, fw)  # (V*M*T, C, fh, fw)
        net = self.network
        assert net.spatial is not None and net.temporal is not None
        if self.share == "branch":
            app_maps = net.spatial.branch.conv(app_maps)
            mot_maps = net.temporal.branch.conv(mot_maps)
        return (
            self._previous_windows(app_maps, num_clips, 1, crop_index),  # (M*K, C, s, s)
            self._previous_windows(mot_maps, num_clips, t, crop_index),  # (M*K*T, C, s, s)
        )

    def _previous_windows(self, maps: Tensor, outer: int, inner: int, crop_index: Tensor) -> Tensor:
        """maps (V*outer*inner, C, fh, fw) -> windows (outer*K*inner, C, s, s), frame-major rows."""
        s, channels, fh, fw = self.side, maps.shape[1], maps.shape[2], maps.shape[3]
        count = outer * inner
        # (V, count, C, fh, fw) -> (count, V, fh, fw, C): a general transpose
        rows = maps.reshape(-1, count, channels, fh, fw).permute(1, 0, 3, 4, 2).reshape(-1, channels)
        positions = rows.shape[0] // count
        first_row = torch.arange(count).reshape(outer, 1, inner, 1) * positions
        index = first_row + crop_index.reshape(1, crop_index.shape[0], 1, -1)  # (outer, K, inner, s*s)
        windows = rows.index_select(0, index.reshape(-1))
        return windows.reshape(-1, s, s, channels).permute(0, 3, 1, 2)


def request_feeds(meta: ModelMeta, info: GraphInfo, cache: Path) -> dict[str, np.ndarray]:
    """The bench clip's feeds for a shared-trunk graph described by `info`: 5 clips x 18 crops."""
    from fstcn.core.video.decode import decode_video, probe_video

    video = bench_video(cache, CLIP)
    probe = probe_video(video)
    plan = plan_clip_pairs(0.0, probe.duration_s - 1.0 / probe.fps, meta.sampling, CLIPS)
    decoded = decode_video(video, resize_short=meta.resize_short, times=plan.all_times())
    return frame_feeds(decoded.frames, decoded.times, plan, info, CROPS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument(
        "--calibration", type=Path, default=None, help="border calibration (default: NAME.border.npz)"
    )
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench"), help="where the bench clip is")
    args = parser.parse_args(argv)

    checkpoint = load_checkpoint(args.checkpoint)
    network, _ = build_model_from_checkpoint(checkpoint)
    network = fold_batchnorm(network).eval()
    meta = model_meta(checkpoint)
    calibration_file = args.calibration or calibration_path(args.checkpoint.with_suffix(".onnx"))
    calibration = BorderCalibration.load(calibration_file) if calibration_file.is_file() else None
    feeds = request_feeds(meta, graph_info(network, "shared"), args.cache)
    sessions, probs = {}, {}
    for share in SHARE_DEPTHS:
        cut = calibration.cuts[share] if calibration is not None else None
        info = graph_info(network, "shared", share, calibrated=cut is not None)
        for form, graph_class in (("previous", PreviousTrunkGraph), ("current", SharedTrunkGraph)):
            graph = graph_class(network, meta, share, cut).eval()
            serialised = trace_frames_graph(graph, meta, info).SerializeToString()
            session = cpu_session(serialised, args.threads)
            (probs[(share, form)],) = session.run([PROBS_OUTPUT], feeds)
            sessions[f"{share} {form}"] = session
    times = interleaved(
        {name: (lambda s=session: s.run([PROBS_OUTPUT], feeds)) for name, session in sessions.items()},
        args.repeats,
    )
    print(f"calibration: {calibration_file if calibration is not None else 'none'}; {args.repeats} rounds")
    for name, values in times.items():
        ms = [1000.0 * v for v in values]
        print(f"{name:16s} {statistics.median(ms):7.1f} ms  [{min(ms):.1f}-{max(ms):.1f}]")
    for share in SHARE_DEPTHS:
        speed = ratio_stats(times[f"{share} previous"], times[f"{share} current"])
        diff = float(np.max(np.abs(probs[(share, "previous")] - probs[(share, "current")])))
        print(
            f"{share}: current vs previous {speed.median:.3f}x [{speed.min:.3f}-{speed.max:.3f}], "
            f"max |dp| {diff:.2g}"
        )


if __name__ == "__main__":
    main()
