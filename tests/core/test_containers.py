"""Container allow-list and protocol lock-down: what may reach FFmpeg, and that nothing else is opened.

The canary tests build files that make FFmpeg open another file (HLS playlist, ffconcat script,
QuickTime external data reference) aimed at a `FifoCanary`. Each has a positive control: a plain,
unlocked `av.open` of the same file DOES open the canary, so the attack is real and the detector works;
the locked-down path must refuse the file and leave the canary unopened.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

import fstcn.core.video.containers as containers_module
from fstcn.core.errors import InvalidVideo, UnsupportedMedia
from fstcn.core.video.containers import (
    ALLOWED_FORMAT_NAMES,
    ISOBMFF,
    MAX_STREAMS,
    ContainerType,
    NestedOpenGuard,
    decoder_options,
    open_container,
    open_locked,
    sniff_container,
)
from fstcn.core.video.decode import decode_video, probe_video
from tests.service.hostile_media import (
    FifoCanary,
    ffconcat_script,
    hls_playlist,
    png_bytes,
    with_external_data_reference,
)
from tests.videos import render_frame

# --- sniffing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41", "mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ", "mp4"),
        (b"\x00\x00\x00\x08wide\x00\x00\x10\x00mdat", "mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", "matroska"),
        (b"RIFF\x10\x00\x00\x00AVI LIST", "avi"),
        (
            bytes([0x47]) + b"\x00" * 187 + bytes([0x47]) + b"\x00" * 187 + bytes([0x47]) + b"\x00" * 50,
            "mpegts",
        ),
        ((b"\x00\x00\x00\x00" + bytes([0x47]) + b"\x00" * 187) * 3, "mpegts"),  # M2TS, 192-byte packets
        (b"FLV\x01\x05\x00\x00\x00\x09", "flv"),
        (b"OggS\x00\x02\x00\x00", "ogg"),
    ],
)
def test_sniff_accepts_allowed_containers(head: bytes, expected: str) -> None:
    assert sniff_container(head).name == expected


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"", "empty"),
        (b"#EXTM3U\n#EXTINF:2,\nfile:///etc/passwd\n", "HLS playlist"),
        (b"\xef\xbb\xbf  #extm3u\n", "HLS playlist"),
        (b"ffconcat version 1.0\nfile /etc/passwd\n", "ffconcat"),
        (b"v=0\no=- 0 0 IN IP4 127.0.0.1\n", "SDP"),
        (b'<?xml version="1.0"?><MPD>', "XML"),
        (b"hello, this is not a video\n", "text"),
        (png_bytes(), "PNG"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        (b"GIF89a\x01\x00", "GIF"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "RIFF"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1", "HEIF/AVIF"),
        (b"ID3\x03\x00\x00\x00", "MP3"),
        (b"\x00\x00\x01\xba\x44\x00", "program stream"),
        (bytes(range(7, 255)) * 4, "not a recognised"),
    ],
)
def test_sniff_refuses_everything_else(head: bytes, reason: str) -> None:
    with pytest.raises(UnsupportedMedia, match=reason):
        sniff_container(head)


def ts_packets(size: int, count: int, *, prefix: int = 0, tail: int = 0) -> bytes:
    """`count` MPEG-TS packets of `size` bytes (0x47 sync byte after `prefix` bytes), then `tail` bytes."""
    packet = b"\x00" * prefix + b"\x47" + b"\x00" * (size - prefix - 1)
    return packet * count + b"\x00" * tail


@pytest.mark.parametrize("box", [b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"])
def test_sniff_accepts_every_first_box_of_a_quicktime_file(box: bytes) -> None:
    assert sniff_container(b"\x00\x00\x00\x10" + box + b"isom\x00\x00\x00\x00").name == "mp4"


@pytest.mark.parametrize(
    "brand", [b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"]
)
def test_sniff_refuses_every_still_image_brand(brand: bytes) -> None:
    with pytest.raises(UnsupportedMedia, match="HEIF/AVIF"):
        sniff_container(b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00mif1")


@pytest.mark.parametrize(
    ("head", "is_ts"),
    [
        (ts_packets(188, 2), True),  # two packets are enough
        (ts_packets(188, 1, tail=100), False),  # one packet is not
        (ts_packets(204, 3), True),  # with Reed-Solomon bytes
        (ts_packets(192, 3, prefix=4), True),  # M2TS: a 4-byte timestamp before each packet
        (ts_packets(192, 3), True),
        (ts_packets(188, 4) + b"\x00" * 188 + ts_packets(188, 1), False),  # the 5th packet is checked
        (ts_packets(188, 5) + b"\x00" * 188, True),  # a 6th is not
    ],
)
def test_sniff_mpegts_needs_repeated_sync_bytes(head: bytes, is_ts: bool) -> None:
    if is_ts:
        assert sniff_container(head).name == "mpegts"
    else:
        with pytest.raises(UnsupportedMedia):
            sniff_container(head)


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"GIF87a\x01\x00\x01\x00", "GIF"),
        (b"BM\x36\x00\x00\x00\x00\x00", "BMP"),
        (b"II*\x00\x08\x00\x00\x00", "TIFF"),
        (b"MM\x00*\x00\x00\x00\x08", "TIFF"),
        (b"\x00\x00\x01\x00\x01\x00\x10\x10", "icon"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
        (b"\xff\x0a\xfa\x7f", "JPEG XL"),
        (b"%PDF-1.7\n", "PDF"),
        (b"PK\x03\x04\x14\x00", "ZIP"),
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"fLaC\x00\x00\x00\x22", "FLAC"),
        (b"#!AMR\n", "AMR"),
        (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9", "ASF/WMV"),
        (b"<MPD xmlns=", "DASH"),
        (b"[playlist]\nFile1=", "PLS"),
        (b"#EXTINF:10,\nsegment.ts\n", "M3U"),
        (b"\xff\xd8\xff\xdb", "JPEG image"),
    ],
)
def test_sniff_names_what_a_refused_file_is(head: bytes, named: str) -> None:
    with pytest.raises(UnsupportedMedia, match=f"not a video: .*{re.escape(named)}"):
        sniff_container(head)


def test_sniff_needs_a_box_header_and_brand_before_trusting_a_box_name() -> None:
    assert sniff_container(b"\x00\x00\x00\x0cftypisom").name == "mp4"  # 12 bytes: enough
    with pytest.raises(UnsupportedMedia):
        sniff_container(b"\x00\x00\x00\x0bftypiso")  # 11 bytes: no whole brand to check


@pytest.mark.parametrize("name", ["a.mp4", "a.mov", "a.mkv", "a.webm", "a.avi", "a.ts"])
def test_real_containers_open_with_their_demuxer(video_factory: Callable[..., Path], name: str) -> None:
    path = video_factory(name, seconds=0.4, width=64, height=48)
    with open_container(path) as opened:
        assert opened.container.format.name in ALLOWED_FORMAT_NAMES
        assert opened.container.streams.video[0].codec_context.width == 64
        assert opened.guard.attempts == []


def test_extension_is_ignored_content_decides(tmp_path: Path, video_factory: Callable[..., Path]) -> None:
    lying = tmp_path / "actually-matroska.mp4"
    lying.write_bytes(video_factory("b.mkv", seconds=0.4, width=64, height=48).read_bytes())
    with open_container(lying) as opened:
        assert opened.kind.name == "matroska"


# --- canaries -------------------------------------------------------------------------------------


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[FifoCanary]:
    watcher = FifoCanary(tmp_path / "canary.ts")
    yield watcher
    watcher.release()


def unlocked_open(path: Path, **kwargs: Any) -> None:
    """What a naive service does: let FFmpeg probe and follow references (positive control)."""
    try:
        with av.open(str(path), **kwargs) as container:
            for stream in container.streams:
                for _ in container.demux(stream):
                    pass
    except (av.FFmpegError, OSError):
        pass  # the canary holds no real media; what matters is whether it was opened


def locked_pipeline(path: Path) -> None:
    """Everything the service does with an upload: probe, then decode."""
    probe_video(path)
    decode_video(path, resize_short=32)


def hostile_files(directory: Path, canary: Path) -> dict[str, Path]:
    files = {
        "playlist.m3u8": hls_playlist(canary.name),
        "playlist-disguised.mp4": hls_playlist(str(canary)),
        "playlist-url.m3u8": hls_playlist(f"file://{canary}"),
        "script.ffconcat": ffconcat_script(canary.name),
        "script-disguised.mp4": ffconcat_script(str(canary)),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return {name: directory / name for name in files}


@pytest.mark.parametrize(
    "name",
    [
        "playlist.m3u8",
        "playlist-disguised.mp4",
        "playlist-url.m3u8",
        "script.ffconcat",
        "script-disguised.mp4",
    ],
)
def test_playlists_and_scripts_are_refused_and_read_nothing(
    tmp_path: Path, canary: FifoCanary, name: str
) -> None:
    path = hostile_files(tmp_path, canary.path)[name]
    with pytest.raises(UnsupportedMedia):
        locked_pipeline(path)
    assert not canary.release(), "the locked-down decoder opened the canary"


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("playlist.m3u8", {}),
        ("playlist-disguised.mp4", {"format": "hls"}),
        ("script.ffconcat", {}),
        ("script-disguised.mp4", {"format": "concat", "options": {"safe": "0"}}),
    ],
)
def test_positive_control_unlocked_ffmpeg_opens_the_canary(
    tmp_path: Path, canary: FifoCanary, name: str, kwargs: dict[str, Any]
) -> None:
    unlocked_open(hostile_files(tmp_path, canary.path)[name], **kwargs)
    assert canary.release(), "the attack file did not make FFmpeg open the canary: the test proves nothing"


@pytest.mark.parametrize(
    ("name", "demuxer"),
    [("playlist.m3u8", "hls"), ("playlist-disguised.mp4", "hls"), ("script.ffconcat", "concat")],
)
def test_lockdown_holds_even_if_a_dangerous_demuxer_were_forced(
    tmp_path: Path, canary: FifoCanary, name: str, demuxer: str
) -> None:
    """Defence in depth: bypass sniffing and force the demuxer; the nested open is still refused."""
    path = hostile_files(tmp_path, canary.path)[name]
    guard = NestedOpenGuard()
    with open(path, "rb") as file, pytest.raises((UnsupportedMedia, InvalidVideo)):
        open_locked(file, ContainerType(demuxer, demuxer), guard).close()
    assert not canary.release()


@pytest.fixture
def external_reference_movie(tmp_path: Path, video_factory: Callable[..., Path], canary: FifoCanary) -> Path:
    movie = video_factory("dref-base.mov", seconds=0.5, width=64, height=48).read_bytes()
    path = tmp_path / "external.mov"
    path.write_bytes(with_external_data_reference(movie, canary.path.name))
    return path


def test_external_data_reference_is_refused_and_reads_nothing(
    external_reference_movie: Path, canary: FifoCanary
) -> None:
    with pytest.raises((UnsupportedMedia, InvalidVideo)):
        locked_pipeline(external_reference_movie)
    assert not canary.release(), "the locked-down decoder followed the data reference"


def test_positive_control_external_data_reference_is_followed_when_enabled(
    external_reference_movie: Path, canary: FifoCanary
) -> None:
    unlocked_open(external_reference_movie, container_options={"enable_drefs": "1"})
    assert canary.release()


# --- the lock-down, one layer at a time -----------------------------------------------------------
#
# `open_locked` stacks several defences, and each one hides the others: with the guard in place a
# protocol whitelist has nothing left to refuse, and so on. So each test below takes every other layer
# away (`loosen` edits the arguments `open_locked` hands to `av.open`) and shows that the remaining one
# alone still holds; its positive control takes that layer away too and sees the attack succeed.

Layer = str  # "io_open" | "format" (keyword arguments of av.open) or a key of container_options


@pytest.fixture
def loosen(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """loosen(*layers): from now on `av.open` runs without those layers of `open_locked`."""

    def apply(*layers: Layer) -> None:
        real_open = av.open

        def loosened_open(*args: Any, **kwargs: Any) -> Any:
            for layer in layers:
                kwargs.pop(layer, None)
            kwargs["container_options"] = {
                key: value for key, value in kwargs["container_options"].items() if key not in layers
            }
            return real_open(*args, **kwargs)

        monkeypatch.setattr(av, "open", loosened_open)

    return apply


def open_forced(path: Path, kind: ContainerType) -> NestedOpenGuard:
    """Open `path` through `open_locked` as `kind`; returns the guard (raises what open_locked raises)."""
    guard = NestedOpenGuard()
    with open(path, "rb") as file:
        open_locked(file, kind, guard).close()
    return guard


HLS = ContainerType("hls", "hls")
CONCAT = ContainerType("concat", "concat")


def test_the_guard_alone_refuses_and_records_a_nested_open(
    tmp_path: Path, canary: FifoCanary, loosen: Callable[..., None]
) -> None:
    """No protocol whitelist: FFmpeg's own opener would read the canary, but the open goes to the guard.

    HLS only: the concat demuxer's inner context opens its files without calling the guard (it does
    not inherit PyAV's callback), so for concat the protocol whitelist below is the layer that holds,
    and sniffing refuses ffconcat scripts before either is reached.
    """
    loosen("protocol_whitelist")
    path = hostile_files(tmp_path, canary.path)["playlist.m3u8"]
    guard = NestedOpenGuard()
    with open(path, "rb") as file, pytest.raises(UnsupportedMedia):
        open_locked(file, HLS, guard).close()
    assert guard.attempts == [str(canary.path)]
    assert not canary.release()


@pytest.mark.parametrize("kind", [HLS, CONCAT], ids=["hls", "concat"])
def test_the_protocol_whitelist_alone_keeps_ffmpeg_from_opening_anything(
    tmp_path: Path, canary: FifoCanary, loosen: Callable[..., None], kind: ContainerType
) -> None:
    """No guard: FFmpeg opens nested resources itself, and the whitelist names no protocol it may use."""
    loosen("io_open")
    path = hostile_files(tmp_path, canary.path)["playlist.m3u8" if kind is HLS else "script.ffconcat"]
    with pytest.raises(InvalidVideo):
        open_forced(path, kind)
    assert not canary.release(), "FFmpeg opened the canary although no protocol is whitelisted"


@pytest.mark.parametrize("kind", [HLS, CONCAT], ids=["hls", "concat"])
def test_positive_control_without_guard_and_protocol_whitelist_the_canary_is_opened(
    tmp_path: Path, canary: FifoCanary, loosen: Callable[..., None], kind: ContainerType
) -> None:
    loosen("io_open", "protocol_whitelist")
    path = hostile_files(tmp_path, canary.path)["playlist.m3u8" if kind is HLS else "script.ffconcat"]
    with pytest.raises(InvalidVideo):
        open_forced(path, kind)
    assert canary.release(), "loosening did not reach FFmpeg: the two tests above prove nothing"


@pytest.fixture
def nested_segment(tmp_path: Path, video_factory: Callable[..., Path]) -> dict[str, Path]:
    """A playlist and a script whose one entry is a real MPEG-TS video beside them."""
    segment = tmp_path / "segment.ts"
    segment.write_bytes(video_factory("segment.ts", seconds=0.4, width=64, height=48).read_bytes())
    (tmp_path / "segment.m3u8").write_bytes(hls_playlist(segment.name))
    (tmp_path / "segment.ffconcat").write_bytes(ffconcat_script(segment.name))
    return {"hls": tmp_path / "segment.m3u8", "concat": tmp_path / "segment.ffconcat"}


@pytest.mark.parametrize("kind", [HLS, CONCAT], ids=["hls", "concat"])
def test_the_format_whitelist_alone_refuses_a_nested_demuxer(
    nested_segment: dict[str, Path], loosen: Callable[..., None], kind: ContainerType
) -> None:
    """No guard, every protocol: the nested file is read, but its demuxer (mpegts) is not the one allowed."""
    loosen("io_open", "protocol_whitelist")
    with pytest.raises(InvalidVideo):
        open_forced(nested_segment[kind.name], kind)


@pytest.mark.parametrize("kind", [HLS, CONCAT], ids=["hls", "concat"])
def test_positive_control_without_any_whitelist_the_nested_video_is_played(
    nested_segment: dict[str, Path], loosen: Callable[..., None], kind: ContainerType
) -> None:
    loosen("io_open", "protocol_whitelist", "format_whitelist")
    assert opened_as(nested_segment[kind.name], kind)[1] == 1


def opened_as(path: Path, kind: ContainerType) -> tuple[str, int]:
    """(demuxer name, video streams) of `path` opened through `open_locked` as `kind`."""
    with open(path, "rb") as file:
        container = open_locked(file, kind, NestedOpenGuard())
    try:
        return container.format.name, len(container.streams.video)
    finally:
        container.close()


@pytest.fixture
def matroska_file(video_factory: Callable[..., Path]) -> Path:
    return video_factory("probe.mkv", seconds=0.4, width=64, height=48)


@pytest.mark.parametrize(
    "loosened",
    [
        # Demuxer not forced: FFmpeg probes Matroska, which the ISO-BMFF kind's whitelist does not name.
        "format",
        # No format whitelist: the forced QuickTime demuxer reads the Matroska bytes and fails.
        "format_whitelist",
    ],
)
def test_the_forced_demuxer_and_the_format_whitelist_each_alone_keep_ffmpeg_from_probing(
    matroska_file: Path, loosen: Callable[..., None], loosened: Layer
) -> None:
    loosen(loosened)
    with pytest.raises(InvalidVideo):
        open_forced(matroska_file, ISOBMFF)


def test_positive_control_unforced_and_unlisted_ffmpeg_probes_another_demuxer(
    matroska_file: Path, loosen: Callable[..., None]
) -> None:
    loosen("format", "format_whitelist")
    assert opened_as(matroska_file, ISOBMFF)[0].startswith("matroska")


def external_reference(
    tmp_path: Path, video_factory: Callable[..., Path], canary: FifoCanary, *, levels: int
) -> Path:
    """A movie whose data reference names the canary: relative to the movie (levels=1) or absolute only."""
    movie = video_factory("dref-base.mov", seconds=0.5, width=64, height=48).read_bytes()
    target = canary.path.name if levels else str(canary.path).lstrip("/")
    path = tmp_path / f"external-{levels}.mov"
    path.write_bytes(with_external_data_reference(movie, target, levels=levels))
    return path


@pytest.fixture
def reference_movie(
    tmp_path: Path, video_factory: Callable[..., Path], canary: FifoCanary
) -> Callable[[int], Path]:
    """reference_movie(levels): `external_reference` to this test's canary."""
    return lambda levels: external_reference(tmp_path, video_factory, canary, levels=levels)


DREFS_ON = {**ISOBMFF.options, "enable_drefs": "1"}


@pytest.mark.parametrize(
    ("levels", "options"),
    [
        # enable_drefs=0: not even a reference beside the movie is asked for.
        (1, ISOBMFF.options),
        # use_absolute_path=0 holds alone: with drefs on, an absolute-only reference is still not asked for.
        (0, DREFS_ON),
    ],
    ids=["enable_drefs", "use_absolute_path"],
)
def test_each_reference_option_alone_keeps_the_demuxer_from_asking(
    reference_movie: Callable[[int], Path], canary: FifoCanary, levels: int, options: dict[str, str]
) -> None:
    path = reference_movie(levels)
    guard = open_forced(path, replace(ISOBMFF, options=options))
    assert guard.attempts == []
    assert not canary.release()


@pytest.mark.parametrize(
    ("levels", "options"),
    [(1, DREFS_ON), (0, {"enable_drefs": "1", "use_absolute_path": "1"})],
    ids=["drefs-enabled", "absolute-paths-allowed"],
)
def test_positive_control_once_allowed_the_demuxer_asks_for_the_reference(
    reference_movie: Callable[[int], Path], canary: FifoCanary, levels: int, options: dict[str, str]
) -> None:
    path = reference_movie(levels)
    with pytest.raises(UnsupportedMedia, match="external resources"):
        open_forced(path, replace(ISOBMFF, options=options))
    assert not canary.release()


def many_streams(path: Path, count: int) -> Path:
    """A Matroska file with `count` one-frame 16x16 video streams."""
    with av.open(str(path), mode="w", format="matroska") as container:
        streams = [container.add_stream("mpeg4", rate=25) for _ in range(count)]
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        for stream in streams:
            stream.width = stream.height = 16
            stream.pix_fmt = "yuv420p"
        for stream in streams:
            for packet in [*stream.encode(frame), *stream.encode()]:
                container.mux(packet)
    return path


def test_streams_past_max_streams_are_not_read(tmp_path: Path) -> None:
    with open_container(many_streams(tmp_path / "many.mkv", MAX_STREAMS + 1)) as opened:
        assert len(opened.container.streams) == MAX_STREAMS
    with open_container(many_streams(tmp_path / "enough.mkv", 3)) as opened:
        assert len(opened.container.streams) == 3


def test_metadata_that_is_not_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "latin1-title.mkv"
    with av.open(str(path), mode="w", format="matroska") as container:
        container.metadata["title"] = "TITLE-PLACEHOLDER"
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="rgb24")
        for packet in [*stream.encode(frame.reformat(format="yuv420p")), *stream.encode()]:
            container.mux(packet)
    data = path.read_bytes()
    assert data.count(b"TITLE-PLACEHOLDER") == 1
    path.write_bytes(data.replace(b"TITLE-PLACEHOLDER", b"caf\xe9 au lait \xff\xfe!!"))  # same length
    with open_container(path) as opened:
        assert opened.container.metadata["title"].startswith("caf\ufffd au lait")


def pixel_refusals(path: Path, max_pixels: int | None) -> list[str]:
    """FFmpeg's log lines of decoders refusing a picture over their max_pixels while the file is opened."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs, open_container(path, max_pixels=max_pixels):
            pass
    finally:
        av.logging.set_level(level)
    return [message for _, _, message in logs if "max pixel" in message]


def test_stream_probing_decoders_get_the_pixel_limit(video_factory: Callable[..., Path]) -> None:
    """Opening decodes a first frame to probe the stream: that decoder refuses a frame over the limit
    before allocating it (the per-frame check of `decode_video` would come too late for a huge one)."""
    path = video_factory("pixels.mp4", seconds=0.2, width=640, height=480)
    assert pixel_refusals(path, 10_000)
    assert pixel_refusals(path, None) == []


def test_the_decoder_limit_leaves_room_for_the_coded_size(video_factory: Callable[..., Path]) -> None:
    """h264 codes 176x120 as 176x128: a limit of exactly the displayed size must not refuse it."""
    path = video_factory("coded.mp4", seconds=0.2, width=176, height=120)
    assert pixel_refusals(path, 176 * 120) == []
    assert decoder_options(None) == {}


@pytest.mark.parametrize(("fmt", "codec", "name"), [("flv", "flv", "a.flv"), ("ogg", "libvpx", "a.ogg")])
def test_flv_and_ogg_open_with_their_demuxer(tmp_path: Path, fmt: str, codec: str, name: str) -> None:
    path = tmp_path / name
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(render_frame(index, 64, 48), format="rgb24")
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with open_container(path) as opened:
        assert opened.kind.name == fmt
        assert opened.container.format.name in ALLOWED_FORMAT_NAMES


def test_a_demuxer_off_the_allowed_names_is_refused_after_opening(
    video_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last check: whatever FFmpeg ended up using must still be on the list."""
    path = video_factory("c.mkv", seconds=0.4, width=64, height=48)
    monkeypatch.setattr(containers_module, "ALLOWED_FORMAT_NAMES", frozenset({"mov", "avi"}))
    with pytest.raises(UnsupportedMedia, match="is not allowed"), open_container(path):
        pass
