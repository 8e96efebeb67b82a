"""A session's socket: options, sending whole messages, closing without a reset."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable

from vtremote.errors import ConnectionLostError
from vtremote.wire.messages import Buffer, nbytes

#: Socket buffers, as the reference sets them (VTR1.md §6.5).
SOCKET_BUFFER = 4 * 1024 * 1024
#: After an ERROR or DONE: how long / how much we read and discard before closing,
#: so unread client bytes do not turn our close into a reset that eats the ERROR.
LINGER_SECONDS = 1.0
#: The same for a connection that never got past HELLO (floods must not hold threads long).
LINGER_UNAUTHENTICATED = 0.2
LINGER_BYTES = 64 * 1024 * 1024
#: Linux only: acknowledge every read at once instead of delaying the ACK (up to 40 ms).
#: The reference decoder writes a message as two ``send`` calls without TCP_NODELAY, so
#: Nagle holds its second write until our ACK of the first arrives; a delayed ACK turned
#: every lock-step PACKET into a ~40 ms round trip (docs/protocol.md "Lock-step clients").
#: The kernel clears the flag after it acts, so it is set again after each read.
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class ClientGone(ConnectionLostError):
    """The client closed or reset the connection (or stopped reading): nothing more can be sent."""


def setup_socket(sock: socket.socket, timeout: float) -> None:
    """No Nagle, the reference's buffer sizes, reads that wake every ``timeout`` s."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        with contextlib.suppress(OSError):  # the OS may cap it: fine
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
    sock.settimeout(timeout)
    quickack(sock)


def quickack(sock: socket.socket) -> None:
    """Acknowledge the next read at once (see _QUICKACK)."""
    if _QUICKACK is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


def send_buffers(sock: socket.socket, bufs: list[Buffer], stalled: Callable[[float], None]) -> None:
    """All of ``bufs`` with ``sendmsg`` (one syscall per message unless the socket is full).

    Each time a send times out, ``stalled(last_progress)`` may raise to give up.
    """
    views = [b if isinstance(b, memoryview) else memoryview(b) for b in bufs if nbytes(b)]
    views = [v if v.format == "B" and v.ndim == 1 else v.cast("B") for v in views]
    last_progress = time.monotonic()
    while views:
        try:
            sent = sock.sendmsg(views)
        except TimeoutError:
            stalled(last_progress)
            continue
        except OSError as e:
            raise ClientGone(f"send failed: {e}") from e
        last_progress = time.monotonic()
        while sent and views:
            head = views[0]
            if sent >= len(head):
                sent -= len(head)
                views.pop(0)
            else:
                views[0] = head[sent:]
                sent = 0


def close_gently(
    sock: socket.socket, *, wait_for_client: float, linger: float, stop: Callable[[], bool]
) -> None:
    """Half-close, discard what the client still sends for a moment, close (no RST).

    With ``wait_for_client`` (after DONE) our FIN waits that long for the client's
    (or until ``stop()``): the reference encoder reads PACKETs and DONE into a queue
    and drops what is still queued as soon as it sees EOF (VTR1.md §10.2). Its
    repeated FLUSHes say nothing about whether DONE was read, so only its close is a
    safe signal.
    """
    try:
        sock.settimeout(0.1)
        buf = bytearray(65536)
        drained = 0
        if wait_for_client > 0:
            drained, closed = _discard(sock, buf, wait_for_client, drained, stop)
            if closed:
                return  # the client closed: close too (finally)
        sock.shutdown(socket.SHUT_WR)
        _discard(sock, buf, linger, drained, lambda: False)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def _discard(
    sock: socket.socket, buf: bytearray, seconds: float, drained: int, stop: Callable[[], bool]
) -> tuple[int, bool]:
    """Read and drop for ``seconds`` (up to LINGER_BYTES in all); (drained, client closed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop() and drained < LINGER_BYTES:
        try:
            n = sock.recv_into(buf)
        except TimeoutError:
            continue
        if n == 0:
            return drained, True
        drained += n
    return drained, False


__all__ = ["ClientGone", "close_gently", "quickack", "send_buffers", "setup_socket"]
