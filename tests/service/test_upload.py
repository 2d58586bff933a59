"""Streaming upload reception: multipart parsing, byte limit enforced while reading, no temp files left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from fstcn.core.errors import InvalidParameter, VideoTooLarge
from fstcn.service.upload import TEMP_PREFIX, TensorBody, UploadedFile, receive_upload, save_stream_to_file
from fstcn.service.v2_codec import encode_bytes

BOUNDARY = "fstcn-test-boundary-1234"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def multipart_body(parts: Iterable[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart/form-data body from (field name, filename or None, content) parts."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: video/mp4\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


class CountingStream:
    """An async byte stream in fixed-size chunks that counts how many chunks were consumed."""

    def __init__(self, body: bytes, chunk_size: int = 1000) -> None:
        self.chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
        self.consumed = 0
        self.closed = False

    async def _generate(self) -> AsyncIterator[bytes]:
        try:
            for chunk in self.chunks:
                self.consumed += 1
                yield chunk
        finally:
            self.closed = True

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._generate()


def leftovers(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{TEMP_PREFIX}*"))


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_normal_upload_writes_the_file_part(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40 + b"\r\n--not-the-boundary\r\n"
    body = multipart_body([("note", None, b"hello"), ("file", "../../etc/clip.mp4", payload)])
    stream = CountingStream(body, chunk_size=97)  # odd size: boundaries split across chunks
    upload = run(receive_upload(aiter(stream), CONTENT_TYPE, max_bytes=len(payload), directory=tmp_path))
    with upload:
        assert upload.path.read_bytes() == payload
        assert upload.size == len(payload)
        assert upload.filename == "clip.mp4"  # base name only: never usable as a path
        assert upload.content_type == "video/mp4"
        assert upload.path.parent == tmp_path
    assert not upload.path.exists()
    assert leftovers(tmp_path) == []


def test_oversize_upload_aborts_early_and_removes_the_file(tmp_path: Path) -> None:
    payload = b"x" * 100_000
    stream = CountingStream(multipart_body([("file", "big.mp4", payload)]), chunk_size=1000)
    with pytest.raises(VideoTooLarge):
        run(receive_upload(aiter(stream), CONTENT_TYPE, max_bytes=5_000, directory=tmp_path))
    # The limit is crossed in chunk 6 (5 kB of payload after ~150 bytes of headers): reading stops there.
    assert stream.consumed <= 7 < len(stream.chunks)
    assert stream.closed
    assert leftovers(tmp_path) == []


def test_exactly_max_bytes_is_accepted(tmp_path: Path) -> None:
    payload = b"y" * 5_000
    stream = CountingStream(multipart_body([("file", "ok.mp4", payload)]))
    with run(receive_upload(aiter(stream), CONTENT_TYPE, max_bytes=5_000, directory=tmp_path)) as upload:
        assert upload.size == 5_000
    assert leftovers(tmp_path) == []


def test_huge_non_file_fields_are_cut_too(tmp_path: Path) -> None:
    stream = CountingStream(multipart_body([("junk", None, b"z" * 200_000), ("file", "a.mp4", b"v")]))
    with pytest.raises(VideoTooLarge):
        run(receive_upload(aiter(stream), CONTENT_TYPE, max_bytes=1_000, directory=tmp_path))
    assert stream.consumed < len(stream.chunks)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (multipart_body([("video", "a.mp4", b"data")]), CONTENT_TYPE),  # wrong field name
        (multipart_body([("note", None, b"text")]), CONTENT_TYPE),  # no file at all
        (b"raw video bytes", "application/octet-stream"),  # not multipart
        (b"raw video bytes", "multipart/form-data"),  # no boundary
        (multipart_body([("file", "a.mp4", b"data" * 100)])[:300], CONTENT_TYPE),  # body cut short
        (b"garbage without any boundary line\r\n" * 5, CONTENT_TYPE),  # malformed
    ],
    ids=["wrong-field", "no-file", "not-multipart", "no-boundary", "truncated", "malformed"],
)
def test_bad_bodies_are_invalid_parameter(tmp_path: Path, body: bytes, content_type: str) -> None:
    with pytest.raises(InvalidParameter):
        run(receive_upload(aiter(CountingStream(body)), content_type, max_bytes=10_000, directory=tmp_path))
    assert leftovers(tmp_path) == []


def test_cancellation_mid_upload_removes_the_file(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=file; filename=a.mp4\r\n\r\n".encode()
        yield b"partial video bytes"
        started.set()
        await asyncio.sleep(60)
        yield b"never"

    async def scenario() -> None:
        task = asyncio.create_task(
            receive_upload(slow_body(), CONTENT_TYPE, max_bytes=10**6, directory=tmp_path)
        )
        await started.wait()
        await asyncio.sleep(0)
        assert len(leftovers(tmp_path)) == 1  # the partial file exists while the upload runs...
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    assert leftovers(tmp_path) == []  # ...and is gone after the cancellation


def test_producer_error_removes_the_file(tmp_path: Path) -> None:
    async def broken_body() -> AsyncIterator[bytes]:
        yield f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=file\r\n\r\n".encode()
        yield b"some bytes"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        run(receive_upload(broken_body(), CONTENT_TYPE, max_bytes=10**6, directory=tmp_path))
    assert leftovers(tmp_path) == []


def test_async_context_manager_and_idempotent_cleanup(tmp_path: Path) -> None:
    async def scenario() -> UploadedFile:
        stream = CountingStream(multipart_body([("file", None, b"abc")]))
        async with await receive_upload(aiter(stream), CONTENT_TYPE, max_bytes=10, directory=tmp_path) as up:
            assert up.path.read_bytes() == b"abc"
            assert up.filename is None
        return up

    upload = run(scenario())
    assert not upload.path.exists()
    upload.cleanup()  # a second cleanup is harmless


def test_save_stream_to_file(tmp_path: Path) -> None:
    data = b"0123456789" * 500
    upload = run(
        save_stream_to_file(aiter(CountingStream(data)), 5_000, directory=tmp_path, filename="v.mp4")
    )
    with upload:
        assert upload.path.read_bytes() == data and upload.size == 5_000
    stream = CountingStream(data * 10)
    with pytest.raises(VideoTooLarge):
        run(save_stream_to_file(aiter(stream), 5_000, directory=tmp_path))
    assert stream.consumed <= 6 < len(stream.chunks)
    assert leftovers(tmp_path) == []


# ------------------------------------------------- open inference protocol bodies (TensorBody)
TENSOR_HEADER = b'{"inputs": []}'
VIDEOS = [b"first" * 300, b"", b"third" * 500]


def tensor_body(
    chunk_size: int, header: bytes = TENSOR_HEADER, videos: list[bytes] = VIDEOS
) -> CountingStream:
    return CountingStream(header + encode_bytes(videos), chunk_size)


async def receive_tensors(
    stream: CountingStream, directory: Path, *, header_length: int | None = len(TENSOR_HEADER), **limits: int
) -> tuple[bytes, list[UploadedFile]]:
    body = TensorBody(stream.__aiter__(), header_length)
    header = await body.read_header(limits.get("max_header", 1000))
    size = limits.get("size", len(encode_bytes(VIDEOS)))
    files = await body.receive_elements(
        limits.get("count", len(VIDEOS)), size, max_bytes=limits.get("max_bytes", 10**6), directory=directory
    )
    return header, files


@pytest.mark.parametrize("chunk_size", [1, 7, len(TENSOR_HEADER), 1000, 10**6])
def test_tensor_body_header_then_each_element_to_its_own_file(tmp_path: Path, chunk_size: int) -> None:
    header, files = run(receive_tensors(tensor_body(chunk_size), tmp_path))
    assert header == TENSOR_HEADER
    assert [upload.path.read_bytes() for upload in files] == VIDEOS
    assert [upload.size for upload in files] == [len(video) for video in VIDEOS]
    assert len({upload.path for upload in files}) == 3 and all(
        p.parent == tmp_path for p in leftovers(tmp_path)
    )
    for upload in files:
        upload.cleanup()
    assert leftovers(tmp_path) == []


def test_tensor_body_without_a_header_length_is_all_header(tmp_path: Path) -> None:
    body = TensorBody(CountingStream(TENSOR_HEADER, 3).__aiter__(), None)
    assert run(body.read_header(100)) == TENSOR_HEADER


@pytest.mark.parametrize(
    ("limits", "error", "message"),
    [
        ({"header_length": 2000}, VideoTooLarge, "inference header is larger"),
        ({"header_length": None}, VideoTooLarge, "inference header is larger"),
        ({"max_bytes": 1000}, VideoTooLarge, "videos are larger than the limit of 1000 bytes"),
        ({"count": 2}, InvalidParameter, "more than its shape's 2 elements"),
        ({"size": 10}, InvalidParameter, "longer than"),
        ({"size": 10**5}, InvalidParameter, "the body ended after"),
    ],
)
def test_tensor_body_refusals_leave_no_file(
    tmp_path: Path, limits: dict[str, int | None], error: type[Exception], message: str
) -> None:
    stream = tensor_body(100)
    header_length = limits.pop("header_length", len(TENSOR_HEADER))
    with pytest.raises(error, match=message):
        run(receive_tensors(stream, tmp_path, header_length=header_length, **limits))  # type: ignore[arg-type]
    assert leftovers(tmp_path) == []
    assert stream.closed or stream.consumed == 0  # released, or never started


def test_tensor_body_limits_are_enforced_before_reading(tmp_path: Path) -> None:
    stream = tensor_body(100)
    with pytest.raises(VideoTooLarge):
        run(receive_tensors(stream, tmp_path, max_bytes=10))
    assert stream.consumed == 1  # the header's chunk only: the declared size alone was refused


def test_tensor_body_ending_inside_the_header(tmp_path: Path) -> None:
    body = TensorBody(CountingStream(TENSOR_HEADER, 4).__aiter__(), len(TENSOR_HEADER) + 5)
    with pytest.raises(InvalidParameter, match=f"ended after {len(TENSOR_HEADER)} of the header's"):
        run(body.read_header(1000))
