"""Decoding what a remote session returned, with FFmpeg (PyAV), the way a player would.

* :func:`decode_stream` - packets in decode order with their extradata; ``strict``
  raises on any bitstream error (``err_detect=explode``, like ``ffmpeg -xerror``);
* :func:`strict_file_frames` - a file's first video stream, packets and frames,
  decoded strictly.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import av


def decode_stream(
    codec: str, extradata: bytes, packets: Iterable[av.Packet], *, strict: bool = False
) -> list[av.VideoFrame]:
    """Decode ``packets`` (decode order, each with its pts and dts) and flush the decoder."""
    ctx = av.CodecContext.create(codec, "r")
    ctx.extradata = extradata
    if strict:  # a broken reference or slice fails the test
        ctx.options = {"err_detect": "explode"}
    frames: list[av.VideoFrame] = []
    for p in packets:
        pkt = av.Packet(bytes(p))
        pkt.pts, pkt.dts = p.pts, p.dts
        frames += ctx.decode(pkt)
    frames += ctx.decode(None)
    return frames


def strict_file_frames(path: Path) -> tuple[list[av.Packet], list[av.VideoFrame]]:
    """Packets and frames of a file's first video stream, decoded with errors raised;
    both carry the stream's time base."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        packets = [p for p in c.demux(stream) if p.size]
        ctx = stream.codec_context
        frames = decode_stream(ctx.name, ctx.extradata, packets, strict=True)
        tb = stream.time_base
    for p in packets:
        p.time_base = tb
    for f in frames:
        f.time_base = tb
    return packets, frames
