"""Test videos made on the spot with PyAV (nothing is downloaded).

`write_video` renders a moving, colour-changing square so that consecutive frames differ and a decoder
bug (wrong frame, wrong order) shows up in pixel values. The frame index is also encoded in the
top-left 8x8 block's brightness so tests can recover which source frame they got.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# suffix -> (container format, default codec)
CONTAINERS: dict[str, tuple[str, str]] = {
    ".mp4": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
    ".avi": ("avi", "mpeg4"),
    ".ts": ("mpegts", "libx264"),
}


def render_frame(index: int, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 frame `index` of the test pattern."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[..., 0] = np.linspace(0, 120, width, dtype=np.uint8)[None, :]
    frame[..., 2] = np.linspace(0, 120, height, dtype=np.uint8)[:, None]
    side = max(4, min(width, height) // 4)
    x = (index * 7) % max(1, width - side)
    y = (index * 3) % max(1, height - side)
    frame[y : y + side, x : x + side] = (255, (index * 11) % 256, 64)
    frame[:8, :8] = (index * 5) % 256
    return frame


def write_video(
    path: Path,
    *,
    fps: int = 25,
    seconds: float = 2.0,
    width: int = 320,
    height: int = 240,
    codec: str | None = None,
    pix_fmt: str = "yuv420p",
    frame_times: list[float] | None = None,
    rotate: int | None = None,
) -> Path:
    """Write a test video; the container comes from `path`'s suffix (see CONTAINERS).

    `frame_times` (seconds, increasing) makes a variable-frame-rate file: each frame gets that pts
    (time base 1/1000 s). `rotate` writes display-rotation metadata (degrees) where the muxer keeps it.
    """
    path = Path(path)
    container_format, default_codec = CONTAINERS[path.suffix.lower()]
    codec = codec or default_codec
    times = frame_times if frame_times is not None else [i / fps for i in range(round(seconds * fps))]
    with av.open(str(path), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = pix_fmt
        if frame_times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotate is not None:
            stream.metadata["rotate"] = str(rotate)
        for index, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(render_frame(index, width, height), format="rgb24")
            frame = frame.reformat(format=pix_fmt)
            if frame_times is not None:
                frame.pts = round(t * 1000)
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
