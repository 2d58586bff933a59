"""The benchmark's input videos, generated once (PyAV, the test pattern of `tests/videos.py`) and cached.

- `clip_10s_320x240.mp4`: the POST /predict target clip (10 s, 320x240, 25 fps, H.264).
- `long_600s_640x360.mp4` and `short_10s_640x360.mp4`: the decode-and-sampling pair (10 minutes and
  10 seconds, 640x360, 25 fps, H.264 at a low bitrate) with x264's default keyframe interval (250
  frames, 10 s: the worst common case for seeking), and the same pair with a keyframe every 2 s
  (`*_gop50.mp4`, usual for streaming and phone recordings).

The pattern moves and changes colour every frame, so the encoder cannot skip frames and the decoder does
real work; x264 runs with preset `ultrafast` and a bitrate cap so the 10-minute file takes well under a
minute to write on two cores.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

logger = logging.getLogger(__name__)

CLIP = "clip_10s_320x240.mp4"
LONG = "long_600s_640x360.mp4"
SHORT = "short_10s_640x360.mp4"
LONG_GOP50 = "long_600s_640x360_gop50.mp4"
SHORT_GOP50 = "short_10s_640x360_gop50.mp4"
SPECS: dict[str, tuple[float, int, int, int]] = {  # name -> (seconds, width, height, keyframe interval)
    CLIP: (10.0, 320, 240, 250),
    LONG: (600.0, 640, 360, 250),
    SHORT: (10.0, 640, 360, 250),
    LONG_GOP50: (600.0, 640, 360, 50),
    SHORT_GOP50: (10.0, 640, 360, 50),
}


def pattern(index: int, width: int, height: int, background: np.ndarray) -> np.ndarray:
    """(height, width, 3) uint8 frame `index`: a textured background and a moving, colour-changing square."""
    frame = background.copy()
    side = max(8, min(width, height) // 4)
    x = (index * 7) % max(1, width - side)
    y = (index * 3) % max(1, height - side)
    frame[y : y + side, x : x + side] = (255, (index * 11) % 256, 64)
    frame[:8, :8] = (index * 5) % 256
    return frame


def write_bench_video(
    path: Path, seconds: float, width: int, height: int, *, keyint: int = 250, fps: int = 25
) -> Path:
    """Write an H.264 MP4 of the pattern (atomically: a temp file renamed at the end)."""
    rng = np.random.default_rng(0)
    background = np.zeros((height, width, 3), dtype=np.uint8)
    background[..., 0] = np.linspace(0, 120, width, dtype=np.uint8)[None, :]
    background[..., 2] = np.linspace(0, 120, height, dtype=np.uint8)[:, None]
    background[..., 1] = rng.integers(0, 60, size=(height, width), dtype=np.uint8)  # texture
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.options = {
            "preset": "ultrafast",
            "crf": "30",
            "maxrate": "400k",
            "bufsize": "800k",
            "g": str(keyint),
        }
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(pattern(index, width, height, background), format="rgb24")
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path


def bench_video(cache: Path, name: str) -> Path:
    """The cached video `name` (one of SPECS), written on first use."""
    path = cache / "videos" / name
    if not path.is_file():
        seconds, width, height, keyint = SPECS[name]
        logger.info("writing %s (%g s, %dx%d) once into %s", name, seconds, width, height, path.parent)
        write_bench_video(path, seconds, width, height, keyint=keyint)
    return path
