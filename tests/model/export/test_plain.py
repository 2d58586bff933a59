"""The plain graph on the tiny preset: contract, metadata, dynamic batch, fp16, verification, CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

import fstcn.model.export.plain as export_module
from fstcn.cli import app
from fstcn.core.meta import META_KEY, ModelMeta
from fstcn.model.checkpoint import build_model_from_checkpoint, load_checkpoint, save_checkpoint
from fstcn.model.export import ExportResult, ExportVerificationError, export_model
from fstcn.model.export.plain import real_inputs_from_videos
from fstcn.model.network import FstCN, LocalResponseNorm, fstcn

torch.set_num_threads(1)
LABELS = ["wave", "clap", "jump", "squat"]


def tiny_checkpoint(path: Path, **overrides: object) -> Path:
    torch.manual_seed(0)
    model = fstcn(preset="tiny", num_classes=len(LABELS), **overrides)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):  # move BN statistics and weights away from their initial values
        appearance, motion = torch.randn(4, 3, 32, 32), torch.randn(4, 5, 3, 32, 32)
        loss = torch.nn.functional.cross_entropy(model(appearance, motion), torch.tensor([0, 1, 2, 3]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_checkpoint(
        path,
        model=model,
        config=model.config,
        labels=LABELS,
        sampling=model.config.sampling,
        epoch=4,
        optimizer=optimizer,
        extra={"rng": {"torch": torch.get_rng_state()}, "history": [{"epoch": 4, "loss": 1.0}]},
    )


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def torch_probs(model: FstCN, appearance: np.ndarray, motion: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = model(torch.from_numpy(appearance), torch.from_numpy(motion))
    return torch.softmax(logits, dim=1).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExportResult]:
    root = tmp_path_factory.mktemp("export")
    checkpoint = tiny_checkpoint(root / "train" / "last.pt")
    return checkpoint, export_model(checkpoint, root / "models" / "tiny-test.onnx", version="1.2")


def test_export_follows_the_onnx_contract_and_metadata(exported: tuple[Path, ExportResult]) -> None:
    _, result = exported
    onnx_model = onnx.load(result.onnx_path)
    assert result.opset >= 17 and result.meta.precision == "fp32"
    assert [i.name for i in onnx_model.graph.input] == ["appearance", "motion"]
    assert [o.name for o in onnx_model.graph.output] == ["probs"]
    props = {prop.key: prop.value for prop in onnx_model.metadata_props}
    meta = ModelMeta.from_json(props[META_KEY])
    assert meta == result.meta
    assert meta == ModelMeta(
        name="tiny-test", version="1.2", preset="tiny", labels=tuple(LABELS), resize_short=40, crop_size=32
    )
    assert not any(node.op_type == "BatchNormalization" for node in onnx_model.graph.node)  # folded


@pytest.mark.parametrize("batch", [1, 7])
def test_dynamic_batch_matches_pytorch(exported: tuple[Path, ExportResult], batch: int) -> None:
    checkpoint, result = exported
    model, _ = build_model_from_checkpoint(checkpoint)
    rng = np.random.default_rng(batch)
    appearance = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
    motion = rng.standard_normal((batch, 5, 3, 32, 32), dtype=np.float32)
    (probs,) = session(result.onnx_path).run(["probs"], {"appearance": appearance, "motion": motion})
    assert probs.shape == (batch, len(LABELS)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, torch_probs(model, appearance, motion), rtol=0, atol=1e-4)
    assert max(result.max_abs_diff.values()) <= 1e-4


def test_checkpoint_beside_the_onnx_rebuilds_the_served_model(exported: tuple[Path, ExportResult]) -> None:
    checkpoint, result = exported
    assert result.checkpoint_path == result.onnx_path.with_suffix(".pt")
    shipped = load_checkpoint(result.checkpoint_path)
    assert shipped["optimizer"] is None and "rng" not in shipped["extra"]
    assert shipped["extra"]["history"] == [{"epoch": 4, "loss": 1.0}]
    assert shipped["state_dict"]["classifier.weight"].dtype == torch.float16
    model, meta = build_model_from_checkpoint(shipped)
    assert meta == result.meta  # name, version, normalisation: the same as in the ONNX file
    original, _ = build_model_from_checkpoint(checkpoint)
    rng = np.random.default_rng(0)
    appearance = rng.standard_normal((3, 3, 32, 32), dtype=np.float32)
    motion = rng.standard_normal((3, 5, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(
        torch_probs(model, appearance, motion), torch_probs(original, appearance, motion), atol=1e-2
    )


def test_fp16_variant_keeps_float32_io(tmp_path: Path, exported: tuple[Path, ExportResult]) -> None:
    checkpoint, fp32 = exported
    result = export_model(checkpoint, tmp_path / "half.onnx", fp16=True, write_checkpoint=False)
    assert result.meta.precision == "fp16" and result.tolerance == 1e-2 and result.checkpoint_path is None
    onnx_model = onnx.load(result.onnx_path)
    weights = [init for init in onnx_model.graph.initializer if len(init.dims) >= 2]
    assert weights and all(init.data_type == onnx.TensorProto.FLOAT16 for init in weights)
    rng = np.random.default_rng(3)
    feed = {
        "appearance": rng.standard_normal((7, 3, 32, 32), dtype=np.float32),
        "motion": rng.standard_normal((7, 5, 3, 32, 32), dtype=np.float32),
    }
    (half,) = session(result.onnx_path).run(["probs"], feed)
    (full,) = session(fp32.onnx_path).run(["probs"], feed)
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, full, atol=1e-2)
    assert ModelMeta.from_json(onnx_model.metadata_props[0].value).precision == "fp16"


@pytest.mark.parametrize("overrides", [{"paths": "spatial"}, {"paths": "temporal"}, {"norm": "lrn"}])
def test_variants_export_with_both_inputs(tmp_path: Path, overrides: dict[str, str]) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "c.pt", **overrides)
    result = export_model(checkpoint, tmp_path / "v.onnx", fp16=overrides.get("norm") == "lrn")
    assert [i.name for i in session(result.onnx_path).get_inputs()] == ["appearance", "motion"]


def test_a_graph_that_disagrees_fails_loudly_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "c.pt")
    real_fold = export_module.fold_batchnorm

    def broken_fold(model: FstCN) -> FstCN:  # e.g. a fold that forgets the BN shift
        folded = real_fold(model)
        with torch.no_grad():
            folded.lower.conv1.conv.bias.add_(0.5)
        return folded

    monkeypatch.setattr(export_module, "fold_batchnorm", broken_fold)
    with pytest.raises(ExportVerificationError, match="disagrees"):
        export_model(checkpoint, tmp_path / "bad.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_bad_arguments(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "c.pt")
    with pytest.raises(ValueError, match=".onnx"):
        export_model(checkpoint, tmp_path / "m.bin")
    with pytest.raises(ValueError, match="opset"):
        export_model(checkpoint, tmp_path / "m.onnx", opset=13)
    wrong = (np.zeros((2, 3, 16, 16), np.float32), np.zeros((2, 5, 3, 16, 16), np.float32))
    with pytest.raises(ValueError, match="real inputs"):
        export_model(checkpoint, tmp_path / "m.onnx", real_inputs=wrong)


def test_real_video_batch_and_cli(tmp_path: Path, video_factory: Callable[..., Path]) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "c.pt")
    video = video_factory("export.mp4", fps=30, seconds=1.5, width=64, height=48)
    meta = build_model_from_checkpoint(checkpoint)[1]
    appearance, motion = real_inputs_from_videos([video], meta, num_crops=2)
    assert appearance.shape == (5 * 2, 3, 32, 32) and motion.shape == (5 * 2, 5, 3, 32, 32)
    out = tmp_path / "models" / "cli.onnx"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "export",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--name",
            "demo",
            "--version",
            "7",
            "--video",
            str(video),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "verified real" in result.output
    assert out.is_file() and out.with_suffix(".pt").is_file()
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert (ModelMeta.from_json(props[META_KEY]).name, ModelMeta.from_json(props[META_KEY]).version) == (
        "demo",
        "7",
    )
    missing = runner.invoke(app, ["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(out)])
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_info_command_ends_with_the_parameter_count(preset: str) -> None:
    result = CliRunner().invoke(app, ["info", "--preset", preset, "--num-classes", "7"])
    assert result.exit_code == 0, result.output
    with torch.device("meta"):
        expected = fstcn(preset=preset, num_classes=7).num_exported_parameters()
    assert result.output.rstrip().splitlines()[-1] == f"total parameters: {expected}"
    assert "temporal.tp" in result.output and "TPOperator" in result.output
    bad = CliRunner().invoke(app, ["info", "--preset", "huge"])
    assert bad.exit_code != 0


def test_lrn_exports_as_one_onnx_lrn_node_with_pytorchs_numbers(tmp_path: Path) -> None:
    lrn = LocalResponseNorm().eval()
    x = 30 * torch.randn(2, 96, 9, 11)  # large activations, so that the normalisation really divides
    path = tmp_path / "lrn.onnx"
    torch.onnx.export(lrn, (x,), str(path), input_names=["x"], opset_version=17, dynamo=False)
    graph = onnx.load(str(path)).graph
    assert [node.op_type for node in graph.node if node.op_type not in ("Cast", "Identity")] == ["LRN"]
    (onnx_out,) = session(path).run(None, {"x": x.numpy()})
    with torch.no_grad():
        expected = lrn(x).numpy()
    assert np.abs(expected / x.numpy()).min() < 0.9  # the norm is active on these inputs
    np.testing.assert_allclose(onnx_out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("lrn", "has_lrn_node"), [("node", True), ("expanded", False)])
def test_lrn_form_is_a_verified_export_option(tmp_path: Path, lrn: str, has_lrn_node: bool) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "c.pt", norm="lrn")
    result = export_model(checkpoint, tmp_path / "m.onnx", lrn=lrn, write_checkpoint=False)  # verified
    ops = {node.op_type for node in onnx.load(str(result.onnx_path)).graph.node}
    assert ("LRN" in ops) == has_lrn_node and ("AveragePool" in ops) != has_lrn_node
    with pytest.raises(ValueError, match="lrn must be one of"):
        export_model(checkpoint, tmp_path / "bad.onnx", lrn="fused")


@pytest.mark.parametrize(
    ("time_major", "split_lower"), [(True, True), (True, False), (False, True), (False, False)]
)
def test_export_forms_compute_the_same_function(tmp_path: Path, time_major: bool, split_lower: bool) -> None:
    """The export's two rewrites (bench/export_forms.py): T-P and TCL on the transposed plane, each TCL
    conv's input then ending in the feature axis (T = 5 is no conv width for MLAS); the lower SCL run on
    appearance and V_diff frames separately (no Concat of all frames). Both keep PyTorch's numbers."""
    model, meta = build_model_from_checkpoint(tiny_checkpoint(tmp_path / "c.pt"))
    assert model.temporal is not None
    config = model.config
    rng = np.random.default_rng(3)
    c, t = config.crop_size, config.clip_length
    feeds = {
        "appearance": rng.standard_normal((3, 3, c, c), dtype=np.float32),
        "motion": rng.standard_normal((3, t, 3, c, c), dtype=np.float32),
    }
    model.temporal.onnx_time_major = time_major
    model.onnx_split_lower = split_lower
    graph = export_module.onnx_graph(model, meta)
    inferred = onnx.shape_inference.infer_shapes(graph)
    dims = {v.name: v.type.tensor_type.shape.dim for v in inferred.graph.value_info}
    weights = {w.name: list(w.dims) for w in graph.graph.initializer}
    convs = [node for node in graph.graph.node if node.op_type == "Conv"]
    tcl_widths = [
        dims[node.input[0]][-1].dim_value
        for node in convs
        if weights[node.input[1]][1] == config.temporal_feature_size**2
    ]
    assert len(tcl_widths) == len(config.tcl_kernels)
    # time-major: the convs' width is the feature axis; as trained, T (which inference leaves unknown)
    assert all((width == config.branch_width) == time_major for width in tcl_widths)
    first_convs = [node for node in convs if weights[node.input[1]][1] == 3]  # conv1: RGB in
    assert len(first_convs) == (2 if split_lower else 1)
    probs = session_from(graph).run(["probs"], feeds)[0]
    np.testing.assert_allclose(probs, torch_probs(model, feeds["appearance"], feeds["motion"]), atol=1e-5)


def session_from(graph: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
