"""AV1 codec configuration records (sans-IO): the av1C an AV1 CONFIGURE_ACK carries.

AV1 is an extension codec (wire/extensions.py). Its packets are OBUs in the
low-overhead format (AV1 spec §5), which is what encoders emit and decoders and
muxers take, so no conversion like H.264's Annex B is needed. CONFIGURE_ACK's
extradata is the ``AV1CodecConfigurationRecord`` of AV1-ISOBMFF §2.3 (av1C): four
bytes of profile, level, tier, bit depth and chroma layout, then the sequence
header OBU. The fields are read from the sequence header (AV1 spec §5.5) as far
as the first operating point's level and tier; bit depth and chroma come from the
caller, which knows the pixel format it encoded.
"""

from __future__ import annotations

from vtremote.errors import BitstreamError

OBU_SEQUENCE_HEADER = 1
#: av1C byte 0: marker (1) and version (1).
AV1C_MARKER_VERSION = 0x81


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise BitstreamError("AV1 sequence header ends early")
            value = (value << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos + i >= len(data):
            break
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise BitstreamError("AV1 OBU size is not a valid leb128")


def sequence_header_obu(obus: bytes) -> bytes:
    """The first sequence header OBU (header included) in low-overhead OBUs."""
    pos = 0
    while pos < len(obus):
        start = pos
        header = obus[pos]
        obu_type = (header >> 3) & 0xF
        pos += 2 if header & 0x04 else 1  # extension byte
        if not header & 0x02:
            raise BitstreamError("AV1 OBU without obu_has_size_field in extradata")
        size, pos = _leb128(obus, pos)
        if pos + size > len(obus):
            raise BitstreamError(f"AV1 OBU of {size} bytes overruns {len(obus)} bytes")
        if obu_type == OBU_SEQUENCE_HEADER:
            return obus[start : pos + size]
        pos += size
    raise BitstreamError("no AV1 sequence header OBU in the encoder's extradata")


def _level_and_tier(payload: bytes) -> tuple[int, int, int]:
    """(seq_profile, seq_level_idx[0], seq_tier[0]) of a sequence header payload."""
    bits = _Bits(payload)
    profile = bits.read(3)
    bits.read(1)  # still_picture
    if bits.read(1):  # reduced_still_picture_header
        return profile, bits.read(5), 0
    if bits.read(1):  # timing_info_present_flag: not written by the encoders we open
        raise BitstreamError("AV1 sequence header with timing info is not supported")
    bits.read(1)  # initial_display_delay_present_flag (its fields follow the level)
    bits.read(5)  # operating_points_cnt_minus_1
    bits.read(12)  # operating_point_idc[0]
    level = bits.read(5)
    tier = bits.read(1) if level > 7 else 0
    return profile, level, tier


def build_av1c(obus: bytes, *, ten_bit: bool) -> bytes:
    """av1C for 4:2:0 video from the encoder's OBUs (its extradata)."""
    seq = sequence_header_obu(obus)
    header_len = 2 if seq[0] & 0x04 else 1
    _, payload_at = _leb128(seq, header_len)
    profile, level, tier = _level_and_tier(seq[payload_at:])
    # tier, high_bitdepth, twelve_bit 0, monochrome 0, subsampling_x 1, subsampling_y 1,
    # chroma_sample_position 0 (unknown).
    layout = (tier << 7) | (int(ten_bit) << 6) | (1 << 3) | (1 << 2)
    return bytes([AV1C_MARKER_VERSION, (profile << 5) | level, layout, 0]) + seq


def av1c_bit_depth(record: bytes) -> int:
    """Bit depth an av1C record declares (8 when it is too short to say)."""
    if len(record) < 3 or record[0] != AV1C_MARKER_VERSION:
        return 8
    if record[2] & 0x40:
        return 12 if record[2] & 0x20 else 10
    return 8
