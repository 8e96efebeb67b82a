"""Hostile and broken clients against the real ``vtremoted`` (VTR1.md §13).

Every malformed input gets one ERROR with the right code and a message that says
what was wrong, then a clean close, while another session on the same server
keeps encoding; auth and busy get their HELLO_ACK status plus an ERROR.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from media import make_h264_mp4, testsrc_frames, video_packets
from vtr_client import Closed, VTRClient, raw_header
from vtremote.wire import annexb, messages
from vtremote.wire.constants import MessageType, PixelFormat
from vtremote.wire.messages import serialize_bytes

W, H = 320, 180
ENCODE = (("mode", "encode"), ("gop", "10"), ("wire_compression", "2"))


def expect_error(client: VTRClient, code: int, *needles: str) -> messages.Error:
    """Read (skipping an optional HELLO_ACK) until an ERROR; check it; check the close."""
    while True:
        msg = client.recv()
        if not isinstance(msg, messages.HelloAck):
            break
    assert isinstance(msg, messages.Error), msg
    assert msg.code == code, msg
    for needle in needles:
        assert needle in msg.message, (needle, msg.message)
    with pytest.raises(Closed):
        client.recv()
    return msg


class Healthy:
    """An encode session that stays open while a hostile one runs."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.frames = testsrc_frames(20, W, H, "nv12")
        self.client = VTRClient(addr)
        self.client.hello("h264")
        self.client.configure(W, H, PixelFormat.NV12, ENCODE)
        for frame in self.frames[:10]:
            self.client.send(self.client.frame_message(frame))

    def finish(self) -> None:
        packets = self.client.encode(self.frames[10:])
        # The 10 earlier frames' packets arrive first (they were read by encode()).
        assert len(packets) == 20
        assert sorted(p.pts for p in packets) == list(range(20))
        self.client.close()


@pytest.fixture
def healthy(server) -> Iterator[Healthy]:
    h = Healthy(server.address)
    yield h
    h.finish()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def hello_bytes(codec: str = "h264") -> bytes:
    return serialize_bytes(messages.Hello("", codec, "vtr-test", "test"))


def configure_bytes(
    width: int = W,
    height: int = H,
    pix_fmt: int = 1,
    options: tuple[tuple[str, str], ...] = ENCODE,
    extradata: bytes = b"",
) -> bytes:
    return serialize_bytes(
        messages.Configure(width, height, pix_fmt, 1, 30, 30, 1, options, extradata)
    )


# --- malformed bytes before or during the handshake ------------------------------------------

RAW_CASES: dict[str, tuple[bytes, int, tuple[str, ...]]] = {
    "bad-magic": (raw_header(1, 4, magic=0xDEADBEEF) + b"\0" * 4, 4, ("magic=0xdeadbeef",)),
    "bad-version": (raw_header(1, 0, version=2), 4, ("version=2",)),
    "4GiB-hello": (raw_header(1, 0xFFFFFFFF), 4, ("HELLO", "4294967295", "exceeds")),
    "truncated-fields": (raw_header(1, 4) + b"\x00\x32ab", 4, ("HELLO truncated",)),
    "configure-first": (configure_bytes(), 4, ("CONFIGURE",)),
    "frame-first": (raw_header(5, 21) + b"\0" * 21, 4, ("FRAME",)),
    "unknown-type-first": (raw_header(42, 0), 4, ("42",)),
    "ping-in-handshake": (hello_bytes() + serialize_bytes(messages.Ping()), 4, ("PING",)),
    "unknown-codec": (hello_bytes("vp9"), 3, ("unsupported codec 'vp9'",)),
    "wire-compression-3": (
        hello_bytes() + configure_bytes(options=(("mode", "encode"), ("wire_compression", "3"))),
        3,
        ("unsupported wire_compression=3",),
    ),
    "pix-fmt-7": (hello_bytes() + configure_bytes(pix_fmt=7), 3, ("unsupported pix_fmt=7",)),
    "h264-p010": (hello_bytes() + configure_bytes(pix_fmt=2), 3, ("NV12 only",)),
    "zero-size": (hello_bytes() + configure_bytes(width=0), 4, ("0x180",)),
    "odd-size": (hello_bytes() + configure_bytes(width=321, height=181), 3, ("even width",)),
    "garbage-extradata": (
        hello_bytes() + configure_bytes(options=(("mode", "decode"),), extradata=b"\x07garbage"),
        4,
        ("avcC",),
    ),
    "frame-before-configure": (
        hello_bytes() + serialize_bytes(messages.Frame(0, 1, 0, (messages.Plane(W, H, b""),))),
        4,
        ("FRAME",),
    ),
}


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_malformed_input_gets_error_and_close(server, healthy: Healthy, case: str) -> None:
    data, code, needles = RAW_CASES[case]
    before = rss_kib(server.proc.pid)
    with VTRClient(server.address) as client:
        client.send_raw(data)
        expect_error(client, code, *needles)
    # Nothing was allocated for the 4 GiB claim (VTR1.md §13.1), nor for anything else.
    assert rss_kib(server.proc.pid) - before < 64 * 1024
    server.wait_for_log(rf"ERROR {code} to client")


def test_eof_mid_message(server, healthy: Healthy) -> None:
    with VTRClient(server.address) as client:
        client.send_raw(raw_header(1, 40) + b"\0" * 10)
        client.sock.shutdown(socket.SHUT_WR)  # half-close: the ERROR can still come back
        expect_error(client, 4, "closed mid-message")


# --- malformed messages while streaming ------------------------------------------------------


def streaming_client(
    addr: tuple[str, int], options: tuple[tuple[str, str], ...] = ENCODE
) -> VTRClient:
    client = VTRClient(addr)
    client.hello("h264")
    client.configure(W, H, PixelFormat.NV12, options)
    return client


def test_frame_larger_than_configured(server, healthy: Healthy) -> None:
    big = testsrc_frames(1, W, 2 * H, "nv12")[0]
    with streaming_client(server.address, (("mode", "encode"),)) as client:
        client.send_raw(serialize_bytes(client.frame_message(big)))
        expect_error(client, 4, "FRAME plane 0 has 360 rows", "320x180")


@pytest.mark.parametrize("compression", ["1", "2"], ids=["lz4", "zstd"])
def test_bad_compressed_plane(server, healthy: Healthy, compression: str) -> None:
    with streaming_client(
        server.address, (("mode", "encode"), ("wire_compression", compression))
    ) as client:
        planes = (messages.Plane(W, H, b"\xff" * 64), messages.Plane(W, H // 2, b"\xff" * 64))
        client.send_raw(serialize_bytes(messages.Frame(0, 1, 0, planes)))
        expect_error(client, 4, "plane")


def test_wrong_order_while_streaming(server, healthy: Healthy) -> None:
    with streaming_client(server.address) as client:
        client.send_raw(hello_bytes())
        expect_error(client, 4, "HELLO")


def test_packet_in_an_encode_session(server, healthy: Healthy) -> None:
    with streaming_client(server.address) as client:
        client.send_raw(serialize_bytes(messages.Packet(0, 0, 0, 1, b"\0\0\0\1\x65")))
        expect_error(client, 4, "PACKET")


def test_unknown_type_is_ignored_once_streaming(server) -> None:
    """VTR1.md §1.4: unknown ids are read and ignored after the handshake."""
    frames = testsrc_frames(3, W, H, "nv12")
    with streaming_client(server.address) as client:
        client.send_raw(raw_header(99, 3) + b"abc")
        packets = client.encode(frames)
    assert len(packets) == 3


# --- auth and busy -------------------------------------------------------------------------


def test_busy_server_answers_status_1_and_error_2(start_server) -> None:
    srv = start_server("--engine", "x264", "--max-sessions", "1")
    first = VTRClient(srv.address)
    ack = first.hello("h264")
    assert (ack.status, ack.max_sessions, ack.active_sessions) == (0, 1, 1)
    with VTRClient(srv.address) as second:
        busy = second.hello("h264")
        assert (busy.status, busy.max_sessions, busy.active_sessions) == (1, 1, 1)
        expect_error(second, 2, "server busy: 1 of 1 sessions in use")
    first.configure(W, H, PixelFormat.NV12, ENCODE)
    assert len(first.encode(testsrc_frames(5, W, H, "nv12"))) == 5
    first.close()
    srv.wait_for_log(r"SUMMARY mode=encode frames_in=5")
    with VTRClient(srv.address) as third:  # the slot was released
        assert third.hello("h264").status == 0


def test_bad_token(start_server) -> None:
    srv = start_server("--engine", "x264", "--token", "s3cret")
    for token in ("wrong", "", "s3cret-but-longer"):
        with VTRClient(srv.address) as client:
            ack = client.hello("h264", token=token)
            assert ack.status == 2
            expect_error(client, 1, "authentication failed")
    with VTRClient(srv.address) as client:
        assert client.hello("h264", token="s3cret").status == 0
    srv.wait_for_log(r"HELLO authfail from vtr-test")


def test_hello_ack_describes_the_server(server) -> None:
    with VTRClient(server.address) as client:
        ack = client.hello("hevc")
    assert ack.server_name == "vtremoted" and ack.server_version
    assert ack.capabilities[:2] == ("h264", "hevc")
    assert {
        "ext:busy",
        "ext:errors",
        "ext:keepalive=30000",
        "ext:decode-pipeline",
        "ext:engine=x264",
    } <= set(ack.capabilities)
    assert (ack.max_sessions, ack.active_sessions) == (4, 1)


# --- vanishing clients, concurrency, timeouts --------------------------------------------------


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_vanishing_mid_stream_frees_its_engine(start_server, how: str) -> None:
    srv = start_server("--engine", "x264", "--max-sessions", "1")
    frames = testsrc_frames(12, W, H, "nv12")
    # A 16-frame window keeps the encoder's 8-frame delay: no PACKET goes out (and meets
    # the closed socket) before the server has read most of the frames.
    client = streaming_client(srv.address, (*ENCODE, ("ext_window", "16")))
    for frame in frames[:10]:
        client.send(client.frame_message(frame))
    if how == "reset":
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    srv.wait_for_log(r"client vanished mid-stream")
    srv.wait_for_log(r"engine x264 closed")
    # A FIN delivers every frame sent; a reset discards what the server had not read yet.
    srv.wait_for_log(
        r"SUMMARY mode=encode frames_in=10 "
        if how == "close"
        else r"SUMMARY mode=encode frames_in=\d+ "
    )
    # The only slot is free again and the process still serves.
    with streaming_client(srv.address) as again:
        assert len(again.encode(frames)) == 12


def test_two_sessions_at_once(server, tmp_path: Path) -> None:
    mp4 = make_h264_mp4(tmp_path / "in.mp4", 20, W, H, bframes=2)
    extradata, packets = video_packets(mp4)
    results: dict[str, object] = {}

    def encode() -> None:
        with streaming_client(server.address) as client:
            results["encode"] = len(client.encode(testsrc_frames(40, W, H, "nv12")))

    def decode() -> None:
        with VTRClient(server.address) as client:
            client.hello("h264")
            client.configure(
                W,
                H,
                PixelFormat.NV12,
                (("mode", "decode"), ("ext_decode_pipeline", "1")),
                extradata=extradata,
            )
            for p in packets:
                client.send(
                    messages.Packet(
                        p.pts or 0, p.dts or 0, 0, 0, annexb.length_prefixed_to_annexb(bytes(p), 4)
                    )
                )
            client.send(messages.Flush())
            frames = []
            while not isinstance(msg := client.recv(), messages.Done):
                frames.append(msg)
            results["decode"] = sum(isinstance(m, messages.Frame) for m in frames)

    threads = [threading.Thread(target=run_catching(fn, results)) for fn in (encode, decode)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {"encode": 40, "decode": 20}


def run_catching(fn: Callable[[], None], results: dict[str, object]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except BaseException as e:  # surfaces in the results comparison
            results[fn.__name__] = e

    return run


def test_idle_timeout_in_handshake(start_server) -> None:
    srv = start_server("--engine", "x264", "--idle-timeout", "1")
    with VTRClient(srv.address) as client:
        expect_error(client, 6, "idle timeout")


def test_idle_timeout_while_streaming(start_server) -> None:
    srv = start_server("--engine", "x264", "--idle-timeout", "1")
    with streaming_client(srv.address) as client:
        expect_error(client, 6, "no message from the client")


def test_ping_keeps_an_idle_session_alive(start_server) -> None:
    srv = start_server("--engine", "x264", "--idle-timeout", "1")

    with streaming_client(srv.address) as client:
        # Eight PINGs 0.3 s apart keep the session alive for at least 2.4 s, more than twice the
        # idle timeout, however slow the machine is.
        for _ in range(8):
            assert client.ping_barrier() == []
            time.sleep(0.3)
        packets = client.encode(testsrc_frames(5, W, H, "nv12"))
    assert len(packets) == 5


def test_no_fin_after_done_until_the_client_closes(server) -> None:
    """The reference encoder queues PACKETs and DONE and drops the queue when it sees EOF
    (VTR1.md §10.2): the server half-closes only after the client closed."""
    frames = testsrc_frames(12, W, H, "nv12")
    with streaming_client(server.address) as client:
        packets = client.encode(frames, window=16)  # DONE read; a queue would still hold packets
        assert len(packets) == 12
        assert select.select([client.sock], [], [], 0.5)[0] == []  # no EOF yet
        client.send_raw(
            serialize_bytes(messages.Flush()), unchecked=False
        )  # the reference's next FLUSH
        assert (
            select.select([client.sock], [], [], 0.3)[0] == []
        )  # still no EOF: FLUSH proves nothing
        client.sock.shutdown(socket.SHUT_WR)  # the client closes
        assert client.recv_until_closed() == []  # now the server closes too


def test_pong_and_repeated_flush_are_harmless(server) -> None:
    frames = testsrc_frames(4, W, H, "nv12")
    with streaming_client(server.address) as client:
        client.send(messages.Pong())
        for frame in frames:
            client.send(client.frame_message(frame))
        client.send(messages.Flush())
        client.send_raw(
            serialize_bytes(messages.Flush()) * 2, unchecked=False
        )  # the reference repeats FLUSH
        msgs = [client.recv() for _ in range(5)]
        assert client.after_done() == []
    assert [type(m) for m in msgs] == [messages.Packet] * 4 + [messages.Done]
    assert messages.message_type(msgs[-1]) == MessageType.DONE
