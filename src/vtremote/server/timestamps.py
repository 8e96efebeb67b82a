"""Client timestamps <-> the engine's frame indices, for encode sessions.

Engines are fed ``pts = 0, 1, 2, ...`` (the index of the FRAME in the session)
at a constant rate, so rate control never depends on the client's timestamps
and every output packet names exactly the FRAME it came from. This module maps
each packet back:

* ``pts`` = the pts of FRAME number ``packet.pts`` (verbatim, any time base);
* ``dts``: the encoder's dts is an index too (``k - delay`` for the k-th packet
  with B-frames, so negative for the first ones); index ``d >= 0`` maps to the
  pts of FRAME ``d`` (the classic "dts = the d-th presentation time"), and
  ``d < 0`` extrapolates one frame duration per step before the first pts;
* then the invariants the reference client and muxers need are enforced:
  ``dts <= pts`` and strictly increasing ``dts`` (VTR1.md §14). With strictly
  increasing client pts both already hold; if the client's pts go backwards or
  repeat, increasing dts wins and the session logs it once.

Unlike the reference's TimestampTracker (VTR1.md §7.3, §13.14) nothing is ever
dropped: one PACKET per FRAME, duplicates included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


@dataclass(slots=True)
class FrameInfo:
    """What the session remembers about one FRAME until its packet leaves."""

    pts: int
    duration: int
    received: float  # monotonic time the FRAME arrived (encode latency)
    captions: bytes = b""  # A53 closed-caption bytes to insert as SEI


class TimestampMapper:
    """Maps engine packets (index timestamps) back to the client's timestamps."""

    def __init__(self, frame_ticks: Fraction) -> None:
        self._step = max(1, math.floor(frame_ticks + Fraction(1, 2)))
        self._frames: dict[int, FrameInfo] = {}  # index -> info, until the packet is out
        self._pts: dict[int, int] = {}  # index -> client pts, until no dts can name it
        self._next_index = 0
        self._last_dts: int | None = None
        self._prune_below = 0
        self.violations = 0  # packets whose dts had to exceed pts (client pts not increasing)

    def add(self, info: FrameInfo) -> int:
        """Register one FRAME; returns the index to give the engine as pts."""
        index = self._next_index
        self._next_index += 1
        self._frames[index] = info
        self._pts[index] = info.pts
        if index == 0 and info.duration > 0:
            self._step = info.duration
        return index

    @property
    def pending(self) -> int:
        """FRAMEs whose packet has not come out yet."""
        return len(self._frames)

    def take(self, index: int, engine_dts: int | None) -> tuple[FrameInfo, int]:
        """The FRAME for a packet with engine pts ``index`` and its client dts.

        Raises KeyError if the engine returned a packet for no pending frame (an
        engine bug that would break one-packet-per-frame).
        """
        info = self._frames.pop(index)
        d = index if engine_dts is None else engine_dts
        if d >= 0:
            dts = self._pts.get(d)
            if dts is None:  # not expected; fall back to extrapolating from this frame
                dts = info.pts - (index - d) * self._step
        else:
            first = self._pts.get(0, info.pts)
            dts = first + d * self._step
        dts = min(dts, info.pts)
        if self._last_dts is not None and dts <= self._last_dts:
            dts = self._last_dts + 1
        if dts > info.pts:
            self.violations += 1
        self._last_dts = dts
        # Every frame with an index below d has left already (its dts <= its index < d).
        while self._prune_below < d:
            if self._prune_below not in self._frames:
                self._pts.pop(self._prune_below, None)
            self._prune_below += 1
        return info, dts
