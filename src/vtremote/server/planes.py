"""FRAME planes <-> pictures: what an encode session receives, what a decode session sends.

Received (client -> server, :func:`picture_from_wire`): the planes are decompressed
(the two in parallel) and copied once into the encoder's frame; the FRAME's flag 1
forces an IDR (VTR1.md §5.1).

Sent (decoded frames -> FRAME planes, server -> client), with rules stricter than
the reference's so that any v1 client is safe:

* exactly the configured size and the pixel format CONFIGURE_ACK announced
  (a stream of another size is scaled: the reference client copies as many
  rows as we send into a frame of its own size, VTR1.md §13.4);
* stride = width x bytes per sample (no padding), chroma rows = ceil(h/2)
  (what CoreVideo sends and what FFmpeg allocates, §13.19);
* each plane compressed per ``wire_compression``, the two in parallel.

Copies: the conversion to NV12/P010 (swscale) when the decoder's format
differs, and a row-compacting copy only when FFmpeg padded the linesize.
"""

from __future__ import annotations

from concurrent.futures import Executor

import av
import numpy as np
from av.video.frame import PictureType

from vtremote.engines.base import StreamConfig
from vtremote.frames import AV_FORMAT, chroma_rows, frame_from_planes
from vtremote.wire import messages
from vtremote.wire.compression import compress_plane, decompress_plane
from vtremote.wire.constants import PixelFormat, WireCompression
from vtremote.wire.framing import plane_row_bytes
from vtremote.wire.messages import Buffer, nbytes


def to_output(frame: av.VideoFrame, width: int, height: int, pix_fmt: PixelFormat) -> av.VideoFrame:
    """``frame`` in the session's output format and size (the same object if it already is)."""
    fmt = AV_FORMAT[pix_fmt]
    if frame.format.name == fmt and frame.width == width and frame.height == height:
        return frame
    return frame.reformat(width=width, height=height, format=fmt)


def compact_planes(frame: av.VideoFrame, pix_fmt: PixelFormat) -> list[tuple[int, int, Buffer]]:
    """``(stride, rows, bytes)`` of both planes with stride = row bytes; views when no copy is
    needed."""
    rows_wanted = (frame.height, chroma_rows(frame.height))
    row_bytes = plane_row_bytes(frame.width, pix_fmt)
    out: list[tuple[int, int, Buffer]] = []
    for i, plane in enumerate(frame.planes[:2]):
        line = plane.line_size
        rows, row = rows_wanted[i], row_bytes[i]
        view = memoryview(plane)
        if line == row:
            out.append((row, rows, view[: row * rows]))  # no copy
            continue
        # One copy: drop FFmpeg's linesize padding so the stride is exactly the row.
        src = np.frombuffer(view, dtype=np.uint8, count=line * rows).reshape(rows, line)
        out.append((row, rows, np.ascontiguousarray(src[:, :row]).data.cast("B")))
    return out


def wire_planes(
    frame: av.VideoFrame,
    width: int,
    height: int,
    pix_fmt: PixelFormat,
    compression: WireCompression,
    pool: Executor | None,
) -> list[tuple[int, int, Buffer]]:
    """The FRAME planes for ``frame``: converted, compacted, compressed (in parallel)."""
    frame = to_output(frame, width, height, pix_fmt)
    planes = compact_planes(frame, pix_fmt)
    if compression == WireCompression.NONE:
        return planes
    (s0, r0, d0), (s1, r1, d1) = planes
    if pool is not None and nbytes(d1) >= 64 * 1024:
        fut = pool.submit(compress_plane, compression, d1)
        c0 = compress_plane(compression, d0)
        c1 = fut.result()
    else:
        c0 = compress_plane(compression, d0)
        c1 = compress_plane(compression, d1)
    return [(s0, r0, c0), (s1, r1, c1)]


def picture_from_wire(
    msg: messages.Frame, stream: StreamConfig, compression: WireCompression, pool: Executor
) -> av.VideoFrame:
    """The FRAME's planes, decompressed, as the encoder's picture."""
    # Geometry was checked by the Connection; the expected sizes are bounded.
    p0, p1 = msg.planes
    if compression == WireCompression.NONE:
        d0 = decompress_plane(compression, p0.data, p0.size)
        d1 = decompress_plane(compression, p1.data, p1.size)
    else:  # both planes in parallel (VTR1.md §4)
        fut = pool.submit(decompress_plane, compression, p1.data, p1.size)
        try:
            d0 = decompress_plane(compression, p0.data, p0.size)
        finally:
            d1 = fut.result()
    # The one copy of this hop: wire planes -> the encoder's frame.
    frame = frame_from_planes(
        stream.width,
        stream.height,
        stream.pix_fmt,
        [(p0.stride, p0.height, d0), (p1.stride, p1.height, d1)],
    )
    if msg.flags & 1:
        frame.pict_type = PictureType.I  # forced IDR (VTR1.md §5.1)
    return frame
