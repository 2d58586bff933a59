"""Refinement of the border calibration on the decision: the windows and exact scores it collects, the
trainable layers above the cut (the same function as the exported trunk graph), and that it lowers the
per-crop KL to exact crops."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from fstcn.core.frames_graph import frame_feeds
from fstcn.core.runtime import CPU, OnnxModel
from fstcn.core.scoring import decode_planned
from fstcn.core.video.decode import probe_video
from fstcn.model.checkpoint import build_model_from_checkpoint
from fstcn.model.export import export_model
from fstcn.model.export.calibration import BorderCalibration
from fstcn.model.export.calibration_fit import fit_border_calibration
from fstcn.model.export.plain import fold_batchnorm
from fstcn.model.export.refine import (
    CalibratedUpper,
    RefineOptions,
    WindowSet,
    collect_windows,
    refine_calibration,
    shared_probs,
)
from fstcn.model.export.shared import SharedTrunkGraph, graph_info
from tests.model.tiny import tiny_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, video_factory: Callable[..., Path]) -> dict[str, object]:
    """A tiny network, two videos (and a missing one, skipped), their windows and a fitted calibration."""
    root = tmp_path_factory.mktemp("refine")
    checkpoint = tiny_checkpoint(root / "tiny.pt")
    plain = export_model(checkpoint, root / "tiny.onnx", write_checkpoint=False).onnx_path
    videos = [
        video_factory("refine-a.mp4", seconds=1.6, width=56, height=40),
        video_factory("refine-b.webm", seconds=1.2, width=56, height=40),
    ]
    network, meta = build_model_from_checkpoint(checkpoint)
    network = fold_batchnorm(network)
    exact = OnnxModel.load(plain, providers=[CPU])
    data = collect_windows(network, meta, [*videos, root / "missing.mp4"], exact)
    calibration = fit_border_calibration(network, meta, videos, data="test")
    return {
        "network": network,
        "meta": meta,
        "data": data,
        "calibration": calibration,
        "videos": videos,
        "exact": exact,
    }


def test_collected_windows_and_exact_scores(tiny: dict[str, object], tmp_path: Path) -> None:
    data, meta = tiny["data"], tiny["meta"]
    assert isinstance(data, WindowSet)
    m, t = meta.sampling.num_clips, meta.sampling.clip_length  # type: ignore[attr-defined]
    assert data.exact.shape == (2, m, 18, 4) and data.num_videos == 2
    np.testing.assert_allclose(data.exact.sum(-1).numpy(), 1.0, atol=1e-5)
    assert data.windows["lower"]["spatial"].shape == (2 * m * 18, 16, 7, 7)  # tiny: 16 channels, side 7
    assert data.windows["branch"]["temporal"].shape == (2 * m * 18 * t, 8, 7, 7)
    spatial, temporal, exact = data.clips("lower", torch.tensor([3, 0]))
    assert spatial.shape == (2 * 18, 16, 7, 7) and temporal.shape == (2 * 18 * t, 16, 7, 7)
    torch.testing.assert_close(exact[1], data.exact[0, 0])
    torch.testing.assert_close(spatial[18:], data.windows["lower"]["spatial"][:18].float())
    with pytest.raises(ValueError, match="could be decoded"):
        collect_windows(tiny["network"], meta, [tmp_path / "none.mp4"], tiny["exact"])  # type: ignore[arg-type]


@pytest.mark.parametrize("share", ["lower", "branch"])
def test_calibrated_upper_is_the_trunk_graphs_function(tiny: dict[str, object], share: str) -> None:
    """The trained scale and shift mean in `CalibratedUpper` what they mean in the exported graph: on one
    video its probabilities equal `SharedTrunkGraph`'s with the same calibration."""
    network, meta, data = tiny["network"], tiny["meta"], tiny["data"]
    calibration = tiny["calibration"]
    assert isinstance(calibration, BorderCalibration) and isinstance(data, WindowSet)
    cut = calibration.cuts[share]
    upper = CalibratedUpper(network, cut)  # type: ignore[arg-type]
    graph = SharedTrunkGraph(network, meta, share, cut).eval()  # type: ignore[arg-type]
    video = Path(tiny["videos"][0])  # type: ignore[index]
    num_clips = meta.sampling.num_clips  # type: ignore[attr-defined]
    decoded, plan = decode_planned(video, probe_video(video), meta, num_clips)  # type: ignore[arg-type]
    info = graph_info(network, "shared", share)  # type: ignore[arg-type]
    feeds = frame_feeds(decoded.frames, decoded.times, plan, info, 18)
    with torch.inference_mode():
        expected = graph(*[torch.from_numpy(feeds[name]) for name in info.inputs])  # (M*K, N)
    got = shared_probs(upper, data)[0].reshape(-1, 4)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=2e-3)  # windows stored as float16


def test_refinement_lowers_the_kl_and_keeps_the_file_form(tiny: dict[str, object]) -> None:
    network, data, calibration = tiny["network"], tiny["data"], tiny["calibration"]
    assert isinstance(calibration, BorderCalibration) and isinstance(data, WindowSet)

    def kl(cut: object) -> float:
        probs = shared_probs(CalibratedUpper(network, cut), data)  # type: ignore[arg-type]
        exact = data.exact.double().clamp_min(1e-12)
        return float((exact * (exact.log() - probs.clamp_min(1e-12).log())).sum(-1).mean())

    losses: list[float] = []
    for share in ("lower", "branch"):
        fitted = calibration.cuts[share]
        refined = refine_calibration(
            network,  # type: ignore[arg-type]
            fitted,
            data,
            RefineOptions(epochs=6, lr=1e-2, batch_clips=2),
            on_epoch=lambda epoch, loss, upper: losses.append(loss),
        )
        assert refined.share == share and refined.scale["spatial"].shape == fitted.scale["spatial"].shape
        assert refined.scale["temporal"].dtype == np.float32
        assert kl(refined) < kl(fitted)
        assert not np.array_equal(refined.shift["spatial"], fitted.shift["spatial"])
    assert len(losses) == 12
