"""Run ``vtremote live recv`` and ``vtremote live send`` as real processes on loopback.

``start_receiver(*args)`` starts a receiver on ``127.0.0.1:0``, waits for its
``listening on HOST:PORT`` line on stderr and returns a :class:`ReceiverProcess`;
``sender(*args)`` starts a sender (``Popen``). Logs are kept in files and
printed when a test fails; processes still running at teardown are killed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

LISTENING = re.compile(r"vtremote live: listening on (?P<host>[^\s:]+):(?P<port>\d+)")


@dataclass
class ReceiverProcess:
    proc: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def finish(self, timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
        """Wait for the receiver to exit by itself; (exit code, --json summary)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(
                f"receiver still running after {timeout} s:\n{self.stderr()}"
            ) from None
        text = self.stdout_path.read_text()
        return rc, (json.loads(text) if text.strip() else {})

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.finish(timeout)


def _env(config: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if config is not None:  # the default key file: CONFIG/vtremote/live.key
        env["XDG_CONFIG_HOME"] = str(config)
    return env


@pytest.fixture
def live_config(tmp_path: Path) -> Path:
    """A config folder (``XDG_CONFIG_HOME``) of this test's processes, with a live key in it,
    so a receiver and a sender started in either order share it."""
    from vtremote.live.keys import load_or_make_key

    config = tmp_path / "config"
    load_or_make_key(config / "vtremote" / "live.key")
    return config


def live_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vtremote.cli.main", "live", *args]


StartReceiver = Callable[..., ReceiverProcess]
StartSender = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def procs(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[list[tuple[str, subprocess.Popen[bytes], Path]]]:
    started: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    yield started
    for _, proc, _ in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for name, _, path in started:
            print(f"\n===== {name} stderr =====\n{path.read_text(errors='replace')}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def start_receiver(
    procs: list[tuple[str, subprocess.Popen[bytes], Path]], tmp_path: Path, live_config: Path
) -> StartReceiver:
    def start(*args: str, listen: str = "127.0.0.1:0") -> ReceiverProcess:
        n = len(procs)
        out, err = tmp_path / f"recv{n}.stdout", tmp_path / f"recv{n}.stderr"
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                live_cmd("recv", "--listen", listen, "--json", *args),
                stdout=o,
                stderr=e,
                env=_env(live_config),
            )
        procs.append((f"receiver {n}", proc, err))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = LISTENING.search(err.read_text(errors="replace"))
            if m:
                return ReceiverProcess(proc, int(m.group("port")), out, err)
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"receiver did not start:\n{err.read_text(errors='replace')}")

    return start


@pytest.fixture
def start_sender(
    procs: list[tuple[str, subprocess.Popen[bytes], Path]], tmp_path: Path, live_config: Path
) -> StartSender:
    def start(*args: str) -> subprocess.Popen[bytes]:
        n = len(procs)
        err = tmp_path / f"send{n}.stderr"
        with err.open("wb") as e:
            proc = subprocess.Popen(
                live_cmd("send", *args),
                stdout=subprocess.DEVNULL,
                stderr=e,
                env=_env(live_config),
            )
        procs.append((f"sender {n}", proc, err))
        return proc

    return start


def lavfi(size: str = "320x240", rate: int = 30) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]


@dataclass
class Vtremoted:
    proc: subprocess.Popen[str]
    addr: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@pytest.fixture
def vtremoted(tmp_path: Path) -> Iterator[Vtremoted]:
    """A real ``vtremoted --engine x264`` on 127.0.0.1, port 0.

    Stopped (SIGTERM, exit 0) at teardown.
    """
    err = tmp_path / "vtremoted.stderr"
    cmd = [
        sys.executable,
        "-m",
        "vtremote.cli.serve",
        "--listen",
        "127.0.0.1:0",
        "--no-advertise",
        "--engine",
        "x264",
    ]
    with err.open("w") as e:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=e, text=True, env=_env())
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "vtremoted listening on HOST:PORT", or EOF if it failed
    m = re.match(r"vtremoted listening on (\S+)$", line.strip())
    if not m:
        proc.kill()
        proc.wait(5)
        raise AssertionError(
            f"vtremoted did not start ({line!r}):\n{err.read_text(errors='replace')}"
        )
    server = Vtremoted(proc, m.group(1), err)
    yield server
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise AssertionError(f"vtremoted did not stop:\n{server.stderr()}") from None
        assert rc == 0, server.stderr()
    proc.stdout.close()
