"""fstcn.core.clips: hand-computed sampling indices, short/VFR videos, crop boxes, network input layout."""

from __future__ import annotations

import numpy as np
import pytest

from fstcn.core.clips import (
    ClipPlan,
    CropBox,
    clip_pair_times,
    crop_boxes,
    gather_clip_pairs,
    nearer_to_earlier,
    nearest_frame_indices,
    network_inputs,
    plan_clip_pairs,
    resized_size,
)
from fstcn.core.meta import ModelMeta, SamplingParams

DEFAULT = SamplingParams()  # l_t = 5, s_t = 5, d_t = 9, ref 25 fps


def _indices_at(fps: float, num_frames: int = 400) -> tuple[list[int], list[int]]:
    times = np.arange(num_frames) / fps
    clip_t, diff_t = clip_pair_times(0.0, DEFAULT)
    return nearest_frame_indices(times, clip_t).tolist(), nearest_frame_indices(times, diff_t).tolist()


def test_resized_size_keeps_aspect_and_short_side() -> None:
    assert resized_size(240, 320, 128) == (128, 171)  # 320 * 128 / 240 = 170.67
    assert resized_size(320, 240, 128) == (171, 128)  # portrait
    assert resized_size(100, 100, 64) == (64, 64)
    with pytest.raises(ValueError):
        resized_size(0, 10, 64)


def test_clip_pair_times_follow_the_reference_frame_rate() -> None:
    clip_t, diff_t = clip_pair_times(1.0, DEFAULT)
    np.testing.assert_allclose(clip_t, [1.0, 1.2, 1.4, 1.6, 1.8])
    np.testing.assert_allclose(diff_t, [1.36, 1.56, 1.76, 1.96, 2.16])


def test_indices_at_25_fps_are_the_frame_counts() -> None:
    # t_i = 5 i frames, partner t_i + 9
    assert _indices_at(25.0) == ([0, 5, 10, 15, 20], [9, 14, 19, 24, 29])


def test_indices_at_30_fps() -> None:
    # clip: 0.2 s steps = 6 frames; partners at 0.36 + 0.2 i s = 10.8, 16.8, 22.8, 28.8, 34.8 frames
    assert _indices_at(30.0) == ([0, 6, 12, 18, 24], [11, 17, 23, 29, 35])


def test_indices_at_60_fps() -> None:
    # clip: 12-frame steps; partners at 21.6, 33.6, 45.6, 57.6, 69.6 frames
    assert _indices_at(60.0) == ([0, 12, 24, 36, 48], [22, 34, 46, 58, 70])


def test_indices_on_a_variable_frame_rate_timestamp_list() -> None:
    times = [0.0, 0.1, 0.15, 0.3, 0.5, 0.55, 0.9, 1.2]
    clip_t, diff_t = clip_pair_times(0.0, DEFAULT)
    # 0.4 is exactly half-way between 0.3 and 0.5: the tie goes to the earlier frame (3)
    assert nearest_frame_indices(times, clip_t).tolist() == [0, 2, 3, 5, 6]
    # 0.36 -> 0.3, 0.56 -> 0.55, 0.76 -> 0.9, 0.96 -> 0.9, 1.16 -> 1.2
    assert nearest_frame_indices(times, diff_t).tolist() == [3, 5, 6, 6, 7]


def test_nearest_frame_indices_clamp_and_keep_shape() -> None:
    times = np.array([0.0, 0.04, 0.08])
    out = nearest_frame_indices(times, np.array([[-1.0, 0.02], [0.061, 5.0]]))
    assert out.dtype == np.int64
    assert out.tolist() == [[0, 0], [2, 2]]
    with pytest.raises(ValueError):
        nearest_frame_indices([0.1, 0.0], [0.0])
    with pytest.raises(ValueError):
        nearest_frame_indices([], [0.0])


def test_nearer_to_earlier_is_the_rule_of_nearest_frame_indices() -> None:
    rng = np.random.default_rng(0)
    earlier = rng.uniform(0, 10, 500)
    later = earlier + rng.choice([1 / 25, 1 / 30, 0.5], 500)
    queries = np.concatenate([rng.uniform(earlier, later), (earlier + later) / 2])  # with exact ties
    for query, first, second in zip(queries, np.tile(earlier, 2), np.tile(later, 2), strict=True):
        index = int(nearest_frame_indices(np.array([first, second]), np.array([query]))[0])
        assert nearer_to_earlier(float(query), float(first), float(second)) == (index == 0)


def test_plan_spreads_pairs_from_first_frame_to_last() -> None:
    plan = plan_clip_pairs(0.0, 249 / 25, DEFAULT, 5)  # 10 s at 25 fps
    # span = (5 - 1) * 5 + 9 = 29 frames = 1.16 s; last start = 9.96 - 1.16 = 8.8
    np.testing.assert_allclose(plan.starts, [0.0, 2.2, 4.4, 6.6, 8.8])
    assert plan.clip_times.shape == (5, 5) and plan.diff_times.shape == (5, 5)
    assert plan.diff_times[-1, -1] == pytest.approx(249 / 25)
    all_times = plan.all_times()
    assert all_times.dtype == np.float64
    assert np.all(np.diff(all_times) > 0)
    assert set(np.round(all_times, 9)) == set(
        np.round(np.r_[plan.clip_times.ravel(), plan.diff_times.ravel()], 9)
    )


def test_short_video_starts_every_pair_at_the_start_and_clamps() -> None:
    times = np.arange(13) / 25  # 0.48 s, shorter than one 1.16 s span
    plan = plan_clip_pairs(0.0, float(times[-1]), DEFAULT, 3)
    np.testing.assert_allclose(plan.starts, [0.0, 0.0, 0.0])
    assert nearest_frame_indices(times, plan.clip_times[0]).tolist() == [0, 5, 10, 12, 12]
    assert nearest_frame_indices(times, plan.diff_times[0]).tolist() == [9, 12, 12, 12, 12]


def test_plan_validates_arguments() -> None:
    with pytest.raises(ValueError):
        plan_clip_pairs(0.0, 1.0, DEFAULT, 0)
    with pytest.raises(ValueError):
        plan_clip_pairs(2.0, 1.0, DEFAULT, 3)


def test_gather_clip_pairs_takes_middle_frame_and_differences() -> None:
    num_frames = 40
    frames = np.zeros((num_frames, 2, 3, 3), dtype=np.uint8)
    frames[:] = (np.arange(num_frames) * 6 % 256).astype(np.uint8)[:, None, None, None]
    times = np.arange(num_frames) / 25
    plan = plan_clip_pairs(0.0, float(times[-1]), DEFAULT, 2)  # starts 0 and 39 - 29 = 10 frames
    appearance, motion = gather_clip_pairs(frames, times, plan)
    assert appearance.dtype == np.uint8 and appearance.shape == (2, 2, 3, 3)
    assert motion.dtype == np.int16 and motion.shape == (2, 5, 2, 3, 3)
    assert appearance[0, 0, 0, 0] == 10 * 6 and appearance[1, 0, 0, 0] == 20 * 6  # frames 10, 20
    # pair 1: clip frames 10, 15, ..., 30; partners 19, 24, ..., 39 (value 6 * 39 = 234 < 256)
    np.testing.assert_array_equal(motion[1, :, 0, 0, 0], [9 * 6] * 5)
    appearance, _ = gather_clip_pairs(frames, times, plan, appearance_position=[0, 4])
    assert appearance[0, 0, 0, 0] == 0 and appearance[1, 0, 0, 0] == 30 * 6


def test_gather_clip_pairs_motion_can_be_negative() -> None:
    frames = np.zeros((30, 1, 1, 3), dtype=np.uint8)
    frames[:10] = 200
    plan = plan_clip_pairs(0.0, 29 / 25, DEFAULT, 1)
    _, motion = gather_clip_pairs(frames, np.arange(30) / 25, plan)
    # clip frames 0, 5, 10, 15, 20; partners 9, 14, 19, 24, 29: only V[9] - V[0] stays inside the bright part
    np.testing.assert_array_equal(motion[0, :, 0, 0, 0], [0, -200, 0, 0, 0])


def test_gather_clip_pairs_validates() -> None:
    plan = plan_clip_pairs(0.0, 1.0, DEFAULT, 1)
    with pytest.raises(ValueError):
        gather_clip_pairs(np.zeros((3, 4, 4), np.uint8), np.arange(3) / 25, plan)
    with pytest.raises(ValueError):
        gather_clip_pairs(np.zeros((3, 4, 4, 3), np.uint8), np.arange(4) / 25, plan)
    with pytest.raises(ValueError):
        gather_clip_pairs(np.zeros((3, 4, 4, 3), np.uint8), np.arange(3) / 25, plan, appearance_position=5)


def test_crop_boxes_positions_and_flips() -> None:
    # 6 x 8 frame, crop 4: tops 0, 1, 2; lefts 0, 2, 4; centre (1, 2)
    assert crop_boxes(6, 8, 4, 1) == [CropBox(1, 2, False)]
    assert crop_boxes(6, 8, 4, 2) == [CropBox(1, 2, False), CropBox(1, 2, True)]
    nine = crop_boxes(6, 8, 4, 9)
    assert [(b.top, b.left) for b in nine] == [
        (0, 0), (0, 2), (0, 4), (1, 0), (1, 2), (1, 4), (2, 0), (2, 2), (2, 4)
    ]  # fmt: skip
    assert not any(b.flip for b in nine)
    eighteen = crop_boxes(6, 8, 4, 18)
    assert eighteen[:9] == nine
    assert eighteen[9:] == [CropBox(b.top, b.left, True) for b in nine]
    assert eighteen[4] == crop_boxes(6, 8, 4, 1)[0] and eighteen[13] == crop_boxes(6, 8, 4, 2)[1]


@pytest.mark.parametrize("num_crops", [0, 3, 10, 36])
def test_crop_boxes_rejects_other_counts(num_crops: int) -> None:
    with pytest.raises(ValueError):
        crop_boxes(6, 8, 4, num_crops)


def test_crop_boxes_rejects_a_crop_larger_than_the_frame() -> None:
    with pytest.raises(ValueError):
        crop_boxes(6, 8, 7, 1)


def _meta() -> ModelMeta:
    return ModelMeta(
        name="t", version="0", preset="tiny", labels=("a", "b"), resize_short=6, crop_size=4,
        mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0), diff_scale=2.0,
    )  # fmt: skip


def test_network_inputs_rows_are_clip_major_and_normalised() -> None:
    rng = np.random.default_rng(0)
    num_clips, length, height, width = 3, 2, 6, 8
    appearance = rng.integers(0, 256, (num_clips, height, width, 3), dtype=np.uint8)
    motion = rng.integers(-255, 256, (num_clips, length, height, width, 3)).astype(np.int16)
    meta = _meta()
    app, mot = network_inputs(appearance, motion, meta, 18)
    assert app.dtype == np.float32 and app.shape == (num_clips * 18, 3, 4, 4)
    assert mot.dtype == np.float32 and mot.shape == (num_clips * 18, length, 3, 4, 4)
    boxes = crop_boxes(height, width, 4, 18)
    mean = np.array(meta.mean, np.float32)
    std = np.array(meta.std, np.float32)
    for i in range(num_clips):
        for k, box in enumerate(boxes):
            a = appearance[i, box.top : box.top + 4, box.left : box.left + 4].astype(np.float32)
            m = motion[i, :, box.top : box.top + 4, box.left : box.left + 4].astype(np.float32)
            if box.flip:
                a, m = a[:, ::-1], m[:, :, ::-1]
            expected_a = ((a / 255 - mean) / std).transpose(2, 0, 1)
            expected_m = (m / 255 * 2.0).transpose(0, 3, 1, 2)
            np.testing.assert_allclose(app[i * 18 + k], expected_a, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(mot[i * 18 + k], expected_m, rtol=1e-6, atol=1e-6)


def test_network_inputs_flip_mirrors_columns() -> None:
    appearance = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    appearance[0, :, 0] = 255  # left column white
    motion = np.zeros((1, 1, 4, 4, 3), dtype=np.int16)
    motion[0, 0, :, 0] = 255
    meta = ModelMeta(name="t", version="0", preset="tiny", labels=("a", "b"), resize_short=4, crop_size=4)
    app, mot = network_inputs(appearance, motion, meta, 2)
    assert np.all(app[0, :, :, 0] == 2.0) and np.all(app[1, :, :, 3] == 2.0)  # (1 - 0.5) / 0.25
    assert np.all(app[1, :, :, 0] == -2.0)
    assert np.all(mot[0, 0, :, :, 0] == 4.0) and np.all(mot[1, 0, :, :, 3] == 4.0)


def test_network_inputs_validates_shapes() -> None:
    meta = _meta()
    with pytest.raises(ValueError):
        network_inputs(np.zeros((2, 6, 8, 3), np.uint8), np.zeros((3, 2, 6, 8, 3), np.int16), meta, 1)
    with pytest.raises(ValueError):
        network_inputs(np.zeros((2, 6, 8), np.uint8), np.zeros((2, 2, 6, 8, 3), np.int16), meta, 1)
    with pytest.raises(ValueError):
        network_inputs(np.zeros((2, 6, 8, 3), np.uint8), np.zeros((2, 2, 6, 8, 3), np.int16), meta, 4)


def test_clip_plan_is_frozen() -> None:
    plan = plan_clip_pairs(0.0, 2.0, DEFAULT, 2)
    assert isinstance(plan, ClipPlan) and plan.num_clips == 2
    with pytest.raises(AttributeError):
        plan.starts = np.zeros(2)  # type: ignore[misc]


# --- the edges of every check: the smallest valid input passes, each bad part alone fails ---------------


def test_the_smallest_sizes_are_valid() -> None:
    assert resized_size(1, 3, 2) == (2, 6)
    assert resized_size(3, 1, 2) == (6, 2)
    assert resized_size(4, 4, 1) == (1, 1)
    for height, width, short in ((0, 3, 2), (3, 0, 2), (3, 3, 0)):
        with pytest.raises(ValueError, match="must be"):
            resized_size(height, width, short)
    assert crop_boxes(1, 1, 1, 1) == [CropBox(top=0, left=0, flip=False)]
    with pytest.raises(ValueError, match="crop_size must be >= 1"):
        crop_boxes(4, 4, 0, 1)


def test_one_frame_and_repeated_timestamps_are_valid() -> None:
    """A one-frame video and a VFR file with two frames at one time are still presentation order."""
    assert nearest_frame_indices([0.5], [0.0, 0.5, 9.0]).tolist() == [0, 0, 0]
    assert nearest_frame_indices([0.0, 0.04, 0.04, 0.08], [0.04, 0.07]).tolist() == [1, 3]
    with pytest.raises(ValueError, match="finite"):
        nearest_frame_indices([0.0, 0.04], [float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        nearest_frame_indices([[0.0, 0.04]], [0.0])


def test_a_plan_may_be_one_instant_long() -> None:
    plan = plan_clip_pairs(1.0, 1.0, DEFAULT, 2)
    np.testing.assert_array_equal(plan.starts, [1.0, 1.0])
    for first, last in ((float("nan"), 1.0), (0.0, float("inf"))):
        with pytest.raises(ValueError, match="finite"):
            plan_clip_pairs(first, last, DEFAULT, 1)


def test_gather_clip_pairs_checks_each_part_of_the_frames_shape() -> None:
    plan = plan_clip_pairs(0.0, 1.0, DEFAULT, 1)
    times = np.arange(3) / 25
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        gather_clip_pairs(np.zeros((3, 4, 4, 4), np.uint8), times, plan)  # 4 channels
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        gather_clip_pairs(np.zeros((3, 4, 3), np.uint8), times, plan)  # 3 dims ending in 3
    with pytest.raises(ValueError, match="uint8"):
        gather_clip_pairs(np.zeros((3, 4, 4, 3), np.float32), times, plan)
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        gather_clip_pairs(np.zeros((3, 4, 4, 3), np.uint8), np.arange(4) / 25, plan)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        gather_clip_pairs(np.zeros((3, 4, 4, 3), np.uint8), times, plan, appearance_position=-1)


def test_network_inputs_checks_each_part_of_the_shapes() -> None:
    meta = _meta()
    appearance = np.zeros((2, 6, 8, 3), np.uint8)
    motion = np.zeros((2, 2, 6, 8, 3), np.int16)
    with pytest.raises(ValueError, match="appearance of shape"):
        network_inputs(np.zeros((2, 6, 8, 4), np.uint8), motion, meta, 1)
    with pytest.raises(ValueError, match="motion of shape"):
        network_inputs(appearance, np.zeros((2, 2, 6, 8, 4), np.int16), meta, 1)
    with pytest.raises(ValueError, match="motion of shape"):
        network_inputs(appearance, np.zeros((2, 6, 8, 3), np.int16), meta, 1)
    with pytest.raises(ValueError, match="does not match"):
        network_inputs(appearance, np.zeros((2, 2, 6, 9, 3), np.int16), meta, 1)  # other width only
    with pytest.raises(ValueError, match="does not match"):
        network_inputs(appearance, np.zeros((3, 2, 6, 8, 3), np.int16), meta, 1)  # other count only
