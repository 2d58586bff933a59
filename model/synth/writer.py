"""Encoding rendered Synthetic Actions frames into video files with PyAV.

Three encodings, as in the wild: H.264 in MP4 (x264 at a constant rate factor), MPEG-4 Part 2 in AVI (a
fixed quantiser) and VP9 in WebM (constant quality). Every encoder runs single-threaded with fixed
options, so the same frames give the same bytes (the generator parallelises across videos instead).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# container -> (PyAV format name, codec, file suffix)
CONTAINERS: dict[str, tuple[str, str, str]] = {
    "mp4": ("mp4", "libx264", ".mp4"),
    "avi": ("avi", "mpeg4", ".avi"),
    "webm": ("webm", "libvpx-vp9", ".webm"),
}


@dataclass(frozen=True)
class Encoding:
    """How one video is stored. quality: CRF for x264/VP9 (lower is better), qscale 2-31 for MPEG-4."""

    container: str
    quality: int
    preset: str = "ultrafast"  # x264 only

    def __post_init__(self) -> None:
        if self.container not in CONTAINERS:
            raise ValueError(f"unknown container {self.container!r}; expected one of {sorted(CONTAINERS)}")

    @property
    def codec(self) -> str:
        return CONTAINERS[self.container][1]

    @property
    def suffix(self) -> str:
        return CONTAINERS[self.container][2]

    def codec_options(self) -> dict[str, str]:
        if self.codec == "libx264":
            return {"crf": str(self.quality), "preset": self.preset}
        if self.codec == "mpeg4":
            return {"flags": "+qscale", "global_quality": str(self.quality * 118)}  # 118 = FF_QP2LAMBDA
        return {"crf": str(self.quality), "b": "0", "deadline": "realtime", "cpu-used": "8"}


def encode_video(
    path: Path, frames: Iterable[np.ndarray], *, fps: int, width: int, height: int, encoding: Encoding
) -> int:
    """Encode RGB frames (each (height, width, 3) uint8) at constant `fps`; returns the frame count."""
    import av

    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {width}x{height}")
    container_format, codec, _ = CONTAINERS[encoding.container]
    count = 0
    # bitexact: no random Matroska segment UID, no version strings: same frames, same bytes
    with av.open(str(path), mode="w", format=container_format, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.options = encoding.codec_options()
        stream.codec_context.thread_count = 1
        for frame in frames:
            if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                raise ValueError(
                    f"expected ({height}, {width}, 3) uint8 frames, got {frame.shape} {frame.dtype}"
                )
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
    if count == 0:
        raise ValueError(f"no frames to encode into {path}")
    return count
