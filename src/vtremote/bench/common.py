"""What every benchmark shares: machine description, synthetic sources, statistics,
CPU accounting, the real server as a separate process, progress."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any

import av
import av.filter

#: Uncompressed FRAME payload of one 1920x1080 NV12 picture (VTR1.md Appendix A).
FRAME_1080P_PAYLOAD = 3_110_445

#: Filter descriptions of the synthetic sources. ``testsrc2`` is FFmpeg's moving
#: test card: large flat areas, very compressible. ``noise`` is a natural-like
#: picture (a mandelbrot render, held for a few frames like a static camera shot)
#: with temporal and uniform noise added to every frame, like sensor grain: most
#: of its bytes are entropy, so it is the hard case for wire compression.
SOURCES = ("testsrc2", "noise")

#: Strength of the ``noise`` filter on the natural-like source (0..100).
NOISE_STRENGTH = 12


#: Wire compression modes every benchmark compares.
MODES = ("none", "lz4", "zstd")

#: The encode settings of the offload, bandwidth, decode and latency runs.
BITRATE = 10_000_000
GOP = 120


# --- machine and versions ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
    except OSError:
        return platform.processor() or platform.machine()
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    name = model.group(1).strip() if model else platform.machine()
    family = re.search(r"^cpu family\s*:\s*(\d+)$", info, re.M)
    number = re.search(r"^model\s*:\s*(\d+)$", info, re.M)
    if family and number:  # virtual machines often report a bare "AMD EPYC"
        name += f" (family {family.group(1)} model {number.group(1)})"
    return name


def machine_info() -> dict[str, Any]:
    """What every table states: CPU, cores, Python, PyAV, FFmpeg and codec library versions.

    ``load_avg`` is the 1-minute load average when the benchmark started: this
    machine is shared, and a load above zero means the numbers are pessimistic.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 0
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    import lz4
    import zstandard

    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pyav": av.__version__,
        "ffmpeg": str(getattr(av, "ffmpeg_version_info", "?")),
        "lz4": getattr(lz4, "__version__", "?"),
        "zstd": zstandard.__version__,
        "load_avg": load,
    }


def machine_line(info: dict[str, Any]) -> str:
    """One line for table captions and docs headers."""
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['os']}; Python {info['python']}, "
        f"PyAV {info['pyav']}, FFmpeg {info['ffmpeg']}, lz4 {info['lz4']}, zstd {info['zstd']}; "
        f"load {info['load_avg']} at start"
    )


# --- synthetic sources -----------------------------------------------------------------------


def _chain(graph: av.filter.Graph, first: Any, filters: Sequence[tuple[str, str]]) -> Any:
    node = first
    for name, args in filters:
        nxt = graph.add(name, args) if args else graph.add(name)
        node.link_to(nxt)
        node = nxt
    sink = graph.add("buffersink")
    node.link_to(sink)
    graph.configure()
    return sink


def _pull(graph: av.filter.Graph, sink: Any) -> av.VideoFrame:
    frame = sink.pull()
    assert isinstance(frame, av.VideoFrame)
    return frame


def make_frames(
    source: str,
    width: int,
    height: int,
    count: int,
    *,
    pix_fmt: str = "nv12",
    rate: int = 30,
) -> list[av.VideoFrame]:
    """``count`` distinct frames of a synthetic source, in ``pix_fmt`` (nv12 / p010le).

    Frames carry pts 0..count-1 in a ``1/rate`` time base. ``noise`` renders one
    mandelbrot picture per 15 frames (the slow part: ~0.1 s per 1080p render here)
    and adds fresh noise to every frame.
    """
    if count <= 0:
        return []
    if source == "testsrc2":
        graph = av.filter.Graph()
        src = graph.add("testsrc2", f"size={width}x{height}:rate={rate}")
        sink = _chain(graph, src, [("format", f"pix_fmts={pix_fmt}")])
        frames = [_pull(graph, sink) for _ in range(count)]
    elif source == "noise":
        frames = _noisy_frames(width, height, count, pix_fmt, rate)
    else:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    for i, frame in enumerate(frames):
        frame.pts = i
        frame.time_base = Fraction(1, rate)
    return frames


def _noisy_frames(
    width: int, height: int, count: int, pix_fmt: str, rate: int
) -> list[av.VideoFrame]:
    hold = 15  # frames per mandelbrot render: a static shot with grain
    renders = (count + hold - 1) // hold
    graph = av.filter.Graph()
    src = graph.add("mandelbrot", f"size={width}x{height}:rate={rate}")
    sink = _chain(graph, src, [("format", "pix_fmts=yuv420p")])
    bases = [_pull(graph, sink) for _ in range(renders)]
    noisy = av.filter.Graph()
    buf = noisy.add_buffer(
        width=width, height=height, format=bases[0].format, time_base=Fraction(1, rate)
    )
    nsink = _chain(
        noisy,
        buf,
        [("noise", f"alls={NOISE_STRENGTH}:allf=t+u"), ("format", f"pix_fmts={pix_fmt}")],
    )
    out = []
    for i in range(count):
        base = bases[i // hold]
        base.pts = i
        noisy.push(base)
        out.append(_pull(noisy, nsink))
    return out


def cycle_frames(
    frames: Sequence[av.VideoFrame], count: int
) -> Iterator[tuple[int, av.VideoFrame]]:
    """``(pts, frame)`` for ``count`` frames cycling through ``frames``; sets ``frame.pts``."""
    n = len(frames)
    for i in range(count):
        frame = frames[i % n]
        frame.pts = i
        yield i, frame


# --- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation (numpy's default)."""
    if not values:
        return float("nan")
    data = sorted(values)
    pos = (len(data) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of durations given in seconds, in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        return {
            "p50_ms": float("nan"),
            "p90_ms": float("nan"),
            "p99_ms": float("nan"),
            "max_ms": float("nan"),
            "mean_ms": float("nan"),
        }
    return {
        "p50_ms": round(percentile(ms, 0.50), 3),
        "p90_ms": round(percentile(ms, 0.90), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


# --- CPU accounting --------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat_fields(pid: int) -> list[str] | None:
    """Fields 3 onwards of ``/proc/PID/stat`` (Linux), or None where there is no such file.

    Field 2 (comm) may contain spaces; everything after its closing parenthesis is fixed.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def process_minor_faults(pid: int) -> int | None:
    """Minor page faults of a process so far (Linux ``/proc``), else None."""
    fields = _proc_stat_fields(pid)
    return None if fields is None else int(fields[7])


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of another process so far (Linux ``/proc``), else None."""
    fields = _proc_stat_fields(pid)
    if fields is None:
        return None
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLK_TCK


@dataclass
class Stopwatch:
    """Wall time, this process's CPU time and (optionally) a server process's CPU time."""

    server_pid: int | None = None
    wall: float = 0.0
    cpu: float = 0.0
    server_cpu: float | None = None

    def __enter__(self) -> Stopwatch:
        self._s0 = process_cpu_seconds(self.server_pid) if self.server_pid else None
        self._c0 = time.process_time()
        self._w0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w0
        self.cpu = time.process_time() - self._c0
        if self.server_pid and self._s0 is not None:
            s1 = process_cpu_seconds(self.server_pid)
            self.server_cpu = None if s1 is None else s1 - self._s0


# --- the real server as a separate process ---------------------------------------------------

LISTENING = re.compile(r"vtremoted listening on (\S+)")


class ServerProcess:
    """A real ``vtremoted`` child process on loopback, port chosen by the OS.

    Started as ``python -m vtremote.cli.serve`` so that its CPU is charged to
    its own process, never to the measuring one. stderr goes to a temporary
    file that is shown if the server dies or fails to start.
    """

    def __init__(
        self, engine: str = "null", extra_args: Sequence[str] = (), start_timeout: float = 30.0
    ) -> None:
        self.engine = engine
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self._stderr: IO[str] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()

    def start(self) -> ServerProcess:
        # Closed by stop(); read by stderr_text() when the server fails.
        self._stderr = tempfile.TemporaryFile(  # noqa: SIM115
            "w+", encoding="utf-8", errors="replace"
        )
        cmd = [
            sys.executable,
            "-m",
            "vtremote.cli.serve",
            "--listen",
            "127.0.0.1:0",
            "--engine",
            self.engine,
            "--log-level",
            "warning",
            "--no-advertise",  # a measured server announces nothing on mDNS
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise RuntimeError(
                    f"vtremoted did not print its listening line within {self.start_timeout:.0f} s"
                )
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                text = self.stderr_text()
                self.stop()
                raise RuntimeError(f"vtremoted exited with status {code} before listening:\n{text}")
            m = LISTENING.search(line)
            if m:
                host, _, port = m.group(1).rpartition(":")
                self.host = host.strip("[]")
                self.port = int(port)
                return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"vtremoted exited with status {self.proc.returncode}:\n{self.stderr_text()}"
            )

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def dump_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=False)


@contextlib.contextmanager
def quiet_libav() -> Iterator[None]:
    """Keep x264/x265 banners off the terminal while measuring."""
    import av.logging

    old = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        yield
    finally:
        av.logging.set_level(old)


# --- progress ---------------------------------------------------------------------------------


class Progress:
    """One line per step on stderr (the CLI turns it off with ``--quiet``)."""

    def __init__(self, enabled: bool = True, stream: IO[str] | None = None) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._t0 = time.monotonic()

    def __call__(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"[{time.monotonic() - self._t0:6.1f} s] {text}\n")
            self.stream.flush()


# --- a real client session ----------------------------------------------------------------------


def encode_session(
    address: str,
    frames: Sequence[av.VideoFrame],
    count: int,
    *,
    codec: str = "h264",
    pix_fmt: str = "nv12",
    compression: str,
    window: int | None,
    server_pid: int | None,
    rate: int = 30,
    **settings: Any,
) -> dict[str, Any]:
    """One encode session through the real client: ``count`` frames, timed from the
    first ``encode()`` to the return of ``flush()`` (handshake excluded)."""
    from vtremote.client import RemoteEncoder

    first = frames[0]
    kwargs: dict[str, Any] = {"compression": compression, "timeout": 30.0}
    if window is not None:
        kwargs["inflight"] = window
    with RemoteEncoder(
        address,
        codec,
        width=first.width,
        height=first.height,
        pix_fmt=pix_fmt,
        time_base=Fraction(1, rate),
        framerate=rate,
        **kwargs,
        **settings,
    ) as enc:
        sent0 = enc._transport.bytes_sent  # handshake bytes are not per-frame traffic
        recv0 = enc._transport.bytes_received
        packets = 0
        with Stopwatch(server_pid) as sw:
            for _, frame in cycle_frames(frames, count):
                packets += len(enc.encode(frame))
            enc._finish_send()  # the last FRAME leaves on the sender thread
            frame_bytes = enc._transport.bytes_sent - sent0  # every FRAME is sent by now
            packets += len(enc.flush())
        sent = enc._transport.bytes_sent - sent0
        received = enc._transport.bytes_received - recv0
        inflight = enc.inflight
    if packets != count:
        raise RuntimeError(f"{count} frames sent but {packets} packets came back")
    return {
        "fps": count / sw.wall,
        "seconds": sw.wall,
        "frames": count,
        "bytes_sent": sent,
        "frame_bytes": frame_bytes,
        "bytes_received": received,
        "client_cpu_s": sw.cpu,
        "server_cpu_s": sw.server_cpu,
        "window": inflight,
    }
