"""Floods a real ``vtremoted`` must take without losing its port or its log: half-open TLS
handshakes, idle connections to the metrics endpoint, HELLO strings that would forge log
lines, CONFIGURE numbers that overflow.

The server's threads and descriptors are read from /proc/PID; floods are bounded in count
and time and stay on loopback (127.0.0.x).
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from test_security_auth import N
from test_security_auth import encoded_count as encode_once

from vtremote.errors import BadRequestError
from vtremote.server.metrics import MAX_METRICS_CONNECTIONS
from vtremote.wire import Connection, Role, messages

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")

TOKEN = "flood-token"
FINGERPRINT = r"SHA-256 fingerprint ([0-9A-F:]{95})"
#: The first bytes of a TLS ClientHello record (handshake, TLS 1.0 record version, 512 bytes
#: announced) and nothing more: a handshake that never completes.
HALF_CLIENT_HELLO = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03])


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


class Usage:
    """Threads and descriptors of a server process: at idle, and the peak since."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.idle_threads, self.idle_fds = threads_of(pid), fds_of(pid)
        self.peak_threads = self.peak_fds = 0

    def sample(self) -> None:
        self.peak_threads = max(self.peak_threads, threads_of(self.pid))
        self.peak_fds = max(self.peak_fds, fds_of(self.pid))

    def assert_peak_within(self, threads: int, fds: int) -> None:
        assert self.peak_threads <= self.idle_threads + threads, vars(self)
        assert self.peak_fds <= self.idle_fds + fds, vars(self)

    def wait_idle(self) -> None:
        wait_until("threads back to idle", lambda: threads_of(self.pid) <= self.idle_threads)
        wait_until("descriptors back to idle", lambda: fds_of(self.pid) <= self.idle_fds)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (EOF or reset); False while it is still open."""
    sock.setblocking(False)
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_half_open_tls_handshakes_are_capped_per_source(start_server, tmp_path: Path) -> None:
    # A deadline long enough that only the per-source cap can explain connections closing.
    server = start_server(
        "--engine",
        "x264",
        "--tls",
        "--tls-dir",
        str(tmp_path / "state"),
        "--token",
        TOKEN,
        "--handshake-timeout",
        "60",
        "--max-handshakes-per-source",
        "8",
    )
    fp = server.wait_for_log(FINGERPRINT).group(1)
    assert encode_once(server.addr, token=TOKEN, tls_fingerprint=fp) == N
    usage = Usage(server.proc.pid)
    flood: list[socket.socket] = []
    ok = 0
    try:
        for i in range(200):
            s = socket.create_connection(server.address, timeout=5, source_address=("127.0.0.5", 0))
            s.sendall(HALF_CLIENT_HELLO)
            flood.append(s)
            if i % 40 == 39:  # a legitimate TLS client with the token, mid-flood
                ok += encode_once(server.addr, token=TOKEN, tls_fingerprint=fp) == N
            usage.sample()
        # All but the newest 8 are closed by the server, long before their deadline.
        wait_until(
            "the server closed all but 8 of 200 half-open TLS connections",
            lambda: sum(closed_by_server(s) for s in flood) >= 192,
        )
        assert not any(closed_by_server(s) for s in flood[-8:])
        ok += encode_once(server.addr, token=TOKEN, tls_fingerprint=fp) == N
        usage.sample()
    finally:
        for s in flood:
            s.close()
    assert ok == 6
    # Pending handshakes cost what the cap allows (8) and the few being evicted; never 200.
    usage.assert_peak_within(threads=8 + 16, fds=8 + 16)
    usage.wait_idle()
    lines = server.stderr_text().splitlines()
    assert len(lines) < 100, f"{len(lines)} log lines for one flood"


def test_idle_metrics_connections_leave_the_vtr1_port_alone(start_server) -> None:
    # A descriptor limit the flood could exhaust: 300 idle connections > 256.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, soft), hard))
    try:
        server = start_server("--engine", "x264", "--metrics", "127.0.0.1:0")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    port = int(server.wait_for_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
    assert encode_once(server.addr) == N
    usage = Usage(server.proc.pid)
    flood: list[socket.socket] = []
    ok = 0
    try:
        for i in range(300):
            with contextlib.suppress(OSError):
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            if i % 60 == 59:
                ok += encode_once(server.addr) == N
            usage.sample()
        ok += encode_once(server.addr) == N
    finally:
        for s in flood:
            s.close()
    assert ok == 6
    usage.assert_peak_within(threads=MAX_METRICS_CONNECTIONS + 4, fds=MAX_METRICS_CONNECTIONS + 8)
    usage.wait_idle()
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    assert b"vtremoted_sessions_total 7.0" in body
    log = server.stderr_text()
    assert "accept failed" not in log
    assert len(log.splitlines()) < 100


def test_idle_and_dripping_metrics_clients_are_cut_off(start_server) -> None:
    server = start_server("--engine", "x264", "--metrics", "127.0.0.1:0")
    port = int(server.wait_for_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as idle,
        socket.create_connection(("127.0.0.1", port), timeout=5) as drip,
    ):
        start = time.monotonic()
        sent = 0
        while not (closed_by_server(idle) and closed_by_server(drip)):
            assert time.monotonic() - start < 60, "a metrics client held its connection 60 s"
            with contextlib.suppress(OSError):
                drip.send(request[sent : sent + 1])  # a byte every 0.5 s, never a whole request
                sent += 1
            time.sleep(0.5)
    assert sent < len(request)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read()
    assert b'"status": "ok"' in body


def test_a_newline_in_the_client_name_stays_on_one_log_line(server) -> None:
    conn = Connection(Role.CLIENT)
    hello = messages.Hello("", "h264", "evil\nFORGED ERROR line", "b\x1b[31m")
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"".join(bytes(b) for b in conn.send(hello)))
        sock.settimeout(10)
        while (msg := conn.next_event()) is None:
            data = sock.recv(65536)
            assert data, "closed before HELLO_ACK"
            conn.receive_data(data)
        assert isinstance(msg, messages.HelloAck)
    line = server.wait_for_log(r"HELLO ok client=.*").group(0)
    assert line.endswith(r"client=evil\nFORGED ERROR line build=b\x1b[31m codec=h264"), line
    log = server.stderr_text()
    assert not any(ln.startswith("FORGED") for ln in log.splitlines())
    assert "\x1b" not in log


def test_an_overflowing_bitrate_is_a_clear_error(server) -> None:
    with pytest.raises(BadRequestError) as info:
        encode_once(server.addr, bitrate=10**26)
    text = str(info.value)
    assert "bitrate=100000000000000000000000000" in text
    assert "0..2147483647" in text
    server.wait_for_log(r"ERROR 4 to client")
    log = server.stderr_text()
    assert "Traceback" not in log and "OverflowError" not in log
