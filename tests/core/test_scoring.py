"""fstcn.core.scoring: the row order between a runner and fusion, the stages, and planning from headers.

`TableRunner` is a Python `Runner` whose probability for clip pair i and crop k is `TABLE[i][k]`, so a
scoring path that reads the runner's (M*K, N) rows in any order but clip-major (row = i*K + k) gives
other clip scores, and the fused results below are computed by hand from the table. M = 3 and K = 2
differ on purpose: with M = K a crop-major reading would only transpose the table.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from fstcn.core.clips import ClipPlan, nearest_frame_indices, plan_clip_pairs
from fstcn.core.errors import VideoTooLarge
from fstcn.core.meta import ModelMeta, SamplingParams
from fstcn.core.scoring import (
    HEADER_SLACK_FRACTION,
    HEADER_SLACK_S,
    _header_overstates,
    _last_frame_time,
    clip_probs,
    decode_planned,
    score_video,
)
from fstcn.core.video.decode import DecodedVideo, VideoInfo, VideoLimits, probe_video
from tests.videos import write_video

META = ModelMeta(
    name="table",
    version="0",
    preset="tiny",
    labels=("left", "right"),
    sampling=SamplingParams(num_clips=3),
    resize_short=40,
    crop_size=32,
)

# TABLE[i][k]: probabilities of clip pair i, crop k (N = 2, so SCI(p) = |p_0 - p_1| for p summing to 1).
TABLE = np.array(
    [
        [[1.0, 0.0], [0.5, 0.5]],  # clip 0: SCI 1 and 0
        [[0.25, 0.75], [0.0, 1.0]],  # clip 1: SCI 0.5 and 1
        [[0.5, 0.5], [0.5, 0.5]],  # clip 2: SCI 0 and 0 -> the plain crop mean
    ],
    dtype=np.float32,
)
NUM_CLIPS, NUM_CROPS, NUM_CLASSES = TABLE.shape

# SCI fusion by hand:
#   q_0 = (1 * (1, 0) + 0 * (0.5, 0.5)) / 1                      = (1, 0)
#   q_1 = (0.5 * (0.25, 0.75) + 1 * (0, 1)) / 1.5 = (0.125, 1.375) / 1.5 = (1/12, 11/12)
#   q_2 = all weights 0 -> mean of the crops                      = (0.5, 0.5)
#   video = class-wise max over clips = (1, 11/12); SCI(q_i) = (1, 10/12, 0)
SCI_CLIP_SCORES = [[1.0, 0.0], [1 / 12, 11 / 12], [0.5, 0.5]]
SCI_VIDEO_SCORES = [1.0, 11 / 12]
SCI_CLIP_SCI = [1.0, 5 / 6, 0.0]
# Mean fusion by hand: clip scores are the crop means, the video score the mean of all six rows.
MEAN_CLIP_SCORES = [[0.75, 0.25], [0.125, 0.875], [0.5, 0.5]]
MEAN_VIDEO_SCORES = [2.75 / 6, 3.25 / 6]
MEAN_CLIP_SCI = [0.5, 0.75, 0.0]


class TableRunner:
    """A `Runner` whose row for (clip pair i, crop k) is TABLE[i][k]; records what it was called with.

    `prepare` encodes each row's (i, k) in the feeds, clip-major as the contract says; `run` looks the
    rows up, so the probabilities are a known function of (i, k) whatever the frames are.
    """

    def __init__(self, table: npt.NDArray[np.float32] = TABLE, *, events: list[str] | None = None) -> None:
        self.table = table
        self.events = events if events is not None else []
        self.prepared: list[tuple[Any, ...]] = []

    @property
    def meta(self) -> ModelMeta:
        return META

    def prepare(
        self, frames: npt.NDArray[np.uint8], frame_times: npt.ArrayLike, plan: ClipPlan, num_crops: int
    ) -> dict[str, npt.NDArray[Any]]:
        self.events.append("prepare")
        self.prepared.append((frames, frame_times, plan, num_crops))
        clips = np.arange(plan.num_clips)
        crops = np.arange(num_crops)
        # (M*K,) each, row = i*K + k
        return {"clip": np.repeat(clips, num_crops), "crop": np.tile(crops, plan.num_clips)}

    def run(self, feeds: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        self.events.append("run")
        return self.table[feeds["clip"], feeds["crop"]]  # (M*K, N)


def synthetic_video(num_frames: int = 60, fps: float = 25.0) -> DecodedVideo:
    """A decoded video of distinct blank frames (the table runner never looks at the pixels)."""
    info = VideoInfo(num_frames / fps, fps, 53, 40, num_frames, "h264", "mp4", 0)
    frames = np.zeros((num_frames, 40, 53, 3), dtype=np.uint8)
    return DecodedVideo(info=info, frames=frames, times=np.arange(num_frames) / fps)


@pytest.fixture
def video() -> DecodedVideo:
    return synthetic_video()


@pytest.fixture
def plan(video: DecodedVideo) -> ClipPlan:
    return plan_clip_pairs(0.0, float(video.times[-1]), META.sampling, NUM_CLIPS)


# --- the row order between runner and fusion --------------------------------------------------------


def test_clip_probs_reads_the_runner_rows_clip_major(video: DecodedVideo, plan: ClipPlan) -> None:
    runner = TableRunner()
    probs = clip_probs(runner, video, plan, NUM_CROPS)
    assert probs.shape == (NUM_CLIPS, NUM_CROPS, NUM_CLASSES)
    np.testing.assert_array_equal(probs, TABLE)
    ((frames, times, prepared_plan, num_crops),) = runner.prepared
    assert frames is video.frames and times is video.times
    assert prepared_plan is plan and num_crops == NUM_CROPS


def test_score_video_sci_fuses_by_hand(video: DecodedVideo, plan: ClipPlan) -> None:
    fused = score_video(TableRunner(), video, plan, crops=NUM_CROPS, fusion="sci")
    np.testing.assert_allclose(fused.clip_scores, SCI_CLIP_SCORES, atol=1e-7)
    np.testing.assert_allclose(fused.video_scores, SCI_VIDEO_SCORES, atol=1e-7)
    np.testing.assert_allclose(fused.clip_sci, SCI_CLIP_SCI, atol=1e-7)


def test_score_video_mean_fuses_by_hand(video: DecodedVideo, plan: ClipPlan) -> None:
    fused = score_video(TableRunner(), video, plan, crops=NUM_CROPS, fusion="mean")
    np.testing.assert_allclose(fused.clip_scores, MEAN_CLIP_SCORES, atol=1e-7)
    np.testing.assert_allclose(fused.video_scores, MEAN_VIDEO_SCORES, atol=1e-7)
    np.testing.assert_allclose(fused.clip_sci, MEAN_CLIP_SCI, atol=1e-7)


def test_one_crop_per_clip_pair_keeps_the_clip_order(video: DecodedVideo, plan: ClipPlan) -> None:
    """K = 1: the clip scores are the runner's rows in order, the SCI video score their class-wise max."""
    rows = TABLE[:, :1]  # (M, 1, N)
    fused = score_video(TableRunner(rows), video, plan, crops=1, fusion="sci")
    np.testing.assert_allclose(fused.clip_scores, rows[:, 0], atol=1e-7)
    np.testing.assert_allclose(fused.video_scores, [1.0, 0.75], atol=1e-7)


@pytest.mark.parametrize("bad_shape", [(NUM_CLIPS * NUM_CROPS - 1, NUM_CLASSES), (NUM_CLIPS, 3), (6, 3)])
def test_a_runner_answering_the_wrong_shape_is_refused(
    video: DecodedVideo, plan: ClipPlan, bad_shape: tuple[int, int]
) -> None:
    class WrongShape(TableRunner):
        def run(self, feeds: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
            return np.full(bad_shape, 0.5, dtype=np.float32)

    with pytest.raises(ValueError, match="expected"):
        clip_probs(WrongShape(), video, plan, NUM_CROPS)


def test_stages_wrap_preprocess_infer_and_fuse_in_order(video: DecodedVideo, plan: ClipPlan) -> None:
    events: list[str] = []

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        events.append(f"enter {name}")
        yield
        events.append(f"exit {name}")

    score_video(TableRunner(events=events), video, plan, crops=NUM_CROPS, fusion="sci", stage=stage)
    assert events == [
        "enter preprocess",
        "prepare",
        "exit preprocess",
        "enter infer",
        "run",
        "exit infer",
        "enter fuse",
        "exit fuse",
    ]


def test_a_stage_that_raises_stops_the_work(video: DecodedVideo, plan: ClipPlan) -> None:
    """A caller stops abandoned work by raising from `stage`: the model then never runs."""
    events: list[str] = []

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        if name == "infer":
            raise TimeoutError("time is up")
        yield

    with pytest.raises(TimeoutError):
        score_video(TableRunner(events=events), video, plan, crops=NUM_CROPS, fusion="sci", stage=stage)
    assert events == ["prepare"]


# --- planning from the headers ----------------------------------------------------------------------


def info_with(duration_s: float, fps: float = 25.0) -> VideoInfo:
    return VideoInfo(duration_s, fps, 160, 120, 50, "h264", "mp4", 0)


@pytest.mark.parametrize(
    ("duration_s", "fps", "last"),
    [
        (2.0, 25.0, 1.96),  # the last frame starts one frame before the end
        (0.5, 25.0, 0.46),  # under a second long
        (10.0, 0.5, 8.0),  # a slide show: one frame every 2 s
        (2.0, 0.0, 2.0),  # unknown frame rate: the duration itself
        (2.0, float("nan"), 2.0),
        (0.0, 25.0, 0.0),  # unknown duration
        (float("nan"), 25.0, 0.0),
        (-1.0, 25.0, 0.0),
        (0.02, 25.0, 0.0),  # one frame long: never before 0
    ],
)
def test_last_frame_time_from_the_headers(duration_s: float, fps: float, last: float) -> None:
    assert _last_frame_time(info_with(duration_s, fps)) == pytest.approx(last)


@pytest.mark.parametrize(
    ("declared", "decoded", "overstates"),
    [
        (2.0, 2.0, False),
        (2.0, 2.0 - HEADER_SLACK_S + 0.01, False),  # short video: the fixed slack decides
        (2.0, 2.0 - HEADER_SLACK_S - 0.01, True),
        (20.0, 20.0 - HEADER_SLACK_FRACTION * 20.0 + 0.01, False),  # long video: the fraction decides
        (20.0, 20.0 - HEADER_SLACK_FRACTION * 20.0 - 0.01, True),
        (20.0, 20.0 - HEADER_SLACK_S - 0.01, False),
    ],
)
def test_headers_overstate_only_beyond_the_slack(declared: float, decoded: float, overstates: bool) -> None:
    assert _header_overstates(declared, decoded) is overstates


@pytest.fixture(scope="module")
def real_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("scoring") / "real-2s.mp4", seconds=2.0, width=160, height=120)


def covers(video: DecodedVideo, plan: ClipPlan) -> bool:
    """Whether every planned time has a decoded frame within half a frame of it (25 fps)."""
    queries = plan.all_times()
    nearest = video.times[nearest_frame_indices(video.times, queries)]
    return bool(np.all(np.abs(nearest - np.minimum(queries, video.times[-1])) <= 0.02 + 1e-9))


def test_honest_headers_decode_only_the_planned_frames(real_video: Path) -> None:
    info = probe_video(real_video)
    calls: list[str] = []
    video, plan = decode_planned(real_video, info, META, 3, between=lambda: calls.append("between"))
    assert calls == []
    expected = plan_clip_pairs(0.0, 1.96, META.sampling, 3)
    np.testing.assert_allclose(plan.starts, expected.starts, atol=1e-6)
    assert plan.num_clips == 3
    assert video.frames.shape[1:] == (40, 53, 3)  # short side = META.resize_short
    assert len(video.times) < 50, "frames outside the plan were kept"
    assert covers(video, plan)


def test_missing_duration_decodes_everything_and_plans_over_it(real_video: Path) -> None:
    calls: list[str] = []
    info = replace(probe_video(real_video), duration_s=0.0)
    video, plan = decode_planned(real_video, info, META, 2, between=lambda: calls.append("between"))
    assert calls == []
    assert len(video.times) == 50
    assert plan.diff_times.max() == pytest.approx(1.96, abs=1e-6)
    assert plan.num_clips == 2


def test_overstated_duration_is_replanned_over_the_real_length(real_video: Path) -> None:
    calls: list[str] = []
    info = replace(probe_video(real_video), duration_s=10.0)
    video, plan = decode_planned(real_video, info, META, 3, between=lambda: calls.append("between"))
    assert calls == ["between"]
    assert plan.diff_times.max() == pytest.approx(1.96, abs=1e-6)
    assert plan.starts[0] == 0.0
    assert covers(video, plan)


def test_slightly_overstated_duration_keeps_the_plan(real_video: Path) -> None:
    calls: list[str] = []
    info = replace(probe_video(real_video), duration_s=2.2)  # 0.2 s over: within the slack
    video, plan = decode_planned(real_video, info, META, 3, between=lambda: calls.append("between"))
    assert calls == []
    assert plan.diff_times.max() == pytest.approx(2.2 - 0.04, abs=1e-6)


def test_decode_planned_passes_its_limits_on(real_video: Path) -> None:
    with pytest.raises(VideoTooLarge):
        decode_planned(real_video, probe_video(real_video), META, 3, limits=VideoLimits(max_frames=10))
