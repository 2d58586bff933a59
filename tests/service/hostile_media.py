"""Builders of hostile and broken media for decoder tests, plus a canary that proves nobody read a file.

Everything is generated on the spot: a tiny PNG, HLS playlists and ffconcat scripts that point at a
local file, a QuickTime/MP4 whose data reference (`dref` alias) points at an external file, a
truncated copy, and `FifoCanary`.

`FifoCanary` is a named pipe with a writer thread blocked in `open(O_WRONLY)`. That call returns only
when some process opens the pipe for reading, so "FFmpeg opened the canary" is observed exactly, with
no dependence on atime (noatime/relatime mounts) or on inotify. When the test is over, `release()`
opens the pipe itself to unblock the thread; `was_opened` says whether anyone else did first.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path


def png_bytes(width: int = 4, height: int = 3) -> bytes:
    """A valid RGB PNG image (grey gradient), built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes((x * 40) % 256 for x in range(width * 3)) for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def hls_playlist(segment: str) -> bytes:
    """An HLS media playlist whose only segment is `segment` (a path or URL)."""
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:2.0,\n{segment}\n#EXT-X-ENDLIST\n"
    ).encode()


def ffconcat_script(target: str) -> bytes:
    """An ffconcat script that plays `target`."""
    return f"ffconcat version 1.0\nfile '{target}'\n".encode()


# ISO-BMFF boxes that contain other boxes on the way from `moov` to `dref`.
_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"dinf"}


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    out, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        size = size or len(data) - offset
        out.append((kind, data[offset + 8 : offset + size]))
        offset += size
    return out


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _alias_entry(absolute_path: bytes, levels: int = 1) -> bytes:
    """A Mac OS alias record (`alis` dref entry) in the layout FFmpeg's mov demuxer parses.

    nlvl_from = nlvl_to = `levels`: 1 makes FFmpeg resolve the target relative to the movie's own folder
    (the variant it follows even without `use_absolute_path`); 0 leaves only the absolute path, which
    FFmpeg opens only with `use_absolute_path`.
    """
    name = absolute_path.rsplit(b"/", 1)[-1]
    body = b"\x00" * 10 + b"\x00" + b"\x00" * 27 + b"\x00" * 12  # volume name (empty)
    body += bytes([len(name)]) + name.ljust(63, b"\x00") + b"\x00" * 16  # file name
    body += struct.pack(">hh", levels, levels) + b"\x00" * 16  # nlvl_from, nlvl_to
    body += struct.pack(">hh", 2, len(absolute_path)) + absolute_path + b"\x00" * (len(absolute_path) % 2)
    body += struct.pack(">hh", -1, 0)  # end of records
    return _box(b"alis", b"\x00\x00\x00\x00" + body)  # version/flags 0: media is NOT in this file


def with_external_data_reference(movie: bytes, target_name: str, *, levels: int = 1) -> bytes:
    """Rewrite every `dref` of an ISO-BMFF/QuickTime file to point at `target_name` beside the movie.

    The alias's absolute path is "/" + `target_name`; `levels` as in `_alias_entry`. The file must have
    its `moov` after `mdat` (PyAV's default), so chunk offsets stay valid.
    """

    def rewrite(data: bytes) -> bytes:
        out = b""
        for kind, payload in _boxes(data):
            if kind == b"dref":
                entry = _alias_entry(b"/" + target_name.encode(), levels)
                payload = b"\x00\x00\x00\x00" + struct.pack(">I", 1) + entry
            elif kind in _CONTAINER_BOXES:
                payload = rewrite(payload)
            out += _box(kind, payload)
        return out

    rewritten = rewrite(movie)
    if b"alis" not in rewritten:
        raise ValueError("no dref box found")
    return rewritten


def truncated_copy(source: Path, target: Path, fraction: float) -> Path:
    """Write the first `fraction` of `source` to `target`."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


class FifoCanary:
    """A named pipe that records whether anybody opened it for reading (see the module docstring)."""

    PAYLOAD = b"CANARY-SECRET-0123456789\n" * 8

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        os.mkfifo(self.path)
        self._opened = threading.Event()
        self._releasing = False
        self._thread = threading.Thread(target=self._wait_for_reader, daemon=True)
        self._thread.start()

    def _wait_for_reader(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)  # blocks until a reader opens the pipe
        try:
            if self._releasing:
                return
            self._opened.set()
            try:
                os.write(fd, self.PAYLOAD)  # a reader gets some bytes, then EOF: it never hangs
            except BrokenPipeError:
                pass
        finally:
            os.close(fd)

    @property
    def was_opened(self) -> bool:
        return self._opened.is_set()

    def release(self) -> bool:
        """Stop watching; returns whether somebody else opened the canary."""
        self._releasing = not self._opened.is_set()
        if self._thread.is_alive():
            reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # unblocks the writer's open
            self._thread.join(timeout=5)
            os.close(reader)
        return self._opened.is_set()
