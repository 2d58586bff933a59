"""fstcn.core.fusion: SCI and clip/video fusion against hand-computed vectors."""

from __future__ import annotations

import numpy as np
import pytest

from fstcn.core.fusion import fuse_scores, sci


def test_sci_one_hot_is_one_and_uniform_is_zero() -> None:
    assert sci([0.0, 1.0, 0.0]) == pytest.approx(1.0)
    assert sci([0.25, 0.25, 0.25, 0.25]) == pytest.approx(0.0)


def test_sci_hand_computed_and_batched() -> None:
    # N = 4, p = (0.5, 0.3, 0.1, 0.1): (4 * 0.5 - 1) / 3 = 1/3
    # N = 4, p = (0.7, 0.1, 0.1, 0.1): (4 * 0.7 - 1) / 3 = 0.6
    out = sci(np.array([[0.5, 0.3, 0.1, 0.1], [0.7, 0.1, 0.1, 0.1]]))
    assert out.shape == (2,)
    np.testing.assert_allclose(out, [1 / 3, 0.6])
    # not normalised: ||p||_1 divides it out; all-zero -> 0
    np.testing.assert_allclose(sci([[2.0, 0.0], [0.0, 0.0]]), [1.0, 0.0])


def test_sci_requires_two_classes() -> None:
    with pytest.raises(ValueError):
        sci([1.0])
    with pytest.raises(ValueError):
        sci([0.5, -0.1])


def test_fuse_scores_sci_weights_confident_crops() -> None:
    # one clip, two crops, N = 2: crop A (1, 0) has SCI 1, crop B (0.25, 0.75) has SCI (2 * 0.75 - 1) = 0.5
    probs = np.array([[[1.0, 0.0], [0.25, 0.75]]])
    result = fuse_scores(probs, "sci")
    # q = (1 * (1, 0) + 0.5 * (0.25, 0.75)) / 1.5 = (1.125, 0.375) / 1.5 = (0.75, 0.25)
    np.testing.assert_allclose(result.clip_scores, [[0.75, 0.25]])
    np.testing.assert_allclose(result.video_scores, [0.75, 0.25])
    np.testing.assert_allclose(result.clip_sci, [0.5])
    mean = fuse_scores(probs, "mean")
    np.testing.assert_allclose(mean.video_scores, [0.625, 0.375])
    np.testing.assert_allclose(mean.clip_scores, [[0.625, 0.375]])


def test_fuse_scores_video_score_is_max_over_clips() -> None:
    probs = np.array(
        [
            [[0.8, 0.1, 0.1], [0.8, 0.1, 0.1]],  # clip 0: q = (0.8, 0.1, 0.1)
            [[0.1, 0.6, 0.3], [0.1, 0.6, 0.3]],  # clip 1: q = (0.1, 0.6, 0.3)
        ]
    )
    result = fuse_scores(probs, "sci")
    np.testing.assert_allclose(result.video_scores, [0.8, 0.6, 0.3])
    # SCI of q: (3 * 0.8 - 1) / 2 = 0.7, (3 * 0.6 - 1) / 2 = 0.4
    np.testing.assert_allclose(result.clip_sci, [0.7, 0.4])
    np.testing.assert_allclose(fuse_scores(probs, "mean").video_scores, [0.45, 0.35, 0.2])


def test_fuse_scores_all_zero_weights_fall_back_to_the_mean() -> None:
    # both crops uniform-ish in SCI terms: (0.5, 0.5) has SCI 0 -> plain mean
    probs = np.array([[[0.5, 0.5], [0.5, 0.5]], [[0.9, 0.1], [0.5, 0.5]]])
    result = fuse_scores(probs, "sci")
    np.testing.assert_allclose(result.clip_scores[0], [0.5, 0.5])
    np.testing.assert_allclose(result.clip_scores[1], [0.9, 0.1])  # the uniform crop has weight 0
    np.testing.assert_allclose(result.video_scores, [0.9, 0.5])
    assert np.all(np.isfinite(result.clip_sci))


def test_fuse_scores_validates() -> None:
    with pytest.raises(ValueError):
        fuse_scores(np.ones((2, 3, 1)), "sci")  # N < 2
    with pytest.raises(ValueError):
        fuse_scores(np.ones((2, 2)), "sci")
    with pytest.raises(ValueError):
        fuse_scores(np.full((1, 1, 2), 0.5), "max")
    with pytest.raises(ValueError):
        fuse_scores(np.zeros((0, 1, 2)), "mean")


def test_sci_is_the_default_and_results_are_frozen() -> None:
    probs = np.array([[[1.0, 0.0], [0.25, 0.75]]])
    default = fuse_scores(probs)
    np.testing.assert_array_equal(default.video_scores, fuse_scores(probs, "sci").video_scores)
    with pytest.raises(AttributeError):
        default.video_scores = np.zeros(2)  # type: ignore[misc]


def test_an_all_zero_crop_weighs_nothing() -> None:
    """A crop of all-zero probabilities has SCI 0 (not NaN): the clip score is the other crop's."""
    probs = np.array([[[0.0, 0.0], [0.2, 0.8]]])
    result = fuse_scores(probs, "sci")
    np.testing.assert_allclose(result.clip_scores, [[0.2, 0.8]])
    assert np.all(np.isfinite(sci(probs)))


def test_errors_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        sci([1.0])
    with pytest.raises(ValueError, match="finite and non-negative"):
        sci([0.5, float("nan")])
    with pytest.raises(ValueError, match="must be one of"):
        fuse_scores(np.full((1, 1, 2), 0.5), "max")
    with pytest.raises(ValueError, match=r"shape \(M, K, N\)"):
        fuse_scores(np.ones((2, 2)), "sci")
    with pytest.raises(ValueError, match="at least one clip and one crop"):
        fuse_scores(np.zeros((1, 0, 2)), "sci")
    with pytest.raises(ValueError, match="N >= 2"):
        fuse_scores(np.ones((2, 3, 1)), "sci")
