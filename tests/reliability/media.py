"""Byte-level surgery on generated media: ISO-BMFF boxes, H.264 SPS sizes, AVI headers, Matroska EBML.

The hostile corpus (`tests/reliability/corpus.py`) starts from small, valid files written with PyAV and
edits their headers to lie: a sequence parameter set that declares 16000x16000, a movie header that
declares ten hours, an AVI header that declares ten million frames, a Matroska segment whose duration is
a day. Each helper works on `bytes` and returns `bytes`, rewriting the sizes of every enclosing box when
an edit changes a length, and raises ValueError when the structure it needs is not there (so a corpus
case can never silently test an unmodified file).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

# --------------------------------------------------------------------------------------- ISO-BMFF
# Boxes whose payload is a sequence of boxes, and how many bytes of fields precede those boxes.
_CHILD_OFFSETS = {
    b"moov": 0,
    b"trak": 0,
    b"mdia": 0,
    b"minf": 0,
    b"stbl": 0,
    b"dinf": 0,
    b"edts": 0,
    b"udta": 0,
    b"stsd": 8,  # version/flags, entry count
    b"avc1": 78,  # visual sample entry fields
}


def iter_boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """Top-level boxes of `data` as (type, payload); 64-bit and to-end sizes handled."""
    out: list[tuple[bytes, bytes]] = []
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
            header = 16
        elif size == 0:
            size = len(data) - offset
        if size < header or offset + size > len(data):
            raise ValueError(f"box {kind!r} at {offset} has a bad size {size}")
        out.append((kind, data[offset + header : offset + size]))
        offset += size
    return out


def make_box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def rewrite_boxes(data: bytes, edit: Callable[[bytes, bytes], bytes | None]) -> bytes:
    """Rebuild `data` box by box; `edit(type, payload)` returns a new payload, or None to keep (and recurse).

    Enclosing sizes are recomputed, so an edit may change a payload's length. Chunk offsets (`stco`) are
    not adjusted: edit files whose `mdat` comes before `moov` (PyAV's default) so they stay valid.
    """
    out = b""
    for kind, payload in iter_boxes(data):
        new = edit(kind, payload)
        if new is None and kind in _CHILD_OFFSETS:
            skip = _CHILD_OFFSETS[kind]
            new = payload[:skip] + rewrite_boxes(payload[skip:], edit)
        out += make_box(kind, payload if new is None else new)
    return out


def find_box(data: bytes, path: list[bytes]) -> bytes:
    """Payload of the first box at `path` (e.g. [b"moov", b"trak", b"tkhd"]); ValueError if absent."""
    for kind, payload in iter_boxes(data):
        if kind == path[0]:
            if len(path) == 1:
                return payload
            skip = _CHILD_OFFSETS.get(kind, 0)
            return find_box(payload[skip:], path[1:])
    raise ValueError(f"no box {path[0]!r}")


def box_span(data: bytes, kind: bytes) -> tuple[int, int]:
    """(start, end) of the payload of the first top-level box `kind` (32-bit sizes only)."""
    offset = 0
    for box_kind, payload in iter_boxes(data):
        if box_kind == kind:
            return offset + 8, offset + 8 + len(payload)
        offset += 8 + len(payload)
    raise ValueError(f"no top-level box {kind!r}")


def without_samples(data: bytes) -> bytes:
    """Empty every sample table (stts, stsc, stsz, stco, stss, ctts) of an ISO-BMFF file: a 0-frame track."""
    emptied: set[bytes] = set()

    def edit(kind: bytes, payload: bytes) -> bytes | None:
        if kind in (b"stts", b"stsc", b"stco", b"stss", b"ctts"):
            emptied.add(kind)
            return payload[:4] + struct.pack(">I", 0)
        if kind == b"stsz":
            emptied.add(kind)
            return payload[:4] + struct.pack(">II", 0, 0)
        return None

    out = rewrite_boxes(data, edit)
    if not {b"stts", b"stsz", b"stco"} <= emptied:
        raise ValueError("sample tables not found")
    return out


def matroska_head(data: bytes) -> bytes:
    """A Matroska file cut just before its first Cluster: headers and tracks, no frames.

    The Segment's size is set to what is left and the SeekHead (which points at Cues past the cut) is
    overwritten with a Void element, so the result is a well-formed file whose video track is empty.
    """
    where = data.find(b"\x1f\x43\xb6\x75")
    if where < 0:
        raise ValueError("no Cluster")
    out = bytearray(data[:where])
    elements = ebml_elements(bytes(out))
    segment = next((e for e in elements if e[0] == 0x18538067), None)
    if segment is None or out[segment[1] - 8] != 0x01:
        raise ValueError("expected a Segment with an 8-byte size")
    _, body, _ = segment
    out[body - 8 : body] = bytes([0x01]) + (len(out) - body).to_bytes(7, "big")
    for element_id, data_offset, size in elements:
        if element_id == 0x114D9B74:  # SeekHead -> Void of the same total length
            start = data_offset - 5  # 4-byte ID + 1-byte size (what the muxer writes for it)
            total = data_offset + size - start
            out[start : start + total] = (
                b"\xec" + bytes([0x01]) + (total - 9).to_bytes(7, "big") + bytes(total - 9)
            )
    return bytes(out)


def with_box_renamed(data: bytes, kind: bytes, new_kind: bytes) -> bytes:
    """Rename every top-level box `kind` (e.g. hide `moov` as `free`); ValueError if there is none."""
    out, found = b"", False
    for box_kind, payload in iter_boxes(data):
        if box_kind == kind:
            box_kind, found = new_kind, True
        out += make_box(box_kind, payload)
    if not found:
        raise ValueError(f"no top-level box {kind!r}")
    return out


def with_movie_duration(data: bytes, seconds: float) -> bytes:
    """Declare `seconds` in mvhd, tkhd, the edit list and mdhd, and stretch the time-to-sample table.

    Only version-0 headers (32-bit fields, what PyAV writes for short files) are handled. The sample
    deltas in `stts` are scaled too, so the per-frame timestamps declare the same duration FFmpeg
    would otherwise recompute from them.
    """
    edits = {"mvhd": False, "mdhd": False, "stts": False}
    timescales: dict[str, int] = {}

    def edit(kind: bytes, payload: bytes) -> bytes | None:
        if kind == b"mvhd":
            if payload[0] != 0:
                raise ValueError("mvhd version 1 not handled")
            (scale,) = struct.unpack(">I", payload[12:16])
            edits["mvhd"] = True
            return payload[:16] + struct.pack(">I", min(round(seconds * scale), 0xFFFFFFFF)) + payload[20:]
        if kind == b"tkhd":
            if payload[0] != 0:
                raise ValueError("tkhd version 1 not handled")
            movie_scale = timescales.get("movie", 1000)
            value = min(round(seconds * movie_scale), 0xFFFFFFFF)
            return payload[:20] + struct.pack(">I", value) + payload[24:]
        if kind == b"mdhd":
            if payload[0] != 0:
                raise ValueError("mdhd version 1 not handled")
            (scale,) = struct.unpack(">I", payload[12:16])
            timescales["media"] = scale
            edits["mdhd"] = True
            return payload[:16] + struct.pack(">I", min(round(seconds * scale), 0xFFFFFFFF)) + payload[20:]
        if kind == b"elst":
            if payload[0] != 0:
                raise ValueError("elst version 1 not handled")
            value = min(round(seconds * timescales["movie"]), 0xFFFFFFFF)
            return payload[:8] + struct.pack(">I", value) + payload[12:]
        if kind == b"stts":
            (count,) = struct.unpack(">I", payload[4:8])
            entries = [struct.unpack(">II", payload[8 + 8 * i : 16 + 8 * i]) for i in range(count)]
            samples = sum(n for n, _ in entries)
            scale = timescales.get("media")
            if scale is None or samples == 0:
                raise ValueError("stts before mdhd, or no samples")
            delta = min(round(seconds * scale / samples), 0xFFFFFFFF)
            edits["stts"] = True
            return payload[:4] + struct.pack(">III", 1, samples, delta)
        return None

    mvhd = find_box(data, [b"moov", b"mvhd"])
    timescales["movie"] = struct.unpack(">I", mvhd[12:16])[0]
    out = rewrite_boxes(data, edit)
    if not all(edits.values()):
        raise ValueError(f"missing boxes: {[k for k, v in edits.items() if not v]}")
    return out


def with_declared_size(data: bytes, width: int, height: int, *, sps: bool) -> bytes:
    """Declare `width` x `height` in tkhd and the avc1 sample entry; with `sps`, in the H.264 SPS too.

    The SPS edit re-encodes pic_width_in_mbs_minus1 / pic_height_in_map_units_minus1 (Exp-Golomb, so
    its length changes) and requires a multiple of 16 and no cropping in the original.
    """
    done = {"tkhd": False, "avc1": False, "avcC": not sps}

    def edit(kind: bytes, payload: bytes) -> bytes | None:
        if kind == b"tkhd":
            done["tkhd"] = True
            return payload[:-8] + struct.pack(">II", width << 16, height << 16)
        if kind == b"avc1":
            done["avc1"] = True
            fields = (
                payload[:24] + struct.pack(">HH", min(width, 0xFFFF), min(height, 0xFFFF)) + payload[28:78]
            )
            return fields + rewrite_boxes(payload[78:], edit)
        if kind == b"avcC" and sps:
            done["avcC"] = True
            return _avcc_with_size(payload, width, height)
        return None

    out = rewrite_boxes(data, edit)
    if not all(done.values()):
        raise ValueError(f"missing boxes: {[k for k, v in done.items() if not v]}")
    return out


def _avcc_with_size(avcc: bytes, width: int, height: int) -> bytes:
    """An avcC record whose (single) SPS declares `width` x `height`."""
    if avcc[5] & 0x1F != 1:
        raise ValueError("expected exactly one SPS in avcC")
    (length,) = struct.unpack(">H", avcc[6:8])
    new_sps = sps_with_size(avcc[8 : 8 + length], width, height)
    return avcc[:6] + struct.pack(">H", len(new_sps)) + new_sps + avcc[8 + length :]


# ------------------------------------------------------------------------------------- H.264 SPS
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


class _Bits:
    """MSB-first bit reader over an RBSP."""

    def __init__(self, data: bytes) -> None:
        self.bits = "".join(f"{byte:08b}" for byte in data)
        self.pos = 0

    def u(self, n: int) -> int:
        value = int(self.bits[self.pos : self.pos + n], 2) if n else 0
        self.pos += n
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bits[self.pos] == "0":
            zeros += 1
            self.pos += 1
        self.pos += 1
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


def _ue_bits(value: int) -> str:
    code = f"{value + 1:b}"
    return "0" * (len(code) - 1) + code


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _escape(rbsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def sps_with_size(sps_nal: bytes, width: int, height: int) -> bytes:
    """Re-encode an H.264 SPS NAL unit (header byte included) to declare `width` x `height` pixels."""
    if width % 16 or height % 16:
        raise ValueError("width and height must be multiples of 16")
    if sps_nal[0] & 0x1F != 7:
        raise ValueError("not an SPS NAL unit")
    bits = _Bits(_unescape(sps_nal[1:]))
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    if profile in _HIGH_PROFILES:
        if bits.ue() == 3:  # chroma_format_idc
            bits.u(1)
        bits.ue()  # bit depths
        bits.ue()
        bits.u(1)
        if bits.u(1):
            raise ValueError("SPS scaling matrices are not handled")
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    start = bits.pos
    bits.ue()
    bits.ue()
    rest_start = bits.pos
    frame_mbs_only = bits.bits[rest_start] == "1"
    if not frame_mbs_only:
        raise ValueError("interlaced SPS not handled")
    stop = bits.bits.rstrip("0")  # the RBSP stop bit is the last 1
    rest = stop[rest_start:-1]
    new_bits = bits.bits[:start] + _ue_bits(width // 16 - 1) + _ue_bits(height // 16 - 1) + rest + "1"
    new_bits += "0" * (-len(new_bits) % 8)
    rbsp = bytes(int(new_bits[i : i + 8], 2) for i in range(0, len(new_bits), 8))
    return sps_nal[:1] + _escape(rbsp)


# ------------------------------------------------------------------------------------------ AVI
def with_avi_header(
    data: bytes, *, total_frames: int | None = None, size: tuple[int, int] | None = None
) -> bytes:
    """Patch the AVI main header, the video stream header and its BITMAPINFOHEADER in place.

    total_frames: avih dwTotalFrames and strh dwLength; size: (width, height) in avih and strf.
    """
    out = bytearray(data)
    avih = data.find(b"avih")
    strh = data.find(b"strh")
    strf = data.find(b"strf", strh)
    if min(avih, strh, strf) < 0 or data[strh + 8 : strh + 12] != b"vids":
        raise ValueError("not an AVI with avih/strh/strf")
    body = avih + 8
    strh_body = strh + 8
    strf_body = strf + 8
    if total_frames is not None:
        struct.pack_into("<I", out, body + 16, total_frames)
        struct.pack_into("<I", out, strh_body + 32, total_frames)
    if size is not None:
        struct.pack_into("<II", out, body + 32, *size)
        struct.pack_into("<ii", out, strf_body + 4, *size)
    return bytes(out)


def without_avi_index(data: bytes) -> bytes:
    """Rename the legacy `idx1` index chunk to `JUNK` (FFmpeg must scan the file instead)."""
    where = data.rfind(b"idx1")
    if where < 0:
        raise ValueError("no idx1 chunk")
    return data[:where] + b"JUNK" + data[where + 4 :]


# ------------------------------------------------------------------------------------- Matroska
_EBML_MASTERS = {0x18538067, 0x1549A966, 0x1654AE6B, 0xAE, 0xE0}  # Segment, Info, Tracks, TrackEntry, Video


def _vint(data: bytes, offset: int, keep_marker: bool) -> tuple[int, int]:
    first = data[offset]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8:
        raise ValueError("bad EBML variable-length integer")
    value = first if keep_marker else first & (0xFF >> length)
    for byte in data[offset + 1 : offset + length]:
        value = (value << 8) | byte
    return value, length


def ebml_elements(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int, int]]:
    """(id, data offset, data size) of every element under the masters we walk (depth-first)."""
    end = len(data) if end is None else end
    found: list[tuple[int, int, int]] = []
    offset = start
    while offset < end:
        element_id, id_len = _vint(data, offset, keep_marker=True)
        size, size_len = _vint(data, offset + id_len, keep_marker=False)
        body = offset + id_len + size_len
        unknown = size == (1 << (7 * size_len)) - 1
        if unknown:
            size = end - body
        found.append((element_id, body, size))
        if element_id in _EBML_MASTERS:
            found.extend(ebml_elements(data, body, min(end, body + size)))
        if element_id == 0x1F43B675:  # Cluster: stop, the headers we edit come before
            break
        offset = body + size
    return found


def with_matroska_duration(data: bytes, seconds: float) -> bytes:
    """Overwrite the segment's Duration (float, in TimestampScale units: ns / 1e6 = ms by default)."""
    for element_id, body, size in ebml_elements(data):
        if element_id == 0x4489:
            out = bytearray(data)
            value = seconds * 1000.0
            if size == 8:
                struct.pack_into(">d", out, body, value)
            elif size == 4:
                struct.pack_into(">f", out, body, value)
            else:
                raise ValueError(f"Duration of {size} bytes")
            return bytes(out)
    raise ValueError("no Duration element")


# ----------------------------------------------------------------------------------------- misc
def corrupt_middle(data: bytes, *, fraction: float = 0.5, length: int = 2048, seed: int = 0) -> bytes:
    """Overwrite `length` bytes at `fraction` of the file with seeded random bytes."""
    import random

    start = int(len(data) * fraction)
    noise = random.Random(seed).randbytes(length)
    return data[:start] + noise + data[start + length :]


def corrupt_ts_payloads(data: bytes, *, fraction: float = 0.5, packets: int = 20, seed: int = 0) -> bytes:
    """Scramble the payloads (not the 4-byte headers) of `packets` 188-byte TS packets mid-file."""
    import random

    rng = random.Random(seed)
    out = bytearray(data)
    first = int(len(data) * fraction) // 188
    for index in range(first, min(first + packets, len(data) // 188)):
        start = index * 188 + 4
        out[start : start + 184] = rng.randbytes(184)
    return bytes(out)
