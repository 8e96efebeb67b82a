"""Helpers for running the reference FFmpeg client (``../shared/refclient/ffmpeg``) in tests.

The tests run the unmodified reference build as its users do and check its
outputs the way the reference's own scripts do (VTR1.md §11): packets ==
frames, dts strictly increasing and never above pts, keyframes every ``-g``,
bitrate near the target, clean decodes, and remote decodes pixel-equal (framemd5)
to the same binary's local software decode.

The binary lives beside the repository (``../shared``), never in it;
tests/interop/conftest.py skips every test there, with the reason, where it is absent.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import av

from vtremote.testing.servers import ServerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
REFCLIENT = REPO_ROOT.parent / "shared" / "refclient" / "ffmpeg"

#: Longest a reference run may take here; every run is a few dozen small frames.
RUN_TIMEOUT = 60.0


def refclient_missing_reason() -> str | None:
    if not REFCLIENT.is_file():
        return (
            f"reference FFmpeg client not found: {REFCLIENT} does not exist"
            " (it comes with ../shared)"
        )
    if not os.access(REFCLIENT, os.X_OK):
        return f"reference FFmpeg client {REFCLIENT} is not executable"
    return None


@dataclass(frozen=True)
class Run:
    """One finished reference-client run."""

    args: tuple[str, ...]
    returncode: int
    stderr: str
    seconds: float

    def check(self) -> Run:
        assert self.returncode == 0, (
            f"ffmpeg {' '.join(self.args)} exited {self.returncode}:\n{self.stderr}"
        )
        return self


def ffmpeg(*args: str, timeout: float = RUN_TIMEOUT) -> Run:
    """Run the reference client with ``-hide_banner -nostdin -v error`` and the given arguments."""
    cmd = [str(REFCLIENT), "-hide_banner", "-nostdin", "-v", "error", *args]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return Run(tuple(args), proc.returncode, proc.stderr, time.monotonic() - start)


def lavfi(size: str = "320x240", frames: int = 30, rate: int = 30) -> list[str]:
    """A ``testsrc2`` input of exactly ``frames`` frames."""
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}", "-frames:v", str(frames)]


def remote(server: ServerProcess, *extra: str) -> list[str]:
    return ["-vt_remote_host", server.addr, *extra]


@dataclass(frozen=True)
class Stream:
    """What a file's first video stream holds, packet by packet (decode order)."""

    codec: str
    pix_fmt: str
    time_base: float
    pts: list[int]
    dts: list[int]
    sizes: list[int]
    keyframes: list[int]  # packet indices, in presentation order of their pts
    frames: int  # decoded by PyAV

    @property
    def bitrate(self) -> float:
        """Bits per second over the stream's presentation span."""
        span = (max(self.pts) - min(self.pts)) * self.time_base
        count = len(self.pts)
        return sum(self.sizes) * 8 / (span * count / (count - 1)) if count > 1 and span > 0 else 0.0


def read_stream(path: Path) -> Stream:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        packets = [p for p in c.demux(s) if p.size]
        tb = float(s.time_base or 0)
        codec, pix_fmt = s.codec_context.name, s.codec_context.pix_fmt or ""
    pts = [int(p.pts) for p in packets if p.pts is not None]
    dts = [int(p.dts) for p in packets if p.dts is not None]
    order = sorted(range(len(packets)), key=lambda i: pts[i])
    keyframes = [rank for rank, i in enumerate(order) if packets[i].is_keyframe]
    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    return Stream(codec, pix_fmt, tb, pts, dts, [p.size for p in packets], keyframes, frames)


def check_encode(
    stream: Stream, frames: int, gop: int, bitrate: float | None = None, tolerance: float = 0.10
) -> None:
    """The reference scripts' checks of an encoded file (VTR1.md §11.2)."""
    assert len(stream.pts) == frames, f"{len(stream.pts)} packets for {frames} frames"
    assert stream.frames == frames, f"{stream.frames} frames decode from {frames} packets"
    assert all(a < b for a, b in zip(stream.dts, stream.dts[1:], strict=False)), (
        f"dts not increasing: {stream.dts}"
    )
    assert all(d <= p for d, p in zip(stream.dts, stream.pts, strict=True)), (
        "a packet has dts > pts"
    )
    assert stream.keyframes == list(range(0, frames, gop)), (
        f"keyframes at {stream.keyframes}, -g {gop}"
    )
    if bitrate is not None:
        assert abs(stream.bitrate / bitrate - 1) <= tolerance, (
            f"bitrate {stream.bitrate:.0f} for a {bitrate:.0f} target"
        )


_MD5_LINE = re.compile(r"^\d+,\s*(-?\d+),\s*(-?\d+),\s*\d+,\s*\d+,\s*([0-9a-f]{32})$")


def framemd5(path: Path) -> list[tuple[int, str]]:
    """(pts, md5) per frame of an ``-f framemd5`` file."""
    out = []
    for line in path.read_text().splitlines():
        m = _MD5_LINE.match(line.strip())
        if m:
            out.append((int(m.group(2)), m.group(3)))
    return out


def local_framemd5(src: Path, out: Path, pix_fmt: str) -> list[tuple[int, str]]:
    """The reference binary's own software decode of ``src``, as ``pix_fmt`` (lossless here)."""
    ffmpeg("-i", str(src), "-pix_fmt", pix_fmt, "-f", "framemd5", "-y", str(out)).check()
    return framemd5(out)


def summary(server: ServerProcess, mode: str = "encode") -> list[dict[str, str]]:
    """The SUMMARY lines logged so far, as key=value dicts."""
    rows = []
    for line in server.stderr_text().splitlines():
        if f"SUMMARY mode={mode}" in line:
            rows.append(
                dict(kv.split("=", 1) for kv in line.split("SUMMARY ", 1)[1].split() if "=" in kv)
            )
    return rows


def _settled(server: ServerProcess, timeout: float) -> None:
    """Wait until every session that got CONFIGURE ok has logged its SUMMARY."""
    deadline = time.monotonic() + timeout
    while True:
        text = server.stderr_text()
        if (
            text.count(" SUMMARY mode=") >= text.count("CONFIGURE ok")
            or time.monotonic() > deadline
        ):
            return
        time.sleep(0.02)


def session_count(server: ServerProcess, mode: str = "encode", timeout: float = 15.0) -> int:
    """How many ``mode`` sessions have ended, once none is left open: the mark a run's
    rows follow."""
    _settled(server, timeout)
    return len(summary(server, mode))


def run_summary(
    server: ServerProcess, before: int, mode: str = "encode", timeout: float = 15.0
) -> dict[str, str]:
    """The SUMMARY of the one session since ``before`` that carried data.

    FFmpeg opens and closes a decoder while it probes a stream: that session logs a row
    with nothing in, sometimes after the real one's, so the last row is not the run's.
    """
    _settled(server, timeout)
    rows = summary(server, mode)[before:]
    key = "frames_in" if mode == "encode" else "packets_in"
    busy = [row for row in rows if row[key] != "0"]
    assert len(busy) == 1, f"expected one {mode} session with data since row {before}, got {rows}"
    return busy[0]
