"""What stands between the receiver's port and its sources: the key, the handshake budget.

A :class:`Gate` decides what a HELLO gets (a CHALLENGE, a refusal, or, on a
receiver without a key, admission), checks an AUTH, and bounds the TCP
connections still in their handshake: at most :data:`MAX_HANDSHAKES_PER_HOST`
from one host and :data:`MAX_HANDSHAKES` in all. A new connection beyond either
bound ends the oldest handshake in its way, so connections left idle cannot
keep a sender that completes its handshake out. Faults are counted and logged
through a :class:`~vtremote.live.ratelog.FaultLog`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from vtremote.errors import AuthError, RemoteProtocolError
from vtremote.live import auth
from vtremote.live import protocol as p
from vtremote.live.ratelog import FaultLog

#: A whole handshake (HELLO, and CHALLENGE/AUTH with a key) must be done this soon after connect.
HANDSHAKE_DEADLINE_S = 3.0
MAX_HANDSHAKES = 64
MAX_HANDSHAKES_PER_HOST = 8

NEEDS_KEY = (
    "this receiver needs its key: vtremote live send --key-file F (or --key K); "
    "a sender older than the keyed handshake cannot send to it"
)


class Gate:
    """Admission before a source exists. ``key``: the receiver's key, or None (an open port)."""

    def __init__(self, key: str | None, logger: logging.Logger) -> None:
        self.secret = auth.check_key(key) if key is not None else None
        self.cookies = auth.CookieJar(int(HANDSHAKE_DEADLINE_S * 1000))
        self.faults = FaultLog(logger)
        self._lock = threading.Lock()
        self._handshakes: OrderedDict[socket.socket, str] = OrderedDict()  # oldest first

    # --- HELLO and AUTH ------------------------------------------------------------------

    def answer_hello(
        self, hello: p.Hello, peer: tuple[str, int], now_ms: int
    ) -> p.Challenge | p.HelloAck | None:
        """What ``hello`` from ``peer`` gets: a CHALLENGE, a refusal, or None (admit it as is)."""
        if self.secret is None:
            return None
        if not hello.flags & auth.HELLO_KEYED:
            self.faults.warning("refused", "live: %s:%d: refused a sender without a key", *peer)
            return p.HelloAck(p.AckStatus.REFUSED, 0, text=NEEDS_KEY)
        return p.Challenge(self.cookies.make(peer[0], peer[1], hello.nonce, now_ms))

    def check_auth(self, msg: p.Auth, peer: tuple[str, int], now_ms: int) -> tuple[p.Hello, bytes]:
        """The HELLO ``msg`` proves and the session key; :class:`AuthError` if it proves nothing."""
        if self.secret is None:
            raise RemoteProtocolError("AUTH to a receiver without a key")
        hello = p.parse_payload(p.MessageType.HELLO, msg.hello)
        assert isinstance(hello, p.Hello)
        why = self.cookies.check(msg.cookie, peer[0], peer[1], hello.nonce, now_ms)
        proof = auth.prove(self.secret, msg.cookie, msg.nonce, msg.hello)
        if not why and not auth.same(proof.tag, msg.proof):
            why = "wrong key"
        if why:
            self.faults.warning("refused", "live: %s:%d: refused: %s", peer[0], peer[1], why)
            raise AuthError(why)
        return hello, proof.session_key

    # --- TCP ----------------------------------------------------------------------------

    def tcp_handshake(
        self,
        conn: socket.socket,
        peer: tuple[str, int],
        parser: p.StreamParser,
        send: Callable[[p.Message], None],
    ) -> tuple[p.Hello, list[p.Message]] | None:
        """HELLO (and with a key CHALLENGE, AUTH) within the deadline; None if the peer left.

        The deadline is for the whole exchange, however its bytes are spread out.
        """
        deadline = time.monotonic() + HANDSHAKE_DEADLINE_S
        got: list[p.Message] = []

        def next_message() -> p.Message | None:
            while not got:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                conn.settimeout(left)
                data = conn.recv(4096)
                if not data:
                    return None
                got.extend(parser.feed(data))
            return got.pop(0)

        hello = next_message()
        if hello is None:
            return None
        if not isinstance(hello, p.Hello):
            raise RemoteProtocolError(f"expected HELLO, got {type(hello).__name__}")
        reply = self.answer_hello(hello, peer, now_ms())
        if reply is None:
            return hello, got
        send(reply)
        if isinstance(reply, p.HelloAck):
            return None  # refused: it has no key
        msg = next_message()
        if msg is None:
            return None
        if not isinstance(msg, p.Auth):
            raise RemoteProtocolError(f"expected AUTH, got {type(msg).__name__}")
        try:
            hello, _ = self.check_auth(msg, peer, now_ms())
        except AuthError as e:
            send(p.HelloAck(p.AckStatus.REFUSED, 0, text=str(e)))
            return None
        return hello, got

    def enter(self, conn: socket.socket, host: str) -> None:
        """``conn`` from ``host`` starts its handshake; the oldest in its way are ended."""
        with self._lock:
            while True:
                same_host = [c for c, h in self._handshakes.items() if h == host]
                if len(same_host) >= MAX_HANDSHAKES_PER_HOST:
                    victim, why = same_host[0], f"{MAX_HANDSHAKES_PER_HOST} from {host}"
                elif len(self._handshakes) >= MAX_HANDSHAKES:
                    victim, why = next(iter(self._handshakes)), f"{MAX_HANDSHAKES} in all"
                else:
                    break
                del self._handshakes[victim]
                self.faults.warning(
                    "handshakes", "live: %s handshakes waiting; ended the oldest", why
                )
                with contextlib.suppress(OSError):
                    victim.shutdown(socket.SHUT_RDWR)  # its thread sees EOF and ends
            self._handshakes[conn] = host

    def leave(self, conn: socket.socket) -> None:
        """``conn``'s handshake is over (done, refused, failed or ended)."""
        with self._lock:
            self._handshakes.pop(conn, None)

    @property
    def handshaking(self) -> int:
        with self._lock:
            return len(self._handshakes)


def now_ms() -> int:
    """The clock cookies are made and checked on (monotonic ms)."""
    return time.monotonic_ns() // 1_000_000
