"""Faults and throttles for ``vtremoted`` on purpose (tests and benchmarks only).

They exist so that failover can be tested and measured against a real server
process that really dies. :class:`ServerFaults` plugs into the server's one hook
point (:class:`vtremote.server.faults.FaultHooks`); ``vtremoted`` builds it from
its test-only flags:

* ``die_after_frames=N`` (``--die-after-frames``): the process kills itself with
  SIGKILL when a session receives its (N+1)-th FRAME or PACKET, i.e. after N (no
  DONE, no ERROR, no FIN handshake from Python: exactly what a crash or a power
  cut looks like);
* ``die_at_flush`` (``--die-at-flush``): the same, when a session receives FLUSH;
* ``throttle_fps=R`` (``--throttle-fps``): each session takes at most R
  FRAME/PACKET messages per second (the reader sleeps), so several servers on one
  small machine behave like separate boxes of a known speed. Meant for
  ``--engine null``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

from vtremote.errors import ConfigError
from vtremote.wire.constants import MessageType


@dataclass
class _SessionCount:
    count: int = 0
    start: float = 0.0


@dataclass(frozen=True)
class ServerFaults:
    """What to break, and how slow to be (see the module docstring)."""

    die_after_frames: int | None = None
    die_at_flush: bool = False
    throttle_fps: float = 0.0
    _counts: dict[str, _SessionCount] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.die_after_frames is not None and self.die_after_frames < 0:
            raise ConfigError(f"die_after_frames={self.die_after_frames} must be >= 0")
        if self.throttle_fps < 0:
            raise ConfigError(f"throttle_fps={self.throttle_fps} must be >= 0")

    @property
    def active(self) -> bool:
        return self.die_after_frames is not None or self.die_at_flush or bool(self.throttle_fps)

    def on_message(self, session: str, kind: int) -> None:
        """Called by the session's reader for every message it receives while streaming."""
        if kind == MessageType.FLUSH and self.die_at_flush:
            _die()
        if kind not in (MessageType.FRAME, MessageType.PACKET):
            return
        with self._lock:
            state = self._counts.setdefault(session, _SessionCount(start=time.monotonic()))
            state.count += 1
            count, start = state.count, state.start
        if self.die_after_frames is not None and count > self.die_after_frames:
            _die()
        if self.throttle_fps:
            due = start + (count - 1) / self.throttle_fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["ServerFaults"]
