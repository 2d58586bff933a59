"""Streaming upload reception: an HTTP body to a temporary file, under a byte limit, never left behind.

`receive_upload` parses a multipart/form-data body chunk by chunk with python-multipart's streaming
`MultipartParser` and writes the part named `file` straight to a temporary file, so the body is never
held in memory. As soon as the written bytes exceed `max_bytes` it raises `VideoTooLarge` and stops
reading (the rest of the body is not consumed). `save_stream_to_file` does the same for a raw body, and
`TensorBody` for an open inference protocol body (its JSON header, then each element of its BYTES
input to a temporary file of its own; the format is `fstcn.service.v2_codec`'s).
On every error, cancellation included, the temporary file is removed before the exception leaves; on
success the caller owns an `UploadedFile`, a (sync or async) context manager that removes it.
Framework-agnostic: the chunks come from any async iterator of bytes (e.g. Starlette's
`request.stream()`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import TracebackType
from typing import IO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from fstcn.core.errors import InvalidParameter, VideoTooLarge
from fstcn.service.v2_codec import BytesSplitter, ElementPiece

logger = logging.getLogger(__name__)

FILE_FIELD = "file"
TEMP_PREFIX = "fstcn-upload-"
# Multipart framing and small extra fields may add this much on top of the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
MAX_FILENAME_CHARS = 255


@dataclass
class UploadedFile:
    """A received upload on disk. Use it as a context manager (or call `cleanup`) to delete it.

    path: the temporary file; filename: the client's file name (base name only, for logs; never used
    as a path); size: bytes written; content_type: the part's Content-Type, if any.
    """

    path: Path
    filename: str | None
    size: int
    content_type: str | None = None

    def cleanup(self) -> None:
        """Delete the temporary file (idempotent)."""
        self.path.unlink(missing_ok=True)

    async def aclose(self) -> None:
        """Async spelling of `cleanup` (unlinking does not block long enough to need a thread)."""
        self.cleanup()

    def __enter__(self) -> UploadedFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()

    async def __aenter__(self) -> UploadedFile:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


def _safe_filename(raw: str | None) -> str | None:
    """The client's file name reduced to a printable base name, or None."""
    if not raw:
        return None
    name = PureWindowsPath(PurePosixPath(raw).name).name
    name = "".join(ch for ch in name if ch.isprintable())[:MAX_FILENAME_CHARS]
    return name or None


def _new_temp_file(directory: Path | None) -> tuple[IO[bytes], Path]:
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lifetime spans the whole upload
        mode="wb", prefix=TEMP_PREFIX, suffix=".upload", dir=directory, delete=False
    )
    return handle, Path(handle.name)


async def _close_iterator(chunks: AsyncIterator[bytes]) -> None:
    """Close an async generator we stopped reading early, so its producer is released."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # the producer's own cleanup failing must not mask our error
            logger.debug("closing the upload stream failed", exc_info=True)


class _FilePartWriter:
    """python-multipart callbacks: write the `file` part to `sink`, count bytes, enforce the limit."""

    def __init__(self, sink: IO[bytes], max_bytes: int) -> None:
        self.sink = sink
        self.max_bytes = max_bytes
        self.size = 0
        self.seen_file = False
        self.file_complete = False
        self.filename: str | None = None
        self.content_type: str | None = None
        self._writing = False
        self._headers: dict[str, str] = {}
        self._field = b""
        self._value = b""

    def on_part_begin(self) -> None:
        self._headers = {}
        self._writing = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1")
        self._field = self._value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition"))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name != FILE_FIELD or self.seen_file:
            return  # other fields (and a second `file` part) are parsed and dropped
        self.seen_file = True
        self._writing = True
        raw_name = params.get(b"filename*") or params.get(b"filename")
        self.filename = _safe_filename(raw_name.decode("utf-8", "replace") if raw_name else None)
        self.content_type = self._headers.get("content-type")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._writing:
            return
        self.size += end - start
        if self.size > self.max_bytes:
            raise VideoTooLarge(f"the upload is larger than the limit of {self.max_bytes} bytes")
        self.sink.write(data[start:end])

    def on_part_end(self) -> None:
        if self._writing:
            self._writing = False
            self.file_complete = True


async def receive_upload(
    chunks: AsyncIterator[bytes], content_type: str, *, max_bytes: int, directory: Path | None = None
) -> UploadedFile:
    """Stream a multipart/form-data body into a temporary file; returns the `file` part.

    chunks: the request body; content_type: the request's Content-Type header (with the boundary);
    max_bytes: the largest accepted file part; directory: where the temporary file goes (default: the
    system temp dir). Raises `InvalidParameter` (not multipart, malformed, no complete `file` part)
    or `VideoTooLarge` (the file part passed `max_bytes`: raised at once, the rest is not read). The
    temporary file never outlives an exception.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    media_type, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise InvalidParameter("the request body must be multipart/form-data with a `file` field")

    sink, path = _new_temp_file(directory)
    writer = _FilePartWriter(sink, max_bytes)
    body_limit = max_bytes + MULTIPART_OVERHEAD_BYTES
    body_bytes = 0
    finished_reading = False
    try:
        try:
            parser = MultipartParser(
                boundary,
                callbacks={
                    "on_part_begin": writer.on_part_begin,
                    "on_part_data": writer.on_part_data,
                    "on_part_end": writer.on_part_end,
                    "on_header_field": writer.on_header_field,
                    "on_header_value": writer.on_header_value,
                    "on_header_end": writer.on_header_end,
                    "on_headers_finished": writer.on_headers_finished,
                },
            )
            async for chunk in chunks:
                body_bytes += len(chunk)
                if body_bytes > body_limit:
                    raise VideoTooLarge(f"the request body is larger than the limit of {body_limit} bytes")
                parser.write(chunk)
            finished_reading = True
            parser.finalize()
        except FormParserError as error:
            raise InvalidParameter(f"malformed multipart body: {error}") from error
        if not writer.seen_file:
            raise InvalidParameter("the multipart body has no `file` field")
        if not writer.file_complete:
            raise InvalidParameter("the multipart body ended before the `file` field was complete")
        sink.close()
        logger.debug("received upload %r: %d bytes -> %s", writer.filename, writer.size, path)
        return UploadedFile(path, writer.filename, writer.size, writer.content_type)
    except BaseException:
        sink.close()
        path.unlink(missing_ok=True)
        if not finished_reading:
            await _close_iterator(chunks)
        raise


async def save_stream_to_file(
    chunks: AsyncIterator[bytes],
    max_bytes: int,
    *,
    directory: Path | None = None,
    filename: str | None = None,
    content_type: str | None = None,
) -> UploadedFile:
    """Stream a raw body (e.g. `application/octet-stream`) into a temporary file.

    Raises `VideoTooLarge` as soon as more than `max_bytes` arrived (the rest is not read); the
    temporary file never outlives an exception.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    sink, path = _new_temp_file(directory)
    size = 0
    finished_reading = False
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise VideoTooLarge(f"the upload is larger than the limit of {max_bytes} bytes")
            sink.write(chunk)
        finished_reading = True
        sink.close()
        return UploadedFile(path, _safe_filename(filename), size, content_type)
    except BaseException:
        sink.close()
        path.unlink(missing_ok=True)
        if not finished_reading:
            await _close_iterator(chunks)
        raise


class TensorBody:
    """An open inference protocol request body, read from `chunks` in two steps.

    `read_header(max_bytes)` returns the JSON header: the first `header_length` bytes (the request's
    `Inference-Header-Content-Length`), or the whole body when that is None. `receive_elements(count,
    size, max_bytes=...)` then streams the binary data, one BYTES input of `count` elements in `size`
    bytes, each element to its own temporary file. Limits are enforced before and while reading
    (`VideoTooLarge`, the rest is not read); a body that does not match its header is
    `InvalidParameter`. No temporary file outlives an exception.
    """

    def __init__(self, chunks: AsyncIterator[bytes], header_length: int | None) -> None:
        if header_length is not None and header_length < 0:
            raise InvalidParameter(f"Inference-Header-Content-Length must be >= 0, got {header_length}")
        self._chunks = chunks
        self._header_length = header_length
        self._rest = b""  # bytes read past the header
        self._finished_reading = False

    async def read_header(self, max_bytes: int) -> bytes:
        wanted = self._header_length
        if wanted is not None and wanted > max_bytes:
            await _close_iterator(self._chunks)
            raise VideoTooLarge(f"the inference header is larger than the limit of {max_bytes} bytes")
        header = bytearray()
        try:
            async for chunk in self._chunks:
                header += chunk
                if wanted is not None and len(header) >= wanted:
                    self._rest = bytes(header[wanted:])
                    return bytes(header[:wanted])
                if len(header) > max_bytes:
                    raise VideoTooLarge(f"the inference header is larger than the limit of {max_bytes} bytes")
        except BaseException:
            await _close_iterator(self._chunks)
            raise
        self._finished_reading = True
        if wanted is not None and len(header) < wanted:
            raise InvalidParameter(f"the body ended after {len(header)} of the header's {wanted} bytes")
        return bytes(header)

    async def receive_elements(
        self, count: int, size: int, *, max_bytes: int, directory: Path | None = None
    ) -> list[UploadedFile]:
        if size > max_bytes:
            await _close_iterator(self._chunks)
            raise VideoTooLarge(f"the videos are larger than the limit of {max_bytes} bytes")
        splitter = BytesSplitter(count, size)
        files: list[UploadedFile] = []
        sink: IO[bytes] | None = None
        try:
            if self._rest:
                sink = self._write(splitter.feed(self._rest), files, sink, directory)
            if not self._finished_reading:
                async for chunk in self._chunks:
                    sink = self._write(splitter.feed(chunk), files, sink, directory)
                self._finished_reading = True
            splitter.finish()
            return files
        except BaseException:
            if sink is not None:
                sink.close()
            for upload in files:
                upload.cleanup()
            if not self._finished_reading:
                await _close_iterator(self._chunks)
            raise

    @staticmethod
    def _write(
        pieces: list[ElementPiece], files: list[UploadedFile], sink: IO[bytes] | None, directory: Path | None
    ) -> IO[bytes] | None:
        """Write pieces to their element's file; returns the file still open (an element in progress)."""
        for piece in pieces:
            if sink is None:
                sink, path = _new_temp_file(directory)
                files.append(UploadedFile(path, None, 0))
            sink.write(piece.data)
            files[-1].size += len(piece.data)
            if piece.last:
                sink.close()
                sink = None
        return sink
