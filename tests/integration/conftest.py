"""Fixtures that run real processes on loopback: ``vtremoted``, ``vtremote live recv/send``.

``start_server(*extra_args)`` starts ``python -m vtremote.cli.serve --listen
127.0.0.1:0 ...`` (:func:`vtremote.testing.servers.start_vtremoted`) and returns
its :class:`~vtremote.testing.servers.ServerProcess`. Its stderr (the log) goes to
a file that is printed when the test fails. At teardown every server still
running gets SIGTERM and must exit 0.

``start_receiver(*args)`` / ``start_sender(*args)`` start the live commands
(:mod:`live_processes`); their logs are printed when a test fails and processes
still running at teardown are killed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import live_processes
from live_processes import ReceiverProcess, Started
from vtremote.testing.servers import ServerProcess, start_vtremoted

StartServer = Callable[..., ServerProcess]
StartReceiver = Callable[..., ReceiverProcess]
StartSender = Callable[..., "subprocess.Popen[bytes]"]


def _failed(request: pytest.FixtureRequest, *phases: str) -> bool:
    """Whether the test failed in one of ``phases`` (reports kept by tests/conftest.py)."""
    reports = (getattr(request.node, f"rep_{phase}", None) for phase in phases)
    return any(rep is not None and rep.failed for rep in reports)


@pytest.fixture
def start_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartServer]:
    """Factory: ``start_server(*extra_args, env=None) -> ServerProcess`` (real subprocess)."""
    servers: list[ServerProcess] = []

    def start(*extra_args: str, env: dict[str, str] | None = None) -> ServerProcess:
        path = tmp_path / f"vtremoted-{len(servers)}.stderr"
        server = start_vtremoted(tuple(extra_args), path, env)
        servers.append(server)
        return server

    yield start

    failures = []
    for server in servers:
        if server.proc.poll() is None:
            try:
                rc = server.stop()
            except AssertionError as e:
                failures.append(str(e))
                continue
            if rc != 0:
                failures.append(f"vtremoted {' '.join(server.args)} exited {rc} on SIGTERM")
    if _failed(request, "setup", "call") or failures:
        for server in servers:
            print(f"\n===== vtremoted {' '.join(server.args)} stderr =====\n{server.stderr_text()}")
    if failures:
        pytest.fail("; ".join(failures))


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    """A ``vtremoted`` with the software engine and default limits."""
    return start_server("--engine", "x264")


@pytest.fixture
def procs(request: pytest.FixtureRequest) -> Iterator[Started]:
    """The live processes a test started; killed at teardown, logs printed on failure."""
    started: Started = []
    yield started
    for _, proc, _ in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    if _failed(request, "call"):
        for name, _, path in started:
            print(f"\n===== {name} stderr =====\n{path.read_text(errors='replace')}")


@pytest.fixture
def live_config(tmp_path: Path) -> Path:
    """A config folder (``XDG_CONFIG_HOME``) of this test's processes, with a live key in it,
    so a receiver and a sender started in either order share it."""
    from vtremote.live.keys import load_or_make_key

    config = tmp_path / "config"
    load_or_make_key(config / "vtremote" / "live.key")
    return config


@pytest.fixture
def start_receiver(procs: Started, tmp_path: Path, live_config: Path) -> StartReceiver:
    def start(*args: str, listen: str = "127.0.0.1:0") -> ReceiverProcess:
        return live_processes.spawn_receiver(
            procs, tmp_path, *args, listen=listen, config=live_config
        )

    return start


@pytest.fixture
def start_sender(procs: Started, tmp_path: Path, live_config: Path) -> StartSender:
    def start(*args: str) -> subprocess.Popen[bytes]:
        return live_processes.spawn_sender(procs, tmp_path, *args, config=live_config)

    return start
