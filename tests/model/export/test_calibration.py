"""Border calibration of the shared trunk: the least-squares fit, the file format, the fit's alignment of
shared windows with exact crops, the calibrated export and `fstcn export --calibrate-shared`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from fstcn.cli import app
from fstcn.core.frames_graph import GRAPH_KEY, GraphInfo, frame_feeds
from fstcn.model.checkpoint import build_model_from_checkpoint
from fstcn.model.export.calibration import BorderCalibration, WindowCalibration, calibration_path
from fstcn.model.export.calibration_fit import _Moments, fit_border_calibration, training_videos
from fstcn.model.export.frames import example_frames
from fstcn.model.export.plain import fold_batchnorm
from fstcn.model.export.shared import SharedTrunkGraph, export_trunk_graph
from tests.model.tiny import tiny_checkpoint

torch.set_num_threads(1)


def _videos(video_factory: Callable[..., Path]) -> list[Path]:
    # 56 x 40 frames: the tiny preset keeps them (short side 40) and its crop offsets fall on stride 4
    return [
        video_factory("calib-a.mp4", seconds=1.6, width=56, height=40),
        video_factory("calib-b.webm", seconds=1.2, width=56, height=40),
    ]


def _fit(checkpoint: Path, videos: list[Path]) -> BorderCalibration:
    network, meta = build_model_from_checkpoint(checkpoint)
    return fit_border_calibration(fold_batchnorm(network), meta, videos, data="test")


def test_moments_fit_recovers_a_line_and_leaves_constants_alone() -> None:
    rng = np.random.default_rng(0)
    shared = torch.from_numpy(rng.normal(size=(500, 2, 3, 3)))
    exact = 2.0 * shared + 1.0
    exact[:, 1] = 0.5  # a channel that never varies in the exact crops
    shared[:, 1] = 0.0  # ... nor in the windows (a ReLU-dead channel): scale 1, shift = the offset
    moments = _Moments()
    moments.add(shared[:250], exact[:250])
    moments.add(shared[250:], exact[250:])
    scale, shift, before, after = moments.fit()
    np.testing.assert_allclose(scale[0], 2.0, rtol=1e-5)
    np.testing.assert_allclose(shift[0], 1.0, atol=1e-5)
    np.testing.assert_allclose(scale[1], 1.0)
    np.testing.assert_allclose(shift[1], 0.5, atol=1e-6)
    assert before > 1.0 and after < 1e-9


def test_calibration_file_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)

    def cut(share: str, channels: int) -> WindowCalibration:
        arrays = {p: rng.normal(size=(channels, 2, 2)).astype(np.float32) for p in ("spatial", "temporal")}
        return WindowCalibration(
            share, arrays, {p: a + 1 for p, a in arrays.items()}, {"spatial": 0.5}, {"spatial": 0.25}
        )

    original = BorderCalibration({"lower": cut("lower", 3), "branch": cut("branch", 2)}, videos=7, data="d")
    path = original.save(calibration_path(tmp_path / "models" / "m.onnx"))
    assert path == tmp_path / "models" / "m.border.npz"
    loaded = BorderCalibration.load(path)
    assert (loaded.videos, loaded.data) == (7, "d")
    for share, expected in original.cuts.items():
        for name in ("spatial", "temporal"):
            np.testing.assert_array_equal(loaded.cuts[share].scale[name], expected.scale[name])
            np.testing.assert_array_equal(loaded.cuts[share].shift[name], expected.shift[name])
        assert loaded.cuts[share].mse_after == expected.mse_after
    with pytest.raises(ValueError, match="share"):
        WindowCalibration("everything", {}, {}, {}, {})


def test_fit_lines_windows_up_with_exact_crops(tmp_path: Path, video_factory: Callable[..., Path]) -> None:
    """With 1x1 convs and non-overlapping pools a window IS its crop's feature map when the offsets fall
    on the stride, so the lower cut sees no border effect: any misordering of clips, crops or frames
    between the windows and the exact crops would show up as a difference here."""
    checkpoint = tiny_checkpoint(
        tmp_path / "local.pt", lower_kernels=(1, 1, 1, 1), pool_kernel=2, pool_stride=2
    )
    calibration = _fit(checkpoint, _videos(video_factory))
    lower = calibration.cuts["lower"]
    for path in ("spatial", "temporal"):
        assert lower.mse_before[path] < 1e-10
        assert lower.scale[path].shape == (16, 8, 8)  # tiny: 16 channels, 32 / 4 = 8
    branch = calibration.cuts["branch"]  # the branch conv (3x3, padded) does see the border
    assert branch.scale["spatial"].shape == (8, 8, 8)
    assert branch.mse_before["temporal"] > 0 and branch.mse_after["temporal"] <= branch.mse_before["temporal"]


def test_calibrated_trunk_graph(tmp_path: Path, video_factory: Callable[..., Path]) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    calibration = _fit(checkpoint, _videos(video_factory))
    for cut in calibration.cuts.values():
        for path in ("spatial", "temporal"):
            assert cut.mse_after[path] <= cut.mse_before[path]
    identity = BorderCalibration(
        {
            share: WindowCalibration(
                share,
                {p: np.ones_like(a) for p, a in cut.scale.items()},
                {p: np.zeros_like(a) for p, a in cut.shift.items()},
                cut.mse_before,
                cut.mse_after,
            )
            for share, cut in calibration.cuts.items()
        },
        videos=0,
        data="identity",
    )
    for share in ("lower", "branch"):
        probs = {}
        for name, chosen in (("none", None), ("fitted", calibration), ("identity", identity)):
            result = export_trunk_graph(  # verifies the ONNX file against its PyTorch module
                checkpoint, tmp_path / f"{share}-{name}.onnx", share=share, calibration=chosen
            )
            session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
            info = GraphInfo.from_json(session.get_modelmeta().custom_metadata_map[GRAPH_KEY])
            assert info.calibrated == (chosen is not None) and info.share == share
            ex = example_frames(result.meta, 40, 56, num_clips=2, seed=4)
            (probs[name],) = session.run(
                ["probs"], frame_feeds(ex["frames"], ex["times"], ex["plan"], info, 18)
            )
        np.testing.assert_allclose(probs["identity"], probs["none"], atol=1e-6)
        assert np.abs(probs["fitted"] - probs["none"]).max() > 1e-4
    with pytest.raises(ValueError, match="branch"):
        network, meta = build_model_from_checkpoint(checkpoint)
        SharedTrunkGraph(network, meta, "lower", calibration.cuts["branch"])


def test_export_cli_writes_the_calibration(tmp_path: Path, video_factory: Callable[..., Path]) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    data = tmp_path / "train"
    for number, video in enumerate(_videos(video_factory)):
        (data / f"class{number}").mkdir(parents=True)
        (data / f"class{number}" / video.name).symlink_to(video)
    assert len(training_videos(data, 10)) == 2 and len(training_videos(data, 1)) == 1
    out = tmp_path / "models" / "tiny.onnx"

    def export_calibrated(folder: Path, *options: str) -> Any:
        command = [
            "export",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--calibrate-shared",
            str(folder),
            *options,
        ]
        return CliRunner().invoke(app, command)

    result = export_calibrated(data)
    assert result.exit_code == 0, result.output
    assert "border calibration (lower cut)" in result.output
    assert "refined: per-crop KL to exact crops" in result.output
    loaded = BorderCalibration.load(out.with_name("tiny.border.npz"))
    assert loaded.videos == 2 and set(loaded.cuts) == {"lower", "branch"} and loaded.refine_epochs == 4
    for cut in loaded.cuts.values():
        assert cut.decision_kl is not None and cut.decision_kl[1] < cut.decision_kl[0]
    least_squares = export_calibrated(data, "--refine-epochs", "0")
    assert least_squares.exit_code == 0, least_squares.output
    assert BorderCalibration.load(out.with_name("tiny.border.npz")).refine_epochs == 0
    fp16 = export_calibrated(data, "--fp16")
    assert fp16.exit_code == 2 and "refine for 0 epochs" in fp16.output
    (data / "class0" / "broken.mp4").write_bytes(b"not a video")  # skipped with a warning
    rerun = export_calibrated(data)
    assert rerun.exit_code == 0, rerun.output
    assert BorderCalibration.load(out.with_name("tiny.border.npz")).videos == 2
    only_broken = tmp_path / "broken" / "class0"
    only_broken.mkdir(parents=True)
    (only_broken / "broken.mp4").write_bytes(b"not a video")
    failed = export_calibrated(only_broken.parent)
    assert failed.exit_code == 2 and "could be decoded" in failed.output
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = export_calibrated(empty)
    assert failed.exit_code == 2 and "no videos" in failed.output
