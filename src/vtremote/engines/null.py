"""The null engine: no codec at all, for measuring the wire path only.

Encode sessions get one tiny placeholder packet per frame (an Annex B start
code, an IDR or non-IDR slice NAL header and three bytes; key every ``gop``
frames or when forced); decode sessions get one picture of the configured size
per packet, the same buffer every time. Nothing it outputs is decodable video.
It is never chosen by ``auto``; ask for it with ``--engine null``.
"""

from __future__ import annotations

from typing import Any

import av

from vtremote.engines.base import Engine, Mode, StreamConfig
from vtremote.engines.options import parse_encode_options
from vtremote.errors import EngineError
from vtremote.frames import AV_FORMAT
from vtremote.wire.annexb import START_CODE

_IDR = {"h264": b"\x65\x88\x84\x00", "hevc": b"\x26\x01\xaf\x00"}
_NON_IDR = {"h264": b"\x41\x9a\x02\x00", "hevc": b"\x02\x01\xd0\x00"}


class NullEngine(Engine):
    """Placeholder packets and frames at wire speed (benchmarks and tests only)."""

    name = "null"
    hardware = False
    description = "no codec: placeholder packets/frames for measuring the wire path (never auto)"

    def __init__(self) -> None:
        super().__init__()
        self._gop = 12
        self._index = 0
        self._frame: av.VideoFrame | None = None
        self._keys: dict[bool, bytes] = {}

    @classmethod
    def _probe(cls, codec: str, mode: Mode) -> None:
        return None  # needs nothing

    def open(self, config: StreamConfig) -> bytes:
        self.config = config
        self.codec_name = "null"
        self.warn(
            "null engine: packets and frames are placeholders, not video; options have no effect"
        )
        if config.mode == "encode":
            settings, _ = parse_encode_options(config.options)
            self._gop = settings.gop if settings.gop > 0 else 12
            self._keys = {
                True: START_CODE + _IDR[config.codec],
                False: START_CODE + _NON_IDR[config.codec],
            }
            return b""
        self.output_pix_fmt = config.pix_fmt
        width = config.width or 16
        height = config.height or 16
        frame = av.VideoFrame(width, height, AV_FORMAT[config.pix_fmt])
        for plane in frame.planes:  # mid grey, once
            memoryview(plane)[:] = b"\x80" * plane.buffer_size
        self._frame = frame
        return b""

    def encode(self, frame: av.VideoFrame | None) -> list[av.Packet[Any]]:
        if frame is None:
            return []
        forced = frame.pict_type == av.video.frame.PictureType.I
        key = forced or self._index % self._gop == 0
        if forced:
            self._index = 0
        self._index += 1
        pkt = av.Packet(self._keys[key])
        pkt.pts = pkt.dts = frame.pts
        pkt.is_keyframe = key
        return [pkt]

    def decode(self, packet: av.Packet[Any] | None) -> list[av.VideoFrame]:
        if packet is None:
            return []
        frame = self._frame
        if frame is None:
            raise EngineError("null decoder is not open")
        frame.pts = packet.pts
        return [frame]
