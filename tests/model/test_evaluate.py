"""fstcn.model.evaluate and `fstcn evaluate` with a tiny hand-built ONNX model on tiny generated videos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from fstcn.cli import app
from fstcn.core.clips import crop_boxes
from fstcn.core.meta import META_KEY, ModelMeta, SamplingParams
from fstcn.core.runtime import OnnxModel
from fstcn.core.scoring import clip_probs
from fstcn.core.video.decode import decode_video
from fstcn.model.datasets import VideoSample, load_dataset
from fstcn.model.evaluate import (
    CROP_SUBSETS,
    bundle_forms,
    confusion_matrix,
    evaluate_samples,
    load_form_runners,
    load_runner,
    topk_correct,
    video_probs,
)
from fstcn.model.runner import decode_for_scoring
from tests.videos import write_video

CPU = ["CPUExecutionProvider"]
LABELS = ("clap", "jump", "wave")
SAMPLING = SamplingParams(clip_length=3, stride=2, diff_offset=3, num_clips=2, ref_fps=25.0)
META = ModelMeta(
    name="toy", version="1", preset="tiny", labels=LABELS, sampling=SAMPLING, resize_short=24, crop_size=16
)


def _toy_onnx(path: Path, meta: ModelMeta = META) -> Path:
    """probs = softmax([mean_hw(appearance), mean_thw(motion)] @ W + b): the ONNX I/O contract in 5 nodes."""
    rng = np.random.default_rng(0)
    n = meta.num_classes
    c, t = meta.crop_size, meta.sampling.clip_length
    weight = numpy_helper.from_array(rng.normal(size=(6, n)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.normal(size=(n,)).astype(np.float32), "b")
    nodes = [
        helper.make_node("ReduceMean", ["appearance"], ["app_mean"], axes=[2, 3], keepdims=0),
        helper.make_node("ReduceMean", ["motion"], ["mot_mean"], axes=[1, 3, 4], keepdims=0),
        helper.make_node("Concat", ["app_mean", "mot_mean"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "W"], ["logits0"]),
        helper.make_node("Add", ["logits0", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [
            helper.make_tensor_value_info("appearance", TensorProto.FLOAT, ["B", 3, c, c]),
            helper.make_tensor_value_info("motion", TensorProto.FLOAT, ["B", t, 3, c, c]),
        ],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["B", n])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {META_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _toy_onnx(tmp_path_factory.mktemp("model") / "toy.onnx")


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """UCF101 layout, 3 classes x 2 test videos, tiny and short; mixed containers."""
    root = tmp_path_factory.mktemp("ucf")
    splits = root / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("".join(f"{i + 1} {label}\n" for i, label in enumerate(LABELS)))
    test_lines, train_lines = [], []
    for i, label in enumerate(LABELS):
        (root / label).mkdir()
        for group in range(2):
            name = f"v_{label}_g{group + 1:02d}_c01"
            suffix = ".mp4" if group == 0 else ".avi"
            write_video(
                root / label / f"{name}{suffix}", fps=25 if i else 30, seconds=1.2, width=40, height=32
            )
            test_lines.append(f"{label}/{name}{suffix}")
            train_lines.append(f"{label}/{name}{suffix} {i + 1}")
    (splits / "testlist01.txt").write_text("\n".join(test_lines) + "\n")
    (splits / "trainlist01.txt").write_text("\n".join(train_lines) + "\n")
    return root


def test_crop_subsets_pick_the_smaller_crop_sets() -> None:
    full = crop_boxes(24, 32, 16, 18)
    for count, rows in CROP_SUBSETS.items():
        assert [full[row] for row in rows] == crop_boxes(24, 32, 16, count)


def test_topk_and_confusion_matrix() -> None:
    scores = np.array([0.1, 0.5, 0.3, 0.05, 0.05])
    assert topk_correct(scores, 1, 1) and not topk_correct(scores, 2, 1)
    assert topk_correct(scores, 2, 2) and topk_correct(scores, 4, 5) and topk_correct(scores, 4, 9)
    matrix = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 0], 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def _first_video(root: Path) -> Path:
    return sorted(root.glob("*/*.mp4"))[0]


def test_video_probs_rows_match_direct_crops(toy_model: Path, toy_dataset: Path) -> None:
    runner = OnnxModel.load(toy_model, providers=CPU)
    assert runner.meta == META
    path = _first_video(toy_dataset)
    probs = video_probs(path, runner)
    assert probs.shape == (2, 18, 3)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    # the 2-crop subset of the 18-crop output equals running the 2-crop inputs directly
    video, plan = decode_for_scoring(path, META)
    direct = clip_probs(runner, video, plan, 2)  # (M, 2, N)
    np.testing.assert_allclose(probs[:, list(CROP_SUBSETS[2])], direct, rtol=1e-5, atol=1e-6)


def test_video_probs_from_planned_frames_equal_those_of_every_frame(
    toy_model: Path, toy_dataset: Path
) -> None:
    """Evaluation decodes only the planned frames, as the service does; the scores are those of the
    video decoded whole (the frames nearest to the planned times are the same frames)."""
    runner = OnnxModel.load(toy_model, providers=CPU)
    for path in sorted(toy_dataset.glob("*/*.mp4")) + sorted(toy_dataset.glob("*/*.avi")):
        video, plan = decode_for_scoring(path, META)
        whole = decode_video(path, resize_short=META.resize_short)
        assert video.frames.shape[0] < whole.frames.shape[0]
        np.testing.assert_array_equal(
            clip_probs(runner, video, plan, 18), clip_probs(runner, whole, plan, 18)
        )


def test_evaluate_samples_report_is_consistent(toy_model: Path, toy_dataset: Path) -> None:
    dataset = load_dataset("ucf101", toy_dataset, 1, "test")
    runner = load_runner(toy_model, device="cpu")
    report = evaluate_samples(dataset.samples, dataset.labels, runner, progress=False)
    assert not report.failed
    assert report.num_clips == 2 and report.labels == list(LABELS)
    assert {(r["fusion"], r["crops"]) for r in report.results} == {
        (f, k) for f in ("sci", "mean") for k in (1, 2, 9, 18)
    }
    for row in report.results:
        assert row["videos"] == 6
        assert 0.0 <= row["top1"] <= row["top5"] <= 1.0
        assert row["top5"] == 1.0  # 3 classes: the top 5 always hold the truth
    matrix = np.array(report.confusion)
    assert matrix.shape == (3, 3) and matrix.sum() == 6 and matrix.sum(axis=1).tolist() == [2, 2, 2]
    headline = report.result("sci", 18)
    assert headline["top1"] == pytest.approx(np.trace(matrix) / 6)
    for index, row in enumerate(report.per_class):
        assert row["accuracy"] == pytest.approx(matrix[index, index] / 2)
    assert [v["label"] for v in report.videos] == [s.label for s in dataset.samples]
    predicted = [LABELS.index(v["predicted"]) for v in report.videos]
    assert (
        confusion_matrix([s.label_index for s in dataset.samples], predicted, 3).tolist() == report.confusion
    )
    json.dumps(report.to_dict())  # serialisable


def test_evaluate_records_broken_videos_and_checks_labels(toy_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    runner = load_runner(toy_model, device="cpu")
    report = evaluate_samples([VideoSample(broken, 0, "clap")], LABELS, runner, progress=False)
    assert len(report.failed) == 1 and report.results[0]["top1"] is None
    with pytest.raises(ValueError, match="differ"):
        evaluate_samples([], ["clap", "wave", "jump"], runner, progress=False)


def test_onnx_without_metadata_is_rejected(tmp_path: Path) -> None:
    path = _toy_onnx(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match="metadata"):
        load_runner(path, device="cpu")


@pytest.mark.slow
def test_checkpoint_and_its_onnx_export_agree(tmp_path: Path) -> None:
    """A PyTorch checkpoint evaluates like the ONNX file exported from it (both through load_runner)."""
    import torch

    from fstcn.core.presets import get_config
    from fstcn.model.checkpoint import save_checkpoint
    from fstcn.model.export import export_model
    from fstcn.model.network import fstcn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = get_config("tiny")
    network = fstcn(preset="tiny", num_classes=3)
    ckpt = save_checkpoint(
        tmp_path / "tiny.pt",
        model=network,
        config=config,
        labels=list(LABELS),
        sampling=config.sampling,
        epoch=1,
    )
    onnx_path = export_model(ckpt, tmp_path / "tiny.onnx", write_checkpoint=False).onnx_path
    torch_runner = load_runner(ckpt, device="cpu", batch_size=16)  # batches that do not divide M * 18
    onnx_runner = load_runner(onnx_path, device="cpu")
    assert torch_runner.meta.labels == onnx_runner.meta.labels == LABELS
    assert torch_runner.meta.sampling == onnx_runner.meta.sampling
    video = write_video(tmp_path / "v.mp4", fps=25, seconds=1.6, width=64, height=48)
    probs_torch = video_probs(video, torch_runner, num_clips=2)
    probs_onnx = video_probs(video, onnx_runner, num_clips=2)
    assert probs_torch.shape == (2, 18, 3)
    np.testing.assert_allclose(probs_torch, probs_onnx, atol=1e-4)


def test_cli_evaluate_writes_report_and_png(toy_model: Path, toy_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(toy_model),
            "--data",
            str(toy_dataset),
            "--out",
            str(out),
            "--limit",
            "4",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "confusion matrix" in result.output and "top-1" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["videos"] == 4 and report["headline"] == {"fusion": "sci", "crops": 18}
    assert np.array(report["confusion"]).sum() == 4
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(app, ["evaluate", "--model", str(toy_model), "--data", str(tmp_path / "none")])
    assert bad.exit_code == 2 and "not a folder" in " ".join(bad.output.split())


def test_the_forms_of_a_bundle_are_scored_side_by_side(tmp_path: Path) -> None:
    """A bundle with fast graphs: `fstcn evaluate` compares its served default (the shared trunk) with
    exact crops by itself; each form is scored from the same decode, the exact frames graph and the
    plain graph agree on every video, and the report carries every form's results and agreement."""
    from tests.model.tiny import LABELS as TINY_LABELS
    from tests.model.tiny import tiny_bundle

    plain, paths = tiny_bundle(tmp_path / "bundle")
    assert bundle_forms(plain) == ("default", "exact")
    assert bundle_forms(paths["exact"]) == ()  # a single graph: nothing to compare it with
    runners = load_form_runners(plain, ("default", "exact", "plain"), device="cpu")
    assert [runner.form for runner in runners.values()] == ["shared-lower", "exact", "plain"]  # type: ignore[attr-defined]
    samples = []
    for index, label in enumerate(TINY_LABELS):
        path = write_video(tmp_path / f"{label}.mp4", seconds=1.0 + 0.2 * index, width=56, height=40)
        samples.append(VideoSample(path, index, label))
    report = evaluate_samples(samples, TINY_LABELS, runners, progress=False)
    assert list(report.forms) == ["default", "exact", "plain"]
    assert report.results == report.forms["default"]["results"]  # the first form is the report's
    assert report.forms["default"]["agreement"] == 1.0
    assert report.forms["exact"]["predicted"] == report.forms["plain"]["predicted"]
    assert report.forms["exact"]["results"] == report.forms["plain"]["results"]
    assert [video["predicted"] for video in report.videos] == report.forms["default"]["predicted"]
    assert report.forms["default"]["form"] == "shared-lower"
    with pytest.raises(ValueError, match="unknown form"):
        load_form_runners(plain, ("fast",))
    with pytest.raises(ValueError, match="not an .onnx file"):
        load_form_runners(plain.with_suffix(".pt"), ("exact",))
