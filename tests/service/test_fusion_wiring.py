"""The data plane's fusion wiring: a `Prediction` is the fusion of the model's own per-row outputs.

The model here (`crop_sensitive_model`) scores the left and right halves of the appearance crop apart,
so every crop position and every flip of every clip pair gets its own probabilities. The test computes
the expected answer outside the service: it decodes the planned frames, builds the network inputs with
`fstcn.core.clips`, runs the ONNX file in its own ONNX Runtime session, and fuses the (M*K, N) rows by
hand (rows clip-major: row = i*K + k). A data plane that paired rows with the wrong clip or crop, fused
the wrong axis, ranked the wrong scores or answered a close call with the served model instead of the
recheck model gives other numbers.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from fstcn.core.clips import gather_clip_pairs, network_inputs
from fstcn.core.meta import APPEARANCE_INPUT, MOTION_INPUT, PROBS_OUTPUT, ModelMeta
from fstcn.core.options import PredictOptions
from fstcn.core.scoring import decode_planned
from fstcn.core.video.decode import VideoLimits, probe_video
from fstcn.service.engine import CPU, Engine
from fstcn.service.pipeline import Pipeline, Prediction, Recheck
from tests.service.fake_model import FAKE_META, contract_model
from tests.videos import write_video

META = replace(FAKE_META, name="crop-sensitive")
NUM_CLIPS = 3  # differs from every crop count, so a crop-major reading is not a mere transpose


def crop_sensitive_model(path: Path, meta: ModelMeta, seed: int) -> Path:
    """An FstCN-contract ONNX model: probs (B, N) = softmax(W (left-half means - right-half means) + b).

    appearance (B, 3, c, c) -> per-channel mean of its left half minus that of its right half (B, 3):
    crops at other positions differ, and a flipped crop negates the features. The whole-crop brightness
    is left out on purpose: it is nearly the same in every crop and would saturate the softmax into
    agreeing crops. `motion` is an input of the contract but unused here.
    """
    c, n = meta.crop_size, meta.num_classes
    rng = np.random.default_rng(seed)
    # The features lie within about +-1 on the test video: logits of a few units give probabilities
    # that are neither one-hot nor uniform, so SCI weights differ from crop to crop.
    weights = (rng.standard_normal((3, n)) * 2.5).astype(np.float32)
    bias = (rng.standard_normal(n) * 0.5).astype(np.float32)
    half = c // 2
    nodes = [
        # (B, 3, c, c) -> (B, 3, c, c/2) each
        helper.make_node("Slice", [APPEARANCE_INPUT, "left_start", "left_end", "width_axis"], ["left"]),
        helper.make_node("Slice", [APPEARANCE_INPUT, "right_start", "right_end", "width_axis"], ["right"]),
        # (B, 3, c, c/2) -> (B, 3)
        helper.make_node("ReduceMean", ["left"], ["left_mean"], axes=[2, 3], keepdims=0),
        helper.make_node("ReduceMean", ["right"], ["right_mean"], axes=[2, 3], keepdims=0),
        helper.make_node("Sub", ["left_mean", "right_mean"], ["features"]),  # (B, 3)
        helper.make_node("MatMul", ["features", "weights"], ["logits_raw"]),  # (B, N)
        helper.make_node("Add", ["logits_raw", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [PROBS_OUTPUT], axis=1),
    ]
    initializers = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "left_start"),
        numpy_helper.from_array(np.array([half], dtype=np.int64), "left_end"),
        numpy_helper.from_array(np.array([half], dtype=np.int64), "right_start"),
        numpy_helper.from_array(np.array([c], dtype=np.int64), "right_end"),
        numpy_helper.from_array(np.array([3], dtype=np.int64), "width_axis"),
        numpy_helper.from_array(weights, "weights"),
        numpy_helper.from_array(bias, "bias"),
    ]
    model = contract_model(meta, nodes, initializers, name="crop_sensitive")
    onnx.save(model, str(path))
    return path


def hand_fused(rows: npt.NDArray[np.float32], num_crops: int, fusion: str) -> tuple[np.ndarray, np.ndarray]:
    """(video scores (N,), clip scores (M, N)) of rows (M*K, N), clip-major, fused with loops.

    SCI(p) = (N max p / sum p - 1) / (N - 1); a clip's score is the SCI-weighted mean of its crops, the
    video's the class-wise max over clips. `mean`: crop means per clip, the mean of all rows per video.
    """
    num_classes = rows.shape[1]
    clips = []
    for start in range(0, rows.shape[0], num_crops):
        crops = [rows[start + k].astype(np.float64) for k in range(num_crops)]
        if fusion == "mean":
            clips.append(sum(crops) / num_crops)
            continue
        weights = [(num_classes * p.max() / p.sum() - 1) / (num_classes - 1) for p in crops]
        clips.append(sum(w * p for w, p in zip(weights, crops, strict=True)) / sum(weights))
    clip_scores = np.stack(clips)
    video = rows.astype(np.float64).mean(axis=0) if fusion == "mean" else clip_scores.max(axis=0)
    return video, clip_scores


def sci_of(scores: npt.NDArray[np.float64]) -> float:
    n = scores.shape[0]
    return float((n * scores.max() / scores.sum() - 1) / (n - 1))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wiring")
    return {
        "served": crop_sensitive_model(root / "served.onnx", META, seed=1),
        "recheck": crop_sensitive_model(root / "recheck.onnx", META, seed=2),
    }


@pytest.fixture(scope="module")
def clip_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(
        tmp_path_factory.mktemp("wiring-video") / "wiring.mp4", seconds=2.0, width=160, height=120
    )


def model_rows(model_path: Path, video_path: Path, num_crops: int) -> npt.NDArray[np.float32]:
    """The model's own outputs (M*K, N) for the video's planned clip pairs, outside the service."""
    video, plan = decode_planned(video_path, probe_video(video_path), META, NUM_CLIPS)
    appearance, motion = gather_clip_pairs(video.frames, video.times, plan)
    feeds = dict(
        zip(
            (APPEARANCE_INPUT, MOTION_INPUT), network_inputs(appearance, motion, META, num_crops), strict=True
        )
    )
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (rows,) = session.run([PROBS_OUTPUT], feeds)
    return np.asarray(rows, dtype=np.float32)


def assert_prediction_is(prediction: Prediction, video: np.ndarray, clips: np.ndarray) -> None:
    """The prediction's ranking, top scores and per-clip results equal the hand-fused scores."""
    order = np.argsort(-video, kind="stable")[:5]
    assert [index for index, _ in prediction.top] == order.tolist()
    np.testing.assert_allclose([score for _, score in prediction.top], video[order], atol=1e-6)
    assert len(prediction.clips) == NUM_CLIPS
    for result, expected in zip(prediction.clips, clips, strict=True):
        assert result.index == int(np.argmax(expected))
        assert result.score == pytest.approx(float(expected.max()), abs=1e-6)
        assert result.sci == pytest.approx(sci_of(expected), abs=1e-6)


@pytest.mark.parametrize(("crops", "fusion"), [(18, "sci"), (9, "sci"), (2, "sci"), (9, "mean")])
def test_prediction_is_the_hand_fused_model_output(
    models: dict[str, Path], clip_video: Path, crops: int, fusion: str
) -> None:
    rows = model_rows(models["served"], clip_video, crops)
    # The test means something only if crops of one clip pair disagree.
    per_clip = rows.reshape(NUM_CLIPS, crops, -1)
    assert np.ptp(per_clip, axis=1).max() > 0.1, "the model's crops agree: this test would prove nothing"
    video, clips = hand_fused(rows, crops, fusion)
    pipe = Pipeline(Engine.load(models["served"], providers=[CPU]), limits=VideoLimits())
    prediction = pipe.predict_file(clip_video, PredictOptions(clips=NUM_CLIPS, crops=crops, fusion=fusion))
    assert not prediction.rechecked
    assert prediction.fusion == fusion
    assert_prediction_is(prediction, video, clips)


@pytest.mark.parametrize("fusion", ["sci", "mean"])
def test_a_close_call_answers_with_the_recheck_models_fused_scores(
    models: dict[str, Path], clip_video: Path, fusion: str
) -> None:
    crops = 9
    served_video, _ = hand_fused(model_rows(models["served"], clip_video, crops), crops, fusion)
    video, clips = hand_fused(model_rows(models["recheck"], clip_video, crops), crops, fusion)
    assert not np.allclose(video, served_video, atol=1e-3), "both models agree: the recheck is not seen"
    # A lead is at most 1: a margin of 2 makes every answer a close call.
    recheck = Recheck(engine=Engine.load(models["recheck"], providers=[CPU]), margin=2.0)
    pipe = Pipeline(Engine.load(models["served"], providers=[CPU]), limits=VideoLimits(), recheck=recheck)
    prediction = pipe.predict_file(clip_video, PredictOptions(clips=NUM_CLIPS, crops=crops, fusion=fusion))
    assert prediction.rechecked
    assert_prediction_is(prediction, video, clips)


def test_a_clear_lead_keeps_the_served_models_answer(models: dict[str, Path], clip_video: Path) -> None:
    crops = 9
    video, clips = hand_fused(model_rows(models["served"], clip_video, crops), crops, "sci")
    ranked = np.sort(video)
    lead = ranked[-1] - ranked[-2]
    assert lead > 1e-3, "the served model has no clear lead on this video"
    recheck = Recheck(engine=Engine.load(models["recheck"], providers=[CPU]), margin=lead / 2)
    pipe = Pipeline(Engine.load(models["served"], providers=[CPU]), limits=VideoLimits(), recheck=recheck)
    prediction = pipe.predict_file(clip_video, PredictOptions(clips=NUM_CLIPS, crops=crops, fusion="sci"))
    assert not prediction.rechecked
    assert_prediction_is(prediction, video, clips)
