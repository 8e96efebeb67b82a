"""Counters and latency percentiles of a live stream (receiver side)."""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

#: Latency samples kept for the percentiles of a whole run (about 9 hours at 30 fps).
MAX_SAMPLES = 1_000_000


def percentile(sorted_values: list[float] | array[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


@dataclass
class SourceStats:
    """What one source delivered to this receiver."""

    source_id: int
    codec: str = ""
    width: int = 0
    height: int = 0
    frames: int = 0  # decoded
    keyframes: int = 0
    bytes: int = 0  # video payload bytes received
    lost: int = 0  # frames received but not shown (lost pieces, waiting for a keyframe)
    sender_dropped: int = 0  # reported by the sender
    keyframe_requests: int = 0
    metadata: int = 0
    audio_packets: int = 0
    connections: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    _window: deque[tuple[int, int, float]] = field(default_factory=deque)  # (t, bytes, latency)
    clock_offset_ns: int = 0
    clock_delay_ns: int = 0
    datagrams: int = 0
    retransmit_requests: int = 0
    recovered_datagrams: int = 0
    max_gap_ns: int = 0  # longest time between two shown pictures (a freeze)

    def frame(self, now_ns: int, size: int, latency_ms: float, keyframe: bool) -> None:
        self.frames += 1
        self.keyframes += keyframe
        if self.first_ns is None:
            self.first_ns = now_ns
        elif self.last_ns is not None:
            self.max_gap_ns = max(self.max_gap_ns, now_ns - self.last_ns)
        self.last_ns = now_ns
        if len(self.latencies_ms) < MAX_SAMPLES:
            self.latencies_ms.append(latency_ms)
        self._window.append((now_ns, size, latency_ms))
        while self._window and now_ns - self._window[0][0] > 2_000_000_000:
            self._window.popleft()

    def recent(self, now_ns: int, window_ns: int = 2_000_000_000) -> dict[str, float]:
        """fps, Mb/s and latency p50/p99 over the last ``window_ns`` (at most two seconds)."""
        while self._window and now_ns - self._window[0][0] > 2_000_000_000:
            self._window.popleft()
        recent = [x for x in self._window if now_ns - x[0] <= window_ns]
        if len(recent) < 2:
            return {"fps": 0.0, "mbps": 0.0, "p50": math.nan, "p99": math.nan}
        span = max(1, recent[-1][0] - recent[0][0]) / 1e9
        lat = sorted(x[2] for x in recent)
        return {
            "fps": (len(recent) - 1) / span,
            "mbps": sum(x[1] for x in recent) * 8 / span / 1e6,
            "p50": percentile(lat, 50),
            "p99": percentile(lat, 99),
        }

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        seconds = ((self.last_ns or 0) - (self.first_ns or 0)) / 1e9
        return {
            "source_id": self.source_id,
            "codec": self.codec,
            "size": f"{self.width}x{self.height}",
            "frames": self.frames,
            "keyframes": self.keyframes,
            "bytes": self.bytes,
            "seconds": round(seconds, 3),
            "fps": round((self.frames - 1) / seconds, 2) if seconds > 0 else 0.0,
            "kbytes_per_s": round(self.bytes / seconds / 1000, 1) if seconds > 0 else 0.0,
            "latency_ms": _latency(lat),
            "drops": self.lost + self.sender_dropped,
            "lost": self.lost,
            "sender_dropped": self.sender_dropped,
            "keyframe_requests": self.keyframe_requests,
            "metadata": self.metadata,
            "audio_packets": self.audio_packets,
            "connections": self.connections,
            "clock_offset_ms": round(self.clock_offset_ns / 1e6, 3),
            "clock_rtt_ms": round(self.clock_delay_ns / 1e6, 3),
            "datagrams": self.datagrams,
            "retransmit_requests": self.retransmit_requests,
            "recovered_datagrams": self.recovered_datagrams,
            "max_gap_ms": round(self.max_gap_ns / 1e6, 1),
        }


def _latency(lat: list[float]) -> dict[str, float | None]:
    if not lat:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(percentile(lat, 50), 2),
        "p99": round(percentile(lat, 99), 2),
        "max": round(lat[-1], 2),
    }


def combine(sources: list[SourceStats], *, foreign: int = 0, malformed: int = 0) -> dict[str, Any]:
    """The receiver's summary: totals over every source, and each source."""
    lat = sorted(x for s in sources for x in s.latencies_ms)
    firsts = [s.first_ns for s in sources if s.first_ns is not None]
    lasts = [s.last_ns for s in sources if s.last_ns is not None]
    seconds = (max(lasts) - min(firsts)) / 1e9 if firsts and lasts else 0.0
    frames = sum(s.frames for s in sources)
    total_bytes = sum(s.bytes for s in sources)
    per = [s.summary() for s in sources]
    return {
        "frames": frames,
        "bytes": total_bytes,
        "seconds": round(seconds, 3),
        "fps": round(
            max((p["fps"] for p in per), default=0.0)
            if len(per) == 1
            else (frames / seconds if seconds else 0.0),
            2,
        ),
        "kbytes_per_s": round(total_bytes / seconds / 1000, 1) if seconds > 0 else 0.0,
        "latency_ms": _latency(lat),
        "drops": sum(s.lost + s.sender_dropped for s in sources),
        "keyframe_requests": sum(s.keyframe_requests for s in sources),
        "max_gap_ms": round(max((s.max_gap_ns for s in sources), default=0) / 1e6, 1),
        "foreign_datagrams": foreign,
        "malformed": malformed,
        "sources": per,
    }
