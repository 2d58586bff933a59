"""Synthetic Actions: determinism, the stand_up = reversed sit_down construction, the UCF101 layout, masks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from fstcn.cli import app
from fstcn.model.synth.dataset import (
    CLASSES,
    class_scene,
    generate_dataset,
    load_masks,
    mask_path,
    render_class_video,
    video_seed,
)
from fstcn.model.synth.render import MASK_STRIDE, figure_boxes, render_mask
from fstcn.model.synth.scene import sample_scene
from fstcn.model.synth.writer import Encoding, encode_video


def decode(path: Path) -> np.ndarray:
    """(F, H, W, 3) uint8 RGB frames of a video, decoded with PyAV."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path: Path) -> None:
    classes = ("kick", "stand_up")
    one = generate_dataset(tmp_path / "a", videos_per_class=2, seed=5, classes=classes, workers=1)
    two = generate_dataset(tmp_path / "b", videos_per_class=2, seed=5, classes=classes, workers=2)
    assert [r.path for r in one] == [r.path for r in two]
    for record in one:
        assert (tmp_path / "a" / record.path).read_bytes() == (tmp_path / "b" / record.path).read_bytes()
    split_a = (tmp_path / "a/ucfTrainTestlist/trainlist01.txt").read_text()
    assert split_a == (tmp_path / "b/ucfTrainTestlist/trainlist01.txt").read_text()


def test_different_seeds_and_splits_give_different_videos() -> None:
    base = render_class_video("clap", video_seed(1, "train", "clap", 0))
    other_seed = render_class_video("clap", video_seed(2, "train", "clap", 0))
    other_split = render_class_video("clap", video_seed(1, "test", "clap", 0))
    other_index = render_class_video("clap", video_seed(1, "train", "clap", 1))
    for other in (other_seed, other_split, other_index):
        assert other.shape != base.shape or not np.array_equal(other, base)
    assert np.array_equal(base, render_class_video("clap", video_seed(1, "train", "clap", 0)))


def test_stand_up_is_exactly_sit_down_reversed() -> None:
    for seed in (0, 1, 2):
        sit = render_class_video("sit_down", seed)
        stand = render_class_video("stand_up", seed)
        assert sit.shape == stand.shape
        assert np.array_equal(stand, sit[::-1])
        # and the motion is real: first and last frames differ clearly
        assert np.abs(sit[0].astype(int) - sit[-1].astype(int)).mean() > 1.0


def test_stand_up_decodes_to_reversed_sit_down(tmp_path: Path) -> None:
    seed = np.random.SeedSequence(11)
    decoded = {}
    for name in ("sit_down", "stand_up"):
        scene, reverse = class_scene(name, seed)
        frames = render_class_video(name, seed)
        path = tmp_path / f"{name}.mp4"
        encode_video(path, frames, fps=scene.fps, width=scene.width, height=scene.height,
                     encoding=Encoding("mp4", 18))  # fmt: skip
        decoded[name] = decode(path)
        assert decoded[name].shape == frames.shape
        assert reverse == (name == "stand_up")
    difference = np.abs(decoded["stand_up"].astype(int) - decoded["sit_down"][::-1].astype(int))
    assert difference.mean() < 2.0  # codec noise only
    # while a wrong order would differ clearly
    assert (
        np.abs(decoded["stand_up"].astype(int) - decoded["sit_down"].astype(int)).mean()
        > 2 * difference.mean()
    )


@pytest.mark.parametrize("class_name", CLASSES)
def test_every_class_renders_a_moving_figure(class_name: str) -> None:
    scene, reverse = class_scene(class_name, video_seed(3, "train", class_name, 0))
    assert 2.0 <= scene.duration_s <= 6.05 and scene.fps in (15, 24, 25, 30)
    frames = render_class_video(class_name, video_seed(3, "train", class_name, 0))
    assert frames.shape == (scene.frames, scene.height, scene.width, 3) and frames.dtype == np.uint8
    # the figure moves: its joints travel by a visible number of pixels
    travel = np.ptp(scene.joints, axis=0).max()
    assert travel > 0.08 * scene.height, f"{class_name}: joints travel only {travel:.1f} px"
    boxes = figure_boxes(scene)
    heights = boxes[:, 3] - boxes[:, 1]
    assert heights.max() > 0.3 * scene.height, f"{class_name}: figure too small"
    for k in (0, scene.frames // 2, scene.frames - 1):
        assert render_mask(scene, k).any()


def test_no_class_prefers_a_direction() -> None:
    """Facing left and right (and left/right limbs) are equally likely: here, both signs of yaw occur."""
    for class_name in ("punch", "kick", "wave"):
        signs = {
            np.sign(class_scene(class_name, video_seed(0, "train", class_name, i))[0].yaw) for i in range(12)
        }
        assert signs == {-1.0, 1.0}, class_name


def test_difficulty_zero_is_clean() -> None:
    scene = sample_scene(np.random.default_rng(0), "wave", difficulty=0.0)
    assert scene.distractor is None and scene.noise is None
    assert np.all(scene.gain == 1.0) and np.all(scene.zoom_levels == 0)
    assert np.unique(scene.canvas.reshape(-1, 3), axis=0).shape[0] == 1  # flat background
    with pytest.raises(ValueError, match="difficulty"):
        sample_scene(np.random.default_rng(0), "wave", difficulty=-1.0)


def test_cli_writes_the_ucf101_layout(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = CliRunner().invoke(
        app, ["synth", "--out", str(out), "--videos-per-class", "1", "--seed", "4", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    splits = out / "ucfTrainTestlist"
    assert (splits / "classInd.txt").read_text().splitlines() == [
        f"{i + 1} {c}" for i, c in enumerate(CLASSES)
    ]
    lines = (splits / "trainlist01.txt").read_text().splitlines()
    assert not (splits / "testlist01.txt").exists()
    assert len(lines) == len(CLASSES)
    for line, (index, class_name) in zip(lines, enumerate(CLASSES), strict=True):
        match = re.fullmatch(rf"{class_name}/v_{class_name}_g01_c01\.(mp4|avi|webm) (\d+)", line)
        assert match, line
        assert int(match.group(2)) == index + 1
        assert (out / line.split()[0]).is_file()
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["version"] and manifest["args"]["seed"] == 4 and manifest["args"]["split"] == "train"
    assert manifest["videos"] == len(CLASSES)


def test_test_split_and_masks_align_with_decoded_frames(tmp_path: Path) -> None:
    records = generate_dataset(
        tmp_path,
        videos_per_class=2,
        seed=9,
        split="test",
        masks=True,
        classes=("jump", "stand_up"),
        workers=1,
    )
    lines = (tmp_path / "ucfTrainTestlist/testlist01.txt").read_text().splitlines()
    assert lines == [r.path for r in records]
    assert not (tmp_path / "ucfTrainTestlist/trainlist01.txt").exists()
    for record in records:
        frames = decode(tmp_path / record.path)
        masks = load_masks(mask_path(tmp_path, record.path))
        assert frames.shape[0] == record.frames == masks["mask"].shape[0] == masks["boxes"].shape[0]
        height, width = frames.shape[1:3]
        assert tuple(masks["frame_size"]) == (height, width) and int(masks["stride"]) == MASK_STRIDE
        assert masks["mask"].shape[1:] == (-(-height // MASK_STRIDE), -(-width // MASK_STRIDE))
        assert masks["mask"].dtype == bool and masks["mask"].any(axis=(1, 2)).all()
        # every mask pixel lies inside (or within one mask cell of) its frame's box
        for mask, box in zip(masks["mask"], masks["boxes"], strict=True):
            ys, xs = np.nonzero(mask)
            assert xs.min() * MASK_STRIDE >= box[0] - 2 * MASK_STRIDE
            assert (xs.max() + 1) * MASK_STRIDE <= box[2] + 2 * MASK_STRIDE
            assert ys.min() * MASK_STRIDE >= box[1] - 2 * MASK_STRIDE
            assert (ys.max() + 1) * MASK_STRIDE <= box[3] + 2 * MASK_STRIDE
    # stand_up masks are reversed with the frames: the figure ends standing (taller box)
    stand = load_masks(mask_path(tmp_path, records[-1].path))["boxes"]
    assert (stand[-1, 3] - stand[-1, 1]) > (stand[0, 3] - stand[0, 1])


def test_invalid_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        video_seed(0, "val", "wave", 0)
    with pytest.raises(ValueError, match="unknown class"):
        video_seed(0, "train", "dance", 0)
    with pytest.raises(ValueError, match="videos_per_class"):
        generate_dataset(tmp_path, videos_per_class=0, seed=0)
    with pytest.raises(ValueError, match="unknown classes"):
        generate_dataset(tmp_path, videos_per_class=1, seed=0, classes=("dance",))


@pytest.mark.parametrize(
    "encoding",
    [Encoding("mp4", 23), Encoding("mp4", 30, preset="veryfast"), Encoding("avi", 5), Encoding("webm", 35)],
)
def test_every_encoding_is_byte_deterministic_and_decodes(tmp_path: Path, encoding: Encoding) -> None:
    frames = render_class_video("jumping_jack", 1, difficulty=0.5)[:12]
    height, width = frames.shape[1:3]
    paths = [tmp_path / f"{name}{encoding.suffix}" for name in ("a", "b")]
    for path in paths:
        assert encode_video(path, frames, fps=25, width=width, height=height, encoding=encoding) == len(
            frames
        )
    assert paths[0].read_bytes() == paths[1].read_bytes()
    decoded = decode(paths[0])
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 12
    with pytest.raises(ValueError, match="even"):
        encode_video(tmp_path / f"odd{encoding.suffix}", frames[:, :-1, :-1], fps=25, width=width - 1,
                     height=height - 1, encoding=encoding)  # fmt: skip
