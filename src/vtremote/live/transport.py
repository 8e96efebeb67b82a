"""The sender's side of the network: a TCP or UDP link that (re)connects, sends and listens.

A link owns one socket at a time and two threads: a writer (connects, sends the
HELLO, waits for HELLO_ACK, then sends queued messages) and a reader (control
messages from the receiver: keyframe requests, clock requests, stats, NACKs).
When the connection drops the writer reconnects for up to ``reconnect_s``;
meanwhile :attr:`Link.connected` is False and the sender drops frames rather
than queueing them. After a reconnect the sender is told (``on_connected``) so
the first picture the receiver gets is a keyframe.

The queue holds whole pictures (a METADATA and its VIDEO go in together);
:meth:`Link.pending` says how many are waiting, which is how the sender sees the
path fill up.
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from vtremote.errors import (
    AuthError,
    BusyError,
    ConnectionLostError,
    RemoteProtocolError,
    UnsupportedError,
    VTRemoteError,
)
from vtremote.live import auth
from vtremote.live import protocol as p
from vtremote.live.datagram import (
    DATAGRAM_HEADER,
    MAX_DATAGRAM,
    Packetizer,
    control_datagram,
    parse_header,
)

log = logging.getLogger(__name__)

#: Kernel send buffer asked for on TCP: small, so a slow path shows as queue growth here.
TCP_SNDBUF = 64 * 1024
TCP_NOTSENT = 16 * 1024
HELLO_INTERVAL_S = 0.2
HANDSHAKE_TIMEOUT_S = 2.0
#: A UDP receiver that says nothing this long is gone; the link says HELLO again.
UDP_PEER_TIMEOUT_S = 3.0


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[v6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {text!r} is not HOST:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port} outside 0..65535")
    return host or "127.0.0.1", int(port)


@dataclass
class LinkEvents:
    """What the link tells the sender (called from the link's threads)."""

    on_connected: Callable[[], None]
    on_keyframe_request: Callable[[p.KeyframeRequest], None]
    on_stats: Callable[[p.Stats], None]
    on_bitrate_hint: Callable[[p.BitrateHint], None]


class Link:
    """Common queue and thread handling of :class:`TcpLink` and :class:`UdpLink`."""

    transport = ""

    def __init__(
        self,
        address: tuple[str, int],
        hello: p.Hello,
        events: LinkEvents,
        *,
        reconnect_s: float = 10.0,
        secret: bytes | None = None,
    ) -> None:
        self.address = address
        #: The receiver's key; with one, the link answers its CHALLENGE (docs/live.md).
        self.secret = secret
        self.hello = hello
        self.events = events
        self.reconnect_s = reconnect_s
        self._cond = threading.Condition()
        self._queue: deque[list[p.Message]] = deque()
        self._urgent: deque[object] = deque()  # control replies, ahead of pictures
        self._sending = 0  # pictures being written now
        self._closing = False
        self._bye: p.Bye | None = None
        self._sock: socket.socket | None = None
        self.connected = False
        self.ever_connected = False
        self.failed: VTRemoteError | None = None
        self.bytes_sent = 0
        self.connections = 0
        self.token = 0
        self._lost_since = time.monotonic()
        self._writer = threading.Thread(
            target=self._run, name=f"live-{self.transport}-writer", daemon=True
        )
        self._setup()

    def _setup(self) -> None:
        """State of one transport, made at the end of ``__init__``."""

    def start(self) -> None:
        self._writer.start()

    def pending(self) -> int:
        """Pictures queued or being written."""
        with self._cond:
            return len(self._queue) + self._sending

    def send(self, messages: list[p.Message]) -> None:
        """Queue one picture (its METADATA then its VIDEO)."""
        with self._cond:
            self._queue.append(messages)
            self._cond.notify_all()

    def urgent(self, item: object) -> None:
        with self._cond:
            self._urgent.append(item)
            self._cond.notify_all()

    def close(self, bye: p.Bye, timeout: float = 5.0) -> None:
        """Send what is queued, then BYE, then close (at most ``timeout`` seconds)."""
        with self._cond:
            self._bye = bye
            self._closing = True
            self._cond.notify_all()
        self._writer.join(timeout)
        with self._cond:
            self._queue.clear()
        self._drop_socket()
        self._writer.join(1.0)

    # --- writer thread -----------------------------------------------------------------

    def _mark_lost(self) -> None:
        self.connected = False
        self._lost_since = time.monotonic()

    def _run(self) -> None:
        self._lost_since = time.monotonic()
        while True:
            with self._cond:
                if self._closing and (not self._queue or not self.connected) and self._bye is None:
                    return
            if not self.connected:
                with self._cond:
                    if self._closing and not self.connected:
                        return
                try:
                    self._connect()
                except (OSError, VTRemoteError) as e:
                    if self.ever_connected or time.monotonic() - self._lost_since > 0.5:
                        log.debug(
                            "live %s: connecting to %s:%d: %s", self.transport, *self.address, e
                        )
                    if time.monotonic() - self._lost_since > self.reconnect_s:
                        what = "lost" if self.ever_connected else "cannot reach"
                        self.failed = (
                            e
                            if isinstance(e, VTRemoteError)
                            and not isinstance(e, ConnectionLostError)
                            else ConnectionLostError(
                                f"{what} {self.address[0]}:{self.address[1]} ({self.transport}) "
                                f"for {self.reconnect_s:g} s: {e}"
                            )
                        )
                        with self._cond:
                            self._closing = True
                            self._bye = None
                        return
                    time.sleep(0.2)
                    continue
                with self._cond:
                    self._queue.clear()  # stale pictures; the next one is a keyframe
                self.connected = self.ever_connected = True
                self.connections += 1
                log.info("live %s: connected to %s:%d", self.transport, *self.address)
                self.events.on_connected()
            with self._cond:
                while not self._queue and not self._urgent and not self._closing and self.connected:
                    self._cond.wait(0.5)
                if self._urgent:
                    item: object = self._urgent.popleft()
                    picture = None
                elif self._queue:
                    item, picture = None, self._queue.popleft()
                    self._sending = 1
                elif self._closing:
                    bye, self._bye = self._bye, None
                    item, picture = bye, None
                else:
                    continue
            try:
                if picture is not None:
                    for msg in picture:
                        self._write(msg)
                elif isinstance(item, p.Bye):
                    self._write(item)
                    self._finish()
                    return
                elif item is not None:
                    self._write_urgent(item)
            except (OSError, VTRemoteError) as e:
                if self.connected:
                    log.warning(
                        "live %s: connection to %s:%d lost: %s", self.transport, *self.address, e
                    )
                self._drop_socket()
                self._mark_lost()
            finally:
                with self._cond:
                    self._sending = 0

    def _drop_socket(self) -> None:
        self.connected = False
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _dispatch(self, msg: p.Message, t_arrival: int) -> None:
        """A control message from the receiver (reader thread)."""
        if isinstance(msg, p.KeyframeRequest):
            self.events.on_keyframe_request(msg)
        elif isinstance(msg, p.ClockRequest):
            self.urgent(("clock", msg.id, msg.t0, t_arrival))
        elif isinstance(msg, p.Stats):
            self.events.on_stats(msg)
        elif isinstance(msg, p.BitrateHint):
            self.events.on_bitrate_hint(msg)
        elif isinstance(msg, p.Error):
            log.warning("live %s: receiver error %d: %s", self.transport, msg.code, msg.text)
        elif isinstance(msg, p.Nack):
            self.urgent(msg)

    def _clock_reply(self, item: object) -> p.ClockReply | None:
        if isinstance(item, tuple) and item[0] == "clock":
            return p.ClockReply(item[1], item[2], item[3], time.monotonic_ns())
        return None

    # --- the keyed handshake (docs/live.md "Keyed handshake") ------------------------------

    def _answer(self, challenge: p.Challenge) -> tuple[p.Auth, bytes]:
        """The AUTH that answers ``challenge``, and the session key it makes."""
        where = f"{self.address[0]}:{self.address[1]}"
        if self.secret is None:
            self.reconnect_s = 0
            raise AuthError(
                f"{where} asks for a key and this sender has none "
                "(vtremote live send --key-file F, or SenderConfig(key=...))"
            )
        hello = b"".join(bytes(b) for b in p.serialize_payload(self.hello))
        nonce = secrets.token_bytes(auth.NONCE_SIZE)
        proof = auth.prove(self.secret, challenge.cookie, nonce, hello)
        return p.Auth(challenge.cookie, nonce, proof.tag, hello), proof.session_key

    def _check_ack(self, ack: p.Message, *, challenged: bool) -> p.HelloAck:
        """``ack`` if it lets this link send; the error to stop with if not."""
        if isinstance(ack, p.Error):
            raise RemoteProtocolError(f"receiver error {ack.code}: {ack.text}")
        if not isinstance(ack, p.HelloAck):
            raise RemoteProtocolError(f"expected HELLO_ACK, got {type(ack).__name__}")
        if ack.status is not p.AckStatus.OK:
            self.reconnect_s = 0  # a refusal is final
            raise _refusal(ack, self.address)
        if self.secret is not None and not challenged:
            self.reconnect_s = 0
            raise AuthError(
                f"{self.address[0]}:{self.address[1]} took the stream without asking for the "
                "key: it is older or was started with --no-key; send to it with --no-key"
            )
        return ack

    # --- per transport -----------------------------------------------------------------

    def _connect(self) -> None:
        raise NotImplementedError

    def _write(self, msg: p.Message) -> None:
        raise NotImplementedError

    def _write_urgent(self, item: object) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        pass


def _refusal(ack: p.HelloAck, address: tuple[str, int]) -> VTRemoteError:
    where = f"{address[0]}:{address[1]}"
    text = ack.text or ack.status.name.lower()
    if ack.status is p.AckStatus.REFUSED:
        return AuthError(f"{where} refused the stream: {text}")
    if ack.status is p.AckStatus.BUSY:
        return BusyError(f"{where} is busy: {text}")
    return UnsupportedError(f"{where} does not take this stream: {text}")


class TcpLink(Link):
    transport = "tcp"

    def _connect(self) -> None:
        sock = socket.create_connection(self.address, timeout=HANDSHAKE_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_SNDBUF)
            if hasattr(socket, "TCP_NOTSENT_LOWAT"):
                # Linux: a send blocks once this much is unsent, however large the window.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, TCP_NOTSENT)
            sock.sendmsg(p.serialize(self.hello))
            parser = p.StreamParser()
            deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
            reply = self._next_reply(sock, parser, deadline)
            if isinstance(reply, p.Challenge):
                sock.sendmsg(p.serialize(self._answer(reply)[0]))
                reply = self._next_reply(sock, parser, deadline)
                self._check_ack(reply, challenged=True)
            else:
                self._check_ack(reply, challenged=False)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        threading.Thread(
            target=self._read, args=(sock, parser), name="live-tcp-reader", daemon=True
        ).start()

    def _next_reply(
        self, sock: socket.socket, parser: p.StreamParser, deadline: float
    ) -> p.Message:
        msgs: list[p.Message] = []
        while not msgs:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = sock.recv(4096)
            if not data:
                raise ConnectionLostError(
                    f"{self.address[0]}:{self.address[1]} closed the connection "
                    "during the handshake"
                )
            msgs = parser.feed(data)
        return msgs[0]

    def _read(self, sock: socket.socket, parser: p.StreamParser) -> None:
        try:
            while True:
                data = sock.recv(65536)
                now = time.monotonic_ns()
                for msg in parser.feed(data):
                    self._dispatch(msg, now)
                if not data:
                    break
        except (OSError, VTRemoteError) as e:
            log.debug("live tcp: reader stops: %s", e)
        if self._sock is sock:
            # Wake the writer: the next write fails and it reconnects.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _sendall(self, parts: list[p.Buffer]) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionLostError("not connected")
        views = [memoryview(b).cast("B") for b in parts]
        while views:
            sent = sock.sendmsg(views)
            self.bytes_sent += sent
            while views and sent >= views[0].nbytes:
                sent -= views[0].nbytes
                views.pop(0)
            if views and sent:
                views[0] = views[0][sent:]

    def _write(self, msg: p.Message) -> None:
        self._sendall(p.serialize(msg))

    def _write_urgent(self, item: object) -> None:
        reply = self._clock_reply(item)
        if reply is not None:
            self._write(reply)

    def _finish(self) -> None:
        sock = self._sock
        if sock is None:
            return
        # Half-close, then wait briefly for the receiver to close: BYE is read before RST.
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(2.0)
            while sock.recv(4096):
                pass
        except OSError:
            pass


class UdpLink(Link):
    transport = "udp"

    def _setup(self) -> None:
        self._packetizer: Packetizer | None = None
        self._reply: p.Message | None = None  # CHALLENGE or HELLO_ACK of this attempt
        self._last_heard = 0.0
        self._ack_event = threading.Event()
        #: Key of the session being made or held; with one every datagram carries a tag.
        self._session_key: bytes | None = None
        self.forged = 0  # datagrams from the receiver's address whose tag was wrong

    def pending(self) -> int:
        # Silence from the receiver means the path is gone: reconnect.
        if self.connected and time.monotonic() - self._last_heard > UDP_PEER_TIMEOUT_S:
            log.warning(
                "live udp: no word from %s:%d for %g s; saying HELLO again",
                *self.address,
                UDP_PEER_TIMEOUT_S,
            )
            self._mark_lost()
            with self._cond:
                self._cond.notify_all()
        return super().pending()

    def _connect(self) -> None:
        if self._sock is None:
            family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            # connect(): the kernel drops datagrams from anyone but the receiver.
            sock.connect(self.address)
            self._sock = sock
            threading.Thread(
                target=self._read, args=(sock,), name="live-udp-reader", daemon=True
            ).start()
        self.hello = replace(self.hello, nonce=random.getrandbits(32))
        self._session_key = None
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
        reply = self._until_reply(control_datagram(self.hello, 0), deadline)
        challenged = isinstance(reply, p.Challenge)
        if isinstance(reply, p.Challenge):
            answer, session_key = self._answer(reply)
            self._session_key = session_key  # from now on the receiver's datagrams are tagged
            reply = self._until_reply(control_datagram(answer, 0), deadline)
        ack = self._check_ack(reply, challenged=challenged)
        self.token = ack.token
        self._packetizer = Packetizer(ack.token)
        self._last_heard = time.monotonic()

    def _until_reply(self, datagram: bytes, deadline: float) -> p.Message:
        """Send ``datagram`` every 200 ms until the receiver answers it."""
        assert self._sock is not None
        self._reply = None
        self._ack_event.clear()
        while time.monotonic() < deadline:
            try:
                self._sock.send(datagram)
            except OSError as e:  # ECONNREFUSED from an earlier ICMP: keep trying
                log.debug("live udp: handshake: %s", e)
            if self._ack_event.wait(HELLO_INTERVAL_S):
                break
        reply = self._reply
        if reply is None:
            raise ConnectionLostError(
                f"no HELLO_ACK from {self.address[0]}:{self.address[1]} (udp)"
            )
        return reply

    def _drop_socket(self) -> None:
        # The socket stays for the next HELLO; only the session is gone.
        self.connected = False
        if self._closing:
            sock, self._sock = self._sock, None
            if sock is not None:
                sock.close()

    def _read(self, sock: socket.socket) -> None:
        buf = bytearray(MAX_DATAGRAM + auth.TAG_SIZE + 1)
        view = memoryview(buf)
        while True:
            try:
                n = sock.recv_into(buf)
            except ConnectionRefusedError:
                continue
            except OSError:
                return
            now = time.monotonic_ns()
            data: memoryview | None = view[:n]
            session_key = self._session_key
            if session_key is not None and data is not None:
                data = auth.untag(session_key, data)
            try:
                if data is None:  # a refusal of a wrong key comes untagged: it cannot be tagged
                    data = view[:n]
                    head = parse_header(data)
                    if head.type != p.MessageType.HELLO_ACK or self.connected:
                        raise RemoteProtocolError("wrong authentication tag")
                    msg = p.parse_payload(head.type, bytes(data[DATAGRAM_HEADER.size :]))
                    if not isinstance(msg, p.HelloAck) or msg.status is p.AckStatus.OK:
                        raise RemoteProtocolError("wrong authentication tag")
                else:
                    head = parse_header(data)
                    msg = p.parse_payload(head.type, bytes(data[DATAGRAM_HEADER.size :]))
            except RemoteProtocolError as e:
                self.forged += 1
                log.debug("live udp: dropped a datagram: %s", e)
                continue
            if isinstance(msg, (p.HelloAck, p.Challenge)):
                if self._reply is None and not self.connected:
                    self._reply = msg
                    self._ack_event.set()
                continue
            if head.token != self.token or not self.connected:
                continue
            self._last_heard = time.monotonic()
            self._dispatch(msg, now)

    def _send_datagrams(self, datagrams: list[list[p.Buffer]]) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionLostError("not connected")
        session_key = self._session_key
        for parts in datagrams:
            if session_key is not None:
                parts = [*parts, auth.tag(session_key, *parts)]
            # An ICMP from a gone receiver, or a full buffer: the datagram is lost.
            with contextlib.suppress(ConnectionRefusedError, BlockingIOError):
                self.bytes_sent += sock.sendmsg(parts)

    def _write(self, msg: p.Message) -> None:
        assert self._packetizer is not None
        self._send_datagrams(self._packetizer.datagrams(msg))

    def _write_urgent(self, item: object) -> None:
        assert self._packetizer is not None
        if isinstance(item, p.Nack):
            self._send_datagrams(self._packetizer.retransmit(item.seqs))
            return
        reply = self._clock_reply(item)
        if reply is not None:
            self._send_datagrams([[control_datagram(reply, self.token)]])

    def _finish(self) -> None:
        # BYE may be lost: send its datagram twice more; the receiver also times out.
        assert self._packetizer is not None
        for _ in range(2):
            time.sleep(0.02)
            try:
                self._send_datagrams(self._packetizer.retransmit([self._packetizer.last_seq]))
            except (OSError, VTRemoteError):
                return

    @property
    def retransmitted(self) -> int:
        return self._packetizer.retransmitted if self._packetizer is not None else 0
