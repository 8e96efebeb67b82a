"""NTP-style clock mapping from the sender's clock to the receiver's. Sans-IO.

The receiver sends CLOCK_REQUEST(t0) on its clock; the sender answers with
CLOCK_REPLY(t0, t1, t2): when the request arrived and when the reply left, on
the sender's clock; the receiver notes t3 on arrival. Then

    offset = ((t1 - t0) + (t2 - t3)) / 2      (sender clock - receiver clock)
    delay  = (t3 - t0) - (t2 - t1)            (round trip on the wire)

The error of one offset sample is at most delay / 2, so of the recent samples
the one with the smallest round trip is kept (NTP's clock filter). Replies that
queue behind video on a congested path have large delays and lose to the
samples taken while the path was idle.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClockSample:
    offset_ns: int
    delay_ns: int


class ClockSync:
    def __init__(self, window: int = 16) -> None:
        self._samples: deque[ClockSample] = deque(maxlen=window)
        self.samples_total = 0

    def add(self, t0: int, t1: int, t2: int, t3: int) -> ClockSample | None:
        """One exchange; ignored (None) when its times are inconsistent."""
        delay = (t3 - t0) - (t2 - t1)
        if delay < 0 or t3 < t0 or t2 < t1:
            return None
        sample = ClockSample(((t1 - t0) + (t2 - t3)) // 2, delay)
        self._samples.append(sample)
        self.samples_total += 1
        return sample

    @property
    def synced(self) -> bool:
        return bool(self._samples)

    def best(self) -> ClockSample | None:
        if not self._samples:
            return None
        return min(self._samples, key=lambda s: s.delay_ns)

    @property
    def offset_ns(self) -> int:
        """Sender clock minus receiver clock (0 until the first exchange)."""
        best = self.best()
        return best.offset_ns if best is not None else 0

    def to_local(self, sender_ns: int) -> int:
        """A sender-clock time on the receiver's clock."""
        return sender_ns - self.offset_ns
