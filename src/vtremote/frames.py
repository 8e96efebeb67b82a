"""``av.VideoFrame`` <-> VTR1 FRAME planes (NV12 / P010LE).

VTR1.md §5.1: two planes, Y then interleaved CbCr; each plane travels as
``stride`` x ``rows`` bytes. Rules here:

* Sending a frame: the planes are the frame's own buffers (``memoryview`` of the
  ``VideoPlane``; no copy); stride is FFmpeg's linesize (padding included, as the
  reference client sends it); chroma rows are ``ceil(height / 2)``, what FFmpeg
  and CoreVideo allocate (the reference client's floor leaves the last chroma row
  of odd heights uninitialised, VTR1.md §13.19).
* Receiving planes: one copy, row by row when strides differ, into a new
  ``av.VideoFrame`` of the configured size. Never more rows than the frame has
  (the geometry was checked by ``wire.check_frame_geometry`` already); a chroma
  plane sent with floor rows gets its last row repeated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import av

from vtremote.errors import ConfigError, RemoteProtocolError
from vtremote.wire.constants import PixelFormat
from vtremote.wire.messages import Buffer, nbytes

if TYPE_CHECKING:
    import numpy as np

# numpy is imported where a copy needs it, not here: a job whose frames go on the
# wire as they are (NV12 from the source) never loads it, and a command starts sooner.

#: PyAV format names of the wire pixel formats.
AV_FORMAT = {PixelFormat.NV12: "nv12", PixelFormat.P010: "p010le"}
PIXEL_FORMAT = {v: k for k, v in AV_FORMAT.items()}


def pixel_format_of(frame: av.VideoFrame) -> PixelFormat:
    name = frame.format.name
    try:
        return PIXEL_FORMAT[name]
    except KeyError:
        raise ConfigError(f"frame format {name} is not NV12 or P010LE; convert it first") from None


def plane_views(frame: av.VideoFrame) -> list[tuple[int, int, memoryview]]:
    """``(stride, rows, bytes)`` of each plane of an NV12/P010LE frame, without copying.

    Negative linesizes (bottom-up frames) are refused rather than misread.
    """
    pixel_format_of(frame)
    out = []
    for plane in frame.planes:
        stride = plane.line_size
        if stride <= 0:
            raise ConfigError(
                f"frame plane has linesize {stride}; only positive linesizes are supported"
            )
        view = memoryview(plane)
        rows = nbytes(view) // stride
        out.append((stride, rows, view[: stride * rows] if nbytes(view) != stride * rows else view))
    return out


def chroma_rows(height: int) -> int:
    return (height + 1) // 2


def new_frame(width: int, height: int, pix_fmt: PixelFormat | int) -> av.VideoFrame:
    return av.VideoFrame(width, height, AV_FORMAT[PixelFormat(pix_fmt)])


def copy_planes_into(
    frame: av.VideoFrame, planes: list[tuple[int, int, Buffer]], pix_fmt: PixelFormat | int
) -> None:
    """Copy wire planes (stride, rows, uncompressed bytes) into ``frame`` (one copy)."""
    bps = PixelFormat(pix_fmt).bytes_per_sample
    width, height = frame.width, frame.height
    row_bytes = (width * bps, ((width + 1) // 2) * 2 * bps)
    want_rows = (height, chroma_rows(height))
    if len(planes) != 2:
        raise RemoteProtocolError(f"FRAME has {len(planes)} planes, needs 2")
    import numpy as np

    for i, (stride, rows, data) in enumerate(planes):
        dst_plane = frame.planes[i]
        dst_stride = dst_plane.line_size
        n_rows = min(rows, want_rows[i])
        if stride < row_bytes[i] or nbytes(data) < stride * n_rows:
            raise RemoteProtocolError(
                f"plane {i}: {nbytes(data)} bytes at stride {stride} cannot hold {n_rows} rows of "
                f"{row_bytes[i]}"
            )
        dst = np.frombuffer(memoryview(dst_plane), dtype=np.uint8)
        src = np.frombuffer(data, dtype=np.uint8, count=stride * n_rows)
        if stride == dst_stride:
            dst[: stride * n_rows] = src  # one contiguous copy
        else:
            dst2 = dst[: dst_stride * want_rows[i]].reshape(want_rows[i], dst_stride)
            dst2[:n_rows, : row_bytes[i]] = src.reshape(n_rows, stride)[:, : row_bytes[i]]
        if n_rows < want_rows[i]:  # floor-height chroma from a reference peer: repeat the last row
            dst2 = dst[: dst_stride * want_rows[i]].reshape(want_rows[i], dst_stride)
            dst2[n_rows:, : row_bytes[i]] = (
                dst2[n_rows - 1 : n_rows, : row_bytes[i]] if n_rows else 0
            )


def frame_from_planes(
    width: int, height: int, pix_fmt: PixelFormat | int, planes: list[tuple[int, int, Buffer]]
) -> av.VideoFrame:
    """A new ``av.VideoFrame`` holding the given uncompressed wire planes."""
    frame = new_frame(width, height, pix_fmt)
    copy_planes_into(frame, planes, pix_fmt)
    return frame


def wire_views(
    frame: av.VideoFrame, pix_fmt: PixelFormat | int, scratch: np.ndarray | None = None
) -> tuple[list[tuple[int, int, memoryview]], np.ndarray | None]:
    """``frame``'s planes as a FRAME of ``pix_fmt`` carries them, and the scratch buffer used.

    * already NV12/P010LE: :func:`plane_views`, no copy;
    * ``yuv420p`` to NV12 (what decoders and lavfi sources give): luma is the frame's
      own plane, no copy; Cb and Cr are interleaved into ``scratch`` (reused from call
      to call when its size fits): the one copy, of the chroma only. swscale's
      conversion copied the luma too and allocated a new picture per frame.
    * anything else: :func:`to_wire_format` (one copy) and its planes.

    The views into ``scratch`` stay valid until the next call with the same scratch:
    send them before converting the next frame.
    """
    target = PixelFormat(pix_fmt)
    if (
        target is PixelFormat.NV12
        and frame.format.name == "yuv420p"
        and frame.planes[0].line_size > 0
    ):
        y, u, v = frame.planes
        cw, ch = (frame.width + 1) // 2, chroma_rows(frame.height)
        if u.line_size >= cw and v.line_size >= cw:
            import numpy as np

            if scratch is None or scratch.shape != (ch, cw, 2):
                scratch = np.empty((ch, cw, 2), dtype=np.uint8)
            scratch[:, :, 0] = np.frombuffer(
                memoryview(u), dtype=np.uint8, count=u.line_size * ch
            ).reshape(ch, u.line_size)[:, :cw]
            scratch[:, :, 1] = np.frombuffer(
                memoryview(v), dtype=np.uint8, count=v.line_size * ch
            ).reshape(ch, v.line_size)[:, :cw]
            ystride = y.line_size
            luma = memoryview(y)[: ystride * frame.height]
            return [
                (ystride, frame.height, luma),
                (2 * cw, ch, memoryview(scratch.data).cast("B")),
            ], scratch
    return plane_views(to_wire_format(frame, target)), scratch


def to_wire_format(frame: av.VideoFrame, pix_fmt: PixelFormat | int) -> av.VideoFrame:
    """``frame`` converted to NV12/P010LE if it is in another format (a copy then)."""
    name = AV_FORMAT[PixelFormat(pix_fmt)]
    if frame.format.name == name:
        return frame
    return frame.reformat(format=name)
