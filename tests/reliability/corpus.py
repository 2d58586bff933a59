"""The hostile-input corpus: every case generated on the spot, each with its expected status and code.

`CASES` lists the cases in a fixed order; `Case.build(workspace)` returns the upload's bytes.
A `Workspace` makes (and caches) the small valid videos the hostile cases are carved from, and holds the
two canaries that reference cases aim at: `file_canary` (a path that must never be opened; the test
puts a `FifoCanary` there) and `url_canary` (an http URL on a listening socket that must never see a
connection). Nothing is downloaded: videos come from PyAV encoders, hostile variants from the header
surgery in `tests/reliability/media.py`.

Groups: `not-video` (empty, random, text, images, audio, archives), `broken` (truncated, missing index,
corrupted packets), `reference` (playlists, scripts, manifests, external data references), `bomb`
(declared sizes, durations and frame counts), `short` (0 and 1 frame), `valid` (unusual but valid
files: pixel formats, rotation, interlacing, several streams, lying extensions), `upload` (over the
byte limit). Valid files must give 200, the rest their documented code (docs/reliability.md has the
table with the observed outcomes).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from tests.reliability import media
from tests.service import hostile_media
from tests.videos import render_frame, write_video

# The corpus server's byte limit; the `oversize` case sends a little more than this.
CORPUS_MAX_UPLOAD_BYTES = 4 * 1024 * 1024
SMALL = {"width": 64, "height": 48}


@dataclass
class Workspace:
    """Where corpus files are generated, and what reference cases point at."""

    root: Path
    file_canary: Path
    url_canary: str
    _videos: dict[str, Path] = field(default_factory=dict)

    def video(self, name: str, **kwargs: Any) -> Path:
        """A valid video `name` (suffix picks the container) written once with `tests.videos.write_video`."""
        key = name + repr(sorted(kwargs.items()))
        if key not in self._videos:
            self._videos[key] = write_video(self.root / f"{len(self._videos)}-{name}", **kwargs)
        return self._videos[key]

    def bytes_of(self, name: str, **kwargs: Any) -> bytes:
        return self.video(name, **{**SMALL, **kwargs}).read_bytes()

    def path(self, name: str) -> Path:
        return self.root / name


@dataclass(frozen=True)
class Case:
    """One corpus entry: `build` makes the upload; the server must answer `status` with error `code`."""

    name: str
    group: str
    description: str
    status: int
    code: str | None  # None for 200
    build: Callable[[Workspace], bytes]
    filename: str = "upload.mp4"
    references_canary: bool = False


# ------------------------------------------------------------------------------------- builders
def _gif() -> bytes:
    """A 1x1 GIF89a, byte by byte."""
    return (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
        b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )


def _jpeg() -> bytes:
    """A 64x48 baseline JPEG from FFmpeg's MJPEG encoder (one packet is one JFIF image)."""
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = 64, 48, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(render_frame(0, 64, 48), format="rgb24").reformat(format="yuvj420p")
    data = b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])
    if not data.startswith(b"\xff\xd8\xff"):
        raise ValueError("the MJPEG encoder did not produce a JPEG")
    return data


def _wav() -> bytes:
    samples = (np.sin(np.arange(8000) / 8.0) * 8000).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(samples))
    return b"RIFF" + struct.pack("<I", len(body) + len(samples)) + body + samples


def _zip() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("video.mp4", b"\x00" * 100)
    return buffer.getvalue()


def _audio_only(ws: Workspace, fmt: str, codec: str) -> bytes:
    path = ws.path(f"audio-only.{fmt}")
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=48000 if codec == "libopus" else 16000)
        rate = stream.codec_context.sample_rate
        for index in range(20):
            samples = np.sin(np.arange(1024, dtype=np.float32) / 10 + index)[None, :] * 0.1
            frame = av.AudioFrame.from_ndarray(samples.astype(np.float32), format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def _encode(
    ws: Workspace,
    name: str,
    fmt: str,
    *,
    streams: list[dict[str, Any]],
    frames: int = 25,
    audio: bool = False,
) -> bytes:
    """A file with several video streams (each: codec, width, height, pix_fmt, options, rotation)."""
    path = ws.path(name)
    with av.open(str(path), "w", format=fmt) as container:
        video_streams = []
        for spec in streams:
            stream = container.add_stream(spec.get("codec", "libx264"), rate=25, options=spec.get("options"))
            stream.width, stream.height = spec["width"], spec["height"]
            stream.pix_fmt = spec.get("pix_fmt", "yuv420p")
            if "rotation" in spec:
                stream.set_display_rotation(spec["rotation"])
            if spec.get("interlaced"):
                stream.codec_context.flags |= av.codec.context.Flags.interlaced_dct
            video_streams.append(stream)
        audio_stream = container.add_stream("aac", rate=16000) if audio else None
        for index in range(frames):
            for stream in video_streams:
                image = render_frame(index, stream.width, stream.height)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=stream.pix_fmt)
                frame.pts = index
                frame.time_base = Fraction(1, 25)
                for packet in stream.encode(frame):
                    container.mux(packet)
            if audio_stream is not None:
                samples = np.zeros((1, 640), np.float32)
                chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                chunk.sample_rate = 16000
                chunk.pts = index * 640
                for packet in audio_stream.encode(chunk):
                    container.mux(packet)
        for stream in [*video_streams, *([audio_stream] if audio_stream is not None else [])]:
            for packet in stream.encode():
                container.mux(packet)
    return path.read_bytes()


def _mp4_cut_in_moov(ws: Workspace) -> bytes:
    data = ws.bytes_of("base.mp4")
    start, end = media.box_span(data, b"moov")
    return data[: (start + end) // 2]


def _mp4_corrupt_mdat(ws: Workspace) -> bytes:
    """1 KiB of noise in the middle of the sample data of a 4 s file (the index is intact)."""
    data = ws.bytes_of("long.mp4", seconds=4.0)
    start, end = media.box_span(data, b"mdat")
    return media.corrupt_middle(data, fraction=(start + end) / 2 / len(data), length=1024)


def _truncated(ws: Workspace, name: str, fraction: float, **kwargs: Any) -> bytes:
    data = ws.bytes_of(name, **kwargs)
    return data[: int(len(data) * fraction)]


def _mp4_without_moov(ws: Workspace) -> bytes:
    return media.with_box_renamed(ws.bytes_of("base.mp4"), b"moov", b"junk")


def _mp4_garbage_mdat(ws: Workspace) -> bytes:
    """Every sample's bytes replaced by noise (the index is intact, so every packet is demuxed)."""
    data = ws.bytes_of("base.mp4")
    boxes = media.iter_boxes(data)
    out, rng = b"", np.random.default_rng(7)
    for kind, payload in boxes:
        if kind == b"mdat":
            payload = rng.bytes(len(payload))
        out += media.make_box(kind, payload)
    return out


def _dref(ws: Workspace) -> bytes:
    movie = ws.bytes_of("dref-base.mov", seconds=0.5)
    return hostile_media.with_external_data_reference(movie, str(ws.file_canary).lstrip("/"))


CASES: tuple[Case, ...] = (
    # --- not a video ------------------------------------------------------------------------------
    Case("empty", "not-video", "zero bytes", 415, "unsupported_media", lambda ws: b""),
    Case(
        "random-bytes",
        "not-video",
        "64 KiB of seeded random bytes",
        415,
        "unsupported_media",
        lambda ws: np.random.default_rng(1).bytes(65536),
    ),
    Case(
        "text", "not-video", "plain ASCII text", 415, "unsupported_media", lambda ws: b"not a video\n" * 500
    ),
    Case(
        "png",
        "not-video",
        "a valid 64x48 PNG image",
        415,
        "unsupported_media",
        lambda ws: hostile_media.png_bytes(64, 48),
        "image.png",
    ),
    Case("jpeg", "not-video", "a valid 64x48 JPEG image", 415, "unsupported_media", lambda ws: _jpeg()),
    Case("gif", "not-video", "a valid 1x1 GIF89a image", 415, "unsupported_media", lambda ws: _gif()),
    Case("wav", "not-video", "a PCM WAV audio file", 415, "unsupported_media", lambda ws: _wav(), "a.wav"),
    Case(
        "audio-only-mp4",
        "not-video",
        "an MP4 with one AAC audio track",
        415,
        "unsupported_media",
        lambda ws: _audio_only(ws, "mp4", "aac"),
    ),
    Case(
        "audio-only-webm",
        "not-video",
        "a WebM with one Opus audio track",
        415,
        "unsupported_media",
        lambda ws: _audio_only(ws, "webm", "libopus"),
        "a.webm",
    ),
    Case(
        "zip", "not-video", "a ZIP archive holding 'video.mp4'", 415, "unsupported_media", lambda ws: _zip()
    ),
    Case(
        "heif-brand",
        "not-video",
        "an ISO-BMFF file with the AVIF image brand",
        415,
        "unsupported_media",
        lambda ws: b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64,
    ),
    # --- broken containers and streams --------------------------------------------------------------
    Case(
        "mp4-truncated-10pct",
        "broken",
        "MP4 (moov at the end) cut after 10%",
        422,
        "invalid_video",
        lambda ws: _truncated(ws, "base.mp4", 0.1),
    ),
    Case(
        "mp4-truncated-60pct",
        "broken",
        "MP4 cut after 60%",
        422,
        "invalid_video",
        lambda ws: _truncated(ws, "base.mp4", 0.6),
    ),
    Case(
        "mp4-truncated-in-moov",
        "broken",
        "MP4 cut in the middle of its moov index",
        422,
        "invalid_video",
        _mp4_cut_in_moov,
    ),
    Case(
        "mp4-header-only",
        "broken",
        "only the first 64 bytes of an MP4",
        422,
        "invalid_video",
        lambda ws: ws.bytes_of("base.mp4")[:64],
    ),
    Case(
        "mkv-truncated-50pct",
        "broken",
        "Matroska cut in half: the first half still decodes",
        200,
        None,
        lambda ws: _truncated(ws, "base.mkv", 0.5),
        "a.mkv",
    ),
    Case(
        "mkv-header-only",
        "broken",
        "only the first 300 bytes of a Matroska file",
        422,
        "invalid_video",
        lambda ws: ws.bytes_of("base.mkv")[:300],
        "a.mkv",
    ),
    Case(
        "ts-truncated-50pct",
        "broken",
        "MPEG-TS cut in half (mid-packet)",
        200,
        None,
        lambda ws: _truncated(ws, "base.ts", 0.5) + b"\x47\x00",
        "a.ts",
    ),
    Case(
        "mp4-missing-moov",
        "broken",
        "MP4 whose moov index is renamed to an unknown box type",
        422,
        "invalid_video",
        _mp4_without_moov,
    ),
    Case(
        "mp4-moov-inside-free",
        "broken",
        "MP4 whose moov box type is overwritten with free (FFmpeg still finds the index in it)",
        200,
        None,
        lambda ws: media.with_box_renamed(ws.bytes_of("base.mp4"), b"moov", b"free"),
    ),
    Case(
        "avi-missing-index",
        "broken",
        "AVI whose idx1 index is renamed to JUNK (FFmpeg scans)",
        200,
        None,
        lambda ws: media.without_avi_index(ws.bytes_of("base.avi")),
        "a.avi",
    ),
    Case(
        "mp4-corrupt-mid",
        "broken",
        "MP4 with 1 KiB of noise in the middle of its sample data",
        200,
        None,
        _mp4_corrupt_mdat,
    ),
    Case(
        "mkv-corrupt-mid",
        "broken",
        "Matroska with 2 KiB of noise mid-file",
        200,
        None,
        lambda ws: media.corrupt_middle(ws.bytes_of("base.mkv", seconds=2.0)),
        "a.mkv",
    ),
    Case(
        "ts-corrupt-mid",
        "broken",
        "MPEG-TS with 20 packet payloads scrambled mid-file",
        200,
        None,
        lambda ws: media.corrupt_ts_payloads(ws.bytes_of("base.ts", seconds=2.0)),
        "a.ts",
    ),
    Case(
        "mp4-all-packets-garbage",
        "broken",
        "MP4 whose every sample is noise (index intact)",
        422,
        "invalid_video",
        _mp4_garbage_mdat,
    ),
    Case(
        "mp4-box-size-bomb",
        "broken",
        "an ftyp box then a moov declaring a 2^63-byte 64-bit size",
        415,
        "unsupported_media",
        lambda ws: ws.bytes_of("base.mp4")[:32] + struct.pack(">I4sQ", 1, b"moov", 1 << 63) + b"\x00" * 64,
    ),
    # --- references to other files and URLs -----------------------------------------------------------
    Case(
        "hls-local-file",
        "reference",
        "HLS playlist (named .mp4) whose segment is the canary path",
        415,
        "unsupported_media",
        lambda ws: hostile_media.hls_playlist(str(ws.file_canary)),
        references_canary=True,
    ),
    Case(
        "hls-file-url",
        "reference",
        "HLS playlist with a file:// URL to the canary",
        415,
        "unsupported_media",
        lambda ws: hostile_media.hls_playlist(f"file://{ws.file_canary}"),
        "a.m3u8",
        references_canary=True,
    ),
    Case(
        "hls-http-url",
        "reference",
        "HLS playlist with an http URL to a listening canary socket",
        415,
        "unsupported_media",
        lambda ws: hostile_media.hls_playlist(f"{ws.url_canary}/segment.ts"),
        "a.m3u8",
        references_canary=True,
    ),
    Case(
        "hls-bom-indented",
        "reference",
        "HLS playlist after a UTF-8 BOM and blank lines",
        415,
        "unsupported_media",
        lambda ws: b"\xef\xbb\xbf\n\n  " + hostile_media.hls_playlist(str(ws.file_canary)),
        references_canary=True,
    ),
    Case(
        "ffconcat-local-file",
        "reference",
        "ffconcat script naming the canary",
        415,
        "unsupported_media",
        lambda ws: hostile_media.ffconcat_script(str(ws.file_canary)),
        "a.ffconcat",
        references_canary=True,
    ),
    Case(
        "ffconcat-http-url",
        "reference",
        "ffconcat script naming the canary URL",
        415,
        "unsupported_media",
        lambda ws: hostile_media.ffconcat_script(f"{ws.url_canary}/clip.mp4"),
        references_canary=True,
    ),
    Case(
        "sdp-rtp",
        "reference",
        "SDP description of an RTP stream on localhost",
        415,
        "unsupported_media",
        lambda ws: (
            b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 5004 RTP/AVP 96\n"
        ),
        "a.sdp",
    ),
    Case(
        "dash-mpd",
        "reference",
        "DASH manifest whose BaseURL is the canary URL",
        415,
        "unsupported_media",
        lambda ws: (
            '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><BaseURL>'
            f"{ws.url_canary}/</BaseURL></MPD>"
        ).encode(),
        "a.mpd",
        references_canary=True,
    ),
    Case(
        "mov-external-dref",
        "reference",
        "QuickTime movie whose data reference (alias) is the canary path",
        422,
        "invalid_video",
        _dref,
        "a.mov",
        references_canary=True,
    ),
    # --- bombs: declared sizes, durations, frame counts -------------------------------------------------
    Case(
        "mp4-sps-16000x16000",
        "bomb",
        "H.264 SPS, avc1 entry and tkhd rewritten to declare 16000x16000",
        413,
        "video_too_large",
        lambda ws: media.with_declared_size(ws.bytes_of("base.mp4"), 16000, 16000, sps=True),
    ),
    Case(
        "mp4-container-says-16000x16000",
        "bomb",
        "avc1 entry and tkhd declare 16000x16000, the SPS says 64x48",
        200,
        None,
        lambda ws: media.with_declared_size(ws.bytes_of("base.mp4"), 16000, 16000, sps=False),
    ),
    Case(
        "avi-header-16000x16000",
        "bomb",
        "AVI main header and BITMAPINFOHEADER declare 16000x16000 (MPEG-4 VOL says 64x48)",
        200,
        None,
        lambda ws: media.with_avi_header(ws.bytes_of("base.avi"), size=(16000, 16000)),
        "a.avi",
    ),
    Case(
        "mp4-declares-10-hours",
        "bomb",
        "mvhd/tkhd/mdhd durations and stts deltas declare 10 hours for 25 frames",
        413,
        "video_too_large",
        lambda ws: media.with_movie_duration(ws.bytes_of("base.mp4", seconds=1.0), 36000.0),
    ),
    Case(
        "avi-declares-10M-frames",
        "bomb",
        "AVI headers declare 10 000 000 frames (the index has 25)",
        413,
        "video_too_large",
        lambda ws: media.with_avi_header(ws.bytes_of("base.avi", seconds=1.0), total_frames=10_000_000),
        "a.avi",
    ),
    Case(
        "mkv-declares-1-day",
        "bomb",
        "Matroska segment Duration set to 24 hours",
        413,
        "video_too_large",
        lambda ws: media.with_matroska_duration(ws.bytes_of("base.mkv", seconds=1.0), 86400.0),
        "a.mkv",
    ),
    Case(
        "mp4-1x1",
        "valid",
        "a real 1x1 H.264 (4:4:4) video",
        200,
        None,
        lambda ws: ws.video("tiny.mp4", width=1, height=1, pix_fmt="yuv444p", seconds=1.0).read_bytes(),
    ),
    # --- frame counts -----------------------------------------------------------------------------------
    Case(
        "one-frame",
        "short",
        "an MP4 with a single frame",
        422,
        "video_too_short",
        lambda ws: ws.bytes_of("one.mp4", seconds=0.04),
    ),
    Case(
        "zero-frames-mp4",
        "short",
        "an MP4 whose H.264 track has empty sample tables",
        422,
        "video_too_short",
        lambda ws: media.without_samples(ws.bytes_of("base.mp4")),
    ),
    Case(
        "zero-frames-mkv",
        "short",
        "Matroska headers and a video track, no Cluster (sizes fixed up): FFmpeg cannot open it",
        422,
        "invalid_video",
        lambda ws: media.matroska_head(ws.bytes_of("base.mkv")),
        "a.mkv",
    ),
    # --- valid but unusual ------------------------------------------------------------------------------
    Case(
        "h264-10bit",
        "valid",
        "H.264 High 10, yuv420p10le",
        200,
        None,
        lambda ws: ws.bytes_of("p10.mp4", pix_fmt="yuv420p10le"),
    ),
    Case(
        "h264-444",
        "valid",
        "H.264 High 4:4:4, yuv444p",
        200,
        None,
        lambda ws: ws.bytes_of("444.mp4", pix_fmt="yuv444p"),
    ),
    Case(
        "h264-gray",
        "valid",
        "H.264, gray (4:0:0)",
        200,
        None,
        lambda ws: ws.bytes_of("gray.mp4", pix_fmt="gray"),
    ),
    Case(
        "vp9-alpha",
        "valid",
        "VP9 with alpha (yuva420p) in WebM",
        200,
        None,
        lambda ws: ws.bytes_of("alpha.webm", pix_fmt="yuva420p", seconds=1.0),
        "a.webm",
    ),
    Case(
        "rotated-90",
        "valid",
        "MP4 with a display matrix rotating 90 degrees",
        200,
        None,
        lambda ws: _encode(ws, "rot.mp4", "mp4", streams=[{**SMALL, "rotation": 90}]),
    ),
    Case(
        "interlaced",
        "valid",
        "H.264 encoded interlaced (x264 interlaced=1, tff)",
        200,
        None,
        lambda ws: _encode(
            ws,
            "interlaced.mp4",
            "mp4",
            streams=[{"width": 64, "height": 48, "options": {"x264-params": "interlaced=1:tff=1"}}],
        ),
    ),
    Case(
        "two-video-streams",
        "valid",
        "Matroska with two video streams (64x48 H.264, 96x64 VP9) and AAC audio",
        200,
        None,
        lambda ws: _encode(
            ws,
            "two.mkv",
            "matroska",
            streams=[{**SMALL}, {"codec": "libvpx-vp9", "width": 96, "height": 64}],
            audio=True,
        ),
        "a.mkv",
    ),
    Case(
        "extension-lies-mkv-as-mp4",
        "valid",
        "a Matroska file named clip.mp4",
        200,
        None,
        lambda ws: ws.bytes_of("base.mkv"),
        "clip.mp4",
    ),
    Case(
        "extension-lies-ts-as-avi",
        "valid",
        "an MPEG-TS file named clip.avi",
        200,
        None,
        lambda ws: ws.bytes_of("base.ts"),
        "clip.avi",
    ),
    # --- the upload itself --------------------------------------------------------------------------------
    Case(
        "oversize",
        "upload",
        "a valid MP4 header followed by padding, 64 KiB over the byte limit",
        413,
        "video_too_large",
        lambda ws: ws.bytes_of("base.mp4")[:32] + b"\x00" * (CORPUS_MAX_UPLOAD_BYTES + 65536),
    ),
)

CASES_BY_NAME = {case.name: case for case in CASES}
if len(CASES_BY_NAME) != len(CASES):
    raise ValueError("duplicate corpus case names")


def crc(data: bytes) -> str:
    """A short fingerprint of a corpus file, for the docs table."""
    return f"{zlib.crc32(data):08x}"
