"""Whole sessions through the client library against a running server."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av

from media import testsrc_frames
from vtremote.client import RemoteEncoder


def encode_testsrc(
    addr: str, n: int, width: int, height: int, **options: Any
) -> tuple[RemoteEncoder, list[av.Packet]]:
    """``n`` NV12 testsrc2 frames encoded as H.264 on ``addr`` (time base 1/30), flushed;
    ``options`` go to :class:`RemoteEncoder` as they are. Returns the closed encoder."""
    frames = testsrc_frames(n, width, height, "nv12")
    with RemoteEncoder(
        addr, "h264", width=width, height=height, time_base=Fraction(1, 30), **options
    ) as enc:
        packets = [p for f in frames for p in enc.encode(f)]
        packets += enc.flush()
    return enc, packets
