"""Keys on the command line: `vtremote live recv` and `send` as real processes on loopback."""

from __future__ import annotations

import random
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from vtremote.live import protocol as p

LAVFI = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30"]


def _live(*args: str) -> list[str]:
    return [sys.executable, "-m", "vtremote.cli.main", "live", *args]


def _wait_for_line(recv: Any, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        err = recv.stderr()
        for line in err.splitlines():
            if text in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no line with {text!r} within {timeout} s:\n{recv.stderr()}")


def _sender_stderr(proc: subprocess.Popen[bytes], tmp_path: Path) -> str:
    # conftest keeps each process's stderr in sendN.stderr; the newest is this one
    newest = max(tmp_path.glob("send*.stderr"), key=lambda f: f.stat().st_mtime)
    return newest.read_text(errors="replace")


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_recv_makes_a_key_and_prints_the_send_command_that_works(
    transport: str, start_receiver: Any, start_sender: Any, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "cam.key"
    recv = start_receiver("--key-file", str(key_file))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) == 43
    line = _wait_for_line(recv, "senders: vtremote live send")
    assert f"--to 127.0.0.1:{recv.port} --key-file {key_file}" in line
    sender = start_sender(
        *LAVFI, "--to", recv.addr, "--key-file", str(key_file), "--transport", transport, "-t", "1"
    )
    assert sender.wait(60) == 0
    rc, summary = recv.finish()
    assert rc == 0 and summary["frames"] >= 25 and summary["faults"] == {}


def test_no_key_on_both_sides_streams_and_warns(start_receiver: Any, start_sender: Any) -> None:
    recv = start_receiver("--no-key")
    assert "warning: --no-key" in recv.stderr()
    _wait_for_line(recv, "--no-key")
    sender = start_sender(*LAVFI, "--to", recv.addr, "--no-key", "-t", "1")
    assert sender.wait(60) == 0
    rc, summary = recv.finish()
    assert rc == 0 and summary["frames"] >= 25


def test_a_sender_without_the_key_gets_a_clear_refusal(
    start_receiver: Any, start_sender: Any, tmp_path: Path
) -> None:
    recv = start_receiver()
    sender = start_sender(*LAVFI, "--to", recv.addr, "--no-key", "-t", "1")
    assert sender.wait(60) == 1
    assert "refused the stream: this receiver needs its key" in _sender_stderr(sender, tmp_path)
    other = tmp_path / "other.key"
    other.write_text("another-key-of-enough-length\n")
    sender = start_sender(*LAVFI, "--to", recv.addr, "--key-file", str(other), "-t", "1")
    assert sender.wait(60) == 1
    assert "wrong key" in _sender_stderr(sender, tmp_path)
    assert recv.proc.poll() is None  # still waiting for a camera
    rc, summary = recv.stop()
    assert rc == 0 and summary["frames"] == 0 and summary["faults"]["refused"] == 2


def test_a_keyed_sender_stops_at_a_receiver_that_does_not_ask(
    start_receiver: Any, start_sender: Any, tmp_path: Path
) -> None:
    recv = start_receiver("--no-key")
    sender = start_sender(*LAVFI, "--to", recv.addr, "-t", "1")  # the default key file
    assert sender.wait(60) == 1
    assert "without asking for the key" in _sender_stderr(sender, tmp_path)
    recv.stop()


def test_hello_and_bye_with_a_random_id_do_not_stop_the_receiver(
    start_receiver: Any, start_sender: Any
) -> None:
    recv = start_receiver()
    hello = p.Hello(random.getrandbits(31), 1, p.Codec.H264, 160, 120, 30, 1)
    attack = b"".join(bytes(b) for m in (hello, p.Bye()) for b in p.serialize(m))
    assert len(attack) == 59
    with socket.create_connection(("127.0.0.1", recv.port), timeout=10) as s:
        s.sendall(attack)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        from vtremote.live.datagram import Packetizer

        for msg in (hello, p.Bye()):
            for parts in Packetizer(0).datagrams(msg):
                u.sendto(b"".join(bytes(b) for b in parts), ("127.0.0.1", recv.port))
    _wait_for_line(recv, "refused a sender without a key")
    sender = start_sender(*LAVFI, "--to", recv.addr, "-t", "1")
    assert sender.wait(60) == 0
    rc, summary = recv.finish()
    assert rc == 0 and summary["frames"] >= 25 and len(summary["sources"]) == 1


def test_key_flags_are_exclusive(start_receiver: Any, tmp_path: Path) -> None:
    done = subprocess.run(
        _live("recv", "--listen", "127.0.0.1:0", "--no-key", "--key", "x" * 20),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "--key and --no-key: give one of them" in done.stderr
    done = subprocess.run(
        _live("recv", "--listen", "127.0.0.1:0", "--key", "short"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "too short" in done.stderr
