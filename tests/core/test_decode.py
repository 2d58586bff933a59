"""The PyAV decoder: containers and codecs, frame rates, VFR timestamps, rotation, frame selection and
seeking (pixel-identical to decoding everything), limits, and every broken input's error class.

Test videos come from `tests.videos.write_video`, whose frames all differ (a moving square), so
`source_index` tells which source frame the decoder returned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

import fstcn.core.video.decode as decode_module
from fstcn.core.clips import nearest_frame_indices, plan_clip_pairs
from fstcn.core.errors import InvalidVideo, UnsupportedMedia, VideoTooLarge, VideoTooShort
from fstcn.core.meta import SamplingParams
from fstcn.core.video.decode import DecodedVideo, VideoLimits, decode_video, probe_video
from tests.service.hostile_media import png_bytes, truncated_copy
from tests.videos import render_frame, write_video

Factory = Callable[..., Path]


def source_index(image: npt.NDArray[np.uint8], candidates: int = 64) -> int:
    """Which rendered source frame an unscaled decoded frame is (nearest pattern, robust to coding noise)."""
    height, width = image.shape[:2]
    errors = [
        np.abs(image.astype(np.int16) - render_frame(j, width, height)).mean() for j in range(candidates)
    ]
    return int(np.argmin(errors))


def selected(video: DecodedVideo, queries: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    return nearest_frame_indices(video.times, queries)


# --- containers, codecs, frame rates --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("a.mp4", "h264"),
        ("a.webm", "vp9"),
        ("a.avi", "mpeg4"),
        ("a.mkv", "h264"),
        ("a.mov", "h264"),
        ("a.ts", "h264"),
    ],
)
def test_every_allowed_container_decodes_every_frame(video_factory: Factory, name: str, codec: str) -> None:
    path = video_factory(name, fps=25, seconds=1.0, width=96, height=64)
    info = probe_video(path)
    assert (info.width, info.height, info.codec, info.rotation) == (96, 64, codec, 0)
    assert info.fps == pytest.approx(25) and info.duration_s == pytest.approx(1.0, abs=0.05)
    video = decode_video(path, resize_short=64)  # no scaling: compare with the rendered frames
    assert video.frames.dtype == np.uint8 and video.frames.shape == (25, 64, 96, 3)
    np.testing.assert_allclose(video.times, np.arange(25) / 25, atol=1e-3)
    assert [source_index(frame) for frame in video.frames] == list(range(25))
    assert video.info.frames == 25 and video.frames_decoded == 25


@pytest.mark.parametrize("fps", [15, 25, 30, 60])
def test_frame_rates_give_their_timestamps(video_factory: Factory, fps: int) -> None:
    path = video_factory(f"rate{fps}.mp4", fps=fps, seconds=0.8, width=96, height=64)
    assert probe_video(path).fps == pytest.approx(fps)
    video = decode_video(path, resize_short=64)
    frames = round(0.8 * fps)
    np.testing.assert_allclose(video.times, np.arange(frames) / fps, atol=1e-3)
    assert [source_index(frame) for frame in video.frames] == list(range(frames))


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv"])
def test_variable_frame_rate_timestamps(video_factory: Factory, name: str) -> None:
    frame_times = [0.0, 0.04, 0.1, 0.25, 0.3, 0.5, 0.52, 0.9, 1.0, 1.45]
    path = video_factory(name, frame_times=frame_times, width=96, height=64)
    video = decode_video(path, resize_short=64)
    np.testing.assert_allclose(video.times, frame_times, atol=1e-3)
    assert [source_index(frame) for frame in video.frames] == list(range(len(frame_times)))
    # Nearest by timestamp on a VFR file: 0.2 s -> 0.25 (frame 3, not 0.1); 0.7 s -> 0.52 (frame 6, not 0.9).
    sel = decode_video(path, resize_short=64, times=[0.2, 0.7, 5.0])
    assert [source_index(sel.frames[i]) for i in selected(sel, np.array([0.2, 0.7, 5.0]))] == [3, 6, 9]


def test_resize_keeps_aspect_with_short_side(video_factory: Factory) -> None:
    path = video_factory("wide.mp4", fps=25, seconds=0.4, width=160, height=90)
    assert decode_video(path, resize_short=36).frames.shape[1:] == (36, 64, 3)
    portrait = video_factory("tall.mp4", fps=25, seconds=0.4, width=90, height=160)
    assert decode_video(portrait, resize_short=36).frames.shape[1:] == (64, 36, 3)


# --- rotation -------------------------------------------------------------------------------------


def write_display_matrix_video(path: Path, degrees_counter_clockwise: int, frames: int = 6) -> Path:
    """An MP4 whose video stream carries a display matrix (what phones write)."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.set_display_rotation(degrees_counter_clockwise)
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(render_frame(index, 96, 64), format="rgb24")
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def marker_corner(image: npt.NDArray[np.uint8], index: int) -> str:
    """Which corner holds frame `index`'s marker block (grey index*5, here distinct from the pattern)."""
    h, w = image.shape[:2]
    corners = {
        "top-left": image[1:5, 1:5],
        "top-right": image[1:5, w - 5 : w - 1],
        "bottom-left": image[h - 5 : h - 1, 1:5],
        "bottom-right": image[h - 5 : h - 1, w - 5 : w - 1],
    }
    errors = {name: float(np.abs(block.astype(float) - index * 5).mean()) for name, block in corners.items()}
    return min(errors, key=lambda name: errors[name])


@pytest.mark.parametrize(
    ("counter_clockwise", "rotation", "corner"),
    [(90, 270, "bottom-left"), (-90, 90, "top-right"), (180, 180, "bottom-right")],
)
def test_display_matrix_rotation(tmp_path: Path, counter_clockwise: int, rotation: int, corner: str) -> None:
    path = write_display_matrix_video(tmp_path / "rotated.mp4", counter_clockwise)
    info = probe_video(path)
    assert info.rotation == rotation
    video = decode_video(path, resize_short=64)
    if rotation == 180:
        assert (info.width, info.height) == (96, 64) and video.frames.shape[1:] == (64, 96, 3)
    else:  # a quarter turn: displayed portrait, and the short side is still resize_short
        assert (info.width, info.height) == (64, 96) and video.frames.shape[1:] == (96, 64, 3)
    assert marker_corner(video.frames[5], 5) == corner


def test_rotate_tag_rotation(video_factory: Factory) -> None:
    """The legacy `rotate` tag (clockwise), kept by the Matroska muxer."""
    path = video_factory("tagged.mkv", fps=25, seconds=0.4, width=96, height=64, rotate=90)
    info = probe_video(path)
    assert (info.rotation, info.width, info.height) == (90, 64, 96)
    video = decode_video(path, resize_short=32)
    assert video.frames.shape[1:] == (48, 32, 3)
    assert marker_corner(decode_video(path, resize_short=64).frames[5], 5) == "top-right"


# --- selection and seeking ------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [25, 60])
def test_selection_equals_decode_all_then_select(video_factory: Factory, fps: int) -> None:
    path = video_factory(f"sel{fps}.mp4", fps=fps, seconds=3.0, width=96, height=64)
    full = decode_video(path, resize_short=48)
    plan = plan_clip_pairs(0.0, float(full.times[-1]), SamplingParams(), 3)
    queries = np.concatenate([plan.clip_times.ravel(), plan.diff_times.ravel(), [-1.0, 1.5, 99.0]])
    queries = np.concatenate([queries, (full.times[:-1] + full.times[1:]) / 2])  # exact ties -> earlier
    part = decode_video(path, resize_short=48, times=queries)
    want, got = selected(full, queries), selected(part, queries)
    assert np.array_equal(full.frames[want], part.frames[got])  # pixel-identical
    assert np.array_equal(full.times[want], part.times[got])
    assert len(part.frames) == len(np.unique(want))  # each needed frame once, nothing else
    assert np.all(np.diff(part.times) > 0)


def test_selection_stops_after_the_last_needed_frame(video_factory: Factory) -> None:
    path = video_factory("early.mp4", fps=25, seconds=4.0, width=96, height=64)
    video = decode_video(path, resize_short=32, times=[0.0, 0.2, 0.4])
    assert len(video.frames) == 3
    assert video.frames_decoded <= 12  # 0.4 s = frame 10, plus the one after that decides the tie


def test_selecting_only_the_first_frame_still_checks_length(video_factory: Factory) -> None:
    video = decode_video(
        video_factory("two.mp4", fps=25, seconds=0.08, width=96, height=64), resize_short=32, times=[0]
    )
    assert len(video.frames) == 1 and video.frames_decoded == 2


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """~60 s, 64x48, default x264 keyframe interval (10 s at 25 fps): the case seeking is for.

    The Matroska copy is remuxed from the MP4 (same packets, different demuxer and seek index).
    """
    root = tmp_path_factory.mktemp("long")
    mp4 = write_video(root / "long.mp4", fps=25, seconds=60.0, width=64, height=48)
    mkv = root / "long.mkv"
    with av.open(str(mp4)) as source, av.open(str(mkv), mode="w", format="matroska") as target:
        video = source.streams.video[0]
        output = target.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.dts is not None:
                packet.stream = output
                target.mux(packet)
    return {".mp4": mp4, ".mkv": mkv}


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_seeking_gives_the_same_frames_and_decodes_less(long_videos: dict[str, Path], suffix: str) -> None:
    path = long_videos[suffix]
    started = time.perf_counter()
    full = decode_video(path, resize_short=32)
    full_s = time.perf_counter() - started
    plan = plan_clip_pairs(0.0, float(full.times[-1]), SamplingParams(), 5)
    queries = plan.all_times()
    started = time.perf_counter()
    part = decode_video(path, resize_short=32, times=queries)
    part_s = time.perf_counter() - started
    want, got = selected(full, queries), selected(part, queries)
    assert np.array_equal(full.frames[want], part.frames[got])
    assert np.array_equal(full.times[want], part.times[got])
    assert full.frames_decoded == 1500
    assert part.frames_decoded < 0.4 * full.frames_decoded  # the gaps were skipped, not decoded
    assert part_s < full_s


def test_parallel_split_cuts_at_a_seek_gap_giving_the_first_decoder_half_the_runs() -> None:
    runs = [np.arange(10) * 0.1 + start for start in (0.0, 150.0, 300.0, 450.0, 599.0)]  # 5 clip pairs
    queries = np.concatenate(runs)
    assert decode_module._parallel_split(queries) == 30  # runs 0-2 | 3-4
    assert decode_module._parallel_split(queries[:20]) == 10  # 2 runs: one each
    assert decode_module._parallel_split(np.arange(50) * 0.2) is None  # no gap to seek over: one decoder
    assert (
        decode_module._parallel_split(None) is None and decode_module._parallel_split(np.array([3.0])) is None
    )


@pytest.mark.parametrize(
    "queries",
    [
        np.array([0.2, 0.6, 15.0, 15.3, 31.0, 47.5, 58.0]),
        np.array([0.0, 20.0, 40.0, 61.0, 75.0, 99.0]),  # both halves clamp to the last frame: kept once
    ],
)
def test_two_decoders_return_what_one_returns(
    long_videos: dict[str, Path], queries: npt.NDArray[np.float64], monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[str] = set()
    decode = decode_module._decode

    def recording_decode(*args: object, **kwargs: object) -> DecodedVideo:
        threads.add(threading.current_thread().name)
        return decode(*args, **kwargs)  # type: ignore[arg-type]

    one = decode_video(long_videos[".mp4"], resize_short=32, times=queries, parallel=False)
    monkeypatch.setattr(decode_module, "_decode", recording_decode)
    two = decode_video(long_videos[".mp4"], resize_short=32, times=queries)
    assert len(threads) == 2 and any(name.startswith("fstcn-decode") for name in threads)
    assert np.array_equal(one.frames, two.frames) and np.array_equal(one.times, two.times)
    assert np.all(np.diff(two.times) > 0)
    assert two.frames_decoded <= one.frames_decoded + 250  # the second decoder's first GOP at most


def test_seek_overshoot_falls_back_to_a_full_pass(
    long_videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A demuxer that seeks too far must not change the result: the decoder starts again, linearly."""
    original = decode_module._FrameReader.seek

    def overshooting_seek(self: decode_module._FrameReader, pts: int) -> None:
        original(self, pts + int(5 / self.stream.time_base))

    full = decode_video(long_videos[".mp4"], resize_short=32)
    monkeypatch.setattr(decode_module._FrameReader, "seek", overshooting_seek)
    queries = np.array([0.5, 20.0, 40.0])
    part = decode_video(long_videos[".mp4"], resize_short=32, times=queries)
    assert np.array_equal(full.frames[selected(full, queries)], part.frames[selected(part, queries)])
    assert part.frames_decoded > 40 * 25  # the fallback decoded through


# --- limits ---------------------------------------------------------------------------------------


def test_header_limits(video_factory: Factory) -> None:
    path = video_factory("limits.mp4", fps=25, seconds=2.0, width=96, height=64)
    with pytest.raises(VideoTooLarge, match="duration"):
        probe_video(path, VideoLimits(max_duration_s=1.0))
    with pytest.raises(VideoTooLarge, match="frames"):
        decode_video(path, resize_short=32, limits=VideoLimits(max_frames=10))
    with pytest.raises(VideoTooLarge, match="pixels"):
        decode_video(path, resize_short=32, limits=VideoLimits(max_pixels=96 * 64 - 1))
    assert probe_video(path, VideoLimits(max_duration_s=2.5, max_frames=50, max_pixels=96 * 64)).frames == 50


def test_limits_are_enforced_again_while_decoding(
    video_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers can lie: with the header check out of the way, decoding still stops at each limit."""
    path = video_factory("liar.mkv", fps=25, seconds=2.0, width=96, height=64)
    real_header_info = decode_module._header_info
    monkeypatch.setattr(
        decode_module,
        "_header_info",
        lambda opened, stream, limits: real_header_info(opened, stream, VideoLimits()),
    )
    with pytest.raises(VideoTooLarge, match="more than 10 frames"):
        decode_video(path, resize_short=32, limits=VideoLimits(max_frames=10))
    with pytest.raises(VideoTooLarge, match="longer than 1 s"):
        decode_video(path, resize_short=32, limits=VideoLimits(max_duration_s=1.0))
    with pytest.raises((VideoTooLarge, InvalidVideo)):
        decode_video(path, resize_short=32, limits=VideoLimits(max_pixels=1000))


# --- broken and hostile inputs --------------------------------------------------------------------


def write_audio_only(path: Path, container_format: str, codec: str) -> Path:
    with av.open(str(path), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=16000)
        stream.layout = "mono"
        sample_format = "fltp" if codec == "aac" else "s16"
        dtype = np.float32 if codec == "aac" else np.int16
        for index in range(16):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), dtype=dtype), format=sample_format, layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = 16000, index * 1024, Fraction(1, 16000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_empty_random_text_and_image_are_unsupported(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inputs = {
        "empty.mp4": b"",
        "random.mp4": rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes(),
        "text.mp4": b"this is a text file, not a video\n" * 100,
        "image.png": png_bytes(64, 48),
    }
    for name, data in inputs.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnsupportedMedia):
            probe_video(tmp_path / name)
        with pytest.raises(UnsupportedMedia):
            decode_video(tmp_path / name, resize_short=32)


@pytest.mark.parametrize(
    ("name", "container_format", "codec"),
    [("a.m4a", "mp4", "aac"), ("a.mkv", "matroska", "pcm_s16le"), ("a.wav", "wav", "pcm_s16le")],
)
def test_audio_only_is_unsupported(tmp_path: Path, name: str, container_format: str, codec: str) -> None:
    path = write_audio_only(tmp_path / name, container_format, codec)
    with pytest.raises(UnsupportedMedia):
        probe_video(path)
    with pytest.raises(UnsupportedMedia):
        decode_video(path, resize_short=32)


def test_one_frame_video_is_too_short(video_factory: Factory) -> None:
    path = video_factory("one.mp4", fps=25, seconds=0.04, width=96, height=64)
    assert probe_video(path).frames == 1
    with pytest.raises(VideoTooShort):
        decode_video(path, resize_short=32)
    with pytest.raises(VideoTooShort):
        decode_video(path, resize_short=32, times=[0.0, 1.0])


def test_truncated_mp4_without_index_is_invalid(tmp_path: Path, video_factory: Factory) -> None:
    source = video_factory("full.mp4", fps=25, seconds=1.0, width=96, height=64)  # moov at the end
    for fraction in (0.02, 0.5, 0.97):
        with pytest.raises(InvalidVideo):
            decode_video(truncated_copy(source, tmp_path / f"cut{fraction}.mp4", fraction), resize_short=32)


@pytest.mark.parametrize("name", ["cut.ts", "cut.mkv"])
def test_truncated_streams_keep_what_decodes(tmp_path: Path, video_factory: Factory, name: str) -> None:
    source = video_factory("whole" + Path(name).suffix, fps=25, seconds=2.0, width=96, height=64)
    video = decode_video(truncated_copy(source, tmp_path / name, 0.6), resize_short=64)
    assert 10 <= len(video.frames) < 50
    indices = [source_index(frame) for frame in video.frames]
    assert indices[:10] == list(range(10)) and np.all(np.diff(indices) > 0)  # B-frames at the cut may be lost


def test_truncated_avi_is_too_short_or_invalid(tmp_path: Path, video_factory: Factory) -> None:
    """FFmpeg's AVI demuxer stops at the first packet when the index and the RIFF sizes are cut off."""
    source = video_factory("whole.avi", fps=25, seconds=2.0, width=96, height=64)
    with pytest.raises((VideoTooShort, InvalidVideo)):
        decode_video(truncated_copy(source, tmp_path / "cut.avi", 0.6), resize_short=64)


def test_truncated_to_the_header_is_invalid_or_too_short(tmp_path: Path, video_factory: Factory) -> None:
    source = video_factory("whole.mkv", fps=25, seconds=2.0, width=96, height=64)
    with pytest.raises((InvalidVideo, VideoTooShort)):
        decode_video(truncated_copy(source, tmp_path / "head.mkv", 0.05), resize_short=32)


def test_corrupted_packets_mid_stream_do_not_crash(tmp_path: Path, video_factory: Factory) -> None:
    data = bytearray(video_factory("whole.ts", fps=25, seconds=2.0, width=96, height=64).read_bytes())
    rng = np.random.default_rng(1)
    middle = slice(len(data) // 3, len(data) // 3 + 3000)
    data[middle] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path = tmp_path / "corrupt.ts"
    path.write_bytes(bytes(data))
    try:
        video = decode_video(path, resize_short=32)
    except (InvalidVideo, VideoTooShort):
        return
    assert len(video.frames) >= 2 and np.all(np.diff(video.times) >= 0)


def test_bad_arguments(video_factory: Factory) -> None:
    path = video_factory("args.mp4", fps=25, seconds=0.4, width=96, height=64)
    with pytest.raises(ValueError):
        decode_video(path, resize_short=0)
    with pytest.raises(ValueError):
        decode_video(path, resize_short=32, times=[0.1, float("nan")])
    with pytest.raises(ValueError):
        VideoLimits(max_frames=1)
