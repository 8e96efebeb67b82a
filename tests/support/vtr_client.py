"""A tiny raw-socket VTR1 client for driving the real server in tests.

Built directly on the sans-IO :class:`vtremote.wire.Connection` (client role), so
tests exercise the server without depending on the client library. It can also
send raw bytes (malformed headers, truncated payloads) to probe error handling.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import av

from decoding import decode_stream
from vtremote.frames import plane_views
from vtremote.wire import Connection, Role, annexb, messages
from vtremote.wire.compression import compress_plane, decompress_plane
from vtremote.wire.constants import (
    HEADER,
    MAGIC,
    VERSION,
    MessageType,
    PixelFormat,
    WireCompression,
)
from vtremote.wire.messages import nbytes, serialize_bytes


class Closed(Exception):
    """The server closed the connection."""


@dataclass
class EncodeResult:
    ack: messages.ConfigureAck
    packets: list[messages.Packet] = field(default_factory=list)
    done: bool = False


class VTRClient:
    """One connection to a server. ``strict=False`` skips the client-side order checks."""

    def __init__(self, addr: tuple[str, int], timeout: float = 20.0) -> None:
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = Connection(Role.CLIENT)
        self.compression = WireCompression.NONE
        self.timeout = timeout
        self.unchecked = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> VTRClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw I/O -------------------------------------------------------------------------------

    def send(self, msg: messages.Message) -> None:
        self.sock.sendall(b"".join(bytes(b) for b in self.conn.send(msg)))

    def send_raw(self, data: bytes, unchecked: bool = True) -> None:
        """Bytes that bypass the client state machine (hostile input). With ``unchecked``
        the replies are parsed without checking their order (the state is unknown now)."""
        if unchecked:
            self.unchecked = True
            self.conn.receiver.check_header = None
        self.sock.sendall(data)

    def recv(self) -> messages.Message:
        """The next message from the server; raises Closed at EOF."""
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self.conn.receiver.next_message() if self.unchecked else self.conn.next_event()
            if msg is not None:
                return msg
            if time.monotonic() > deadline:
                raise TimeoutError("no message from the server")
            data = self.sock.recv(1 << 20)
            if not data:
                self.conn.receive_eof()
                msg = (
                    self.conn.receiver.next_message() if self.unchecked else self.conn.next_event()
                )
                if msg is not None:
                    return msg
                raise Closed("server closed the connection")
            self.conn.receive_data(data)

    def recv_until_closed(self) -> list[messages.Message]:
        """Every message until the server closes the connection."""
        out: list[messages.Message] = []
        while True:
            try:
                out.append(self.recv())
            except Closed:
                return out

    def after_done(self) -> list[messages.Message]:
        """End a session the way the reference client does after DONE: another FLUSH, then
        its close (half-close here, to watch the server's side). Returns anything the server
        sent before closing its side too (should be nothing)."""
        self.send_raw(serialize_bytes(messages.Flush()), unchecked=False)
        self.sock.shutdown(socket.SHUT_WR)
        return self.recv_until_closed()

    def read_eof(self) -> bytes:
        """Whatever raw bytes remain until EOF (no parsing)."""
        chunks = []
        while True:
            data = self.sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

    # -- handshake -----------------------------------------------------------------------------

    def hello(self, codec: str = "h264", token: str = "") -> messages.HelloAck:
        self.send(messages.Hello(token=token, codec=codec, client_name="vtr-test", build="test"))
        ack = self.recv()
        assert isinstance(ack, messages.HelloAck), ack
        return ack

    def configure(
        self,
        width: int,
        height: int,
        pix_fmt: int = PixelFormat.NV12,
        options: Iterable[tuple[str, str]] = (),
        extradata: bytes = b"",
        time_base: tuple[int, int] = (1, 30),
        framerate: tuple[int, int] = (30, 1),
    ) -> messages.ConfigureAck:
        opts = tuple(options)
        self.send(
            messages.Configure(width, height, pix_fmt, *time_base, *framerate, opts, extradata)
        )
        for k, v in opts:
            if k == "wire_compression":
                self.compression = WireCompression(int(v))
        ack = self.recv()
        if isinstance(ack, messages.Error):
            raise AssertionError(f"CONFIGURE refused: ERROR {ack.code} {ack.message}")
        assert isinstance(ack, messages.ConfigureAck), ack
        return ack

    # -- encode --------------------------------------------------------------------------------

    def frame_message(
        self,
        frame: av.VideoFrame,
        keyframe: bool = False,
        duration: int = 1,
        side_data: tuple[messages.SideData, ...] | None = None,
    ) -> messages.Frame:
        planes = []
        for stride, rows, view in plane_views(frame):
            planes.append(messages.Plane(stride, rows, compress_plane(self.compression, view)))
        return messages.Frame(
            pts=frame.pts or 0,
            duration=duration,
            flags=1 if keyframe else 0,
            planes=tuple(planes),
            side_data=side_data,
        )

    def encode(
        self,
        frames: Iterable[av.VideoFrame],
        force_keyframes: Iterable[int] = (),
        window: int = 16,
    ) -> list[messages.Packet]:
        """Send every frame with at most ``window`` in flight (as the reference client),
        then FLUSH; returns all PACKETs, checks DONE comes last."""
        forced = set(force_keyframes)
        packets: list[messages.Packet] = []
        in_flight = 0
        for i, frame in enumerate(frames):
            while in_flight >= window:
                msg = self.recv()
                assert isinstance(msg, messages.Packet), msg
                packets.append(msg)
                in_flight -= 1
            self.send(self.frame_message(frame, keyframe=i in forced))
            in_flight += 1
        self.send(messages.Flush())
        while True:
            msg = self.recv()
            if isinstance(msg, messages.Done):
                return packets
            assert isinstance(msg, messages.Packet), msg
            packets.append(msg)

    # -- decode --------------------------------------------------------------------------------

    def ping_barrier(self) -> list[messages.Message]:
        """PING, then every message until the PONG (the server answers in order)."""
        self.send(messages.Ping())
        out = []
        while True:
            msg = self.recv()
            if isinstance(msg, messages.Pong):
                return out
            out.append(msg)


def frame_planes(msg: messages.Frame, compression: WireCompression) -> list[bytes]:
    """Uncompressed plane bytes of a FRAME message."""
    return [bytes(decompress_plane(compression, p.data, p.size)) for p in msg.planes]


def raw_header(msg_type: int, length: int, magic: int = MAGIC, version: int = VERSION) -> bytes:
    return HEADER.pack(magic, version, msg_type, length)


def packets_to_annexb_stream(record: bytes, codec: str, packets: list[messages.Packet]) -> bytes:
    """Parameter sets + all packet data: a raw Annex B elementary stream."""
    return annexb.config_record_to_annexb(codec, record) + b"".join(bytes(p.data) for p in packets)


def decode_packets(
    codec: str, record: bytes, packets: list[messages.Packet]
) -> list[av.VideoFrame]:
    """Decode PACKETs with PyAV using the CONFIGURE_ACK record (converted to Annex B)."""
    extradata = annexb.config_record_to_annexb(codec, record)
    return decode_stream(codec, extradata, [_av_packet(p) for p in packets])


def _av_packet(msg: messages.Packet) -> av.Packet:
    pkt = av.Packet(bytes(msg.data))
    pkt.pts, pkt.dts = msg.pts, msg.dts
    return pkt


__all__ = [
    "Closed",
    "MessageType",
    "VTRClient",
    "decode_packets",
    "frame_planes",
    "nbytes",
    "packets_to_annexb_stream",
    "raw_header",
]
