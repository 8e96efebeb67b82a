"""The reference FFmpeg client (``../shared/refclient/ffmpeg``) against the real ``vtremoted``.

Every test here runs the unmodified reference build as its users do and checks
its outputs the way the reference's own scripts do (VTR1.md §11); the helpers
live in ``tests/support/interop_helpers.py``. Where the binary is absent (a
user's fresh clone has no ``../shared``) every test here is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from interop_helpers import refclient_missing_reason
from vtremote.testing.servers import ServerProcess, start_vtremoted


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = refclient_missing_reason()
    if reason is None:
        return
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def refserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ``vtremoted --engine x264`` for a whole module (sessions are independent)."""
    log = tmp_path_factory.mktemp("vtremoted") / "stderr.log"
    server = start_vtremoted(("--engine", "x264", "--max-sessions", "0"), log)
    yield server
    rc = server.stop()
    if rc != 0:
        print(server.stderr_text())
    assert rc == 0, f"vtremoted exited {rc} on SIGTERM"


Start = Callable[..., ServerProcess]


@pytest.fixture
def start_refserver(tmp_path: Path) -> Iterator[Start]:
    """Factory for a server with its own flags (token, session limit, ...), stopped at teardown."""
    servers: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = start_vtremoted(tuple(args), tmp_path / f"vtremoted-{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.stop()
