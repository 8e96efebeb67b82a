"""A session's counters and its closing lines (DONE and SUMMARY, VTR1.md §9.3)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

Log = logging.LoggerAdapter[logging.Logger]


@dataclass(slots=True)
class EngineStats:
    """What the engine worker counts (its thread's alone until it has stopped)."""

    packets_out: int = 0
    frames_out: int = 0
    latency_total: float = 0.0
    latency_max: float = 0.0
    latency_count: int = 0
    #: Seconds the engine thread spent on work items (what its speed is measured against).
    busy: float = 0.0

    def latency(self, seconds: float) -> None:
        self.latency_total += seconds
        self.latency_count += 1
        self.latency_max = max(self.latency_max, seconds)


@dataclass(slots=True)
class Stats:
    """What the connection thread counts; ``output`` is the engine worker's, once it stopped."""

    started: float = field(default_factory=time.monotonic)
    frames_in: int = 0
    packets_in: int = 0
    frames_resent: int = 0  # FRAMEs a plain v1 client sent twice (counted once in frames_in)
    output: EngineStats = field(default_factory=EngineStats)

    def has_data(self) -> bool:
        return bool(self.frames_in or self.packets_in)


@dataclass(frozen=True, slots=True)
class Closing:
    """The facts of one finished session that its DONE and SUMMARY lines report."""

    mode: str  # "encode", "decode" or "transcode"
    client_name: str
    outcome: str
    bytes_in: int
    bytes_out: int
    transcode: str = ""  # the transcode stage's counters


def log_summary(log: Log, stats: Stats, closing: Closing) -> None:
    """The DONE line and the SUMMARY line of one session."""
    st, out = stats, stats.output
    seconds = max(time.monotonic() - st.started, 1e-9)
    counts = {
        "transcode": (("packets_in", st.packets_in), ("packets_out", out.packets_out)),
        "encode": (("frames_in", st.frames_in), ("packets_out", out.packets_out)),
        "decode": (("packets_in", st.packets_in), ("frames_out", out.frames_out)),
    }[closing.mode]
    # DONE names the counts without _in/_out, except where both are packets (transcode).
    short = [(n if closing.mode == "transcode" else n.rsplit("_", 1)[0], v) for n, v in counts]
    log.info(
        "DONE client=%s %s (%s)",
        closing.client_name,
        " ".join(f"{name}={value}" for name, value in short),
        closing.outcome,
    )
    if closing.mode == "encode" and st.frames_resent:
        log.info("the client sent %d FRAME(s) twice; each was encoded once", st.frames_resent)
    line = " ".join(f"{name}={value}" for name, value in counts)
    if closing.transcode:
        line += f" {closing.transcode}"
    line += (
        f" in={closing.bytes_in}B out={closing.bytes_out}B duration={seconds:.3f}s"
        f" in_mbps={closing.bytes_in * 8 / seconds / 1e6:.2f}"
        f" out_mbps={closing.bytes_out * 8 / seconds / 1e6:.2f}"
    )
    if closing.mode == "encode":
        avg = out.latency_total / out.latency_count * 1000 if out.latency_count else 0.0
        line += (
            f" avg_encode_ms={avg:.2f} max_encode_ms={out.latency_max * 1000:.2f}"
            f" frames_resent={st.frames_resent}"
        )
    log.info("SUMMARY mode=%s %s", closing.mode, line)


__all__ = ["Closing", "EngineStats", "Stats", "log_summary"]
