"""What a client session reports: its counters, and the small interface a job reads them by.

:class:`SessionStats` are one session's counters. :class:`SessionReport` is what
every session object offers a caller that only reports on it (the pipeline's
job, ``--json``): a plain session, a failover session over a pool, a parallel
encode over several servers all describe themselves, so nobody has to guess
what they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from vtremote.wire.constants import WireCompression


@dataclass
class SessionStats:
    """Counters of one session (the reference prints these as its summary, VTR1.md §10.1)."""

    frames: int = 0  # frames sent (encode) or received (decode)
    packets: int = 0  # packets received (encode) or sent (decode)
    bytes_sent: int = 0  # wire bytes, headers included
    bytes_received: int = 0
    max_inflight: int = 0
    elapsed: float = 0.0  # seconds from connect to now / to the end of the session

    @property
    def wire_mbps(self) -> float:
        """Megabits per second on the wire, both directions together."""
        return (
            (self.bytes_sent + self.bytes_received) * 8 / self.elapsed / 1e6
            if self.elapsed > 0
            else 0.0
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "frames": self.frames,
            "packets": self.packets,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "max_inflight": self.max_inflight,
            "elapsed": round(self.elapsed, 6),
            "wire_mbps": round(self.wire_mbps, 3),
        }


class SessionReport(Protocol):
    """A remote session as a job reports it (``--json`` "remote_sessions", wire totals)."""

    @property
    def server(self) -> str:
        """``host:port`` of the server (or a pool's name), as error messages name it."""
        ...

    @property
    def stats(self) -> SessionStats: ...

    @property
    def failovers(self) -> int:
        """Times the session moved to another server (0 for a one-server session)."""
        ...

    @property
    def fell_back(self) -> bool:
        """True when this machine's encoder took over (the local fallback)."""
        ...

    def describe(self) -> dict[str, Any]:
        """One ``remote_sessions`` entry of ``--json``: mode, server, engine, counters."""
        ...

    def close(self) -> None: ...


class ServedBy(Protocol):
    """Who serves a session: what its ``remote_sessions`` entry names."""

    @property
    def server(self) -> str: ...
    @property
    def server_name(self) -> str: ...
    @property
    def server_version(self) -> str: ...
    @property
    def engine(self) -> str: ...
    @property
    def codec(self) -> str: ...
    @property
    def compression(self) -> WireCompression: ...


def describe_session(
    mode: str,
    session: ServedBy,
    stats: SessionStats,
    pipelined: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``remote_sessions`` entry of a session: the same keys for every kind."""
    return {
        "mode": mode,
        "server": session.server,
        "server_name": session.server_name,
        "server_version": session.server_version,
        "engine": session.engine,
        "codec": session.codec,
        "compression": session.compression.name.lower(),
        "pipelined": pipelined,
        **stats.as_dict(),
        **(extra or {}),
    }


__all__ = ["SessionReport", "SessionStats", "describe_session"]
