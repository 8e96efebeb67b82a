"""What a running job has done so far: frames, media time, bytes, wire traffic, sessions.

The job owns one :class:`JobStats` and updates it as it goes; the command line
draws progress from it and prints :meth:`JobStats.summary` as ``--json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobStats:
    """What a run has done so far; the transcode loop owns and updates it."""

    output: str = ""
    format: str = ""
    frames: int = 0  # video frames written (encoded or copied)
    out_time: float = 0.0  # seconds of media written (largest packet end time)
    bytes_out: int = 0  # payload bytes of the packets written
    size_bytes: int | None = None  # output file size, when known (at the end)
    total_time: float | None = None  # expected media seconds (for the ETA), if known
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    wire_sent: int = 0
    wire_received: int = 0
    remote: list[dict[str, Any]] = field(default_factory=list)  # one entry per remote session
    streams: list[dict[str, Any]] = field(default_factory=list)
    embedded_server: str | None = None
    failovers: int = 0  # times a remote session moved to another server
    fallbacks: int = 0  # remote encoders replaced by the local fallback encoder

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def speed(self) -> float:
        """Media seconds per wall-clock second ("x realtime")."""
        return self.out_time / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def bitrate(self) -> float:
        """Bits per second of the output (file size when known, else packet bytes)."""
        size = self.size_bytes if self.size_bytes is not None else self.bytes_out
        return size * 8 / self.out_time if self.out_time > 0 else 0.0

    @property
    def wire_mbps(self) -> float:
        return (
            (self.wire_sent + self.wire_received) * 8 / self.elapsed / 1e6
            if self.elapsed > 0
            else 0.0
        )

    @property
    def eta(self) -> float | None:
        if not self.total_time or self.speed <= 0:
            return None
        return max(self.total_time - self.out_time, 0.0) / self.speed

    def line(self) -> str:
        """One ffmpeg-like status line."""
        parts = [
            f"frame={self.frames:>6}",
            f"fps={self.fps:>6.1f}",
            f"time={clock(self.out_time)}",
            f"bitrate={self.bitrate / 1000:>8.1f}kbits/s",
            f"speed={self.speed:>5.2f}x",
            f"wire={self.wire_mbps:>7.1f}Mb/s",
        ]
        eta = self.eta
        if eta is not None and self.finished is None:
            parts.append(f"eta={clock(eta)}")
        return " ".join(parts)

    def summary(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "format": self.format,
            "frames": self.frames,
            "media_seconds": round(self.out_time, 6),
            "elapsed_seconds": round(self.elapsed, 6),
            "fps": round(self.fps, 3),
            "speed": round(self.speed, 4),
            "size_bytes": self.size_bytes if self.size_bytes is not None else self.bytes_out,
            "bitrate_bps": round(self.bitrate),
            "wire_bytes_sent": self.wire_sent,
            "wire_bytes_received": self.wire_received,
            "wire_mbps": round(self.wire_mbps, 3),
            "embedded_server": self.embedded_server,
            "failovers": self.failovers,
            "fallbacks": self.fallbacks,
            "remote_sessions": self.remote,
            "streams": self.streams,
        }


def clock(seconds: float) -> str:
    """``HH:MM:SS.ss``, as ffmpeg prints times."""
    s = max(seconds, 0.0)
    hours, rem = divmod(s, 3600)
    minutes, secs = divmod(rem, 60)
    return f"{int(hours):02d}:{int(minutes):02d}:{secs:05.2f}"
