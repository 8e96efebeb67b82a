"""What sits between the engines and the wire: timestamp mapping, caption SEI,
decoded frames -> FRAME planes, server configuration."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from vtremote.errors import ConfigError
from vtremote.server.config import ServerConfig, log_level_number, parse_listen
from vtremote.server.planes import compact_planes, wire_planes
from vtremote.server.sei import a53_sei_nals, insert_captions
from vtremote.server.timestamps import FrameInfo, TimestampMapper
from vtremote.wire import annexb
from vtremote.wire.compression import decompress_plane
from vtremote.wire.constants import PixelFormat, WireCompression

# --- timestamps ------------------------------------------------------------------------------


def run_mapper(
    client_pts: list[int], engine_out: list[tuple[int, int]], step: Fraction = Fraction(1)
) -> list[tuple[int, int]]:
    m = TimestampMapper(step)
    for pts in client_pts:
        m.add(FrameInfo(pts=pts, duration=0, received=0.0))
    out = []
    for index, dts in engine_out:
        info, mapped = m.take(index, dts)
        out.append((info.pts, mapped))
    assert m.pending == 0
    return out


# x264 with 2 B-frames (b-pyramid): packets in decode order as (pts index, dts index).
X264_B2 = [(0, -2), (3, -1), (1, 0), (2, 1), (6, 2), (4, 3), (5, 4), (7, 5)]


def test_indices_map_back_to_client_timestamps() -> None:
    pts = [1000 + 3003 * i for i in range(8)]
    out = run_mapper(pts, X264_B2, Fraction(3003))
    assert [p for p, _ in out] == [pts[i] for i, _ in X264_B2]
    # dts: the d-th presentation time, extrapolated by one frame per step before the first.
    assert [d for _, d in out] == [1000 - 2 * 3003, 1000 - 3003, *pts[:6]]


def test_first_frame_duration_sets_the_step() -> None:
    m = TimestampMapper(Fraction(1))
    m.add(FrameInfo(pts=0, duration=512, received=0.0))
    m.add(FrameInfo(pts=512, duration=512, received=0.0))
    assert m.take(1, -1)[1] == -512


def test_duplicate_pts_keep_every_packet_and_increasing_dts() -> None:
    out = run_mapper([0, 0, 1, 1, 2], [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)])
    assert [p for p, _ in out] == [0, 0, 1, 1, 2]
    dts = [d for _, d in out]
    assert all(a < b for a, b in zip(dts, dts[1:], strict=False))


def test_backwards_pts_are_counted() -> None:
    m = TimestampMapper(Fraction(1))
    for pts in (10, 5):
        m.add(FrameInfo(pts=pts, duration=0, received=0.0))
    m.take(0, 0)
    _, dts = m.take(1, 1)
    assert dts == 11 and m.violations == 1  # increasing dts wins, the violation is reported


def test_unknown_index_is_an_error() -> None:
    with pytest.raises(KeyError):
        TimestampMapper(Fraction(1)).take(3, 3)


# --- captions --------------------------------------------------------------------------------


def test_sei_escapes_start_code_emulation() -> None:
    cc = bytes([0, 0, 1, 0, 0, 2])
    (nal,) = a53_sei_nals("h264", cc)
    assert nal[0] == 6
    for bad in (b"\x00\x00\x00", b"\x00\x00\x01", b"\x00\x00\x02"):
        assert bad not in nal
    rbsp = annexb.unescape_rbsp(nal[1:])
    # payload type 4, size, then T.35 header, cc_count, em_data, the triples, marker, trailing bits
    assert rbsp == bytes([4, 17, 0xB5, 0, 0x31]) + b"GA94" + bytes([3, 0x42, 0]) + cc + b"\xff\x80"
    (hevc,) = a53_sei_nals("hevc", bytes([0xFC, 0x80, 0x80]))
    assert annexb.nal_type("hevc", hevc) == 39


def test_many_captions_split_into_several_seis() -> None:
    assert len(a53_sei_nals("h264", bytes(3 * 40))) == 2
    assert a53_sei_nals("h264", b"\x01\x02") == []  # no whole cc triple


def test_captions_go_before_the_first_slice() -> None:
    au = (
        b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x01\x65\x88\x84"
    )  # AUD, IDR slice (3-byte start code)
    out = insert_captions("h264", au, bytes([0xFC, 0x94, 0x20]))
    types = [annexb.nal_type("h264", n) for n in annexb.iter_annexb(out)]
    assert types == [9, 6, 5]
    assert out.count(b"\x00\x00\x01") == out.count(b"\x00\x00\x00\x01")


# --- FRAME planes for decode sessions ----------------------------------------------------------


def pattern_frame(width: int, height: int, fmt: str) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, fmt)
    for i, plane in enumerate(frame.planes):
        arr = np.frombuffer(plane, dtype=np.uint8)
        arr[:] = (np.arange(arr.size) * (i + 3)).astype(np.uint8)
    return frame


@pytest.mark.parametrize(
    ("width", "height", "fmt", "pix"),
    [
        (322, 182, "nv12", PixelFormat.NV12),  # FFmpeg pads the linesize to 352
        (320, 181, "nv12", PixelFormat.NV12),  # odd height: ceil(h/2) chroma rows
        (330, 90, "p010le", PixelFormat.P010),
    ],
)
def test_planes_are_compact_with_ceil_chroma_rows(
    width: int, height: int, fmt: str, pix: PixelFormat
) -> None:
    frame = pattern_frame(width, height, fmt)
    bps = pix.bytes_per_sample
    planes = compact_planes(frame, pix)
    chroma_row = ((width + 1) // 2) * 2 * bps
    assert [(s, r) for s, r, _ in planes] == [
        (width * bps, height),
        (chroma_row, (height + 1) // 2),
    ]
    for (stride, rows, data), plane in zip(planes, frame.planes, strict=True):
        src = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:rows, :stride]
        assert np.array_equal(np.frombuffer(data, np.uint8).reshape(rows, stride), src)


def test_planes_zero_copy_when_unpadded() -> None:
    frame = pattern_frame(320, 180, "nv12")
    planes = compact_planes(frame, PixelFormat.NV12)
    assert all(isinstance(d, memoryview) and d.obj is not None for _, _, d in planes)


@pytest.mark.parametrize("compression", list(WireCompression))
def test_wire_planes_convert_scale_and_compress(compression: WireCompression) -> None:
    frame = pattern_frame(640, 360, "yuv420p")
    planes = wire_planes(frame, 320, 180, PixelFormat.NV12, compression, None)
    expected = frame.reformat(width=320, height=180, format="nv12")
    for (stride, rows, data), plane in zip(planes, expected.planes, strict=True):
        raw = decompress_plane(compression, data, stride * rows)
        ref = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:rows, :stride]
        assert np.array_equal(np.frombuffer(raw, np.uint8).reshape(rows, stride), ref)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5555", ("127.0.0.1", 5555)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:80", ("localhost", 80)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text", ["5555", ":5555", "::1:5555", "[::1]5555", "host:port", "host:70000"]
)
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_listen(text)


def test_server_config_validation() -> None:
    cfg = ServerConfig(listen="127.0.0.1:0", engine="software", log_level="2", idle_timeout=1.5)
    assert (cfg.host, cfg.port, cfg.engine_name, cfg.idle_timeout_ms) == (
        "127.0.0.1",
        0,
        "x264",
        1500,
    )
    assert log_level_number("0") == log_level_number("error")
    for bad in (
        {"max_sessions": -1},
        {"engine": "vp9"},
        {"idle_timeout": 0},
        {"log_level": "loud"},
        {"listen": "x"},
        {"drain_timeout": -1},
    ):
        with pytest.raises(ConfigError):
            ServerConfig(**bad)  # type: ignore[arg-type]
