"""Replay the reference FFmpeg client's captured byte streams against ``vtremoted``.

Each captured message is sent as the exact bytes the reference client wrote,
one at a time, and the server's replies are read (VTR1.md §14; the captures
are in ../shared/protocol/vectors, see their README).
"""

from __future__ import annotations

import numpy as np
import pytest

from media import decode_video, plane_arrays, testsrc_frames
from vtr_client import VTRClient, decode_packets, frame_planes
from vtremote.wire import annexb, messages, parse_payload
from vtremote.wire.compression import parse_compression
from vtremote.wire.constants import HEADER_SIZE, MessageType, PixelFormat

TOKEN = "secret_test_token"


def replay_messages(capture) -> list[tuple[bytes, messages.Message]]:  # noqa: ANN001 - conftest Capture
    out = []
    for entry in capture.index:
        raw = capture.data[entry["offset"] : entry["offset"] + HEADER_SIZE + entry["length"]]
        out.append((raw, parse_payload(entry["type"], raw[HEADER_SIZE:])))
    return out


def send_raw(client: VTRClient, raw: bytes, msg: messages.Message) -> None:
    client.conn.send(msg)  # keep the client-side state machine in step
    client.send_raw(
        raw, unchecked=False
    )  # ...but put the reference client's exact bytes on the wire


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("name", ["h264_enc_zstd_token", "h264_enc_lz4"])
def test_replay_encode_capture(start_server, capture_loader, name: str) -> None:
    capture = capture_loader(name)
    srv = (
        start_server("--engine", "x264", "--token", TOKEN)
        if "token" in name
        else start_server("--engine", "x264")
    )
    msgs = replay_messages(capture)
    packets: list[messages.Packet] = []
    with VTRClient(srv.address) as client:
        for raw, msg in msgs:
            send_raw(client, raw, msg)
            if isinstance(msg, messages.Hello):
                ack = client.recv()
                assert isinstance(ack, messages.HelloAck) and ack.status == 0
            elif isinstance(msg, messages.Configure):
                cfg_ack = client.recv()
                assert isinstance(cfg_ack, messages.ConfigureAck), cfg_ack
                assert cfg_ack.status == 0 and cfg_ack.pix_fmt == PixelFormat.NV12
                assert cfg_ack.warnings == ()  # every option the reference client sent is honoured
        while not isinstance(reply := client.recv(), messages.Done):
            assert isinstance(reply, messages.Packet), reply
            packets.append(reply)
        assert client.after_done() == []
    assert len(packets) == 3
    assert sorted(p.pts for p in packets) == [0, 1, 2]
    assert all(p.duration == 1 for p in packets)  # flags=256 (FRAME_DURATION): durations filled
    record = bytes(cfg_ack.extradata)
    annexb.parse_avcc(record)
    decoded = decode_packets("h264", record, packets)
    assert len(decoded) == 3
    # The captured planes are testsrc2 frames 0..2 at 5 fps: the remote encode must look like them.
    source = testsrc_frames(3, 320, 180, "nv12", rate=5)
    for got, want in zip(decoded, source, strict=True):
        luma = plane_arrays(got.reformat(format="nv12"))[0]
        assert psnr(luma, plane_arrays(want)[0]) > 30.0


def test_replay_decode_capture(server, capture_loader, vectors_dir) -> None:
    capture = capture_loader("h264_dec_zstd")
    msgs = replay_messages(capture)
    configure = next(m for _, m in msgs if isinstance(m, messages.Configure))
    compression = parse_compression(configure.option("wire_compression"))
    frames: list[messages.Frame] = []
    with VTRClient(server.address) as client:
        for raw, msg in msgs:
            send_raw(client, raw, msg)
            if isinstance(msg, messages.Hello):
                assert client.recv().status == 0  # type: ignore[union-attr]
            elif isinstance(msg, messages.Configure):
                ack = client.recv()
                assert isinstance(ack, messages.ConfigureAck) and ack.pix_fmt == PixelFormat.NV12
            elif isinstance(msg, messages.Packet):
                replies = client.ping_barrier()  # lock-step: at most one FRAME per PACKET
                assert len(replies) <= 1
                frames += replies  # type: ignore[arg-type]
            elif messages.message_type(msg) == MessageType.FLUSH:
                while not isinstance(reply := client.recv(), messages.Done):
                    assert isinstance(reply, messages.Frame)
                    frames.append(reply)
    expected = decode_video(vectors_dir / "src_h264.mp4", "nv12")
    assert len(frames) == len(expected) == 10
    for got, want in zip(frames, expected, strict=True):
        assert got.pts == want.pts
        assert [(p.stride, p.height) for p in got.planes] == [(320, 180), (320, 90)]
        for plane, ref in zip(frame_planes(got, compression), plane_arrays(want), strict=True):
            assert np.array_equal(np.frombuffer(plane, np.uint8).reshape(ref.shape), ref)


def test_token_capture_refused_without_the_right_token(start_server, capture_loader) -> None:
    srv = start_server("--engine", "x264", "--token", "another-token")
    raw, hello = replay_messages(capture_loader("h264_enc_zstd_token"))[0]
    with VTRClient(srv.address) as client:
        send_raw(client, raw, hello)
        ack = client.recv()
        assert isinstance(ack, messages.HelloAck) and ack.status == 2
        err = client.recv()
        assert isinstance(err, messages.Error) and (err.code, err.message) == (
            1,
            "authentication failed",
        )
        assert client.after_done() == []
