"""A53 closed captions (FRAME side data) -> SEI NAL units in the encoded packet.

The reference client sends ``AV_FRAME_DATA_A53_CC`` side data as type 1 and
``a53_cc=1``; the reference server kept the wrong type and never wrote the
captions (VTR1.md §5.1, §13.16). PyAV cannot attach side data to a frame for
the encoder, so the session writes the SEI itself, the way FFmpeg's
``ff_alloc_a53_sei`` lays it out (ATSC A/53 ``GA94`` user data registered by
ITU-T T.35), and inserts it before the first slice of the access unit.
"""

from __future__ import annotations

from vtremote.wire.annexb import START_CODE, iter_annexb, nal_type

#: itu_t_t35 country code (USA), provider code (ATSC), user identifier, cc_data type.
_GA94_HEADER = bytes([0xB5, 0x00, 0x31]) + b"GA94" + bytes([0x03])
_SEI_USER_DATA_REGISTERED = 4
_MAX_CC_PER_SEI = 31  # cc_count is 5 bits


def _escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes (00 00 0x -> 00 00 03 0x for x <= 3)."""
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _sei_size(n: int) -> bytes:
    return b"\xff" * (n // 255) + bytes([n % 255])


def a53_sei_nals(codec: str, cc_data: bytes) -> list[bytes]:
    """SEI NAL units (without start code) carrying ``cc_data`` (3-byte cc triples)."""
    header = b"\x06" if codec == "h264" else bytes([39 << 1, 0x01])  # prefix SEI for HEVC
    usable = len(cc_data) - len(cc_data) % 3
    nals = []
    for start in range(0, usable, 3 * _MAX_CC_PER_SEI):
        chunk = cc_data[start : start + 3 * _MAX_CC_PER_SEI]
        payload = _GA94_HEADER + bytes([0x40 | (len(chunk) // 3), 0x00]) + chunk + b"\xff"
        rbsp = bytes([_SEI_USER_DATA_REGISTERED]) + _sei_size(len(payload)) + payload + b"\x80"
        nals.append(header + _escape(rbsp))
    return nals


def _is_vcl(codec: str, t: int) -> bool:
    return 1 <= t <= 5 if codec == "h264" else t < 32


def insert_captions(codec: str, annexb: bytes, cc_data: bytes) -> bytes:
    """``annexb`` with A53 caption SEI inserted before its first slice (4-byte start codes)."""
    seis = a53_sei_nals(codec, cc_data)
    if not seis:
        return annexb
    out = bytearray()
    inserted = False
    for nal in iter_annexb(annexb):
        if not inserted and _is_vcl(codec, nal_type(codec, nal)):
            for sei in seis:
                out += START_CODE + sei
            inserted = True
        out += START_CODE
        out += nal
    if not inserted:
        for sei in seis:
            out += START_CODE + sei
    return bytes(out)
