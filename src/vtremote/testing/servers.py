"""A real ``vtremoted`` subprocess on loopback, for tests (never used otherwise).

:func:`start_vtremoted` runs ``python -m vtremote.cli.serve --listen 127.0.0.1:0
--no-advertise ARGS``, waits for its stdout line ``vtremoted listening on
HOST:PORT`` and returns a :class:`ServerProcess`. The server's stderr (its log)
goes to a file, so a failing test can print it; :meth:`ServerProcess.stop`
sends SIGTERM and returns the exit status. :func:`run_vtremoted` runs it to the end
(usage errors, ``--version``) and returns what it printed.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

#: The line ``vtremoted`` prints on stdout once it accepts connections.
LISTENING = re.compile(r"^vtremoted listening on (?P<host>\[[^\]]+\]|[^\s:]+):(?P<port>\d+)$")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 40.0


@dataclass
class ServerProcess:
    """A running ``vtremoted`` subprocess."""

    proc: subprocess.Popen[str]
    host: str
    port: int
    stderr_path: Path
    args: tuple[str, ...]
    stopped: bool = field(default=False)

    @property
    def addr(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait until a log line matches ``pattern`` (regex); returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.stderr_text())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"log line /{pattern}/ not seen within {timeout} s:\n{self.stderr_text()}"
                )
            if self.proc.poll() is not None and not rx.search(self.stderr_text()):
                raise AssertionError(
                    f"server exited ({self.proc.returncode}) before /{pattern}/:\n"
                    + self.stderr_text()
                )
            time.sleep(0.05)

    def encoded_frames(self, timeout: float = 20.0) -> int:
        """Frames the server encoded in its next finished session: a raw-frame encode's
        ``frames_in`` or a packet transcode's ``packets_out`` (its SUMMARY line)."""
        m = self.wait_for_log(
            r"SUMMARY mode=(?:encode frames_in|transcode packets_in=\d+ packets_out)=(\d+)", timeout
        )
        return int(m.group(1))

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to exit by itself (--once, a signal already sent)."""
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.stdout is not None and self.proc.poll() is not None:
                self.proc.stdout.close()
        self.stopped = True
        return rc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``sig`` and wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(
                f"vtremoted did not exit within {timeout} s after signal {sig}"
            ) from None
        finally:
            if self.proc.stdout is not None and self.proc.poll() is not None:
                self.proc.stdout.close()
        self.stopped = True
        return rc


def run_vtremoted(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``vtremoted ARGS`` run to its end, output captured (nothing added to ARGS)."""
    return subprocess.run(
        [sys.executable, "-m", "vtremote.cli.serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_vtremoted(
    args: tuple[str, ...], stderr_path: Path, env: dict[str, str] | None = None
) -> ServerProcess:
    """Start ``vtremoted ARGS`` (``--listen 127.0.0.1:0`` unless ARGS listen elsewhere,
    ``--no-advertise`` unless ARGS say ``--advertise``) and wait for its listening line."""
    cmd = [sys.executable, "-m", "vtremote.cli.serve"]
    if not any(a == "--listen" or a.startswith("--listen=") for a in args):
        cmd += ["--listen", "127.0.0.1:0"]
    if "--advertise" not in args:  # mDNS costs a thread and 0.25 s at exit; who needs it asks
        cmd.append("--no-advertise")
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    if env:
        full_env.update(env)
    with stderr_path.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=full_env)
    assert proc.stdout is not None
    line = _first_line(proc, START_TIMEOUT)
    m = LISTENING.match(line.rstrip("\n"))
    if not m:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
        raise AssertionError(
            f"vtremoted did not print its listening line (got {line!r}, rc={proc.returncode}):\n"
            + stderr_path.read_text(errors="replace")
        )
    host = m.group("host").strip("[]")
    return ServerProcess(proc, host, int(m.group("port")), stderr_path, tuple(cmd[3:]))


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The first stdout line, or "" if the process exits or stays silent for ``timeout``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            return proc.stdout.readline()
        if proc.poll() is not None:
            break
    return ""
