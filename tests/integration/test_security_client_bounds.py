"""The client against a hostile server: it bounds what it accepts and names the host.

The fake servers here speak just enough VTR1 (the project's sans-IO wire
module in the server role) to get a session going, then misbehave: stream
PACKETs nobody asked for, FRAMEs beyond the packets sent, or garbage.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest

from media import make_h264_mp4, testsrc_frames, video_packets
from vtremote.client import RemoteDecoder, RemoteEncoder, RemoteTranscoder
from vtremote.errors import RemoteProtocolError
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
                    sock.sendall(b"".join(bytes(b) for b in conn.send(self.hello_ack)))
                elif isinstance(msg, messages.Configure):
                    sock.sendall(b"".join(bytes(b) for b in conn.send(self.configure_ack)))
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

    def flood(self, msg: messages.Message) -> Callable[[socket.socket], None]:
        data = serialize_bytes(msg)

        def run(sock: socket.socket) -> None:
            for _ in range(FLOOD):
                sock.sendall(data)
                self.sent += 1

        return run


def test_encoder_refuses_more_packets_than_frames_and_names_the_host() -> None:
    server = HostileServer(lambda s: None)
    server.misbehave = server.flood(
        messages.Packet(0, 0, 1, 1, b"\x00\x00\x00\x01\x65" + b"\x88" * 4000)
    )
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


def test_decoder_refuses_more_frames_than_packets(tmp_path: Path) -> None:
    extradata, packets = video_packets(make_h264_mp4(tmp_path / "in.mp4", 10, W, H, bframes=0))
    server = HostileServer(lambda s: None)
    planes = (messages.Plane(W, H, bytes(W * H)), messages.Plane(W, H // 2, bytes(W * H // 2)))
    server.misbehave = server.flood(messages.Frame(0, 1, 0, planes))
    dec = RemoteDecoder(
        server.addr, "h264", width=W, height=H, extradata=extradata, time_base=Fraction(1, 30)
    )
    with pytest.raises(RemoteProtocolError) as info, dec:
        for pkt in packets:
            dec.decode(pkt)
        dec.flush()
    text = str(info.value)
    assert server.addr in text and "FRAME" in text and "packets sent" in text
    assert dec.stats.frames <= len(packets)
    server.thread.join(10)
    assert server.sent < FLOOD


def test_transcoder_refuses_a_packet_flood(tmp_path: Path) -> None:
    extradata, packets = video_packets(make_h264_mp4(tmp_path / "in.mp4", 10, W, H, bframes=0))
    server = HostileServer(
        lambda s: None,
        hello_ack=messages.HelloAck(capabilities=("h264", "hevc", "ext:transcode=h264;scale")),
        configure_ack=messages.ConfigureAck(
            extradata=extradata, warnings=(f"ext:output={W}x{H};tb=1/30;fr=30/1",)
        ),
    )
    server.misbehave = server.flood(
        messages.Packet(0, 0, 1, 1, b"\x00\x00\x00\x01\x65" + b"\x88" * 4000)
    )
    tc = RemoteTranscoder(
        server.addr,
        input_codec="h264",
        input_extradata=extradata,
        input_time_base=Fraction(1, 30),
        input_width=W,
        input_height=H,
        framerate=30,
        inflight=4,
    )
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


def test_garbage_after_the_handshake_names_the_host() -> None:
    server = HostileServer(lambda s: s.sendall(b"NOT A VTR1 MESSAGE AT ALL"))
    enc = RemoteEncoder(server.addr, "h264", width=W, height=H, time_base=Fraction(1, 30))
    with pytest.raises(RemoteProtocolError) as info, enc:
        for frame in testsrc_frames(10, W, H, "nv12"):
            enc.encode(frame)
        enc.flush()
    text = str(info.value)
    assert "magic" in text and server.addr in text


def test_cli_against_a_packet_flood_fails_naming_the_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vtremote.cli.main import main

    server = HostileServer(lambda s: None)
    server.misbehave = server.flood(
        messages.Packet(0, 0, 1, 1, b"\x00\x00\x00\x01\x65" + b"\x88" * 4000)
    )
    rc = main(
        [
            "-y",
            "-nostats",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={W}x{H}:rate=30",
            "-frames:v",
            "100",
            "-c:v",
            "h264_videotoolbox_remote",
            "-vt_remote_host",
            server.addr,
            str(tmp_path / "out.mp4"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and server.addr in err and "PACKET" in err
    server.thread.join(10)
    assert server.sent < FLOOD
