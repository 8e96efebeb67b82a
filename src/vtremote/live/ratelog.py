"""Warnings about peers, at most a few lines a minute per kind of fault.

Anyone who can reach the port can make faults; a log line for each would let
them fill the disk and bury the lines that matter. :class:`FaultLog` writes the
first :data:`LINES_PER_MINUTE` lines of each kind per minute, counts the rest,
and says how many it left out with the next line of that kind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

#: Lines per kind of fault per minute; the rest are counted.
LINES_PER_MINUTE = 5
WINDOW_S = 60.0


class FaultLog:
    """Rate-limited warnings, one budget per ``kind``; every fault is counted in :attr:`counts`."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_minute: int = LINES_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, int]] = {}  # kind -> (start, lines, left out)
        self.counts: dict[str, int] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        """Count a fault of ``kind``; log it unless this minute's lines for it are spent."""
        now = self._clock()
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            start, lines, left_out = self._windows.get(kind, (now, 0, 0))
            if now - start >= WINDOW_S:
                start, lines = now, 0
            if lines >= self._per_minute:
                self._windows[kind] = (start, lines, left_out + 1)
                return
            self._windows[kind] = (start, lines + 1, 0)
        if left_out:
            msg += " (%d more like it not logged)"
            args = (*args, left_out)
        self._log.warning(msg, *args)
