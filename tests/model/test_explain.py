"""Saliency maps, the figure-mask geometry and the t-SNE features (model.explain, model.tsne, and the
`fstcn explain` / `fstcn tsne` commands) on the `tiny` preset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fstcn.cli import app
from fstcn.core.clips import CropBox, crop_boxes, nearest_frame_indices, plan_clip_pairs
from fstcn.core.fusion import fuse_scores
from fstcn.core.presets import get_config
from fstcn.core.video.decode import DecodedVideo, VideoInfo
from fstcn.model.checkpoint import save_checkpoint
from fstcn.model.datasets import load_dataset
from fstcn.model.evaluate import video_probs
from fstcn.model.explain import (
    Explanation,
    explain_decoded,
    explain_video,
    explanation_masks,
    mask_mismatch,
    mask_to_crop,
    measure_saliency_in_masks,
    resolve_checkpoint,
    saliency_maps,
    saliency_mask_share,
    save_saliency_grid,
)
from fstcn.model.network import fstcn
from fstcn.model.runner import TorchRunner
from fstcn.model.synth.dataset import CLASSES, generate_dataset
from fstcn.model.tsne import collect_features, knn_loo_accuracy, limit_per_class, run_tsne, separability

FPS = 25.0
HEIGHT, WIDTH = 40, 56  # already at the tiny preset's resize_short (40): frames go in as decoded
SQUARE = 6


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny FstCN for the ten Synthetic Actions classes."""
    torch.manual_seed(0)
    config = get_config("tiny")
    model = fstcn(preset="tiny", num_classes=len(CLASSES))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(
        path, model=model, config=config, labels=list(CLASSES), sampling=config.sampling, epoch=0
    )


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four Synthetic Actions test videos (wave, jump x 2) with figure masks."""
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(
        root, videos_per_class=2, seed=11, split="test", workers=1, masks=True, classes=("wave", "jump")
    )
    return root


def moving_square_video(frames: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Decoded-like frames uint8 (F, 40, 56, 3) and times (F,): a static random texture and one small
    square moving right by half a pixel per frame (one pixel every other frame); nothing else changes."""
    rng = np.random.default_rng(7)
    background = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    video = np.repeat(background[None], frames, axis=0)
    for k in range(frames):
        x = 8 + k // 2
        video[k, 16 : 16 + SQUARE, x : x + SQUARE] = (250, 240, 10)
    return video, np.arange(frames, dtype=np.float64) / FPS


def explain_frames(
    runner: TorchRunner, frames: np.ndarray, times: np.ndarray, **options: object
) -> Explanation:
    """`explain_decoded` on frames in memory, every one of them decoded, M clip pairs over their span."""
    height, width = frames.shape[1:3]
    info = VideoInfo(float(times[-1]), FPS, width, height, frames.shape[0], "raw", "test", 0)
    plan = plan_clip_pairs(0.0, float(times[-1]), runner.meta.sampling, runner.meta.sampling.num_clips)
    return explain_decoded(runner, DecodedVideo(info, frames, times), plan, **options)  # type: ignore[arg-type]


def load_runner(checkpoint: Path) -> TorchRunner:
    return TorchRunner.from_checkpoint(checkpoint, device="cpu")


def changed_region(frames: np.ndarray, times: np.ndarray, explanation: Explanation) -> np.ndarray:
    """(T, c, c) bool: where V_diff frame i is non-zero, computed from the raw frames."""
    box, size = explanation.box, explanation.appearance_saliency.shape[0]
    clip_idx = nearest_frame_indices(times, explanation.clip_times)
    diff_idx = nearest_frame_indices(times, explanation.diff_times)
    changed = np.any(frames[diff_idx] != frames[clip_idx], axis=-1)  # (T, h, w)
    return changed[:, box.top : box.top + size, box.left : box.left + size]


def test_saliency_shapes_determinism_and_non_zero(checkpoint: Path) -> None:
    runner = load_runner(checkpoint)
    meta = runner.meta
    frames, times = moving_square_video()
    first = explain_frames(runner, frames, times, num_crops=2)
    again = explain_frames(runner, frames, times, num_crops=2)
    c, t = meta.crop_size, meta.sampling.clip_length
    assert first.appearance_saliency.shape == (c, c) and first.motion_saliency.shape == (t, c, c)
    assert first.appearance_image.shape == (c, c, 3) and first.motion_image.shape == (t, c, c, 3)
    assert first.clip_images.shape == (t, c, c, 3)
    for saliency in (first.appearance_saliency, first.motion_saliency):
        assert np.all(np.isfinite(saliency)) and np.all(saliency >= 0) and saliency.sum() > 0
    np.testing.assert_array_equal(first.appearance_saliency, again.appearance_saliency)
    np.testing.assert_array_equal(first.motion_saliency, again.motion_saliency)
    assert first.target_index == first.predicted_index == int(np.argmax(first.video_scores))
    # the explained pair is the one with the highest fused clip score for the class
    assert first.clip_index == int(np.argmax(first.clip_scores))
    assert first.box == crop_boxes(HEIGHT, WIDTH, c, 1)[0]
    # a given label is explained instead of the prediction
    other = (first.predicted_index + 1) % len(CLASSES)
    given = explain_frames(runner, frames, times, label=CLASSES[other], num_crops=1)
    assert given.target_index == other and given.label_given and given.to_dict()["explained"]["given"]
    with pytest.raises(ValueError, match="unknown label"):
        explain_frames(runner, frames, times, label="moonwalk", num_crops=1)


def test_prediction_matches_evaluation(checkpoint: Path, synth_root: Path) -> None:
    """The video scores in the JSON are `fstcn evaluate`'s: M clips x 18 crops, SCI fusion."""
    runner = load_runner(checkpoint)
    video = next((synth_root / "wave").iterdir())
    explanation = explain_video(video, runner, num_crops=18)
    probs = video_probs(video, runner)  # (M, 18, N)
    np.testing.assert_allclose(explanation.video_scores, fuse_scores(probs, "sci").video_scores, atol=1e-6)
    top5 = explanation.to_dict()["top5"]
    assert len(top5) == 5 and top5[0]["label"] == explanation.predicted


def test_saliency_rows_are_independent(checkpoint: Path) -> None:
    """One backward pass of the summed logits gives each row its own gradient (eval mode)."""
    model = load_runner(checkpoint).model
    rng = np.random.default_rng(1)
    app = rng.normal(size=(3, 3, 32, 32)).astype(np.float32)
    mot = rng.normal(size=(3, 5, 3, 32, 32)).astype(np.float32)
    classes = [0, 4, 9]
    batch_app, batch_mot, logits = saliency_maps(model, app, mot, classes)
    assert batch_app.shape == (3, 32, 32) and batch_mot.shape == (3, 5, 32, 32) and logits.shape == (3, 10)
    for row, cls in enumerate(classes):
        one_app, one_mot, _ = saliency_maps(model, app[row : row + 1], mot[row : row + 1], cls)
        np.testing.assert_allclose(batch_app[row], one_app[0], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(batch_mot[row], one_mot[0], rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="method"):
        saliency_maps(model, app, mot, 0, method="smoothgrad")


@pytest.mark.parametrize("perturb", [False, True])
def test_motion_saliency_sits_where_the_frames_change(checkpoint: Path, perturb: bool) -> None:
    """Criterion: the V_diff saliency |gradient x input| lies entirely where the frames change.

    A V_diff frame is exactly zero wherever consecutive frames are equal (here: everywhere but the
    moving square), and |g * x| is zero wherever x is, whatever the weights. So its mass inside the
    changing region must be 100%, while that region covers only a few percent of the crop (the chance
    level of a flat map), and the mass must be non-zero. Unlike the plain gradient (which on an
    untrained network mostly reflects the initialisation: zero biases make zero inputs dead ReLUs), this
    holds for any network, which the `perturb` case checks by randomising every bias and BatchNorm
    statistic. The plain-gradient maps are only checked to be non-zero and finite here.
    """
    runner = load_runner(checkpoint)
    if perturb:
        generator = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for name, tensor in runner.model.state_dict().items():
                if name.endswith(("bias", "running_mean")):
                    tensor.copy_(0.3 * torch.randn(tensor.shape, generator=generator))
                elif name.endswith("running_var"):
                    tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    frames, times = moving_square_video()
    explanation = explain_frames(runner, frames, times, num_crops=1, method="gradient_x_input")
    region = changed_region(frames, times, explanation)  # (T, c, c)
    share, chance = saliency_mask_share(explanation.motion_saliency, region)
    assert explanation.motion_saliency.sum() > 0
    assert 0 < chance < 0.1
    assert share == pytest.approx(1.0, abs=1e-9)
    for i in range(region.shape[0]):  # frame by frame, too
        assert not explanation.motion_saliency[i][~region[i]].any()
    plain = explain_frames(runner, frames, times, num_crops=1)
    assert plain.motion_saliency.sum() > 0 and plain.appearance_saliency.sum() > 0


def test_saliency_grid_png(checkpoint: Path, tmp_path: Path) -> None:
    import matplotlib.image

    runner = load_runner(checkpoint)
    meta = runner.meta
    frames, times = moving_square_video()
    explanation = explain_frames(runner, frames, times, num_crops=1)
    path = save_saliency_grid(explanation, tmp_path / "grid.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > image.shape[1] > 300  # 1 + l_t rows of 3 panels: taller than wide
    stats = explanation.saliency_stats()
    assert len(stats["motion_per_frame"]) == meta.sampling.clip_length
    assert sum(stats["motion_mass_share_per_frame"]) == pytest.approx(1.0)


def test_saliency_concentrates_on_a_moving_square_not_on_change_everywhere(checkpoint: Path) -> None:
    """top10_share tells a focused map from a spread one: the V_diff saliency (|gradient x input|) of a
    small moving square sits in the few percent of pixels that change, all of its mass in the top 10%;
    the same network on a video whose every pixel changes (noise) spreads it over the crop."""
    runner = load_runner(checkpoint)
    frames, times = moving_square_video()
    square = explain_frames(runner, frames, times, num_crops=1, method="gradient_x_input")
    noise = np.random.default_rng(5).integers(0, 256, frames.shape, dtype=np.uint8)
    everywhere = explain_frames(runner, noise, times, num_crops=1, method="gradient_x_input")
    focused = square.saliency_stats()["motion"]["top10_share"]
    spread = everywhere.saliency_stats()["motion"]["top10_share"]
    assert focused > 0.99
    assert spread < 0.5


def test_mask_geometry_hand_made() -> None:
    """Mask cell -> original pixels -> resized frame -> crop, worked out by hand."""
    # 8x16 frame, stride 4 -> 2x4 mask; resized to 4x8 (each resized pixel = 2x2 original pixels);
    # centre crop 4: top 0, left 2. Cell (0, 1) = original rows 0-3, cols 4-7 = resized rows 0-1,
    # cols 2-3 = crop rows 0-1, cols 0-1.
    mask = np.zeros((2, 4), dtype=bool)
    mask[0, 1] = True
    box = crop_boxes(4, 8, 4, 1)[0]
    assert box == CropBox(top=0, left=2, flip=False)
    out = mask_to_crop(mask, stride=4, frame_size=(8, 16), resized=(4, 8), box=box, crop_size=4)
    expected = np.zeros((4, 4), dtype=bool)
    expected[0:2, 0:2] = True
    np.testing.assert_array_equal(out, expected)
    flipped = mask_to_crop(
        mask, stride=4, frame_size=(8, 16), resized=(4, 8), box=CropBox(0, 2, True), crop_size=4
    )
    np.testing.assert_array_equal(flipped, expected[:, ::-1])

    # A non-integer ratio: 120x160 frame (mask 30x40) resized to 40x53, crop 32 at top 4, left 10.
    # Cell (10, 21) = original rows 40-43, cols 84-87. Resized row y has its centre at (y + 0.5) * 3:
    # rows 13 (40.5) and 14 (43.5); column x at (x + 0.5) * 160 / 53: only x = 28 (86.0; 27 -> 83.0,
    # 29 -> 89.1). In the crop: rows 9-10, column 18.
    mask = np.zeros((30, 40), dtype=bool)
    mask[10, 21] = True
    box = crop_boxes(40, 53, 32, 1)[0]
    assert box == CropBox(top=4, left=10, flip=False)
    out = mask_to_crop(mask, stride=4, frame_size=(120, 160), resized=(40, 53), box=box, crop_size=32)
    assert list(zip(*np.nonzero(out), strict=True)) == [(9, 18), (10, 18)]
    with pytest.raises(ValueError, match="does not fit"):
        mask_to_crop(mask, stride=4, frame_size=(124, 160), resized=(40, 53), box=box, crop_size=32)

    share, chance = saliency_mask_share(np.ones((32, 32)), out)
    assert share == pytest.approx(2 / 1024) and chance == pytest.approx(2 / 1024)


def test_vdiff_masks_are_unions_of_both_frames(checkpoint: Path) -> None:
    """Frame k's mask marks one cell of its own; V_diff frame i must get exactly the cells of its two
    frames (identity resize, stride 4: cell (r, c) = crop rows 4r-top.., cols 4c-left..)."""
    runner = load_runner(checkpoint)
    meta = runner.meta
    frames, times = moving_square_video()
    explanation = explain_frames(runner, frames, times, num_crops=1)
    rows, cols = HEIGHT // 4, WIDTH // 4  # 10 x 14 cells, all of them fully inside the frame
    cells = [(k % rows, (3 * k) % cols) for k in range(frames.shape[0])]
    stack = np.zeros((frames.shape[0], rows, cols), dtype=bool)
    for k, (r, c) in enumerate(cells):
        stack[k, r, c] = True
    masks = {"mask": stack, "stride": np.int64(4), "frame_size": np.array([HEIGHT, WIDTH]), "fps": FPS}
    assert mask_mismatch(explanation, masks) == ""
    appearance, motion = explanation_masks(explanation, masks, meta.crop_size)
    box = explanation.box

    def expected(*ks: int) -> np.ndarray:
        full = np.zeros((HEIGHT, WIDTH), dtype=bool)
        for k in ks:
            r, c = cells[k]
            full[4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = True
        return full[box.top : box.top + meta.crop_size, box.left : box.left + meta.crop_size]

    def frame(time_s: float) -> int:  # the frames are 1/FPS apart from 0: frame k is at k / FPS
        return int(round(time_s * FPS))

    np.testing.assert_array_equal(appearance, expected(frame(explanation.appearance_frame_time)))
    pairs = zip(explanation.clip_frame_times, explanation.diff_frame_times, strict=True)
    for i, (start, end) in enumerate(pairs):
        assert frame(start) != frame(end)
        np.testing.assert_array_equal(motion[i], expected(frame(start), frame(end)))
    # masks that do not fit the frames are refused with the reason
    assert "grid" in mask_mismatch(explanation, {**masks, "fps": 2 * FPS + 1})
    assert "beyond" in mask_mismatch(explanation, {**masks, "mask": stack[:3]})


def test_measure_over_a_masked_synthetic_split(checkpoint: Path, synth_root: Path, tmp_path: Path) -> None:
    runner = load_runner(checkpoint)
    report = measure_saliency_in_masks(
        synth_root, runner, limit=2, examples=1, examples_dir=tmp_path / "examples"
    )
    assert report["all"]["videos"] == 2 and not report["skipped"]
    for row in report["videos"]:
        for part in ("appearance", "motion"):
            assert 0.0 <= row[f"{part}_share"] <= 1.0
            assert 0.0 < row[f"{part}_chance"] < 0.6  # the figure covers part of the crop, never all
    summary = report["all"]["motion"]
    shares = [row["motion_share"] for row in report["videos"]]
    assert summary["share"]["mean"] == pytest.approx(np.mean(shares))
    assert summary["share"]["median"] == pytest.approx(np.median(shares))
    assert len(list((tmp_path / "examples").glob("*.png"))) == 1
    # a split without masks is skipped video by video, with the reason
    (synth_root / "masks").rename(synth_root / "masks.off")
    try:
        bare = measure_saliency_in_masks(synth_root, runner, limit=1)
    finally:
        (synth_root / "masks.off").rename(synth_root / "masks")
    assert bare["all"]["videos"] == 0 and "--masks" in bare["skipped"][0]["reason"]


def test_knn_and_separability() -> None:
    points = np.array([[0.0, 0], [0.1, 0], [0, 0.1], [5, 5], [5.1, 5], [5, 5.1]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert knn_loo_accuracy(points, labels, k=2) == 1.0
    assert knn_loo_accuracy(points, 1 - labels, k=2) == 1.0  # the names do not matter
    mixed = np.array([0, 1, 0, 1, 0, 1])
    assert knn_loo_accuracy(points, mixed, k=2) < 0.5
    scores = separability(points, points[:, :2], labels, k=2)  # 5 neighbours of 6 points would mix
    assert scores["knn_features"] == 1.0 and scores["silhouette"] is not None and scores["silhouette"] > 0.9
    assert separability(points, points, np.zeros(6, dtype=np.int64))["silhouette"] is None


def test_tsne_on_tiny_videos(checkpoint: Path, synth_root: Path) -> None:
    runner = load_runner(checkpoint)
    meta = runner.meta
    samples = load_dataset("auto", synth_root, 1, "test").samples
    assert len(limit_per_class(samples, 1)) == 2
    features, labels, failed = collect_features(samples, runner, num_clips=2)
    assert not failed and labels.shape == (4,)
    config = get_config("tiny")
    assert features["spatial"].shape == (4, config.fc_dims[-1])
    assert features["temporal"].shape == (4, config.fc_dims[-1])
    assert features["fused"].shape == (4, config.fusion_dim)
    result = run_tsne(features, labels, meta.labels, seed=0)
    again = run_tsne(features, labels, meta.labels, seed=0)
    assert set(result.embeddings) == {"spatial", "temporal", "fused"}
    for name, embedding in result.embeddings.items():
        assert embedding.shape == (4, 2) and np.all(np.isfinite(embedding))
        np.testing.assert_allclose(embedding, again.embeddings[name], rtol=1e-5, atol=1e-5)
        score = result.scores[name]
        assert 0.0 <= score["knn_embedding"] <= 1.0 and 0.0 <= score["knn_features"] <= 1.0
        assert score["silhouette"] is not None and -1.0 <= score["silhouette"] <= 1.0
    summary = result.to_dict()
    assert summary["videos_per_class"]["wave"] == 2 and summary["videos_per_class"]["clap"] == 0


def test_cli_explain_and_tsne(checkpoint: Path, synth_root: Path, tmp_path: Path) -> None:
    video = next((synth_root / "wave").iterdir())
    mask = synth_root / "masks" / "wave" / f"{video.stem}.npz"
    out = tmp_path / "explain"
    result = CliRunner().invoke(
        app,
        ["explain", str(video), "--checkpoint", str(checkpoint), "--out", str(out), "--crops", "2"]
        + ["--mask", str(mask), "--label", "jump"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / f"{video.stem}.json").read_text())
    assert report["explained"]["label"] == "jump" and report["explained"]["given"] is True
    assert len(report["top5"]) == 5 and report["crops"] == 2
    assert len(report["clip_pair"]["clip_times_s"]) == get_config("tiny").clip_length
    assert 0.0 <= report["figure_mask"]["motion_share"] <= 1.0
    assert (out / f"{video.stem}.png").read_bytes()[:4] == b"\x89PNG"

    measured = CliRunner().invoke(
        app,
        ["explain", "--measure", str(synth_root), "--checkpoint", str(checkpoint), "--out", str(out)]
        + ["--limit", "1"],
    )
    assert measured.exit_code == 0, measured.output
    assert json.loads((out / "saliency_in_mask.json").read_text())["all"]["videos"] == 1

    png = tmp_path / "tsne" / "tsne.png"
    tsne = CliRunner().invoke(
        app, ["tsne", str(synth_root), "--checkpoint", str(checkpoint), "--out", str(png), "--clips", "2"]
    )
    assert tsne.exit_code == 0, tsne.output
    assert "separability" in tsne.output
    summary = json.loads(png.with_suffix(".json").read_text())
    assert set(summary["scores"]) == {"spatial", "temporal", "fused"} and summary["videos"] == 4
    assert png.read_bytes()[:4] == b"\x89PNG" and png.with_suffix(".npz").is_file()

    both = CliRunner().invoke(app, ["explain", str(video), "--measure", str(synth_root), "--out", str(out)])
    assert both.exit_code != 0
    missing = CliRunner().invoke(app, ["explain", str(video), "--checkpoint", str(tmp_path / "no.onnx")])
    assert missing.exit_code == 2 and "no.pt" in missing.output


def test_resolve_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    assert resolve_checkpoint(checkpoint) == checkpoint
    onnx_path = checkpoint.with_suffix(".onnx")  # only the .pt twin exists: it is used
    assert resolve_checkpoint(onnx_path) == checkpoint
    with pytest.raises(ValueError, match="does not exist"):
        resolve_checkpoint(tmp_path / "missing.pt")
