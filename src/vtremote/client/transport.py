"""Socket I/O for one client session: connect, send with one ``sendmsg``, receive into place.

:class:`Transport` is the only place in the client that touches a socket. It
wraps a sans-IO :class:`vtremote.wire.Connection` (which checks message order
and size limits) and does three things with it:

* ``send``: the buffer list of ``Connection.send`` goes out with one
  ``socket.sendmsg`` (header, prefixes and the caller's plane buffers, never
  concatenated; VTR1.md §13.27). A lock keeps whole messages in wire order when
  the receiver thread answers a PING while the caller sends a FRAME.
* ``receive``: ``recv_into`` the view ``Connection.get_buffer()`` returns, so
  body bytes land in their final buffer (one copy, done by the kernel). A
  message, once its first byte is in, must arrive whole within the timeout: a
  peer that drips bytes cannot hold the client by making progress (the socket's
  own timeout only bounds one read).
* error translation: ``OSError`` becomes :class:`ConnectionLostError` or
  :class:`TimeoutExpiredError` with a message that names the server
  ("cannot reach mac.local:5555: connection refused").

Socket set-up follows VTR1.md §6.5 and fixes §13.25/§13.29: any address family
(IPv6 and host names too), ``TCP_NODELAY`` and 4 MiB buffers set *before*
``connect`` so the window scale is negotiated for them.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import math
import select
import socket
import threading
import time
from collections.abc import Sequence

from vtremote.client.tls import TLSOptions, wrap
from vtremote.errors import (
    AuthError,
    BusyError,
    ConfigError,
    ConnectionLostError,
    RemoteError,
    RemoteProtocolError,
    TimeoutExpiredError,
)
from vtremote.tlsutil import TLSSocket
from vtremote.wire import Connection, Role
from vtremote.wire import messages as m
from vtremote.wire.constants import HelloStatus, WireCompression
from vtremote.wire.framing import Limits

log = logging.getLogger(__name__)

DEFAULT_PORT = 5555
#: Socket buffer sizes (VTR1.md §6.5: the reference uses 4 MiB on both sides).
SOCKET_BUFFER = 4 * 1024 * 1024
#: At most this many buffers go to one sendmsg (POSIX IOV_MAX is 1024).
_IOV_MAX = 1024

#: ``wire_compression`` values accepted by the client API and the CLI.
COMPRESSION_NAMES = {
    "none": WireCompression.NONE,
    "0": WireCompression.NONE,
    "lz4": WireCompression.LZ4,
    "1": WireCompression.LZ4,
    "zstd": WireCompression.ZSTD,
    "2": WireCompression.ZSTD,
}


def parse_address(address: str, default_port: int | None = None) -> tuple[str, int]:
    """Split ``host:port``, ``[v6addr]:port`` or a bare host into ``(host, port)``.

    The reference splits at the last ``:`` (VTR1.md §6.5), which breaks IPv6;
    brackets are required around an IPv6 literal that carries a port.
    """
    text = address.strip()
    if not text:
        raise ConfigError("server address is empty; expected HOST:PORT")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"server address {address!r} has '[' without ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"server address {address!r}: expected ':PORT' after ']'")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        host = text  # a bare IPv6 literal without a port
    if not host:
        raise ConfigError(f"server address {address!r} has no host")
    if not port_text:
        if default_port is None:
            raise ConfigError(f"server address {address!r} has no port; expected HOST:PORT")
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(
            f"server address {address!r}: port {port_text!r} is not a number"
        ) from None
    if not 0 < port < 65536:
        raise ConfigError(f"server address {address!r}: port {port} is outside 1..65535")
    return host, port


def format_address(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 literal."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(sockaddr_host: str) -> bool:
    try:
        return ipaddress.ip_address(sockaddr_host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def parse_compression(value: str | int | WireCompression) -> WireCompression | None:
    """``none|lz4|zstd|0|1|2`` -> mode; ``auto`` -> None (decided once connected)."""
    if isinstance(value, int):
        try:
            return WireCompression(value)
        except ValueError:
            raise ConfigError(
                f"wire compression {value} is not 0 (none), 1 (lz4) or 2 (zstd)"
            ) from None
    key = value.strip().lower()
    if key == "auto":
        return None
    try:
        return COMPRESSION_NAMES[key]
    except KeyError:
        raise ConfigError(
            f"wire compression {value!r} is not one of none, lz4, zstd, auto"
        ) from None


def auto_compression(peer_is_loopback: bool) -> WireCompression:
    """What ``auto`` means: raw planes on loopback, zstd across a network.

    On loopback the "network" is a memory copy and compressing only costs CPU.
    Measured here (2-core VM, 1080p NV12 through the null engine, best of two
    runs of 120 frames): testsrc2 none 2024 fps / lz4 1584 / zstd 1143; a noisy
    source none 1409 / lz4 453 / zstd 516. So planes go raw on loopback.
    Across a LAN the wire is the limit (1 GbE carries ~40 raw 1080p frames/s):
    zstd level 1, the reference default (VTR1.md §4), sent 0.10 MB (testsrc2)
    and 0.23 MB (noise) per 3.1 MB frame against lz4's 0.15 / 0.48 MB, which
    makes it the faster choice on noisy, camera-like content.
    """
    return WireCompression.NONE if peer_is_loopback else WireCompression.ZSTD


def _reason(exc: OSError) -> str:
    """A short lower-case reason for an OSError ("connection refused")."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = (
        exc.strerror
        or (errno.errorcode.get(exc.errno or 0) if exc.errno else None)
        or str(exc)
        or type(exc).__name__
    )
    return text[:1].lower() + text[1:]


def _sendmsg_all(sock: socket.socket, buffers: Sequence[m.Buffer]) -> None:
    """Write every byte of ``buffers`` with as few ``sendmsg`` calls as the kernel allows.

    No copy: the buffers go to the kernel as they are; only after a partial
    write (a large FRAME meeting a full socket buffer) are the rest sliced as
    memoryviews of the same buffers.
    """
    total = sum(m.nbytes(b) for b in buffers)
    sent = sock.sendmsg(buffers[:_IOV_MAX])
    if sent == total:
        return
    views = [
        b
        if isinstance(b, memoryview) and b.format == "B" and b.ndim == 1
        else memoryview(b).cast("B")
        for b in buffers
        if m.nbytes(b)
    ]
    _advance(views, sent)
    while views:
        _advance(views, sock.sendmsg(views[:_IOV_MAX]))


def _advance(views: list[memoryview], sent: int) -> None:
    """Drop the first ``sent`` bytes from the front of ``views`` (in place)."""
    while sent:
        head = views[0]
        if sent >= head.nbytes:
            sent -= head.nbytes
            views.pop(0)
        else:
            views[0] = head[sent:]
            sent = 0


class Transport:
    """One connected TCP socket plus the sans-IO wire state of its session.

    Thread model: any thread may :meth:`send` (a lock orders whole messages);
    exactly one thread calls :meth:`receive` (the session's receiver thread, or
    the caller during the handshake, before that thread starts).
    """

    def __init__(
        self, sock: socket.socket, name: str, *, timeout: float, limits: Limits | None = None
    ) -> None:
        self.sock = sock
        #: ``host:port`` as the user wrote it; every error message names it.
        self.name = name
        self.timeout = timeout
        self.conn = Connection(Role.CLIENT, limits)
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()  # Connection state: send() vs next_event()
        self._closed = False
        self.last_send = time.monotonic()
        self.pings_sent = 0
        #: True when the connection is TLS (client/tls.py).
        self.tls = isinstance(sock, TLSSocket)
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        #: When the first byte of the message being received arrived (None between messages).
        self._message_start: float | None = None
        try:
            peer = sock.getpeername()
            self.peer_host = str(peer[0]) if isinstance(peer, tuple) else ""
        except OSError:
            self.peer_host = ""
        self.peer_is_loopback = (
            is_loopback(self.peer_host) if self.peer_host else sock.family == socket.AF_UNIX
        )

    # -- connecting ----------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        timeout: float,
        limits: Limits | None = None,
        tls: TLSOptions | None = None,
    ) -> Transport:
        """Resolve ``address`` (any family), connect to the first address that answers.

        With ``tls`` the connection is wrapped in TLS and the server checked (client/tls.py).
        """
        host, port = parse_address(address, DEFAULT_PORT)
        name = format_address(host, port)
        try:
            infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise ConnectionLostError(f"cannot reach {name}: {_reason(e)}") from e
        last: OSError | None = None
        for family, socktype, proto, _canon, sockaddr in infos:
            sock = socket.socket(family, socktype, proto)
            try:
                cls._tune(sock)
                sock.settimeout(timeout)
                sock.connect(sockaddr)
            except OSError as e:
                sock.close()
                last = e
                continue
            log.debug("connected to %s (%s)", name, sockaddr[0])
            if tls is not None:
                sock = wrap(sock, host, name, tls, timeout)  # type: ignore[assignment]
            return cls(sock, name, timeout=timeout, limits=limits)
        assert last is not None
        if isinstance(last, TimeoutError):
            raise TimeoutExpiredError(
                f"cannot reach {name}: timed out after {timeout:g} s"
            ) from last
        raise ConnectionLostError(f"cannot reach {name}: {_reason(last)}") from last

    @classmethod
    def from_socket(
        cls,
        sock: socket.socket,
        *,
        name: str = "peer",
        timeout: float = 5.0,
        limits: Limits | None = None,
    ) -> Transport:
        """Wrap an already connected socket (a socketpair in tests, a tunnel...)."""
        with contextlib.suppress(OSError):  # not TCP (a socketpair): nothing to tune
            cls._tune(sock)
        sock.settimeout(timeout)
        return cls(sock, name, timeout=timeout, limits=limits)

    @staticmethod
    def _tune(sock: socket.socket) -> None:
        # Before connect(): the receive buffer decides the TCP window scale (VTR1.md §13.29).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- I/O ---------------------------------------------------------------------------------

    @property
    def bytes_sent(self) -> int:
        return self.conn.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self.conn.bytes_received

    def send(self, *msgs: m.Message) -> int:
        """Send whole messages in order with one ``sendmsg``; returns the last PING ordinal.

        Raises LocalProtocolError for an illegal order, ConnectionLostError /
        TimeoutExpiredError for socket failures.
        """
        with self._send_lock:
            buffers: list[m.Buffer] = []
            with self._state_lock:
                for msg in msgs:
                    buffers += self.conn.send(msg)
                    if isinstance(msg, m.Ping):
                        self.pings_sent += 1
            try:
                _sendmsg_all(self.sock, buffers)
            except TimeoutError as e:
                raise TimeoutExpiredError(
                    f"sending to {self.name} stalled for {self.timeout:g} s (the server stopped "
                    "reading)"
                ) from e
            except OSError as e:
                raise ConnectionLostError(
                    f"connection to {self.name} lost while sending: {_reason(e)}"
                ) from e
            self.last_send = time.monotonic()
            return self.pings_sent

    @property
    def mid_message(self) -> bool:
        """True while part of a message has arrived and the rest has not."""
        return self.conn.receiver.mid_message

    def receive(self, timeout: float | None = None, *, deadline: float | None = None) -> m.Message:
        """The next message, blocking.

        ``timeout`` (None: the transport's) bounds the wait for the first byte of
        the next message; once it has begun, the whole message must arrive within
        the transport's timeout. ``deadline`` (``time.monotonic()``) bounds the
        whole call: a handshake. EOF is ConnectionLostError; a silence or a slow
        message is TimeoutExpiredError; a malformed stream is RemoteProtocolError.
        """
        wait = self.timeout if timeout is None else timeout
        try:
            while True:
                with self._state_lock:
                    msg = self.conn.next_event()
                if msg is not None:
                    # A message that began in the same read as this one's end starts now.
                    self._message_start = time.monotonic() if self.mid_message else None
                    return msg
                if self.conn.receiver.at_eof:
                    raise ConnectionLostError(
                        f"{self.name} closed the connection (in state {self.conn.state.value})"
                    )
                self._fill(wait, deadline)
        except RemoteProtocolError as e:
            # The wire layer knows no host names; every error the caller sees names one.
            if self.name in str(e):
                raise
            raise type(e)(f"{e} (from {self.name})") from e

    def _wait_readable(self, timeout: float, deadline: float | None) -> None:
        """Wait until the socket has bytes, within the message's or the call's time.

        poll, not the socket's timeout: that one belongs to senders on other threads,
        and it bounds one read, not a message. Bytes TLS already decrypted are in the
        SSL object, invisible to poll.
        """
        if self.tls and self.sock.pending():  # type: ignore[attr-defined]
            return
        now = time.monotonic()
        start = self._message_start
        until = now + timeout if start is None else start + self.timeout
        if deadline is not None and deadline < until:
            until = deadline
        if self._poll.poll(max(0, math.ceil((until - now) * 1000))):
            return
        if start is not None and (deadline is None or start + self.timeout <= deadline):
            raise TimeoutExpiredError(
                f"{self.name} sent only part of a message in {self.timeout:g} s "
                "(a message must arrive whole within the timeout)"
            )
        if deadline is not None and until == deadline:
            raise TimeoutExpiredError(
                f"{self.name} did not complete the handshake within {self.timeout:g} s"
            )
        raise TimeoutExpiredError(f"no reply from {self.name} for {timeout:g} s")

    def _fill(self, timeout: float, deadline: float | None) -> None:
        self._wait_readable(timeout, deadline)
        buf = self.conn.get_buffer()
        try:
            n = self.sock.recv_into(buf)
        except TimeoutError as e:
            raise TimeoutExpiredError(
                f"{self.name} stopped sending in the middle of a message for {self.timeout:g} s"
            ) from e
        except OSError as e:
            if self._closed:
                raise ConnectionLostError(f"connection to {self.name} was closed") from e
            raise ConnectionLostError(f"connection to {self.name} lost: {_reason(e)}") from e
        with self._state_lock:  # the header check reads the session state (wire.connection)
            if n == 0:
                self.conn.receive_eof()
            else:
                self.conn.buffer_updated(n)
        if self._message_start is None and self.mid_message:
            self._message_start = time.monotonic()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):  # already gone: nothing left to tell the peer
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    # -- handshake ---------------------------------------------------------------------------

    def hello(self, hello: m.Hello) -> m.HelloAck:
        """HELLO -> HELLO_ACK; a refusal becomes BusyError / AuthError (VTR1.md §2.2, §2.3).

        The whole exchange, a refusal's ERROR included, ends within the timeout.
        """
        deadline = time.monotonic() + self.timeout
        self.send(hello)
        try:
            msg = self.receive(deadline=deadline)
        except RemoteProtocolError as e:
            # Something answers on that port, but not VTR1 (an HTTP proxy, another service).
            raise RemoteProtocolError(
                f"{self.name} does not answer like a VTR1 server: {e.__cause__ or e}"
            ) from e
        if isinstance(msg, m.Error):
            raise self.remote_error(msg)
        if not isinstance(msg, m.HelloAck):  # the state machine allows nothing else here
            raise RemoteProtocolError(
                f"{self.name} answered HELLO with {type(msg).__name__.upper()}"
            )
        if msg.status == HelloStatus.OK:
            return msg
        # Our server follows a refusal with ERROR(code, text); a v1 server just closes.
        text = ""
        try:
            follow = self.receive(timeout=min(self.timeout, 2.0), deadline=deadline)
            if isinstance(follow, m.Error):
                text = follow.message
        except (ConnectionLostError, TimeoutExpiredError, RemoteProtocolError):
            pass  # nothing followed the refusal: the status byte is all there is
        if msg.status == HelloStatus.BUSY:
            text = (
                text or f"server busy: {msg.active_sessions} of {msg.max_sessions} sessions in use"
            )
            raise BusyError(f"{text} ({self.name})")
        if "authentication" not in text.lower():
            text = "authentication failed" + (f": {text}" if text else " (wrong or missing token)")
        raise AuthError(f"{text} ({self.name})")

    def configure(self, configure: m.Configure) -> m.ConfigureAck:
        """CONFIGURE -> CONFIGURE_ACK within the timeout; an ERROR reply or a silent close
        raises with the reason."""
        deadline = time.monotonic() + self.timeout
        self.send(configure)
        try:
            msg = self.receive(deadline=deadline)
        except ConnectionLostError as e:
            # VTR1.md §13.20: a v1 server closes silently when it cannot open the codec.
            raise ConnectionLostError(
                f"{self.name} closed the connection instead of answering CONFIGURE "
                f"({configure.width}x{configure.height}); it could not open the codec with these "
                "settings"
            ) from e
        if isinstance(msg, m.Error):
            raise self.remote_error(msg)
        if not isinstance(msg, m.ConfigureAck):
            raise RemoteProtocolError(
                f"{self.name} answered CONFIGURE with {type(msg).__name__.upper()}"
            )
        if msg.status != 0:
            raise RemoteProtocolError(f"{self.name} refused CONFIGURE with status {msg.status}")
        for warning in msg.warnings:
            if not warning.startswith("ext:"):  # extension notes are data (wire.extensions)
                log.warning("%s: %s", self.name, warning)
        return msg

    def remote_error(self, msg: m.Error) -> RemoteError:
        """The exception for a received ERROR, naming the server (STYLE.md §5)."""
        err = RemoteError.for_code(msg.code, msg.message)
        err.args = (f"{err.args[0]} ({self.name})",)
        return err
