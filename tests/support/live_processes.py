"""``vtremote live recv`` and ``vtremote live send`` as real processes on loopback.

:func:`spawn_receiver` starts a receiver, waits for its ``listening on HOST:PORT``
line on stderr and returns a :class:`ReceiverProcess`; :func:`spawn_sender` starts a
sender (``Popen``). Every process started is appended to ``procs`` as
``(name, Popen, stderr path)`` so a fixture can kill it and print its log.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LISTENING = re.compile(r"vtremote live: listening on (?P<host>[^\s:]+):(?P<port>\d+)")

#: (name, process, its stderr file) of each process a test started.
Started = list[tuple[str, "subprocess.Popen[bytes]", Path]]


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


def live_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vtremote.cli.main", "live", *args]


def spawn_receiver(
    procs: Started,
    tmp_path: Path,
    *args: str,
    listen: str = "127.0.0.1:0",
    config: Path | None = None,
) -> ReceiverProcess:
    n = len(procs)
    out, err = tmp_path / f"recv{n}.stdout", tmp_path / f"recv{n}.stderr"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            live_cmd("recv", "--listen", listen, "--json", *args),
            stdout=o,
            stderr=e,
            env=_env(config),
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


def spawn_sender(
    procs: Started, tmp_path: Path, *args: str, config: Path | None = None
) -> subprocess.Popen[bytes]:
    n = len(procs)
    err = tmp_path / f"send{n}.stderr"
    with err.open("wb") as e:
        proc = subprocess.Popen(
            live_cmd("send", *args), stdout=subprocess.DEVNULL, stderr=e, env=_env(config)
        )
    procs.append((f"sender {n}", proc, err))
    return proc
