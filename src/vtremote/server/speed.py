"""What a server tells pools about its speed: engine capacity and a rolling fps.

``ext:capacity=<sessions>;fps=<fps>`` in HELLO_ACK (and ``capacity`` / ``fps`` in
the mDNS TXT record): ``sessions`` is how many sessions the engine runs at full
speed at once (its device's session limit, or one per CPU core for software
engines); ``fps`` is the pictures per second of engine time the last sessions
achieved (frames encoded, frames decoded or packets transcoded, over the seconds the
engine thread was busy with them: a client that feeds slowly does not make the
server look slow). It is an exponential average over sessions, so one odd session
moves it a little; 0 until a session with enough pictures has ended.
"""

from __future__ import annotations

import os
import threading

from vtremote.engines import registry
from vtremote.errors import VTRemoteError

#: Weight of the newest session in the rolling fps.
ALPHA = 0.3
#: Sessions with fewer pictures or less busy time than this say little about speed.
MIN_PICTURES = 10
MIN_BUSY_S = 0.001


class SpeedMeter:
    """The rolling fps of one server's sessions (thread-safe; sessions end on any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fps = 0.0

    def record(self, pictures: int, busy_s: float) -> None:
        """One ended session: ``pictures`` handled in ``busy_s`` seconds of engine time."""
        if pictures < MIN_PICTURES or busy_s < MIN_BUSY_S:
            return
        fps = pictures / busy_s
        with self._lock:
            self._fps = fps if self._fps == 0 else ALPHA * fps + (1 - ALPHA) * self._fps

    @property
    def fps(self) -> float:
        with self._lock:
            return self._fps


def engine_capacity(engine: str) -> int:
    """Sessions ``engine`` (a registry name) runs at once at full speed."""
    try:
        declared = registry.engine_class(engine).session_capacity
    except VTRemoteError:  # "auto", a label that is no registry name, a missing module
        declared = None
    return declared or os.cpu_count() or 1


__all__ = ["SpeedMeter", "engine_capacity"]
