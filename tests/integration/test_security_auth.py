"""Wrong tokens against a real ``vtremoted``: slowed down, then blocked per source address,
logged once per burst; the token read from a file or the environment."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from client_sessions import encode_testsrc
from vtremote.errors import AuthError, ErrorCode
from vtremote.testing.servers import run_vtremoted
from vtremote.wire import Connection, Role, messages
from vtremote.wire.constants import HelloStatus

TOKEN = "correct horse battery staple"
W, H, N = 64, 64, 10


def try_token(port: int, token: str, source: str) -> tuple[int | None, str]:
    """One HELLO from ``source``: (HELLO_ACK status or None, ERROR text)."""
    conn = Connection(Role.CLIENT)
    with socket.create_connection(
        ("127.0.0.1", port), timeout=15, source_address=(source, 0)
    ) as sock:
        sock.sendall(
            b"".join(bytes(b) for b in conn.send(messages.Hello(token, "h264", "guess", "test")))
        )
        status: int | None = None
        while True:
            msg = conn.next_event()
            if isinstance(msg, messages.HelloAck):
                status = msg.status
                if status == HelloStatus.OK:
                    return status, ""
                continue
            if isinstance(msg, messages.Error):
                return status, msg.message
            try:
                data = sock.recv(65536)
            except OSError:
                return status, ""
            if not data:
                return status, ""
            conn.receive_data(data)


def encoded_count(addr: str, **options: object) -> int:
    return len(encode_testsrc(addr, N, W, H, timeout=10, **options)[1])


def test_wrong_tokens_are_blocked_per_source_and_logged_once(start_server) -> None:
    server = start_server(
        "--engine",
        "x264",
        "--token",
        TOKEN,
        "--auth-block-after",
        "4",
        "--auth-block-seconds",
        "60",
    )
    answers = [try_token(server.port, f"guess{i}", "127.0.0.4") for i in range(4)]
    assert all(
        status == HelloStatus.AUTH_FAILED and "authentication failed" in text
        for status, text in answers
    )
    # Blocked now: even the right token from that address is refused, with the reason.
    status, text = try_token(server.port, TOKEN, "127.0.0.4")
    assert (
        status is None
        and "too many failed authentications from 127.0.0.4" in text
        and "blocked" in text
    )
    # Everyone else is served as before.
    assert encoded_count(server.addr, token=TOKEN) == N
    log = server.stderr_text()
    assert log.count("4 wrong tokens from 127.0.0.4: refusing it for 60 s") == 1


def test_parallel_guessing_is_bounded(start_server) -> None:
    """The finding: 2,000 wrong HELLOs answered in 1.4 s. Now a source gets a handful of
    answers before it is blocked, however many connections it opens at once."""
    server = start_server("--engine", "x264", "--token", TOKEN, "--auth-block-after", "10")
    results: list[tuple[int | None, str]] = []
    lock = threading.Lock()

    def guesser(k: int) -> None:
        for i in range(25):
            r = try_token(server.port, f"guess-{k}-{i}", "127.0.0.5")
            with lock:
                results.append(r)

    threads = [threading.Thread(target=guesser, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 200
    evaluated = [r for r in results if r[0] == HelloStatus.AUTH_FAILED]
    blocked = [r for r in results if "blocked" in r[1]]
    # At most block_after guesses, plus those already past the block check when it began
    # (bounded by the per-source handshake cap of 8).
    assert 10 <= len(evaluated) <= 10 + 8
    assert len(blocked) >= 200 - len(evaluated) - 8
    assert server.stop() == 0  # writes the summaries of windows still open
    log = server.stderr_text()
    assert log.count("HELLO authfail") <= 5 * 2  # the rest is summarised
    assert "more like" in log


def test_token_from_file_and_environment(
    start_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    server = start_server("--engine", "x264", "--token-file", str(token_file))
    with pytest.raises(AuthError) as info:
        encoded_count(server.addr)
    assert server.addr in str(info.value)
    monkeypatch.setenv("VTREMOTE_TOKEN", TOKEN)
    assert encoded_count(server.addr) == N
    monkeypatch.delenv("VTREMOTE_TOKEN")

    env_server = start_server("--engine", "x264", env={"VTREMOTED_TOKEN": TOKEN})
    assert encoded_count(env_server.addr, token=TOKEN) == N
    assert try_token(env_server.port, "nope", "127.0.0.1")[0] == HelloStatus.AUTH_FAILED
    assert TOKEN not in " ".join(env_server.args)  # nothing secret on the command line


def test_token_and_token_file_together_is_a_usage_error(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("x\n")
    done = run_vtremoted("--token", "a", "--token-file", str(token_file))
    assert done.returncode == 2 and "--token or --token-file" in done.stderr


def test_wrong_token_error_code_is_auth(start_server) -> None:
    server = start_server("--engine", "x264", "--token", TOKEN)
    status, text = try_token(server.port, "nope", "127.0.0.6")
    assert status == HelloStatus.AUTH_FAILED and text == "authentication failed"
    assert int(ErrorCode.AUTH) == 1
