"""Our client against ``vtremoted --no-extensions``: a server that answers exactly as the
reference daemon does (22-byte HELLO_ACK, no capabilities, lock-step decode).

This is the path a user takes with the Swift daemon: no extension may be switched on, the
decoder must fall back to lock-step without waiting out a timeout per B-frame, and nothing
may be lost at the end of either session.
"""

from __future__ import annotations

import socket
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from media import decode_video, make_h264_mp4, plane_arrays, testsrc_frames
from vtremote.client import RemoteDecoder, RemoteEncoder
from vtremote.wire import Hello, serialize_bytes

W, H = 320, 180

# VTR1.md Appendix A: HELLO_ACK, status OK, as the reference daemon sends it.
REFERENCE_HELLO_ACK = bytes.fromhex(
    "56545231000100020000001600000000000200046832363400046865766300040001"
)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, f"closed after {len(out)} of {n} bytes"
        out += chunk
    return out


def test_hello_ack_is_the_reference_22_bytes(start_server) -> None:
    srv = start_server("--engine", "x264", "--no-extensions")
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(serialize_bytes(Hello("", "h264", "ffmpeg-vtremote", "8.0.git")))
        assert _recv_exactly(sock, len(REFERENCE_HELLO_ACK)) == REFERENCE_HELLO_ACK


def test_encoder_uses_no_extension_and_loses_no_packet(start_server) -> None:
    srv = start_server("--engine", "x264", "--no-extensions")
    n = 30
    packets: list[av.Packet] = []
    with RemoteEncoder(
        srv.addr,
        "h264",
        width=W,
        height=H,
        time_base=Fraction(1, 30),
        framerate=30,
        bitrate=300_000,
        gop=10,
        max_b_frames=2,
    ) as enc:
        assert not enc.extensions and not enc.keepalive and enc.server_name == ""
        assert not any(key.startswith("ext_") for key, _ in enc.options)
        for frame in testsrc_frames(n, W, H, "nv12"):
            packets += enc.encode(frame)
        packets += enc.flush()
    assert sorted(p.pts for p in packets) == list(range(n))
    assert [i for i, p in enumerate(packets) if p.is_keyframe] == [0, 10, 20]
    dts = [p.dts for p in packets]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False))


def test_a_window_smaller_than_the_b_frames_delay_still_gets_every_packet(start_server) -> None:
    """inflight=1 with 2 B-frames against a server that cannot be told the window: it sees the
    client stop before the first packet and encodes again with a delay that fits
    (server/window.py), so the encoder neither waits out its timeout nor loses a frame."""
    srv = start_server("--engine", "x264", "--no-extensions")
    n = 30
    packets: list[av.Packet] = []
    with RemoteEncoder(
        srv.addr,
        "h264",
        width=W,
        height=H,
        time_base=Fraction(1, 30),
        framerate=30,
        bitrate=300_000,
        gop=10,
        max_b_frames=2,
        inflight=1,
        timeout=2.0,
    ) as enc:
        for frame in testsrc_frames(n, W, H, "nv12"):
            packets += enc.encode(frame)
        packets += enc.flush()
    assert sorted(p.pts for p in packets) == list(range(n))
    dts = [p.dts for p in packets]
    assert all(a < b for a, b in zip(dts, dts[1:], strict=False))
    assert [i for i, p in enumerate(sorted(packets, key=lambda p: p.pts)) if p.is_keyframe] == [
        0,
        10,
        20,
    ]
    assert "encoding again from the first frame" in srv.stderr_text()


def test_decoder_falls_back_to_lock_step_and_keeps_every_frame(
    start_server, tmp_path: Path
) -> None:
    """B-frames give the server's decoder a reorder delay: the first PACKETs yield no FRAME.
    Lock-step must still return every frame, in order, with the local decoder's pixels."""
    srv = start_server("--engine", "x264", "--no-extensions")
    path = make_h264_mp4(tmp_path / "in.mp4", 24, W, H, bframes=2)
    frames: list[av.VideoFrame] = []
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        with RemoteDecoder.from_stream(srv.addr, stream, compression="zstd") as dec:
            assert not dec.pipelined
            for packet in src.demux(stream):
                if packet.size:
                    frames += dec.decode(packet)
            frames += dec.flush()
            assert dec.stats.max_inflight == 1
    local = decode_video(path, "nv12")
    assert [f.pts for f in frames] == [f.pts for f in local]
    for got, want in zip(frames, local, strict=True):
        for a, b in zip(plane_arrays(got), plane_arrays(want), strict=True):
            assert np.array_equal(a, b)
