"""The client against a hostile server: it bounds what it accepts and names the host.

The fake servers here speak just enough VTR1 (the project's sans-IO wire
module in the server role) to get a session going, then misbehave: stream
PACKETs nobody asked for, FRAMEs beyond the packets sent, or garbage.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from media import make_h264_mp4, testsrc_frames, video_packets
from vtremote.client import RemoteDecoder, RemoteEncoder, RemoteTranscoder
from vtremote.errors import RemoteProtocolError, TimeoutExpiredError
from vtremote.wire import Connection, Role, messages
from vtremote.wire.messages import serialize_bytes

W, H = 64, 64
FLOOD = 20_000  # messages the hostile server tries to push (~80 MB of PACKETs if all were taken)


class HostileServer:
    """One connection on 127.0.0.1: handshake, then ``misbehave(sock)`` once the first
    FRAME or PACKET arrives. Records how many messages it managed to send."""

    def __init__(
        self,
        misbehave: Callable[[socket.socket], None],
        *,
        hello_ack: messages.HelloAck | None = None,
        configure_ack: messages.ConfigureAck | None = None,
    ) -> None:
        self.hello_ack = hello_ack or messages.HelloAck()
        self.configure_ack = configure_ack or messages.ConfigureAck(pix_fmt=1)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.misbehave = misbehave
        self.sent = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        sock, _ = self.listener.accept()
        sock.settimeout(10)
        conn = Connection(Role.SERVER)
        try:
            while True:
                msg = conn.next_event()
                if msg is None:
                    data = sock.recv(1 << 20)
                    if not data:
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(msg, messages.Hello):
                    self.reply(sock, b"".join(bytes(b) for b in conn.send(self.hello_ack)))
                elif isinstance(msg, messages.Configure):
                    self.reply(sock, b"".join(bytes(b) for b in conn.send(self.configure_ack)))
                elif isinstance(msg, (messages.Frame, messages.Packet)):
                    self.misbehave(sock)
                    return
        except OSError:
            return  # the client hung up on us: expected
        except BaseException as e:  # pragma: no cover - shown by the test
            self.error = e
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            self.listener.close()

    def reply(self, sock: socket.socket, data: bytes) -> None:
        """Send a handshake reply (a subclass may send it otherwise)."""
        sock.sendall(data)

    def flood(self, make: Callable[[int], messages.Message]) -> Callable[[socket.socket], None]:
        """Send ``make(0)``, ``make(1)``... as fast as the client takes them."""

        def run(sock: socket.socket) -> None:
            for i in range(FLOOD):
                sock.sendall(serialize_bytes(make(i)))
                self.sent += 1

        return run


def key_packet(i: int) -> messages.Packet:
    """A well-formed PACKET (Annex B IDR, increasing dts): only their number is wrong."""
    return messages.Packet(i, i, 1, 1, b"\x00\x00\x00\x01\x65" + b"\x88" * 4000)


def transcode_server(extradata: bytes, misbehave: Callable[[socket.socket], None]) -> HostileServer:
    """A hostile server that offers transcoding and accepts the session's CONFIGURE."""
    return HostileServer(
        misbehave,
        hello_ack=messages.HelloAck(capabilities=("h264", "hevc", "ext:transcode=h264;scale")),
        configure_ack=messages.ConfigureAck(
            extradata=extradata, warnings=(f"ext:output={W}x{H};tb=1/30;fr=30/1",)
        ),
    )


def transcoder(server: HostileServer, extradata: bytes, **keywords: Any) -> RemoteTranscoder:
    return RemoteTranscoder(
        server.addr,
        input_codec="h264",
        input_extradata=extradata,
        input_time_base=Fraction(1, 30),
        input_width=W,
        input_height=H,
        framerate=30,
        **keywords,
    )


def test_encoder_refuses_more_packets_than_frames_and_names_the_host() -> None:
    server = HostileServer(lambda s: None)
    server.misbehave = server.flood(key_packet)
    frames = testsrc_frames(40, W, H, "nv12")
    enc = RemoteEncoder(
        server.addr, "h264", width=W, height=H, time_base=Fraction(1, 30), inflight=4
    )
    with pytest.raises(RemoteProtocolError) as info, enc:
        for frame in frames:
            enc.encode(frame)
        enc.flush()
    text = str(info.value)
    assert server.addr in text and "PACKET" in text and "frames sent" in text
    # Never more packets taken than frames sent: memory bounded by the window, not the flood.
    assert enc.stats.packets <= enc.stats.frames <= 40
    server.thread.join(10)
    assert server.error is None
    assert server.sent < FLOOD  # the client hung up long before the flood ended


def decode_until_refused(
    server: HostileServer, extradata: bytes, packets: list[Any]
) -> tuple[RemoteDecoder, str]:
    """Decode ``packets`` with ``server``; the RemoteProtocolError that must end it, as text."""
    dec = RemoteDecoder(
        server.addr, "h264", width=W, height=H, extradata=extradata, time_base=Fraction(1, 30)
    )
    with pytest.raises(RemoteProtocolError) as info, dec:
        for pkt in packets:
            dec.decode(pkt)
        dec.flush()
    return dec, str(info.value)


def test_decoder_refuses_more_frames_than_packets(tmp_path: Path) -> None:
    extradata, packets = video_packets(make_h264_mp4(tmp_path / "in.mp4", 10, W, H, bframes=0))
    server = HostileServer(lambda s: None)
    planes = (messages.Plane(W, H, bytes(W * H)), messages.Plane(W, H // 2, bytes(W * H // 2)))
    server.misbehave = server.flood(lambda i: messages.Frame(i, 1, 0, planes))
    dec, text = decode_until_refused(server, extradata, packets)
    assert server.addr in text and "FRAME" in text and "packets sent" in text
    assert dec.stats.frames <= len(packets)
    server.thread.join(10)
    assert server.sent < FLOOD


def test_transcoder_refuses_a_packet_flood(tmp_path: Path) -> None:
    extradata, packets = video_packets(make_h264_mp4(tmp_path / "in.mp4", 10, W, H, bframes=0))
    server = transcode_server(extradata, lambda s: None)
    server.misbehave = server.flood(key_packet)
    tc = transcoder(server, extradata, inflight=4)
    with pytest.raises(RemoteProtocolError) as info, tc:
        for pkt in packets:
            tc.transcode(pkt)
        tc.flush()
    text = str(info.value)
    assert server.addr in text and "PACKET" in text and "source packets" in text
    # One output packet per source packet (plus a small allowance), not the flood.
    assert tc.stats.packets <= len(packets) + 64
    server.thread.join(10)
    assert server.sent < FLOOD


def encode_until_refused(server: HostileServer, frames: int) -> str:
    """Encode ``frames`` frames with ``server``; the RemoteProtocolError that must end it."""
    enc = RemoteEncoder(server.addr, "h264", width=W, height=H, time_base=Fraction(1, 30))
    with pytest.raises(RemoteProtocolError) as info, enc:
        for frame in testsrc_frames(frames, W, H, "nv12"):
            enc.encode(frame)
        enc.flush()
    return str(info.value)


def test_garbage_after_the_handshake_names_the_host() -> None:
    server = HostileServer(lambda s: s.sendall(b"NOT A VTR1 MESSAGE AT ALL"))
    text = encode_until_refused(server, 10)
    assert "magic" in text and server.addr in text


def run_cli(server: HostileServer, out: Path, frames: int, *extra: str) -> int:
    """``vtremote`` encoding ``frames`` synthetic frames with ``server`` into ``out``."""
    from vtremote.cli.main import main

    source = ["-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate=30", "-frames:v", str(frames)]
    codec = ["-c:v", "h264_videotoolbox_remote", "-vt_remote_host", server.addr]
    return main(["-y", "-nostats", *source, *codec, *extra, str(out)])


def test_cli_against_a_packet_flood_fails_naming_the_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = HostileServer(lambda s: None)
    server.misbehave = server.flood(key_packet)
    rc = run_cli(server, tmp_path / "out.mp4", 100)
    err = capsys.readouterr().err
    assert rc == 1 and server.addr in err and "PACKET" in err
    server.thread.join(10)
    assert server.sent < FLOOD


# --- whole-message deadlines ------------------------------------------------------------------


class DripServer(HostileServer):
    """Sends one message (``stage``: a handshake reply, or a PACKET for the first FRAME) a
    byte at a time, ``GAP`` s apart: every byte well within the client's timeout of 1 s and
    the whole far beyond it. It stops when the client hangs up."""

    GAP = 0.15

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.replies = 0
        super().__init__(self.drip_packet)

    def reply(self, sock: socket.socket, data: bytes) -> None:
        stage = ("helloack", "configureack")[min(self.replies, 1)]
        self.replies += 1
        if stage == self.stage:
            self.drip(sock, data)
        else:
            sock.sendall(data)

    def drip_packet(self, sock: socket.socket) -> None:
        self.drip(sock, serialize_bytes(key_packet(0)))

    def drip(self, sock: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            time.sleep(self.GAP)
            sock.sendall(data[i : i + 1])


@pytest.mark.parametrize("stage", ["helloack", "configureack"])
def test_a_handshake_dripped_byte_by_byte_times_out_naming_the_host(stage: str) -> None:
    server = DripServer(stage)
    try:
        with pytest.raises(TimeoutExpiredError) as info:
            RemoteEncoder(
                server.addr, "h264", width=W, height=H, time_base=Fraction(1, 30), timeout=1.0
            )
    finally:
        server.thread.join(30)
    text = str(info.value)
    assert server.addr in text and "handshake" in text


def test_a_result_dripped_byte_by_byte_times_out_naming_the_host() -> None:
    server = DripServer("packet")
    enc = RemoteEncoder(
        server.addr, "h264", width=W, height=H, time_base=Fraction(1, 30), timeout=1.0
    )
    try:
        with pytest.raises(TimeoutExpiredError) as info, enc:
            enc.encode(testsrc_frames(1, W, H, "nv12")[0])
            enc.sync()
    finally:
        server.thread.join(30)
    text = str(info.value)
    assert server.addr in text and "part of a message" in text


# --- what the results must look like ----------------------------------------------------------

IDR = b"\x00\x00\x00\x01\x65\x88\x84\x00"
NON_IDR = b"\x00\x00\x00\x01\x41\x9a\x02\x00"
BAD_PACKETS = {
    "dts after pts": ([messages.Packet(0, 5, 1, 1, IDR)], "dts 5 after its pts 0"),
    "negative duration": ([messages.Packet(0, 0, -1, 1, IDR)], "negative duration -1"),
    "dts going back": (
        [messages.Packet(0, 0, 1, 1, IDR), messages.Packet(1, -1, 1, 0, NON_IDR)],
        "dts -1, not after the previous packet's 0",
    ),
    "false keyframe": ([messages.Packet(0, 0, 1, 1, NON_IDR)], "flagged as a keyframe"),
    "not annex b": (
        [messages.Packet(0, 0, 1, 1, b"\x00\x00\x00\x04\x65\x88\x84\x00")],
        "not Annex B",
    ),
}


def send_all(msgs: list[messages.Message]) -> Callable[[socket.socket], None]:
    def run(sock: socket.socket) -> None:
        for msg in msgs:
            sock.sendall(serialize_bytes(msg))

    return run


@pytest.mark.parametrize("case", sorted(BAD_PACKETS))
def test_encoder_refuses_a_malformed_packet_naming_the_host(case: str) -> None:
    msgs, expected = BAD_PACKETS[case]
    server = HostileServer(send_all(list(msgs)))
    text = encode_until_refused(server, 4)
    assert server.addr in text and expected in text
    server.thread.join(10)
    assert server.error is None


def test_transcoder_refuses_a_packet_that_is_not_annex_b(tmp_path: Path) -> None:
    extradata, packets = video_packets(make_h264_mp4(tmp_path / "in.mp4", 4, W, H, bframes=0))
    msgs, expected = BAD_PACKETS["not annex b"]
    server = transcode_server(extradata, send_all(list(msgs)))
    tc = transcoder(server, extradata)
    with pytest.raises(RemoteProtocolError) as info, tc:
        for pkt in packets:
            tc.transcode(pkt)
        tc.flush()
    text = str(info.value)
    assert server.addr in text and expected in text


@pytest.mark.parametrize(
    ("luma", "chroma", "stride"),
    [(H // 4, H // 2, W), (H, H // 4, W), (H, H // 2, W // 2)],
    ids=["short luma", "short chroma", "narrow stride"],
)
def test_decoder_refuses_a_frame_of_another_geometry(
    tmp_path: Path, luma: int, chroma: int, stride: int
) -> None:
    extradata, packets = video_packets(make_h264_mp4(tmp_path / "in.mp4", 4, W, H, bframes=0))
    planes = (
        messages.Plane(stride, luma, bytes(stride * luma)),
        messages.Plane(stride, chroma, bytes(stride * chroma)),
    )
    server = HostileServer(send_all([messages.Frame(0, 1, 0, planes)]))
    _, text = decode_until_refused(server, extradata, packets)
    assert server.addr in text and f"configured {W}x{H} NV12" in text


def test_cli_against_a_dripped_handshake_fails_naming_the_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = DripServer("helloack")
    out = tmp_path / "out.mp4"
    try:
        rc = run_cli(server, out, 10, "-vt_remote_timeout_ms", "1000")
    finally:
        server.thread.join(30)
    err = capsys.readouterr().err
    assert rc == 1 and server.addr in err and "handshake" in err
    assert list(tmp_path.iterdir()) == []  # no output, not even a temporary one
