"""Per-frame latency of a remote encode (frame sent to packet received)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import av

from vtremote.bench.common import (
    BITRATE,
    GOP,
    Progress,
    ServerProcess,
    cycle_frames,
    machine_info,
    make_frames,
    summarize_ms,
)

# --- latency ------------------------------------------------------------------------------------


def run_latency(
    *,
    frames: int = 300,
    rate: int = 30,
    sizes: Sequence[tuple[int, int]] = ((1280, 720), (1920, 1080)),
    source: str = "testsrc2",
    compression: str = "none",
    distinct: int = 30,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Per-frame latency of a realtime remote encode (x264 engine, ``realtime=1``).

    Frames are handed to ``RemoteEncoder.encode`` at the frame rate (a live
    source). Latency = from that call (the FRAME is compressed and sent) to
    the moment the client's receiver thread has parsed the frame's PACKET.
    """
    say = progress or Progress(False)
    result: dict[str, Any] = {
        "benchmark": "latency",
        "machine": machine_info(),
        "params": {
            "frames": frames,
            "rate": rate,
            "source": source,
            "compression": compression,
            "realtime": 1,
            "bitrate": BITRATE,
            "gop": GOP,
        },
        "sizes": {},
    }
    with ServerProcess("x264") as server:
        for width, height in sizes:
            say(f"latency: generating {distinct} {width}x{height} {source} frames")
            pics = make_frames(source, width, height, distinct, rate=rate)
            lat = _latencies(server.address, pics, frames, rate, compression)
            key = f"{height}p"
            entry = result["sizes"][key] = {"width": width, "height": height, **summarize_ms(lat)}
            say(f"latency: {key} p50 {entry['p50_ms']:.1f} ms, p99 {entry['p99_ms']:.1f} ms")
    return result


def _latencies(
    address: str, pics: list[av.VideoFrame], frames: int, rate: int, compression: str
) -> list[float]:
    """Seconds from each frame's ``encode()`` to its PACKET parsed, in frame order."""
    from vtremote.client import RemoteEncoder

    class _TimedEncoder(RemoteEncoder):
        """Stamps every PACKET when the receiver thread has parsed it."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.arrivals: dict[int, float] = {}
            super().__init__(*args, **kwargs)

        def _on_result(self, msg: Any) -> Any:
            t = time.perf_counter()
            packet = super()._on_result(msg)
            if packet is not None and packet.pts is not None:
                self.arrivals[packet.pts] = t
            return packet

    sent: dict[int, float] = {}
    enc = _TimedEncoder(
        address,
        "h264",
        width=pics[0].width,
        height=pics[0].height,
        time_base=Fraction(1, rate),
        framerate=rate,
        compression=compression,
        realtime=1,
        bitrate=BITRATE,
        gop=GOP,
        timeout=30.0,
    )
    with enc:
        start = time.perf_counter()
        for i, frame in cycle_frames(pics, frames):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[i] = time.perf_counter()
            enc.encode(frame)
        enc.flush()
        arrivals = dict(enc.arrivals)
    missing = [p for p in sent if p not in arrivals]
    if missing:
        raise RuntimeError(f"no PACKET with pts {missing[:5]} came back ({len(missing)} missing)")
    return [arrivals[p] - sent[p] for p in sorted(sent)]
