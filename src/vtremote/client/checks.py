"""What the client checks in the PACKETs a server returns, before anyone uses them.

A muxer fed a packet whose dts is above its pts, or whose dts goes back, fails
with an FFmpeg message that names no server; a packet flagged key that is not
one makes a file that seeks to garbage. So each packet is checked where it
arrives, and a bad one is a :class:`RemoteProtocolError` naming the server and
the fact (docs/security.md). (FRAME planes are checked against the configured
geometry by the wire layer itself: ``wire.connection.check_frame_geometry``.)

Cheap on purpose: a few integer comparisons per message, a 4-byte look at the
start of a packet, and for packets flagged key a scan of the NAL headers up to
the first picture slice (``re`` scans the receive buffer in place: no copy).
"""

from __future__ import annotations

import re

from vtremote.errors import RemoteProtocolError
from vtremote.wire import annexb
from vtremote.wire import messages as m

#: pts/dts of a packet that has none (FFmpeg's AV_NOPTS_VALUE, docs/protocol.md): never compared.
NOPTS = -(1 << 63)
#: A start code and the first byte of the NAL header behind it.
_NAL_START = re.compile(b"\x00\x00\x01(.)", re.DOTALL)
#: How Annex B data begins: a 3- or 4-byte start code.
_ANNEXB_HEAD = re.compile(b"\x00\x00\x00?\x01")
#: AV1 OBU types a temporal unit may begin with (AV1 spec 6.2.2; 0 and 9-14 are reserved).
_AV1_OBU_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 15})


def _starts_like(codec: str, data: m.Buffer) -> str | None:
    """Why ``data`` does not begin as the codec's bitstream format does, or None."""
    view = memoryview(data)
    if codec == "av1":  # low-overhead OBUs (AV1 spec 5.3.1): forbidden bit 0, a known type
        if len(view) and not view[0] & 0x80 and (view[0] >> 3) & 0xF in _AV1_OBU_TYPES:
            return None
        head = bytes(view[:4]).hex(" ")
        return f"that is not an AV1 OBU: it starts {head or 'empty'}"
    if _ANNEXB_HEAD.match(data) is not None:
        return None
    head = bytes(view[:4]).hex(" ")
    return f"that is not Annex B: it starts {head or 'empty'}, not with a 00 00 01 start code"


def _first_picture_nal(codec: str, data: m.Buffer) -> int | None:
    """The NAL type of the first picture slice (VCL NAL) of an Annex B access unit."""
    for match in _NAL_START.finditer(data):
        header = match.group(1)[0]
        if codec == "h264":
            kind = header & 0x1F
            if 1 <= kind <= 5:
                return kind
        else:
            kind = (header >> 1) & 0x3F
            if kind < 32:
                return kind
    return None


class PacketCheck:
    """The invariants of the PACKETs one session receives (VTR1.md §5.2, §14).

    * data is Annex B (AV1: low-overhead OBUs): it starts with a start code (a valid OBU header);
    * ``duration >= 0``; ``dts <= pts`` (``strict_order`` False skips this one: an
      encoder given pts that do not increase gets dts above them, server/timestamps.py);
    * dts strictly increasing from packet to packet;
    * a packet flagged key holds an IDR (H.264) or IRAP (HEVC) picture (AV1's frame headers
      are not parsed).
    """

    def __init__(self, codec: str, server: str) -> None:
        self.codec = codec
        self.server = server
        self.count = 0
        self._last_dts: int | None = None

    def __call__(self, msg: m.Packet, *, strict_order: bool = True) -> None:
        self.count += 1
        what = f"{self.server} sent PACKET {self.count}"
        wrong_format = _starts_like(self.codec, msg.data)
        if wrong_format is not None:
            raise RemoteProtocolError(f"{what} {wrong_format}")
        if msg.duration < 0:
            raise RemoteProtocolError(f"{what} with a negative duration {msg.duration}")
        pts, dts = msg.pts, msg.dts
        if dts != NOPTS:
            if strict_order and pts != NOPTS and dts > pts:
                raise RemoteProtocolError(f"{what} with dts {dts} after its pts {pts}")
            if self._last_dts is not None and dts <= self._last_dts:
                raise RemoteProtocolError(
                    f"{what} with dts {dts}, not after the previous packet's {self._last_dts}"
                )
            self._last_dts = dts
        if msg.keyframe and self.codec != "av1":  # AV1 keyframes: not parsed here
            kind = _first_picture_nal(self.codec, msg.data)
            key = kind == annexb.H264_IDR if self.codec == "h264" else kind in annexb.HEVC_IRAP
            if not key:
                raise RemoteProtocolError(
                    f"{what} flagged as a keyframe whose picture is not one "
                    f"({self.codec} NAL type {kind if kind is not None else 'missing'})"
                )
