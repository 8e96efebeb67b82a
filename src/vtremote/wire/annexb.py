"""H.264/HEVC bitstream framing: Annex B <-> length-prefixed NAL units, avcC/hvcC <-> Annex B.

VTR1 carries packets as Annex B (start codes) and CONFIGURE_ACK extradata as an
avcC/hvcC record (docs/protocol.md "Bitstreams"). Every function here is total
on arbitrary bytes: malformed input raises :class:`BitstreamError` with what was
wrong, never ``IndexError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from vtremote.errors import BitstreamError
from vtremote.wire.messages import Buffer

START_CODE = b"\x00\x00\x00\x01"

H264_SPS, H264_PPS, H264_SPS_EXT = 7, 8, 13
HEVC_VPS, HEVC_SPS, HEVC_PPS, HEVC_SEI_PREFIX, HEVC_SEI_SUFFIX = 32, 33, 34, 39, 40
H264_IDR = 5
HEVC_IRAP = range(16, 24)

_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


# --- Annex B --------------------------------------------------------------------------------


def iter_annexb(data: Buffer) -> Iterator[memoryview]:
    """NAL units of an Annex B buffer (start codes and trailing zero bytes removed).

    Raises BitstreamError if the buffer is not empty and does not start with a
    start code (after optional zero bytes).
    """
    buf = bytes(data)  # one copy: bytes.find is the fast scanner
    view = memoryview(buf)
    n = len(buf)
    pos = buf.find(b"\x00\x00\x01")
    if pos < 0 or buf[:pos].strip(b"\x00"):
        if buf.strip(b"\x00"):
            raise BitstreamError(f"Annex B data of {n} bytes does not start with a start code")
        return
    start = pos + 3
    while start <= n:
        nxt = buf.find(b"\x00\x00\x01", start)
        end = n if nxt < 0 else nxt
        stop = end
        while stop > start and buf[stop - 1] == 0:
            stop -= 1
        if stop > start:
            yield view[start:stop]
        if nxt < 0:
            break
        start = nxt + 3


def annexb_to_length_prefixed(data: Buffer, length_size: int = 4) -> bytes:
    """Annex B -> NAL units each prefixed by a ``length_size``-byte big-endian length."""
    if length_size not in (1, 2, 4):
        raise BitstreamError(f"NAL length size {length_size} is not 1, 2 or 4")
    out = bytearray()
    limit = 1 << (8 * length_size)
    for nal in iter_annexb(data):
        if len(nal) >= limit:
            raise BitstreamError(
                f"NAL unit of {len(nal)} bytes does not fit a {length_size}-byte length"
            )
        out += len(nal).to_bytes(length_size, "big")
        out += nal
    return bytes(out)


def iter_length_prefixed(data: Buffer, length_size: int = 4) -> Iterator[memoryview]:
    """NAL units of a length-prefixed buffer; an overrunning length is an error."""
    if length_size not in (1, 2, 3, 4):
        raise BitstreamError(f"NAL length size {length_size} is not 1..4")
    view = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
    pos, n = 0, len(view)
    while pos < n:
        if pos + length_size > n:
            raise BitstreamError(f"NAL length at offset {pos} runs past the end ({n} bytes)")
        size = int.from_bytes(view[pos : pos + length_size], "big")
        pos += length_size
        if size > n - pos:
            raise BitstreamError(
                f"NAL unit of {size} bytes at offset {pos} overruns the {n}-byte buffer"
            )
        yield view[pos : pos + size]
        pos += size


def length_prefixed_to_annexb(data: Buffer, length_size: int = 4) -> bytes:
    """Length-prefixed NAL units -> Annex B with 4-byte start codes."""
    out = bytearray()
    for nal in iter_length_prefixed(data, length_size):
        out += START_CODE
        out += nal
    return bytes(out)


def is_annexb(data: Buffer) -> bool:
    head = bytes(memoryview(data)[:4])
    return head.startswith(b"\x00\x00\x01") or head == START_CODE


def nal_type(codec: str, nal: Buffer) -> int:
    if len(nal) == 0:
        raise BitstreamError("empty NAL unit")
    b0 = memoryview(nal)[0]
    return (b0 & 0x1F) if codec == "h264" else (b0 >> 1) & 0x3F


# --- bit reading for the few SPS fields a config record needs ---------------------------------


def unescape_rbsp(nal: Buffer) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    raw = bytes(nal)
    if b"\x00\x00\x03" not in raw:
        return raw
    out = bytearray()
    zeros = 0
    for b in raw:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


class _Bits:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def u(self, n: int) -> int:
        if self._pos + n > len(self._data) * 8:
            raise BitstreamError("parameter set ends early")
        v = 0
        for _ in range(n):
            byte = self._data[self._pos >> 3]
            v = (v << 1) | ((byte >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise BitstreamError("Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + (self.u(zeros) if zeros else 0)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


@dataclass(frozen=True, slots=True)
class H264Sps:
    profile_idc: int
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int = 1
    bit_depth_luma: int = 8
    bit_depth_chroma: int = 8


def _h264_sps_head(nal: Buffer) -> tuple[H264Sps, _Bits]:
    """The fields a config record needs, and the reader positioned after them."""
    rbsp = unescape_rbsp(nal)
    if len(rbsp) < 4:
        raise BitstreamError(f"H.264 SPS of {len(rbsp)} bytes is too short")
    profile, constraints, level = rbsp[1], rbsp[2], rbsp[3]
    b = _Bits(rbsp[4:])
    b.ue()  # seq_parameter_set_id
    if profile not in _HIGH_PROFILES:
        return H264Sps(profile, constraints, level), b
    chroma = b.ue()
    if chroma > 3:
        raise BitstreamError(f"H.264 SPS chroma_format_idc {chroma} is invalid")
    if chroma == 3:
        b.u(1)
    luma = b.ue() + 8
    chroma_depth = b.ue() + 8
    if luma > 14 or chroma_depth > 14:
        raise BitstreamError(f"H.264 SPS bit depth {luma}/{chroma_depth} is invalid")
    return H264Sps(profile, constraints, level, chroma, luma, chroma_depth), b


def parse_h264_sps(nal: Buffer) -> H264Sps:
    rbsp = unescape_rbsp(nal)
    if len(rbsp) >= 4 and rbsp[1] not in _HIGH_PROFILES:
        return H264Sps(rbsp[1], rbsp[2], rbsp[3])  # nothing more to read for these
    return _h264_sps_head(nal)[0]


def h264_sps_size(nal: Buffer) -> tuple[int, int]:
    """The coded picture size (width, height, in samples, before cropping) an H.264 SPS
    declares: what a decoder allocates for it."""
    sps, b = _h264_sps_head(nal)
    if sps.profile_idc in _HIGH_PROFILES:
        b.u(1)  # qpprime_y_zero_transform_bypass_flag
        if b.u(1):  # seq_scaling_matrix_present_flag
            for i in range(12 if sps.chroma_format_idc == 3 else 8):
                if b.u(1):
                    _skip_scaling_list(b, 16 if i < 6 else 64)
    b.ue()  # log2_max_frame_num_minus4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        b.u(1)
        b.se(), b.se()
        cycle = b.ue()
        if cycle > 255:
            raise BitstreamError(f"H.264 SPS num_ref_frames_in_pic_order_cnt_cycle {cycle} > 255")
        for _ in range(cycle):
            b.se()
    b.ue()  # max_num_ref_frames
    b.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs, height_units = b.ue() + 1, b.ue() + 1
    frame_mbs_only = b.u(1)
    return width_mbs * 16, height_units * 16 * (2 - frame_mbs_only)


def _skip_scaling_list(b: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + b.se()) % 256
        last = nxt or last


@dataclass(frozen=True, slots=True)
class HevcSps:
    ptl: bytes  # general profile space/tier/idc (1), compatibility (4), constraints (6), level (1)
    max_sub_layers: int
    temporal_id_nested: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int
    height: int


def parse_hevc_sps(nal: Buffer) -> HevcSps:
    rbsp = unescape_rbsp(nal)
    if len(rbsp) < 15:
        raise BitstreamError(f"HEVC SPS of {len(rbsp)} bytes is too short")
    b = _Bits(rbsp[2:])
    b.u(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = b.u(3)
    nested = b.u(1)
    ptl = bytes(b.u(8) for _ in range(12))
    sub_profile, sub_level = [], []
    for _ in range(max_sub_layers_minus1):
        sub_profile.append(b.u(1))
        sub_level.append(b.u(1))
    if max_sub_layers_minus1 > 0:
        for _ in range(max_sub_layers_minus1, 8):
            b.u(2)
    for i in range(max_sub_layers_minus1):
        if sub_profile[i]:
            b.u(32), b.u(32), b.u(24)  # 88 bits
        if sub_level[i]:
            b.u(8)
    b.ue()  # sps_seq_parameter_set_id
    chroma = b.ue()
    if chroma > 3:
        raise BitstreamError(f"HEVC SPS chroma_format_idc {chroma} is invalid")
    if chroma == 3:
        b.u(1)
    width, height = b.ue(), b.ue()
    if b.u(1):  # conformance_window_flag
        for _ in range(4):
            b.ue()
    luma, chroma_depth = b.ue() + 8, b.ue() + 8
    if luma > 16 or chroma_depth > 16:
        raise BitstreamError(f"HEVC SPS bit depth {luma}/{chroma_depth} is invalid")
    return HevcSps(
        ptl, max_sub_layers_minus1 + 1, nested, chroma, luma, chroma_depth, width, height
    )


# --- config records -------------------------------------------------------------------------


def strip_atom(data: Buffer, fourcc: bytes) -> bytes:
    """Drop an 8-byte ``size + fourcc`` atom header if present (as the reference does)."""
    raw = bytes(data)
    if len(raw) >= 8 and raw[4:8] == fourcc:
        return raw[8:]
    return raw


@dataclass(frozen=True, slots=True)
class ParameterSets:
    """Parameter-set NAL units of a stream and the NAL length size of its samples."""

    codec: str
    nal_length_size: int
    nals: tuple[bytes, ...]  # VPS/SPS/PPS (and SEI for HEVC) in record order

    def annexb(self) -> bytes:
        return b"".join(START_CODE + n for n in self.nals)


class _Cursor:
    __slots__ = ("_d", "_p", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._d, self._p, self._what = data, 0, what

    def take(self, n: int, name: str) -> bytes:
        if self._p + n > len(self._d):
            raise BitstreamError(
                f"{self._what} truncated at {name} (offset {self._p}, {len(self._d)} bytes)"
            )
        v = self._d[self._p : self._p + n]
        self._p += n
        return v

    def u8(self, name: str) -> int:
        return self.take(1, name)[0]

    def u16(self, name: str) -> int:
        return int.from_bytes(self.take(2, name), "big")


def _nal_length_size(c: _Cursor, record: str) -> int:
    """The record's ``lengthSizeMinusOne`` as a byte count: 1, 2 or 4."""
    length_size = (c.u8("lengthSizeMinusOne") & 3) + 1
    if length_size == 3:
        raise BitstreamError(f"{record} NAL length size 3 is not allowed")
    return length_size


def parse_avcc(data: Buffer) -> ParameterSets:
    raw = strip_atom(data, b"avcC")
    if len(raw) < 7 or raw[0] != 1:
        raise BitstreamError(
            f"not an avcC record ({len(raw)} bytes, version {raw[0] if raw else None})"
        )
    c = _Cursor(raw, "avcC")
    c.take(4, "header")
    length_size = _nal_length_size(c, "avcC")
    nals = []
    for i in range(c.u8("numOfSequenceParameterSets") & 0x1F):
        nals.append(c.take(c.u16(f"SPS {i} length"), f"SPS {i}"))
    for i in range(c.u8("numOfPictureParameterSets")):
        nals.append(c.take(c.u16(f"PPS {i} length"), f"PPS {i}"))
    if any(len(n) == 0 for n in nals):
        raise BitstreamError("avcC holds an empty parameter set")
    return ParameterSets("h264", length_size, tuple(nals))


def parse_hvcc(data: Buffer) -> ParameterSets:
    raw = strip_atom(data, b"hvcC")
    if len(raw) < 23 or raw[0] != 1:
        raise BitstreamError(f"not an hvcC record ({len(raw)} bytes)")
    c = _Cursor(raw, "hvcC")
    c.take(21, "header")
    length_size = _nal_length_size(c, "hvcC")
    nals = []
    for i in range(c.u8("numOfArrays")):
        c.u8(f"array {i} type")
        for j in range(c.u16(f"array {i} count")):
            nal = c.take(c.u16(f"array {i} NAL {j} length"), f"array {i} NAL {j}")
            if not nal:
                raise BitstreamError(f"hvcC array {i} holds an empty NAL unit")
            nals.append(nal)
    return ParameterSets("hevc", length_size, tuple(nals))


def parameter_sets_from_annexb(codec: str, data: Buffer) -> ParameterSets:
    """The parameter sets found in Annex B data (extradata or a keyframe)."""
    wanted = (H264_SPS, H264_PPS) if codec == "h264" else (HEVC_VPS, HEVC_SPS, HEVC_PPS)
    found: dict[int, list[bytes]] = {t: [] for t in wanted}
    extra: list[bytes] = []
    for nal in iter_annexb(data):
        t = nal_type(codec, nal)
        if t in found:
            found[t].append(bytes(nal))
        elif codec == "hevc" and t in (HEVC_SEI_PREFIX,):
            extra.append(bytes(nal))
    missing = [t for t in wanted if not found[t]]
    if missing:
        names = {7: "SPS", 8: "PPS", 32: "VPS", 33: "SPS", 34: "PPS"}
        raise BitstreamError(f"{codec} parameter sets lack {', '.join(names[t] for t in missing)}")
    nals = [n for t in wanted for n in found[t]] + extra
    return ParameterSets(codec, 4, tuple(nals))


def parse_extradata(codec: str, data: Buffer) -> ParameterSets:
    """Container or CONFIGURE extradata in any form (avcC/hvcC, atom or Annex B)."""
    raw = bytes(data)
    if not raw:
        raise BitstreamError("decoder requires extradata (SPS/PPS)")
    if is_annexb(raw):
        return parameter_sets_from_annexb(codec, raw)
    if codec == "h264":
        return parse_avcc(raw)
    return parse_hvcc(raw)


def build_avcc(ps: ParameterSets) -> bytes:
    """avcC record (ISO/IEC 14496-15) with 4-byte NAL lengths from SPS/PPS NAL units."""
    sps = [n for n in ps.nals if n and n[0] & 0x1F == H264_SPS]
    pps = [n for n in ps.nals if n and n[0] & 0x1F == H264_PPS]
    if not sps or not pps:
        raise BitstreamError("avcC needs at least one SPS and one PPS")
    # ISO/IEC 14496-15 §5.3.3.1: 5 bits of SPS count, 8 bits of PPS count, u16 lengths.
    if len(sps) > 31 or len(pps) > 255:
        raise BitstreamError(
            f"avcC holds at most 31 SPS and 255 PPS, got {len(sps)} and {len(pps)}"
        )
    _check_nal_sizes(ps.nals, "avcC")
    info = parse_h264_sps(sps[0])
    out = bytearray(
        [1, info.profile_idc, info.constraint_flags, info.level_idc, 0xFF, 0xE0 | len(sps)]
    )
    for n in sps:
        out += len(n).to_bytes(2, "big") + n
    out.append(len(pps))
    for n in pps:
        out += len(n).to_bytes(2, "big") + n
    if info.profile_idc in _HIGH_PROFILES:
        out += bytes(
            [
                0xFC | info.chroma_format_idc,
                0xF8 | (info.bit_depth_luma - 8),
                0xF8 | (info.bit_depth_chroma - 8),
                0,
            ]
        )
    return bytes(out)


def build_hvcc(ps: ParameterSets) -> bytes:
    """hvcC record (ISO/IEC 14496-15) with 4-byte NAL lengths from VPS/SPS/PPS(/SEI)."""
    arrays: dict[int, list[bytes]] = {}
    for n in ps.nals:
        arrays.setdefault(nal_type("hevc", n), []).append(n)
    for t, name in ((HEVC_VPS, "VPS"), (HEVC_SPS, "SPS"), (HEVC_PPS, "PPS")):
        if t not in arrays:
            raise BitstreamError(f"hvcC needs a {name}")
    if any(len(v) > 0xFFFF for v in arrays.values()):
        raise BitstreamError("hvcC holds at most 65535 NAL units of one type")
    _check_nal_sizes(ps.nals, "hvcC")
    sps = parse_hevc_sps(arrays[HEVC_SPS][0])
    if sps.bit_depth_luma > 15 or sps.bit_depth_chroma > 15:
        # bitDepth*Minus8 are 3-bit fields of the record.
        raise BitstreamError(
            f"hvcC cannot describe bit depth {sps.bit_depth_luma}/{sps.bit_depth_chroma}"
        )
    out = bytearray([1])
    out += sps.ptl[:1] + sps.ptl[1:5] + sps.ptl[5:11] + sps.ptl[11:12]
    out += (0xF000).to_bytes(2, "big")  # min_spatial_segmentation_idc 0
    out.append(0xFC)  # parallelismType unknown
    out.append(0xFC | sps.chroma_format_idc)
    out.append(0xF8 | (sps.bit_depth_luma - 8))
    out.append(0xF8 | (sps.bit_depth_chroma - 8))
    out += b"\x00\x00"  # avgFrameRate
    out.append(((sps.max_sub_layers & 7) << 3) | ((sps.temporal_id_nested & 1) << 2) | 3)
    order = [
        t for t in (HEVC_VPS, HEVC_SPS, HEVC_PPS, HEVC_SEI_PREFIX, HEVC_SEI_SUFFIX) if t in arrays
    ]
    out.append(len(order))
    for t in order:
        out.append(0x80 | t)  # array_completeness = 1
        out += len(arrays[t]).to_bytes(2, "big")
        for n in arrays[t]:
            out += len(n).to_bytes(2, "big") + n
    return bytes(out)


def _check_nal_sizes(nals: tuple[bytes, ...], what: str) -> None:
    for n in nals:
        if len(n) > 0xFFFF:
            raise BitstreamError(
                f"{what} stores NAL lengths in 16 bits; a parameter set has {len(n)} bytes"
            )


def build_config_record(codec: str, annexb_params: Buffer) -> bytes:
    """avcC / hvcC record from Annex B parameter sets (what CONFIGURE_ACK carries)."""
    ps = parameter_sets_from_annexb(codec, annexb_params)
    return build_avcc(ps) if codec == "h264" else build_hvcc(ps)


def config_record_to_annexb(codec: str, record: Buffer) -> bytes:
    """CONFIGURE_ACK extradata -> Annex B parameter sets, as the reference client does.

    Annex B input is returned as is; an empty record gives empty bytes. AV1 has no
    Annex B form: its av1C record (wire/av1.py) is what decoders and muxers take, as is.
    """
    raw = bytes(record)
    if not raw or codec == "av1" or is_annexb(raw):
        return raw
    return parse_extradata(codec, raw).annexb()


def is_keyframe(codec: str, annexb: Buffer) -> bool:
    """True if the access unit holds an IDR (H.264) or IRAP (HEVC) picture."""
    for nal in iter_annexb(annexb):
        t = nal_type(codec, nal)
        if (codec == "h264" and t == H264_IDR) or (codec != "h264" and t in HEVC_IRAP):
            return True
    return False
