"""TLS pieces both sides share: fingerprints and :class:`TLSSocket`, TLS over memory BIOs.

Why not ``ssl.SSLSocket``: a VTR1 session reads on one thread and writes on
another (the receiver and the caller in the client; the reader and the engine
thread in the server), and one OpenSSL ``SSL`` object must not be used by two
threads at once; with ``SSLSocket`` that corrupts the stream under load. Here
the ``SSLObject`` only ever touches memory, under a lock held for microseconds,
while the socket reads and writes happen outside it: a blocked ``recv`` never
holds up a send.

:class:`TLSSocket` offers the subset of the socket API the transports use
(``recv_into``, ``sendmsg`` with short writes, timeouts, ``shutdown``), so the
plain-TCP code paths drive TLS unchanged. Copies: TLS encrypts into its own
buffer (that is the copy TLS costs) and ciphertext passes through the BIOs.
Stdlib only; no knowledge of VTR1.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from vtremote.errors import ConfigError

#: Largest plaintext slice encrypted per ``sendmsg`` (OpenSSL cuts it into 16 KiB records).
WRITE_CHUNK = 1024 * 1024
#: Ciphertext read from the socket at once.
READ_CHUNK = 1024 * 1024
#: Ciphertext read at once during the handshake (its messages are a few KiB): a pending
#: handshake holds no large buffer.
HANDSHAKE_CHUNK = 16 * 1024
#: How long shutdown/close may wait to hand the last ciphertext to the kernel.
FLUSH_ON_CLOSE = 2.0


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as ``AB:CD:...`` (the form ``vtremoted`` prints)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(text: str) -> str:
    """``ab:cd..``, ``ABCD..``, ``sha256:abcd..`` -> lower-case hex; ConfigError if not SHA-256."""
    raw = text.strip().lower()
    if raw.startswith("sha256:"):
        raw = raw[7:]
    raw = raw.replace(":", "").replace(" ", "")
    if len(raw) != 64 or any(c not in "0123456789abcdef" for c in raw):
        raise ConfigError(f"TLS fingerprint {text!r} is not a SHA-256 fingerprint (64 hex digits)")
    return raw


class TLSSocket:
    """A connected socket speaking TLS through an ``SSLObject`` on memory BIOs.

    One thread may receive while another sends. ``sendmsg`` returns how much
    plaintext it took; ciphertext the kernel did not take before the timeout
    stays queued and goes out first on the next send, receive or shutdown, so
    a caller that retries after ``TimeoutError`` never encrypts anything twice.
    """

    def __init__(
        self,
        sock: socket.socket,
        obj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ):
        self.sock = sock
        self.family = sock.family
        self.type = sock.type
        self._obj = obj
        self._in = incoming
        self._out = outgoing
        self._lock = threading.Lock()  # the SSLObject and both BIOs
        self._send_lock = threading.Lock()  # ciphertext order on the socket
        self._unsent = b""  # ciphertext taken from the BIO, not yet taken by the kernel
        self._rbuf = bytearray()  # READ_CHUNK bytes from the first receive after the handshake
        self._eof = False

    # -- making one --------------------------------------------------------------------------

    @classmethod
    def handshake(
        cls,
        sock: socket.socket,
        ctx: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        deadline: float | None = None,
        poll: Callable[[], None] | None = None,
        poll_interval: float = 0.25,
    ) -> TLSSocket:
        """Run the TLS handshake on ``sock`` (blocking, until ``deadline`` on the monotonic clock).

        ``poll`` is called at least every ``poll_interval`` s while waiting for the peer; what
        it raises ends the handshake (a server's admission control evicting the connection).
        Raises ``ssl.SSLError`` for a failed handshake, ``TimeoutError`` past the deadline,
        ``ConnectionError`` if the peer closes first.
        """
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(
            incoming, outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self = cls(sock, obj, incoming, outgoing)
        while True:
            try:
                obj.do_handshake()
                self._send_raw(outgoing.read(), deadline)
                return self
            except ssl.SSLWantReadError:
                self._send_raw(outgoing.read(), deadline)
                data = self._handshake_recv(deadline, poll, poll_interval)
                if not data:
                    raise ConnectionError("connection closed during the TLS handshake") from None
                incoming.write(data)
            except ssl.SSLError:
                with contextlib.suppress(OSError):  # tell the peer why (an alert), if it listens
                    sock.sendall(outgoing.read())
                raise

    def _handshake_recv(
        self, deadline: float | None, poll: Callable[[], None] | None, interval: float
    ) -> bytes:
        while True:
            if poll is not None:
                poll()
            wait = None if poll is None else interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("TLS handshake timed out") from None
                wait = left if wait is None else min(wait, left)
            if wait is not None:
                self.sock.settimeout(wait)
            try:
                return self.sock.recv(HANDSHAKE_CHUNK)
            except TimeoutError:
                if poll is None and deadline is None:
                    raise

    def _send_raw(self, data: bytes, deadline: float | None) -> None:
        if not data:
            return
        if deadline is not None:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
        self.sock.sendall(data)

    # -- socket API --------------------------------------------------------------------------

    def fileno(self) -> int:
        return self.sock.fileno()

    def getpeername(self) -> Any:
        return self.sock.getpeername()

    def getsockname(self) -> Any:
        return self.sock.getsockname()

    def setsockopt(self, *args: Any) -> None:
        self.sock.setsockopt(*args)

    def settimeout(self, value: float | None) -> None:
        self.sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self.sock.gettimeout()

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._obj.getpeercert(binary_form)

    def cipher(self) -> tuple[str, str, int] | None:
        return self._obj.cipher()

    def version(self) -> str | None:
        return self._obj.version()

    def pending(self) -> int:
        """Bytes that a receive may return without the socket becoming readable: plaintext
        already decrypted, and ciphertext already read into the BIO (poll cannot see either)."""
        with self._lock:
            return self._obj.pending() + self._in.pending

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Plaintext into ``buffer``; 0 at the end of the stream. Raises TimeoutError like a
        socket."""
        view = memoryview(buffer).cast("B")
        if nbytes:
            view = view[:nbytes]
        if not len(view):
            return 0
        while True:
            got = self._decrypt_into(view)
            if got is not None:
                return got
            self._flush_unsent(blocking=False)
            if self._in.eof:
                return 0  # the socket ended and nothing decryptable is left
            if not self._rbuf:
                self._rbuf = bytearray(READ_CHUNK)
            n = self.sock.recv_into(self._rbuf)
            with self._lock:
                if n == 0:
                    self._in.write_eof()
                else:
                    self._in.write(memoryview(self._rbuf)[:n])

    def recv(self, size: int, flags: int = 0) -> bytes:
        buf = bytearray(size)
        n = self.recv_into(buf)
        return bytes(buf[:n])

    def _decrypt_into(self, view: memoryview) -> int | None:
        """As much plaintext as the BIO holds records for; None if nothing yet."""
        total = 0
        with self._lock:
            while total < len(view):
                try:
                    # With a buffer, read() returns a count (typeshed says bytes).
                    n: int = self._obj.read(len(view) - total, view[total:])  # type: ignore[assignment]
                except ssl.SSLWantReadError:
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    # close_notify, or a bare FIN: the end. VTR1 messages carry their length,
                    # so a stream cut short is still caught by the wire layer.
                    self._eof = True
                    break
                if n == 0:
                    break
                total += n
            out = self._out.read() if self._out.pending else b""
        if out:  # a read can produce output (alerts, key updates): keep it in order
            with self._send_lock:
                self._unsent += out
        if total:
            return total
        return 0 if self._eof else None

    def sendmsg(self, buffers: Iterable[Any], *args: Any) -> int:
        """Encrypt (part of) the first non-empty buffer; returns the plaintext bytes taken."""
        if args:
            raise NotImplementedError("ancillary data cannot travel over TLS")
        with self._send_lock:
            self._flush_unsent_locked(blocking=True)  # TimeoutError here took nothing new
            for buf in buffers:
                view = buf if isinstance(buf, memoryview) else memoryview(buf)
                if view.nbytes == 0:
                    continue
                if view.format != "B" or view.ndim != 1:
                    view = view.cast("B")
                chunk = view[:WRITE_CHUNK]
                with self._lock:
                    n = self._obj.write(chunk)
                    self._unsent += self._out.read()
                with contextlib.suppress(TimeoutError):  # taken: the rest goes out next time
                    self._flush_unsent_locked(blocking=True)
                return n
            return 0

    def send(self, data: Any, flags: int = 0) -> int:
        return self.sendmsg([data])

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            view = view[self.sendmsg([view]) :]
        self._flush_unsent(blocking=True)

    def _flush_unsent(self, blocking: bool) -> None:
        if not self._unsent:
            return
        if blocking:
            with self._send_lock:
                self._flush_unsent_locked(True)
        elif self._send_lock.acquire(blocking=False):
            try:
                with contextlib.suppress(TimeoutError):
                    self._flush_unsent_locked(True)
            finally:
                self._send_lock.release()

    def _flush_unsent_locked(self, blocking: bool) -> None:
        if not self._unsent:
            return
        view = memoryview(self._unsent)
        try:
            while view:
                view = view[self.sock.send(view) :]  # TimeoutError: the rest stays queued
        finally:
            self._unsent = bytes(view) if view else b""  # copies only after a short write

    def shutdown(self, how: int) -> None:
        """Send what is queued and, when writing ends, a close_notify; then the socket's
        shutdown."""
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            with self._lock:
                with contextlib.suppress(ssl.SSLError):
                    self._obj.unwrap()
                out = self._out.read()
            deadline = time.monotonic() + FLUSH_ON_CLOSE
            with self._send_lock:
                self._unsent += out
                old = self.sock.gettimeout()
                try:
                    while self._unsent and time.monotonic() < deadline:
                        self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                        with contextlib.suppress(TimeoutError):
                            self._flush_unsent_locked(True)
                except OSError:
                    pass
                finally:
                    with contextlib.suppress(OSError):
                        self.sock.settimeout(old)
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()


__all__ = ["TLSSocket", "fingerprint", "normalize_fingerprint"]
