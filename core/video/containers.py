"""Which files FFmpeg may open, and how: the container allow-list and the protocol lock-down.

An upload is hostile until proven otherwise. FFmpeg's demuxers can follow references to other
resources (HLS playlists and ffconcat scripts list files and URLs, QuickTime data references point at
external media, ...), and its probing picks whichever of ~350 demuxers claims the bytes. So:

1. `sniff_container` reads the first bytes and accepts only the magic numbers of an allow-list of
   plain media containers (ISO-BMFF/QuickTime, Matroska/WebM, AVI, MPEG-TS, FLV, Ogg). Everything else
   (empty files, text, playlists, scripts, SDP, XML manifests, images, audio files, ...) is refused
   with `UnsupportedMedia` before FFmpeg sees a byte.
2. `open_container` opens the file with an explicit `format=` (FFmpeg never probes other demuxers;
   `format_whitelist` names the same single demuxer), through a Python file object, so FFmpeg itself
   opens no file at all. The nested opens of the allowed demuxers go through `io_open`, which refuses
   them and records the attempt; not every demuxer asks `io_open` (the concat demuxer opens its entries
   directly), so `protocol_whitelist` names no existing protocol as well, and the QuickTime demuxer gets
   `enable_drefs=0` and `use_absolute_path=0`. Each layer holds on its own (tests/core/test_containers.py
   tests them one at a time). A refused attempt turns into `UnsupportedMedia`.
3. After opening, the demuxer in use must still be on the allow-list.

Decoders get `max_pixels` so a frame bigger than the limit is refused before it is allocated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import av
import av.container

from fstcn.core.errors import InvalidVideo, UnsupportedMedia

logger = logging.getLogger(__name__)

SNIFF_BYTES = 8192  # enough for the longest signature (a few MPEG-TS packets)
IO_BUFFER_BYTES = 256 * 1024  # read size of the Python file object FFmpeg reads through
MAX_STREAMS = 64  # FFmpeg's default is 1000; a real upload has a handful
# No protocol has this name: the main input is a Python file object, so FFmpeg needs no protocol.
NO_PROTOCOL = "none"


@dataclass(frozen=True)
class ContainerType:
    """One allowed container family.

    name: short name for logs and docs; demuxer: the FFmpeg demuxer forced with `format=`;
    options: demuxer options that close its doors to other resources.
    """

    name: str
    demuxer: str
    options: dict[str, str] = field(default_factory=dict)


ISOBMFF = ContainerType("mp4", "mov", {"enable_drefs": "0", "use_absolute_path": "0"})
MATROSKA = ContainerType("matroska", "matroska")
AVI = ContainerType("avi", "avi")
MPEGTS = ContainerType("mpegts", "mpegts")
FLV = ContainerType("flv", "flv")
OGG = ContainerType("ogg", "ogg")
ALLOWED_CONTAINERS: tuple[ContainerType, ...] = (ISOBMFF, MATROSKA, AVI, MPEGTS, FLV, OGG)
# container.format.name values accepted after opening (FFmpeg names demuxer families with commas).
ALLOWED_FORMAT_NAMES: frozenset[str] = frozenset(
    {"mov", "mov,mp4,m4a,3gp,3g2,mj2", "matroska", "matroska,webm", "avi", "mpegts", "flv", "ogg"}
)

# First box types of an ISO-BMFF / QuickTime file (old QuickTime files may start without `ftyp`).
_ISOBMFF_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"})
# `ftyp` major brands of still-image formats built on ISO-BMFF (HEIF/AVIF): images, not videos.
_IMAGE_BRANDS = frozenset(
    {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
)
_TS_PACKET_SIZES = (188, 192, 204)  # plain, M2TS (4-byte timestamp prefix), with Reed-Solomon bytes

# Known non-video signatures, checked first so the refusal names what the upload really is.
_REFUSED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x00\x00\x01\x00", "an icon image"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"ID3", "an MP3 audio file"),
    (b"fLaC", "a FLAC audio file"),
    (b"#!AMR", "an AMR audio file"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "an ASF/WMV file (not on the allow-list)"),
    (b"\x00\x00\x01\xba", "an MPEG program stream (not on the allow-list)"),
)
# Text formats that make FFmpeg open other resources (checked case-insensitively after a BOM/blanks).
_REFUSED_TEXT: tuple[tuple[bytes, str], ...] = (
    (b"#extm3u", "an HLS playlist"),
    (b"ffconcat version", "an ffconcat script"),
    (b"v=0", "an SDP session description"),
    (b"<?xml", "an XML document (DASH manifest, SMIL, ...)"),
    (b"<mpd", "a DASH manifest"),
    (b"[playlist]", "a PLS playlist"),
    (b"#extinf", "an M3U playlist"),
)
_TEXT_BYTES = re.compile(rb"^[\x09\x0a\x0d\x20-\x7e\x80-\xff]*$")


def _is_mpegts(head: bytes) -> bool:
    """True when 0x47 sync bytes repeat at one MPEG-TS packet size (checked over up to 5 packets)."""
    for size in _TS_PACKET_SIZES:
        for offset in (0, 4) if size == 192 else (0,):
            count = min(5, (len(head) - offset + size - 1) // size)
            if count >= 2 and all(head[offset + i * size] == 0x47 for i in range(count)):
                return True
    return False


def sniff_container(head: bytes) -> ContainerType:
    """The allowed container family whose magic bytes start `head`; raises `UnsupportedMedia` otherwise.

    `head` is the start of the file (`SNIFF_BYTES` are enough). The refusal names what the bytes look
    like (an image, a playlist, text, ...) so logs and clients can tell why.
    """
    if not head:
        raise UnsupportedMedia("the file is empty")
    if len(head) >= 12 and head[4:8] in _ISOBMFF_FIRST_BOXES:
        if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
            brand = head[8:12].decode("ascii", "replace")
            raise UnsupportedMedia(f"not a video: an HEIF/AVIF image (brand {brand!r})")
        return ISOBMFF
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return MATROSKA
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return AVI
    if head.startswith(b"FLV\x01"):
        return FLV
    if head.startswith(b"OggS"):
        return OGG
    if _is_mpegts(head):
        return MPEGTS
    if head.startswith(b"RIFF"):
        kind = head[8:12].decode("ascii", "replace")
        raise UnsupportedMedia(f"not a video container: a RIFF {kind!r} file (WAV, WebP, ...)")
    for signature, what in _REFUSED_SIGNATURES:
        if head.startswith(signature):
            raise UnsupportedMedia(f"not a video: {what}")
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    for signature, what in _REFUSED_TEXT:
        if text.startswith(signature):
            raise UnsupportedMedia(f"not a video: {what}")
    if _TEXT_BYTES.match(head):
        raise UnsupportedMedia("not a video: a text file")
    raise UnsupportedMedia(
        "not a recognised video container (allowed: MP4/MOV/3GP, Matroska/WebM, AVI, MPEG-TS, FLV, Ogg)"
    )


class ExternalResourceRefused(OSError):
    """FFmpeg tried to open a resource other than the uploaded file (raised inside `io_open`)."""


@dataclass
class NestedOpenGuard:
    """The `io_open` callback of every container we open: refuses and records each nested open."""

    attempts: list[str] = field(default_factory=list)

    def __call__(self, url: str, flags: int, options: dict[str, Any]) -> Any:
        self.attempts.append(url)
        logger.warning("refused a nested open by FFmpeg: %r", url[:200])
        raise ExternalResourceRefused(f"opening {url!r} is not allowed")

    def check(self) -> None:
        """Raise `UnsupportedMedia` if FFmpeg tried to open anything besides the upload."""
        if self.attempts:
            raise UnsupportedMedia("the file refers to external resources, which are not allowed")


def decoder_options(max_pixels: int | None) -> dict[str, str]:
    """Codec options for every decoder we open: refuse frames over `max_pixels` before allocating.

    The decoder checks its limit against the coded (aligned, e.g. 1920x1088) size, so it gets a margin;
    the exact limit on the displayed size is checked on each decoded frame.
    """
    if max_pixels is None:
        return {}
    return {"max_pixels": str(int(max_pixels * 1.1) + 65536)}


@dataclass
class OpenContainer:
    """An input container opened locked down, with the guard that watches its nested opens."""

    container: av.container.InputContainer
    guard: NestedOpenGuard
    kind: ContainerType


@contextmanager
def open_container(path: Path, *, max_pixels: int | None = None) -> Iterator[OpenContainer]:
    """Open `path` locked down (see the module docstring) and close it on exit.

    Raises `UnsupportedMedia` (not an allowed container, or it refers to other resources) or
    `InvalidVideo` (an allowed container that FFmpeg cannot parse). Callers should call
    `guard.check()` again after demuxing: a demuxer could also attempt a nested open later.
    """
    with open(path, "rb") as file:
        kind = sniff_container(file.read(SNIFF_BYTES))
        file.seek(0)
        guard = NestedOpenGuard()
        container = open_locked(file, kind, guard, max_pixels=max_pixels)
        try:
            if container.format.name not in ALLOWED_FORMAT_NAMES:
                raise UnsupportedMedia(f"container {container.format.name!r} is not allowed")
            yield OpenContainer(container, guard, kind)
        finally:
            container.close()


def open_locked(
    file: BinaryIO, kind: ContainerType, guard: NestedOpenGuard, *, max_pixels: int | None = None
) -> av.container.InputContainer:
    """Open an already-sniffed file object with demuxer `kind.demuxer` and every door closed.

    Only `open_container` should call this (tests call it directly to show that even a dangerous
    demuxer, forced here, cannot open anything: the sniffing step is not the only defence).
    """
    container_options = {
        "protocol_whitelist": NO_PROTOCOL,
        "format_whitelist": kind.demuxer,
        "max_streams": str(MAX_STREAMS),
        **kind.options,
    }
    try:
        container = av.open(
            file,
            mode="r",
            format=kind.demuxer,
            container_options=container_options,
            # `options` reach the decoders avformat_find_stream_info opens while probing streams.
            options=decoder_options(max_pixels),
            io_open=guard,
            buffer_size=IO_BUFFER_BYTES,
            metadata_errors="replace",
        )
    except ExternalResourceRefused as error:
        raise UnsupportedMedia("the file refers to external resources, which are not allowed") from error
    except (av.FFmpegError, UnicodeDecodeError, ValueError, OverflowError) as error:
        guard.check()
        raise InvalidVideo(f"cannot read the {kind.name} container: {describe_error(error)}") from error
    try:
        guard.check()
    except UnsupportedMedia:
        container.close()
        raise
    return container


def describe_error(error: BaseException) -> str:
    """A short, path-free description of an FFmpeg error for client-facing messages."""
    if isinstance(error, av.FFmpegError) and error.strerror:
        return str(error.strerror)
    return type(error).__name__
