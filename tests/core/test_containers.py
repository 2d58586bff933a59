"""Container allow-list and protocol lock-down: what may reach FFmpeg, and that nothing else is opened.

The canary tests build files that make FFmpeg open another file (HLS playlist, ffconcat script,
QuickTime external data reference) aimed at a `FifoCanary`. Each has a positive control: a plain,
unlocked `av.open` of the same file DOES open the canary, so the attack is real and the detector works;
the locked-down path must refuse the file and leave the canary unopened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from fstcn.core.errors import InvalidVideo, UnsupportedMedia
from fstcn.core.video.containers import (
    ALLOWED_FORMAT_NAMES,
    ContainerType,
    NestedOpenGuard,
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
