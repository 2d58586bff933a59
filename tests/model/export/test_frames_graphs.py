"""Fast-path graphs on the tiny preset: the exact frames graph reproduces the plain graph bit for bit,
the shared trunk reproduces exact crops where the geometry makes that possible, and the geometry helpers
put windows where the crops are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from fstcn.cli import app
from fstcn.core.clips import gather_clip_pairs, network_inputs, plan_clip_pairs
from fstcn.core.frames_graph import (
    GRAPH_KEY,
    GraphInfo,
    TrunkLayer,
    bundle_graph_paths,
    crop_box_array,
    frame_feeds,
    frame_indices,
    shared_window_index,
    snapped_offsets,
    trunk_layers,
)
from fstcn.core.meta import META_KEY, ModelMeta
from fstcn.core.presets import PRESETS
from fstcn.model.checkpoint import build_model_from_checkpoint, load_checkpoint, model_meta
from fstcn.model.export import export_model
from fstcn.model.export.calibration import WindowCalibration
from fstcn.model.export.frames import example_frames
from fstcn.model.export.shared import SharedTrunkGraph, graph_info, logits_above_cut
from tests.model.tiny import LABELS, tiny_bundle, tiny_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    return tiny_bundle(tmp_path_factory.mktemp("fast"))


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _meta_info(session: ort.InferenceSession) -> tuple[ModelMeta, GraphInfo]:
    props = session.get_modelmeta().custom_metadata_map
    return ModelMeta.from_json(props[META_KEY]), GraphInfo.from_json(props[GRAPH_KEY])


def _plain_probs(session: ort.InferenceSession, meta: ModelMeta, ex: dict[str, Any], crops: int) -> Any:
    appearance, motion = gather_clip_pairs(ex["frames"], ex["times"], ex["plan"])
    app, mot = network_inputs(appearance, motion, meta, crops)
    return session.run(["probs"], {"appearance": app, "motion": mot})[0]


def test_fast_graphs_sit_beside_the_model_and_describe_themselves(
    graphs: tuple[Path, dict[str, Path]],
) -> None:
    plain, paths = graphs
    assert {mode: paths[mode] for mode in ("exact", "shared")} == bundle_graph_paths(plain)
    assert paths["exact"].name == "tiny.frames.onnx" and paths["shared"].name == "tiny.trunk.onnx"
    plain_meta = ModelMeta.from_json({p.key: p.value for p in onnx.load(plain).metadata_props}[META_KEY])
    for mode, path in paths.items():
        meta, info = _meta_info(_session(path))
        assert meta == plain_meta and info.crops == ("exact" if mode == "exact" else "shared")
        assert info.crop_size == 32 and info.share == ("branch" if mode == "branch" else "lower")
        assert [i.name for i in _session(path).get_inputs()] == list(info.inputs)


@pytest.mark.parametrize("size", [(40, 61), (53, 40), (40, 40)])
@pytest.mark.parametrize("crops", [1, 2, 9, 18])
def test_exact_frames_graph_equals_the_plain_graph(
    graphs: tuple[Path, dict[str, Path]], size: tuple[int, int], crops: int
) -> None:
    plain_path, paths = graphs
    plain, frames = _session(plain_path), _session(paths["exact"])
    meta, info = _meta_info(frames)
    ex = example_frames(meta, *size, num_clips=3, seed=7)
    (probs,) = frames.run(["probs"], frame_feeds(ex["frames"], ex["times"], ex["plan"], info, crops))
    expected = _plain_probs(plain, meta, ex, crops)
    assert probs.shape == (3 * crops, len(LABELS))
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert probs.std() > 1e-3  # a real test: the model's outputs depend on the input


@pytest.mark.parametrize("share", ["shared", "branch"])
@pytest.mark.parametrize("crops", [1, 2, 9, 18])
def test_shared_trunk_equals_exact_crops_on_a_crop_sized_frame(
    graphs: tuple[Path, dict[str, Path]], crops: int, share: str
) -> None:
    """Frame = crop: every position coincides, so only the flips and row order are left to get right."""
    plain_path, paths = graphs
    plain, trunk = _session(plain_path), _session(paths[share])
    meta, info = _meta_info(trunk)
    ex = example_frames(meta, 32, 32, num_clips=2, seed=3)
    (probs,) = trunk.run(["probs"], frame_feeds(ex["frames"], ex["times"], ex["plan"], info, crops))
    np.testing.assert_allclose(probs, _plain_probs(plain, meta, ex, crops), atol=1e-5)


def test_shared_trunk_is_exact_when_the_trunk_is_local_and_offsets_are_aligned(tmp_path: Path) -> None:
    """1x1 convs and non-overlapping pools have no padding and no halo: a window of the whole frame's
    feature map then IS the crop's feature map, if the crop offsets fall on the stride (here 4)."""
    plain_path, paths = tiny_bundle(tmp_path, lower_kernels=(1, 1, 1, 1), pool_kernel=2, pool_stride=2)
    plain, trunk = _session(plain_path), _session(paths["shared"])
    meta, info = _meta_info(trunk)
    assert info.stride == 4
    ex = example_frames(meta, 40, 56, num_clips=2, seed=5)  # tops 0, 4, 8; lefts 0, 12, 24
    assert all(
        off == (box[0], box[1] if not box[2] else 56 - 32 - box[1])
        for off, box in zip(snapped_offsets(40, 56, info, 18), crop_box_array(40, 56, 32, 18), strict=True)
    )
    (probs,) = trunk.run(["probs"], frame_feeds(ex["frames"], ex["times"], ex["plan"], info, 18))
    np.testing.assert_allclose(probs, _plain_probs(plain, meta, ex, 18), atol=1e-5)


def test_trunk_geometry_matches_the_presets() -> None:
    for config in PRESETS.values():
        layers = trunk_layers(
            config.lower_kernels, config.lower_strides, config.pool_kernel, config.pool_stride
        )
        info = GraphInfo(crops="shared", crop_size=config.crop_size, trunk=layers)
        assert info.feature_size(config.crop_size) == config.lower_size
    small = PRESETS["small"]
    layers = trunk_layers(small.lower_kernels, small.lower_strides, small.pool_kernel, small.pool_stride)
    info = GraphInfo(crops="shared", crop_size=112, trunk=layers)
    assert info.stride == 16 and info.feature_size(128) == 7 and info.feature_size(171) == 10
    # a 320x240 video resized to 128x171: exact tops 0, 8, 16 and lefts 0, 29, 59 snap to the 16 grid
    offsets = snapped_offsets(128, 171, info, 9)
    assert offsets == [(r, c) for r in (0, 16, 16) for c in (0, 32, 64)]
    assert GraphInfo.from_json(info.to_json()) == info


def test_shared_windows_stay_inside_their_view() -> None:
    info = GraphInfo(crops="shared", crop_size=32, trunk=(TrunkLayer(3, 2, 1), TrunkLayer(3, 2, 0)))
    side, fh, fw = info.feature_size(32), info.feature_size(45), info.feature_size(77)
    views, windows = shared_window_index(45, 77, info, 18)
    assert views.tolist() == [0, 1] and windows.shape == (18, side, side)
    assert np.all(windows[:9] < fh * fw) and np.all(windows[9:] >= fh * fw)
    assert np.all(windows < 2 * fh * fw)
    views, windows = shared_window_index(45, 77, info, 9)
    assert views.tolist() == [0]  # no flipped crop: the flipped view is not computed
    with pytest.raises(ValueError):
        GraphInfo(crops="shared", crop_size=32)
    with pytest.raises(ValueError):
        GraphInfo(crops="sideways", crop_size=32)


def test_frame_indices_pick_what_gather_clip_pairs_picks() -> None:
    meta = ModelMeta(name="t", version="1", preset="tiny", labels=("a", "b"), resize_short=8, crop_size=8)
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.02, 0.06, 90))  # variable frame rate
    frames = rng.integers(0, 256, size=(90, 8, 8, 3), dtype=np.uint8)
    plan = plan_clip_pairs(float(times[0]), float(times[-1]), meta.sampling, 4)
    appearance, clip, diff = frame_indices(times, plan)
    app_ref, mot_ref = gather_clip_pairs(frames, times, plan)
    np.testing.assert_array_equal(frames[appearance], app_ref)
    np.testing.assert_array_equal(frames[diff].astype(np.int16) - frames[clip], mot_ref)


@pytest.mark.parametrize("share", ["lower", "branch"])
@pytest.mark.parametrize("overrides", [{}, {"temporal_pool": 1}, {"norm": "lrn"}])
def test_trunk_graph_is_the_function_of_its_nchw_windows(
    tmp_path: Path, share: str, overrides: dict[str, Any]
) -> None:
    """What the graph computes (V_diff scale folded into the motion conv1, channels-last windows and head
    for share="branch", pools of 3 on 7 x 7 windows and of 1) equals what the calibration is fitted on:
    `cut_windows`' NCHW windows, the calibration lines, `logits_above_cut`; for 18 and 9 crops."""
    checkpoint = load_checkpoint(tiny_checkpoint(tmp_path / "ckpt.pt", **overrides))
    network, _ = build_model_from_checkpoint(checkpoint)
    meta = model_meta(checkpoint)
    side, rng = network.config.lower_size, np.random.default_rng(0)
    widths = {"lower": network.config.lower_widths[-1], "branch": network.config.branch_width}
    lines = {
        name: {
            path: rng.normal(center, 0.2, (widths[share], side, side)).astype(np.float32)
            for path in ("spatial", "temporal")
        }
        for name, center in (("scale", 1.0), ("shift", 0.0))
    }
    calibration = WindowCalibration(share, lines["scale"], lines["shift"], {}, {})
    graph = SharedTrunkGraph(network.eval(), meta, share, calibration).eval()
    info = graph_info(network, "shared", share, calibrated=True)
    ex = example_frames(meta, 40, 57, num_clips=2, seed=7)
    for crops in (18, 9):
        feeds = frame_feeds(ex["frames"], ex["times"], ex["plan"], info, crops)
        inputs = [torch.from_numpy(feeds[name]) for name in info.inputs]
        with torch.no_grad():
            got = graph(*inputs)
            spatial, temporal = graph.cut_windows(*inputs)
            scale, shift = ({p: torch.from_numpy(v[p]) for p in v} for v in (lines["scale"], lines["shift"]))
            logits = logits_above_cut(
                network,
                share,
                spatial * scale["spatial"] + shift["spatial"],
                temporal * scale["temporal"] + shift["temporal"],
            )
        assert got.shape == (2 * crops, len(LABELS))
        np.testing.assert_allclose(got.numpy(), torch.softmax(logits, dim=1).numpy(), atol=1e-6)


def test_fstcn_bench_writes_the_fast_graphs_at_the_asked_depth(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    plain = export_model(checkpoint, tmp_path / "tiny.onnx", write_checkpoint=False).onnx_path
    runner = CliRunner()
    bad = runner.invoke(app, ["bench", "--model", str(plain), "--write-fast-graphs", "--share", "upper"])
    assert bad.exit_code != 0 and "--share" in bad.output
    assert not (tmp_path / "tiny.trunk.onnx").exists()
    result = runner.invoke(app, ["bench", "--model", str(plain), "--write-fast-graphs", "--share", "branch"])
    assert result.exit_code == 0, result.output
    _, info = _meta_info(_session(tmp_path / "tiny.trunk.onnx"))
    assert info.crops == "shared" and info.share == "branch"
    assert _meta_info(_session(tmp_path / "tiny.frames.onnx"))[1].crops == "exact"


def test_fstcn_export_writes_the_fast_graphs_beside_the_model(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "train.pt")
    out = tmp_path / "models" / "tiny.onnx"
    runner = CliRunner()
    export = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--version", "v1"]
    bad = runner.invoke(app, [*export, "--fast-graphs", "upper"])
    assert bad.exit_code == 2 and "--fast-graphs" in bad.output and not out.exists()
    fp16 = runner.invoke(app, [*export, "--fp16", "--fast-graphs", "lower"])
    assert fp16.exit_code == 2 and "fp16" in fp16.output and not out.exists()
    result = runner.invoke(app, [*export, "--fast-graphs", "branch"])
    assert result.exit_code == 0, result.output
    paths = bundle_graph_paths(out)
    meta, info = _meta_info(_session(paths["shared"]))
    assert info.share == "branch" and (meta.name, meta.version) == ("tiny", "v1")
    assert _meta_info(_session(paths["exact"]))[1].crops == "exact"
    assert "frames graph" in result.output


def test_trunk_forms_bench_compares_two_layouts_of_one_function(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`experiments/fast_paths/trunk_forms.py` on the tiny preset (pools of 3 on 7 x 7 windows): the
    previous and the current layout give the same probabilities on the decoded bench clip, for both cuts."""
    from experiments.fast_paths.trunk_forms import main

    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    main(["--checkpoint", str(checkpoint), "--repeats", "1", "--threads", "1", "--cache", str(tmp_path)])
    lines = [line for line in capsys.readouterr().out.splitlines() if "current vs previous" in line]
    assert [line.split(":")[0] for line in lines] == ["lower", "branch"]
    assert all(float(line.rsplit("max |dp| ", 1)[1]) < 1e-5 for line in lines)
