"""Decoding only the sampled frames (docs/design.md, "Video input") keeps seeking when keyframes are
sparser than the seek gap: a second seek towards the same frames lands on the same keyframe and must not
switch seeking off for the rest of the video. The long video with sparse keyframes is the benchmark's
own generator (`fstcn.bench.media`), the one whose files the decode benchmark measures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fstcn.bench.media import write_bench_video
from fstcn.core.clips import gather_clip_pairs, plan_clip_pairs
from fstcn.core.meta import SamplingParams
from fstcn.core.video.decode import decode_video


def test_sparse_keyframes_still_seek_past_every_gap(tmp_path: Path) -> None:
    path = write_bench_video(tmp_path / "long.mp4", 60.0, 64, 48, keyint=250)  # a keyframe every 10 s
    plan = plan_clip_pairs(0.0, 59.96, SamplingParams(), 5)  # starts 0, 14.7, 29.4, 44.1, 58.8 s
    sampled = decode_video(path, resize_short=48, times=plan.all_times())
    # from the keyframe before each start: ~1.2 + 5.9 + 10.6 + 5.3 + 10 s of video, not all 60 s
    assert sampled.frames_decoded < 1000
    full = decode_video(path, resize_short=48)
    assert full.frames_decoded == 1500
    np.testing.assert_array_equal(
        gather_clip_pairs(sampled.frames, sampled.times, plan)[1],
        gather_clip_pairs(full.frames, full.times, plan)[1],
    )
