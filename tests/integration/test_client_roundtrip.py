"""RemoteEncoder / RemoteDecoder against the real ``vtremoted`` process on loopback."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from decoding import decode_stream
from media import decode_video, make_h264_mp4, make_hevc_mp4, plane_arrays, testsrc_frames
from vtremote.client import RemoteDecoder, RemoteEncoder
from vtremote.errors import AuthError, BusyError, ConfigError, LocalProtocolError
from vtremote.wire import annexb

W, H, N = 320, 180, 24
COMPRESSIONS = ["none", "lz4", "zstd"]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_encode_round_trip_returns_every_packet(server, compression: str) -> None:
    frames = testsrc_frames(N, W, H, "nv12")
    packets: list[av.Packet] = []
    with RemoteEncoder(
        server.addr,
        "h264",
        width=W,
        height=H,
        time_base=Fraction(1, 30),
        framerate=30,
        compression=compression,
        bitrate=400_000,
        gop=12,
        inflight=12,
    ) as enc:
        assert enc.compression.name.lower() == compression
        assert enc.server_name and enc.engine  # our server names itself and its engine
        assert enc.extradata.startswith(b"\x00\x00\x00\x01")  # Annex B, converted from avcC
        assert enc.config_record[:1] == b"\x01"  # the avcC record as sent
        for frame in frames:
            packets += enc.encode(frame)
        assert 0 < len(packets) < N  # packets arrive while frames are still being sent
        packets += enc.flush()
    assert len(packets) == N  # nothing lost at the tail (VTR1.md §10.2)
    assert sorted(p.pts for p in packets) == list(range(N))  # server timestamps = frame pts here
    dts = [p.dts for p in packets]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False))
    assert all(p.dts <= p.pts for p in packets)
    assert all(p.time_base == Fraction(1, 30) for p in packets)
    keys = [i for i, p in enumerate(packets) if p.is_keyframe]
    assert keys == [0, 12]
    assert annexb.is_keyframe("h264", bytes(packets[12]))
    decoded = decode_stream("h264", enc.extradata, packets)
    assert len(decoded) == N and (decoded[0].width, decoded[0].height) == (W, H)
    st = enc.stats
    assert (st.frames, st.packets) == (N, N)
    assert 9 <= st.max_inflight <= 12  # the x264 engine holds up to 8 frames (its delay budget)
    assert st.bytes_sent > 0 and st.bytes_received > sum(p.size for p in packets)


@pytest.mark.parametrize("inflight", [1, 2, 3])
def test_encode_small_window_never_stalls(server, inflight: int) -> None:
    """The window is stated to the server (ext_window), which keeps its encoder's delay
    below it: without that, x264's 8-frame delay left a window of 1..8 waiting for
    the timeout. B-frames asked for are cut to what the window allows, with a warning."""
    frames = testsrc_frames(N, W, H, "nv12")
    packets: list[av.Packet] = []
    with RemoteEncoder(
        server.addr,
        "h264",
        width=W,
        height=H,
        gop=12,
        max_b_frames=2,
        inflight=inflight,
        timeout=2.0,
    ) as enc:
        for frame in frames:
            packets += enc.encode(frame)
        packets += enc.flush()
        assert enc.stats.max_inflight <= inflight
    assert len(packets) == N
    reordered = sum(p.pts != p.dts for p in packets)
    assert (reordered > 0) == (inflight >= 2)  # a window of 2 leaves room for one B-frame
    assert len(decode_stream("h264", enc.extradata, packets)) == N


def test_encode_forced_keyframes_and_frame_conversion(server) -> None:
    frames = testsrc_frames(10, W, H, "yuv420p")  # not a wire format: converted by the client
    with RemoteEncoder(server.addr, "h264", width=W, height=H, gop=100, compression="lz4") as enc:
        packets = []
        for i, frame in enumerate(frames):
            packets += enc.encode(frame, keyframe=i in (0, 6))
        packets += enc.flush()
    packets.sort(key=lambda p: p.pts)
    assert [p.pts for p in packets if p.is_keyframe] == [0, 6]


def test_encode_hevc_p010(server) -> None:
    frames = testsrc_frames(8, W, H, "p010le")
    with RemoteEncoder(
        server.addr, "hevc", width=W, height=H, pix_fmt="p010le", gop=30, compression="zstd"
    ) as enc:
        packets = []
        for frame in frames:
            packets += enc.encode(frame)
        packets += enc.flush()
    assert len(packets) == 8
    decoded = decode_stream("hevc", enc.extradata, packets)
    assert len(decoded) == 8 and decoded[0].format.name == "yuv420p10le"


def test_encoder_refuses_wrong_geometry_and_use_after_flush(server) -> None:
    with RemoteEncoder(server.addr, width=W, height=H) as enc:
        with pytest.raises(
            ConfigError, match="frame is 640x360, the session was configured for 320x180"
        ):
            enc.encode(testsrc_frames(1, 640, 360)[0])
        enc.flush()
        with pytest.raises(ConfigError, match="after flush"):
            enc.encode(testsrc_frames(1, W, H)[0])
    with pytest.raises(LocalProtocolError, match="closed"):
        enc.encode(testsrc_frames(1, W, H)[0])


def _decode_remote(path: Path, **kwargs: object) -> tuple[list[av.VideoFrame], RemoteDecoder]:
    frames: list[av.VideoFrame] = []
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        with RemoteDecoder.from_stream(kwargs.pop("addr"), stream, **kwargs) as dec:  # type: ignore[arg-type]
            for packet in src.demux(stream):
                if packet.size:
                    frames += dec.decode(packet)
            frames += dec.flush()
    return frames, dec


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_decode_pixels_equal_local_decode(server, tmp_path: Path, compression: str) -> None:
    path = make_h264_mp4(tmp_path / "in.mp4", N, W, H, bframes=2)
    frames, dec = _decode_remote(path, addr=server.addr, compression=compression)
    local = decode_video(path, "nv12")
    assert dec.pipelined  # our server offers ext:decode-pipeline
    assert len(frames) == len(local) == N
    with av.open(str(path)) as src:
        pts = [f.pts for f in src.decode(video=0)]
    assert [f.pts for f in frames] == pts  # presentation order, the packets' pts
    for got, want in zip(frames, local, strict=True):
        assert got.format.name == "nv12" and (got.width, got.height) == (W, H)
        for a, b in zip(plane_arrays(got), plane_arrays(want), strict=True):
            np.testing.assert_array_equal(a, b)
    assert dec.stats.frames == N and dec.stats.packets == N


def test_decode_lock_step_matches_pipelined(server, tmp_path: Path) -> None:
    path = make_h264_mp4(tmp_path / "in.mp4", N, W, H, bframes=2)
    piped, dec_p = _decode_remote(path, addr=server.addr, inflight=8)
    locked, dec_l = _decode_remote(path, addr=server.addr, pipeline=False)
    assert dec_p.pipelined and not dec_l.pipelined
    assert "ext_decode_pipeline" in dict(dec_p.options) and "ext_decode_pipeline" not in dict(
        dec_l.options
    )
    assert dec_l.stats.max_inflight == 1 < dec_p.stats.max_inflight
    assert len(piped) == len(locked) == N
    for a, b in zip(piped, locked, strict=True):
        assert a.pts == b.pts
        for x, y in zip(plane_arrays(a), plane_arrays(b), strict=True):
            np.testing.assert_array_equal(x, y)


def test_decode_hevc_10bit_gives_p010(server, tmp_path: Path) -> None:
    path = make_hevc_mp4(tmp_path / "in10.mp4", 8, W, H, ten_bit=True)
    frames, dec = _decode_remote(path, addr=server.addr, compression="lz4")
    assert dec.pix_fmt.name == "P010"
    assert len(frames) == 8 and all(f.format.name == "p010le" for f in frames)
    local = decode_video(path, "p010le")
    for got, want in zip(frames, local, strict=True):
        for a, b in zip(plane_arrays(got), plane_arrays(want), strict=True):
            np.testing.assert_array_equal(a, b)


def test_keepalive_keeps_an_idle_session(start_server) -> None:
    srv = start_server("--engine", "x264", "--idle-timeout", "1")
    frames = testsrc_frames(4, W, H)
    with RemoteEncoder(srv.addr, width=W, height=H) as enc:
        assert enc.keepalive  # the server announced ext:keepalive
        packets = enc.encode(frames[0])
        time.sleep(2.5)  # silent for longer than the server's idle timeout
        for frame in frames[1:]:
            packets += enc.encode(frame)
        packets += enc.flush()
    assert len(packets) == 4


def test_busy_and_auth_refusals(start_server) -> None:
    srv = start_server("--engine", "x264", "--max-sessions", "1", "--token", "s3cret")
    with pytest.raises(AuthError, match=rf"authentication failed.*\({srv.host}:{srv.port}\)"):
        RemoteEncoder(srv.addr, width=W, height=H, token="wrong")
    with RemoteEncoder(srv.addr, width=W, height=H, token="s3cret") as holder:
        with pytest.raises(BusyError, match=r"server busy: 1 of 1 sessions in use"):
            RemoteEncoder(srv.addr, width=W, height=H, token="s3cret")
        holder.flush()


def test_ipv6_loopback(start_server) -> None:
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        srv = start_server("--engine", "x264", "--listen", "[::1]:0")
    except AssertionError as e:
        pytest.skip(f"IPv6 loopback not available here: {e}")
    with RemoteEncoder(f"[::1]:{srv.port}", width=W, height=H, compression="auto") as enc:
        assert enc.server == f"[::1]:{srv.port}"
        assert enc.compression.name == "NONE"  # auto on loopback
        packets = enc.encode(testsrc_frames(1, W, H)[0]) + enc.flush()
    assert len(packets) == 1


def test_encoder_given_repeated_pts_still_gets_every_packet(server) -> None:
    """Frames whose pts do not increase make the server keep dts increasing past them
    (dts > pts for some packets, server/timestamps.py): the caller's doing, not the server's
    fault, so the client's check on dts <= pts lets them through."""
    frames = testsrc_frames(12, W, H, "nv12")
    for i, frame in enumerate(frames):
        frame.pts = max(0, i - 1)  # 0, 0, 1, 2, ...
    packets: list[av.Packet] = []
    with RemoteEncoder(
        server.addr, "h264", width=W, height=H, time_base=Fraction(1, 30), framerate=30
    ) as enc:
        for frame in frames:
            packets += enc.encode(frame)
        packets += enc.flush()
    assert len(packets) == len(frames)
    assert any(p.dts > p.pts for p in packets)  # the case the exemption is for
    dts = [p.dts for p in packets]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False))
