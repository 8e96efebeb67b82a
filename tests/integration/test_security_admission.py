"""Admission control against a real ``vtremoted``: floods of unauthenticated connections,
dripping handshakes and the busy ERROR a displaced connection gets.

Floods are bounded in count and time and stay on loopback (127.0.0.x).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

from client_sessions import encode_testsrc
from vtremote.errors import ErrorCode
from vtremote.wire import Connection, Role, messages

TOKEN = "s3cret-token"
W, H, N = 64, 64, 15


def hello_conn_and_bytes(token: str = TOKEN) -> tuple[Connection, bytes]:
    conn = Connection(Role.CLIENT)
    data = b"".join(bytes(b) for b in conn.send(messages.Hello(token, "h264", "flood", "test")))
    return conn, data


def read_error(
    sock: socket.socket, conn: Connection, timeout: float = 10.0
) -> messages.Error | None:
    """The ERROR the server sent before closing, or None if it just closed."""
    sock.settimeout(timeout)
    while True:
        msg = conn.next_event()
        if msg is not None:
            return msg if isinstance(msg, messages.Error) else None
        try:
            data = sock.recv(65536)
        except OSError:
            return None
        if not data:
            return None
        conn.receive_data(data)


@dataclass
class Flood:
    """Keeps ``width`` unauthenticated connections open from ``source``, reopening each as it
    drops: half stay silent, half drip one byte of a HELLO every ``drip`` seconds."""

    port: int
    source: str
    width: int
    drip: float = 0.5
    max_connections: int = 1500
    pause: float = 0.01  # between a drop and the reopen (0: a tight loop)
    opened: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._worker, args=(i % 2 == 0,), daemon=True)
            for i in range(self.width)
        ]
        for t in threads:
            t.start()
        return threads

    def _worker(self, drip: bool) -> None:
        while not self.stop.is_set() and self.opened < self.max_connections:
            self.opened += 1
            try:
                sock = socket.create_connection(
                    ("127.0.0.1", self.port), timeout=5, source_address=(self.source, 0)
                )
            except OSError:
                time.sleep(0.05)
                continue
            conn, data = hello_conn_and_bytes("wrong")
            try:
                sock.settimeout(self.drip)
                i = 0
                while not self.stop.is_set():
                    try:
                        chunk = sock.recv(65536)
                    except TimeoutError:
                        if drip and i < len(data) - 1:  # never completes the HELLO
                            sock.send(data[i : i + 1])
                            i += 1
                        continue
                    if not chunk:
                        break
                    conn.receive_data(chunk)
                    msg = conn.next_event()
                    if isinstance(msg, messages.Error):
                        self.errors.append(f"{msg.code} {msg.message}")
                        break
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    sock.close()
            time.sleep(self.pause)  # reopen at once, but leave the shared CPUs to the server


def encode_once(addr: str) -> int:
    return len(encode_testsrc(addr, N, W, H, token=TOKEN, timeout=10)[1])


@pytest.mark.parametrize("source", ["127.0.0.2", "127.0.0.1"], ids=["other-host", "same-host"])
def test_flood_of_idle_connections_does_not_lock_clients_out(start_server, source: str) -> None:
    server = start_server(
        "--engine",
        "x264",
        "--token",
        TOKEN,
        "--max-sessions",
        "4",
        "--handshake-timeout",
        "2",
        "--idle-timeout",
        "30",
    )
    flood = Flood(server.port, source, width=80)
    threads = flood.start()
    try:
        time.sleep(1.0)  # the flood holds every slot it can get
        results: list[int] = []
        workers = [
            threading.Thread(target=lambda: results.append(encode_once(server.addr)))
            for _ in range(3)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        results.append(encode_once(server.addr))
    finally:
        flood.stop.set()
        for t in threads:
            t.join(10)
    assert results == [N] * 4
    assert flood.opened > 80  # the flood really reopened what the server closed
    # Displaced connections were told why (busy + reason), not silently closed.
    assert any(
        e.startswith(f"{int(ErrorCode.BUSY)} ") and "unauthenticated connections" in e
        for e in flood.errors
    ), flood.errors[:5]
    log = server.stderr_text()
    # One line per refused connection no more: repeats are summarised.
    lines = log.splitlines()
    assert len(lines) < 40 + 12 * 4 + flood.opened // 10, (
        f"{len(lines)} log lines for {flood.opened} connections"
    )


def test_handshake_deadline_closes_a_dripping_connection(start_server) -> None:
    server = start_server(
        "--engine", "x264", "--token", TOKEN, "--handshake-timeout", "1", "--idle-timeout", "30"
    )
    conn, data = hello_conn_and_bytes()
    sock = socket.create_connection(server.address, timeout=5)
    got: messages.Error | None = None
    with sock:
        for i in range(len(data) - 1):  # one byte every 0.25 s: never a whole HELLO in time
            try:
                sock.send(data[i : i + 1])
            except OSError:
                break
            sock.settimeout(0.25)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if chunk:
                conn.receive_data(chunk)
                got = read_error(sock, conn)
            break
    assert got is not None, "the server never answered the dripping client"
    assert got.code == ErrorCode.TIMEOUT and "handshake timeout" in got.message
    assert i < len(data) - 1


def test_per_source_cap_evicts_the_oldest_with_a_reason(start_server) -> None:
    server = start_server(
        "--engine", "x264", "--max-handshakes-per-source", "2", "--handshake-timeout", "20"
    )
    socks = [
        socket.create_connection(server.address, timeout=5, source_address=("127.0.0.3", 0))
        for _ in range(2)
    ]
    time.sleep(0.3)
    third = socket.create_connection(server.address, timeout=5, source_address=("127.0.0.3", 0))
    conn, _ = hello_conn_and_bytes()
    err = read_error(socks[0], conn)
    assert err is not None and err.code == ErrorCode.BUSY
    assert "too many unauthenticated connections from 127.0.0.3 (limit 2)" in err.message
    # Another address is not affected at all.
    assert encode_once_plain(server.addr) == N
    for s in [*socks, third]:
        s.close()


def encode_once_plain(addr: str) -> int:
    return len(encode_testsrc(addr, N, W, H)[1])
