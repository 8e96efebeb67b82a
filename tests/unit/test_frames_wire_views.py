"""frames.wire_views: the planes a FRAME carries, converted with as few copies as possible."""

from __future__ import annotations

import av
import numpy as np
import pytest

from vtremote import frames
from vtremote.wire.constants import PixelFormat


def _random_frame(width: int, height: int, fmt: str, seed: int) -> av.VideoFrame:
    rng = np.random.default_rng(seed)
    frame = av.VideoFrame(width, height, fmt)
    for plane in frame.planes:
        buf = np.frombuffer(memoryview(plane), dtype=np.uint8)
        buf[:] = rng.integers(0, 256, buf.size, dtype=np.uint8)
    return frame


def _rows(stride: int, rows: int, data: memoryview, row_bytes: int) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8, count=stride * rows).reshape(rows, stride)[
        :, :row_bytes
    ]


@pytest.mark.parametrize(("width", "height"), [(64, 48), (65, 33), (1, 1), (320, 181)])
def test_yuv420p_to_nv12_equals_swscale(width: int, height: int) -> None:
    frame = _random_frame(width, height, "yuv420p", width * 1000 + height)
    want = frame.reformat(format="nv12")
    views, scratch = frames.wire_views(frame, PixelFormat.NV12)
    assert scratch is not None
    (ys, yr, yd), (cs, cr, cd) = views
    assert (yr, cr) == (height, (height + 1) // 2)
    # Luma is the frame's own buffer, not a copy.
    assert np.shares_memory(
        np.frombuffer(yd, dtype=np.uint8),
        np.frombuffer(memoryview(frame.planes[0]), dtype=np.uint8),
    )
    wy, wc = want.planes
    assert np.array_equal(
        _rows(ys, yr, yd, width), _rows(wy.line_size, height, memoryview(wy), width)
    )
    cw = 2 * ((width + 1) // 2)
    assert np.array_equal(_rows(cs, cr, cd, cw), _rows(wc.line_size, cr, memoryview(wc), cw))


def test_scratch_is_reused_and_nv12_is_not_copied() -> None:
    a = _random_frame(64, 48, "yuv420p", 1)
    b = _random_frame(64, 48, "yuv420p", 2)
    _, scratch = frames.wire_views(a, PixelFormat.NV12)
    views, again = frames.wire_views(b, PixelFormat.NV12, scratch)
    assert again is scratch
    nv12 = a.reformat(format="nv12")
    views, none = frames.wire_views(nv12, PixelFormat.NV12)
    assert none is None
    assert np.shares_memory(
        np.frombuffer(views[1][2], dtype=np.uint8),
        np.frombuffer(memoryview(nv12.planes[1]), dtype=np.uint8),
    )


def test_other_formats_are_converted() -> None:
    frame = _random_frame(32, 16, "yuv420p10le", 3)
    views, _ = frames.wire_views(frame, PixelFormat.P010)
    want = frame.reformat(format="p010le")
    assert bytes(views[0][2]) == bytes(memoryview(want.planes[0]))[: len(views[0][2])]
