"""The ``vtremoted`` process: startup line, addresses, engines, --once, signals and draining."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from media import testsrc_frames
from vtr_client import Closed, VTRClient
from vtremote.testing.servers import LISTENING, run_vtremoted
from vtremote.wire import messages
from vtremote.wire.constants import PixelFormat

W, H = 320, 180
ENCODE = (("mode", "encode"), ("gop", "10"))
HW_ENGINE = os.environ.get("VTREMOTE_HW_ENGINE", "")


def streaming(addr: tuple[str, int]) -> VTRClient:
    client = VTRClient(addr)
    client.hello("h264")
    client.configure(W, H, PixelFormat.NV12, ENCODE)
    return client


def test_prints_exactly_one_stdout_line(start_server) -> None:
    srv = start_server("--engine", "x264")
    assert srv.stop() == 0
    assert srv.proc.stdout is not None and srv.proc.stdout.closed  # the listening line was read
    assert "listening on 127.0.0.1:" in srv.stderr_text()


def test_stdout_is_only_the_listening_line() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vtremote.cli.serve",
            "--listen",
            "127.0.0.1:0",
            "--once",
            "--engine",
            "null",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().rstrip("\n")
    m = LISTENING.match(line)
    assert m, line
    with VTRClient((m.group("host"), int(m.group("port")))) as client:
        client.hello("h264")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == ""  # nothing but the one line, ever
    assert "SUMMARY" not in err  # no CONFIGURE, no summary


def test_once_serves_one_client_then_exits_0(start_server) -> None:
    srv = start_server("--engine", "x264", "--once")
    with streaming(srv.address) as client:
        assert len(client.encode(testsrc_frames(5, W, H, "nv12"))) == 5
    assert srv.wait(30) == 0


def test_sigterm_drains_streaming_sessions_and_exits_0(start_server) -> None:
    srv = start_server("--engine", "x264")
    frames = testsrc_frames(30, W, H, "nv12")
    streamer = streaming(srv.address)
    for frame in frames[:10]:
        streamer.send(streamer.frame_message(frame))
    waiting = VTRClient(srv.address)  # in its handshake: refused at once
    assert waiting.hello("h264").status == 0
    srv.proc.send_signal(signal.SIGTERM)
    srv.wait_for_log(r"SIGTERM received")
    err = waiting.recv()
    assert isinstance(err, messages.Error) and (err.code, err.message) == (
        7,
        "server shutting down",
    )
    waiting.close()
    with pytest.raises(ConnectionRefusedError):  # the listener is closed
        socket.create_connection(srv.address, timeout=5).close()
    packets = streamer.encode(frames[10:])  # the streaming session finishes normally
    assert len(packets) == 30
    streamer.close()
    assert srv.wait(30) == 0


def test_drain_timeout_closes_stuck_sessions_with_error_7(start_server) -> None:
    srv = start_server("--engine", "x264", "--drain-timeout", "1")
    with streaming(srv.address) as client:
        srv.proc.send_signal(signal.SIGTERM)
        msg = client.recv()  # the client stays silent: the drain timeout ends the session
        assert isinstance(msg, messages.Error) and msg.code == 7
        with pytest.raises(Closed):
            client.recv()
    assert srv.wait(30) == 0


def test_second_sigint_exits_at_once(start_server) -> None:
    srv = start_server("--engine", "x264")
    client = streaming(srv.address)
    srv.proc.send_signal(signal.SIGINT)
    srv.wait_for_log(r"SIGINT received")
    srv.proc.send_signal(signal.SIGINT)
    assert srv.wait(30) == 130
    client.close()


def test_ipv6_listen(start_server) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not available")
    srv = start_server("--engine", "x264", "--listen", "[::1]:0")
    assert srv.host == "::1" and srv.addr.startswith("[::1]:")
    with streaming(srv.address) as client:
        assert len(client.encode(testsrc_frames(3, W, H, "nv12"))) == 3


def test_hostname_listen(start_server) -> None:
    srv = start_server("--engine", "x264", "--listen", "localhost:0")
    with socket.create_connection(srv.address, timeout=5):
        pass


@pytest.mark.parametrize("level", ["0", "1", "2", "error", "warning", "debug"])
def test_log_levels(start_server, level: str) -> None:
    srv = start_server("--engine", "x264", "--log-level", level)
    with streaming(srv.address) as client:
        client.encode(testsrc_frames(2, W, H, "nv12"))
    assert srv.stop() == 0
    log = srv.stderr_text()
    assert ("SUMMARY" in log) == (level in ("1", "2", "debug"))
    assert ("<- FRAME" in log) == (level in ("2", "debug"))  # per-message lines at debug only


@pytest.mark.parametrize(
    "args",
    [
        ("--listen", "nonsense"),
        ("--listen", "1.2.3.4:99999"),
        ("--engine", "vp9"),
        ("--max-sessions", "-1"),
        ("--idle-timeout", "0"),
        ("--log-level", "loud"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    res = run_vtremoted(*args)
    assert res.returncode == 2, res
    assert "vtremoted: error:" in res.stderr and res.stdout == ""


def test_list_engines_really_probes() -> None:
    res = run_vtremoted("--list-engines")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    x264 = next(line for line in lines if line.startswith("x264"))
    assert "available" in x264 and "unavailable" not in x264
    assert any(line.startswith("null") and " available" in line for line in lines)
    assert "    h264  encode  ok" in res.stdout
    if HW_ENGINE != "nvenc":
        nvenc = res.stdout.split("nvenc", 1)[1].split("\nqsv", 1)[0]
        assert "unavailable" in nvenc and "no: " in nvenc
    auto = lines[-1]
    assert auto.startswith("auto: ") and "null" not in auto


@pytest.mark.skipif(HW_ENGINE == "nvenc", reason="an NVIDIA device is configured")
def test_unavailable_engine_fails_loudly() -> None:
    """A named hardware engine never falls back to software (STYLE.md §1.5)."""
    res = run_vtremoted("--listen", "127.0.0.1:0", "--engine", "nvenc")
    assert res.returncode == 1
    assert res.stdout == ""  # never claimed to listen
    assert "engine nvenc does not work here" in res.stderr
    assert "libcuda" in res.stderr or "CUDA" in res.stderr or "nvenc" in res.stderr
