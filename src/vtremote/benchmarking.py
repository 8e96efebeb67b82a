"""Measuring code behind ``vtremote bench`` and the scripts in ``benchmarks/``.

Every benchmark here runs the real parts: a real ``vtremoted`` process on
loopback (its CPU is not charged to the measuring process) driven by the real
client library. The pieces that do not need a server live here too: the machine
description printed on every table, the synthetic sources, the raw-socket
ceiling, CPU and latency statistics.

Like ``vtremote.cli`` this module may import every layer; the library layers
never import it. Functions return plain ``dict`` results (JSON-ready); turning
them into tables is :mod:`vtremote.cli.bench`'s job.

Method rules shared by all benchmarks:

* Source frames are generated **before** timing starts and the timed loops
  cycle through a small set of distinct frames, so generation is never timed.
* Wall time is ``time.perf_counter``; CPU time of this process is
  ``time.process_time`` (user + system, all threads); CPU time of the server
  process is read from ``/proc/PID/stat`` (Linux; ``None`` elsewhere).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import platform
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any, cast

import av
import av.filter

from vtremote.wire.constants import FRAME_PREFIX, HEADER, MAGIC, PLANE_HEADER, VERSION, MessageType

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


def _module_version(name: str) -> str:
    try:
        module = __import__(name)
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", getattr(module, "VERSION", "?")))


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
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
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


# --- raw socket ceiling ----------------------------------------------------------------------


def frame_message_parts(frame: av.VideoFrame, pts: int = 0) -> list[Any]:
    """An uncompressed VTR1 FRAME message for ``frame`` as buffers for one ``sendmsg``.

    Built by hand (not with ``vtremote.wire``) so that the raw ceiling measures
    the socket alone: header, prefix, and the frame's own plane memory.
    """
    planes = []
    for plane in frame.planes:
        view = memoryview(plane)
        planes.append((plane.line_size, view.nbytes // plane.line_size, view))
    body = FRAME_PREFIX.size + sum(PLANE_HEADER.size + v.nbytes for _, _, v in planes)
    parts: list[Any] = [
        HEADER.pack(MAGIC, VERSION, MessageType.FRAME, body),
        FRAME_PREFIX.pack(pts, 1, 0, len(planes)),
    ]
    for stride, rows, view in planes:
        parts.append(PLANE_HEADER.pack(stride, rows, view.nbytes))
        parts.append(view)
    return parts


def _sendmsg_all(sock: socket.socket, parts: list[Any]) -> None:
    """``sendmsg`` every byte of ``parts`` (a blocking sendmsg may still send less)."""
    views = [memoryview(p).cast("B") for p in parts]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= views[0].nbytes:
            sent -= views[0].nbytes
            views.pop(0)
        if views and sent:
            views[0] = views[0][sent:]


def _raw_peer(
    listener: socket.socket, message_size: int, reply: bytes, stop: threading.Event
) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(message_size)  # reused for every message, as recv_into allows
        view = memoryview(buf)
        while not stop.is_set():
            got = 0
            while got < message_size:
                n = conn.recv_into(view[got:])
                if n == 0:
                    return
                got += n
            conn.sendall(reply)


def raw_ceiling(
    frames: Sequence[av.VideoFrame], count: int, *, window: int, reply_size: int = 12 + 32 + 20
) -> dict[str, Any]:
    """Frames per second of a plain loopback ``sendmsg`` / ``recv_into`` ping-pong.

    The same FRAME bytes the wire benchmark sends (uncompressed), ``window``
    messages in flight like the real client; a peer thread receives each whole
    message into one reused buffer and answers with a ``reply_size``-byte message
    (the size of a small PACKET). No parsing, no copies in user space: what is
    left is the kernel's loopback copy and the system calls, the ceiling any
    VTR1 implementation on this machine can reach.
    """
    messages = [frame_message_parts(f, i) for i, f in enumerate(frames)]
    size = sum(memoryview(p).nbytes for p in messages[0])
    if any(sum(memoryview(p).nbytes for p in m) != size for m in messages):
        raise ValueError("raw ceiling needs frames of one geometry")
    reply = bytes(reply_size)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()
    peer = threading.Thread(target=_raw_peer, args=(listener, size, reply, stop), daemon=True)
    peer.start()
    sock = socket.create_connection(listener.getsockname())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rbuf = bytearray(reply_size * max(window, 1) * 2)
    rview = memoryview(rbuf)
    partial = 0
    done = 0

    def receive(block: bool) -> int:
        nonlocal partial
        try:
            n = sock.recv_into(rview, 0, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0
        if n == 0:
            raise ConnectionError("raw ceiling peer closed the connection")
        partial += n
        whole, partial = divmod(partial, reply_size)
        return whole

    try:
        # Warm up: first messages grow the socket buffers (TCP autotuning).
        for _ in range(min(8, count)):
            _sendmsg_all(sock, messages[0])
            got = 0
            while got < 1:
                got += receive(True)
        with Stopwatch() as sw:
            inflight = 0
            for i in range(count):
                while inflight >= window:
                    k = receive(True)
                    inflight -= k
                    done += k
                _sendmsg_all(sock, messages[i % len(messages)])
                inflight += 1
                k = receive(False)
                inflight -= k
                done += k
            while done < count:
                done += receive(True)
    finally:
        stop.set()
        sock.close()
        peer.join(timeout=5)
        listener.close()
    fps = count / sw.wall
    return {
        "fps": round(fps, 1),
        "gbps": round(fps * size / 1e9, 3),
        "message_bytes": size,
        "frames": count,
        "window": window,
        "seconds": round(sw.wall, 3),
        "client_cpu_s_per_frame": sw.cpu / count,
    }


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


# --- wire ceiling ------------------------------------------------------------------------------

#: Wire compression modes, in VTR1 order (VTR1.md §4).
MODES = ("none", "lz4", "zstd")


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


def _wire_entry(
    runs: dict[str, list[dict[str, Any]]], modes: Sequence[str], frames: int, picture_bytes: int
) -> dict[str, Any]:
    """One source's wire results: the best run of the raw ceiling and of each mode."""
    best_raw = max(runs["raw"], key=lambda r: r["fps"])
    entry: dict[str, Any] = {
        "raw": {
            "fps": best_raw["fps"],
            "gbps": best_raw["gbps"],
            "message_bytes": best_raw["message_bytes"],
            "client_cpu_ms_per_frame": round(best_raw["client_cpu_s_per_frame"] * 1000, 3),
            "runs_fps": [r["fps"] for r in runs["raw"]],
        }
    }
    for mode in modes:
        best = max(runs[mode], key=lambda r: r["fps"])
        per_frame = best["frame_bytes"] / frames
        server_cpu = best["server_cpu_s"]
        entry[mode] = {
            "fps": round(best["fps"], 1),
            "gbps": round(best["fps"] * picture_bytes / 1e9, 3),
            "wire_gbps": round(best["fps"] * per_frame / 1e9, 3),
            "ratio_to_raw": round(best["fps"] / best_raw["fps"], 3),
            "wire_bytes_per_frame": round(per_frame),
            "compression_ratio": round(per_frame / picture_bytes, 4),
            "client_cpu_ms_per_frame": round(best["client_cpu_s"] * 1000 / frames, 3),
            "server_cpu_ms_per_frame": None
            if server_cpu is None
            else round(server_cpu * 1000 / frames, 3),
            "seconds": round(best["seconds"], 3),
            "runs_fps": [round(r["fps"], 1) for r in runs[mode]],
        }
    return entry


def run_wire(
    *,
    width: int = 1920,
    height: int = 1080,
    frames: int = 600,
    distinct: int = 16,
    repeat: int = 4,
    window: int | None = None,
    sources: Sequence[str] = SOURCES,
    modes: Sequence[str] = MODES,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The wire ceiling: NV12 frames client -> vtremoted (``null`` engine) -> client.

    For each source the raw-socket ceiling (:func:`raw_ceiling`, same bytes,
    same window) and one session per compression mode run ``repeat`` times, in
    rounds over all sources and modes so that a burst of load from elsewhere
    hits all of them alike; the best run of each is reported (every run's rate is kept in ``runs_fps``).

    JSON layout (docs/benchmarks.md "JSON output")::

        {"benchmark": "wire", "machine": {...}, "params": {...},
         "raw_fps": ..., "none": {...}, "lz4": {...}, "zstd": {...},   # testsrc2, for convenience
         "sources": {"testsrc2": {"raw": {...}, "none": {...}, "lz4": {...}, "zstd": {...}},
                     "noise": {...}},
         "goals": [{"name", "goal", "value", "met"}, ...]}

    Each mode: ``fps``, ``gbps`` (picture bytes/s), ``wire_gbps``, ``ratio_to_raw``,
    ``wire_bytes_per_frame``, ``compression_ratio``, ``client_cpu_ms_per_frame``,
    ``server_cpu_ms_per_frame``, ``seconds``, ``runs_fps``.
    """
    from vtremote.client import RemoteEncoder

    say = progress or Progress(False)
    if window is None:
        window = int(inspect.signature(RemoteEncoder).parameters["inflight"].default)
    result: dict[str, Any] = {
        "benchmark": "wire",
        "machine": machine_info(),
        "params": {
            "width": width,
            "height": height,
            "pix_fmt": "nv12",
            "frames": frames,
            "distinct_frames": distinct,
            "repeat": repeat,
            "window": window,
            "engine": "null",
            "modes": list(modes),
        },
        "sources": {},
    }
    pics: dict[str, list[av.VideoFrame]] = {}
    for source in sources:
        say(f"wire: generating {distinct} {width}x{height} {source} frames")
        pics[source] = make_frames(source, width, height, distinct)
    picture_bytes = sum(memoryview(p).nbytes for p in frame_message_parts(pics[sources[0]][0]))
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        source: {"raw": [], **{m: [] for m in modes}} for source in sources
    }
    with ServerProcess("null") as server:
        # One short untimed session per mode first: the server's first frames of a
        # kind grow its heap and receive buffers, a cost no later frame pays.
        for source in sources:
            for mode in modes:
                encode_session(
                    server.address,
                    pics[source],
                    min(frames, 64),
                    compression=mode,
                    window=window,
                    server_pid=None,
                )
        # Rounds go over every source and mode, so each one's runs are spread over the
        # whole benchmark: a burst of other work on the machine cannot hit all of them.
        for rep in range(repeat):
            for source in sources:
                raw = raw_ceiling(pics[source], frames, window=window)
                runs[source]["raw"].append(raw)
                say(f"wire: run {rep + 1}/{repeat} {source}: raw socket {raw['fps']:.0f} fps")
                for mode in modes:
                    r = encode_session(
                        server.address,
                        pics[source],
                        frames,
                        compression=mode,
                        window=window,
                        server_pid=server.pid,
                    )
                    runs[source][mode].append(r)
                    say(f"wire: run {rep + 1}/{repeat} {source}: {mode} {r['fps']:.0f} fps")
                    server.check_alive()
    for source in sources:
        result["sources"][source] = _wire_entry(runs[source], modes, frames, picture_bytes)
    first = "testsrc2" if "testsrc2" in result["sources"] else next(iter(result["sources"]))
    top = result["sources"][first]
    # Convenience keys: the raw ceiling and the per-mode results of testsrc2 at the top level.
    result["source"] = first
    result["raw_fps"] = top["raw"]["fps"]
    for mode in modes:
        result[mode] = top[mode]
    result["goals"] = wire_goals(result)
    return result


def wire_goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, evaluated on a wire result."""
    goals = []
    src = result["sources"]
    if "testsrc2" in src and "none" in src["testsrc2"]:
        v = src["testsrc2"]["none"]["ratio_to_raw"]
        goals.append(
            {
                "name": "uncompressed / raw socket (testsrc2)",
                "goal": ">= 0.6",
                "value": v,
                "met": v >= 0.6,
            }
        )
    if "noise" in src and "none" in src["noise"]:
        v = src["noise"]["none"]["ratio_to_raw"]
        goals.append(
            {
                "name": "uncompressed / raw socket (noise)",
                "goal": ">= 0.6",
                "value": v,
                "met": v >= 0.6,
            }
        )
    if (
        "testsrc2" in src
        and "lz4" in src["testsrc2"]
        and result["params"]["width"] * result["params"]["height"] >= 1920 * 1080
    ):
        v = src["testsrc2"]["lz4"]["fps"]
        goals.append({"name": "lz4 fps on testsrc2", "goal": ">= 400", "value": v, "met": v >= 400})
    return goals


# --- offload -----------------------------------------------------------------------------------

#: Encoder settings shared by the offload and bandwidth benchmarks (VTR1.md §11.2's bench).
BITRATE = 10_000_000
GOP = 120


def local_encode(
    frames: Sequence[av.VideoFrame],
    count: int,
    *,
    codec: str = "libx264",
    preset: str = "veryfast",
    rate: int = 30,
    bitrate: int = BITRATE,
    gop: int = GOP,
) -> dict[str, Any]:
    """Encode ``count`` cycled frames with PyAV in this process (all its threads counted)."""
    first = frames[0]
    ctx = cast("av.video.codeccontext.VideoCodecContext", av.CodecContext.create(codec, "w"))
    ctx.width = first.width
    ctx.height = first.height
    ctx.pix_fmt = first.format.name
    ctx.time_base = Fraction(1, rate)
    ctx.framerate = Fraction(rate)
    ctx.bit_rate = bitrate
    ctx.gop_size = gop
    ctx.options = {"preset": preset}
    packets = 0
    size = 0
    with quiet_libav():
        ctx.open()
        with Stopwatch() as sw:
            for _, frame in cycle_frames(frames, count):
                for p in ctx.encode(frame):
                    packets += 1
                    size += p.size
            for p in ctx.encode(None):
                packets += 1
                size += p.size
    if packets != count:
        raise RuntimeError(f"local {codec} returned {packets} packets for {count} frames")
    return {"fps": count / sw.wall, "seconds": sw.wall, "cpu_s": sw.cpu, "bytes": size}


def run_offload(
    *,
    frames: int = 1000,
    distinct: int = 60,
    probe_frames: int = 200,
    source: str = "testsrc2",
    width: int = 1920,
    height: int = 1080,
    modes: Sequence[str] = MODES,
    compression: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Client CPU per 1000 frames: remote encode (x264 engine) vs local libx264 veryfast.

    The wire compression that costs the client least is chosen by measuring each
    mode for ``probe_frames`` frames against a ``null``-engine server (the client
    does the same work whatever the engine), unless ``compression`` names one.
    """
    say = progress or Progress(False)
    rate = 30
    say(f"offload: generating {distinct} {width}x{height} {source} frames")
    pics = make_frames(source, width, height, distinct, rate=rate)
    result: dict[str, Any] = {
        "benchmark": "offload",
        "machine": machine_info(),
        "params": {
            "width": width,
            "height": height,
            "source": source,
            "frames": frames,
            "distinct_frames": distinct,
            "probe_frames": probe_frames,
            "bitrate": BITRATE,
            "gop": GOP,
            "local": "PyAV libx264 preset veryfast",
            "remote_engine": "x264",
        },
    }
    by_mode: dict[str, Any] = {}
    if compression is None:
        with ServerProcess("null") as null:
            for mode in modes:  # untimed warm-up of each mode (server heap, socket buffers)
                encode_session(
                    null.address, pics, 32, compression=mode, window=None, server_pid=None
                )
            for mode in modes:
                r = encode_session(
                    null.address,
                    pics,
                    probe_frames,
                    compression=mode,
                    window=None,
                    server_pid=null.pid,
                )
                by_mode[mode] = round(r["client_cpu_s"] * 1000 / probe_frames, 3)
                say(f"offload: client CPU with {mode}: {by_mode[mode]:.3f} ms/frame")
        compression = min(by_mode, key=lambda k: by_mode[k])
    result["client_cpu_ms_per_frame_by_mode"] = by_mode
    result["compression"] = compression
    say(f"offload: remote x264 encode of {frames} frames, compression {compression}")
    with ServerProcess("x264") as server:
        remote = encode_session(
            server.address,
            pics,
            frames,
            compression=compression,
            window=None,
            server_pid=server.pid,
            bitrate=BITRATE,
            gop=GOP,
        )
    say(f"offload: local libx264 veryfast encode of {frames} frames")
    local = local_encode(pics, frames, rate=rate)
    scale = 1000 / frames
    remote_s = remote["client_cpu_s"] * scale
    local_s = local["cpu_s"] * scale
    result.update(
        {
            "client_cpu_remote_s": round(remote_s, 3),
            "client_cpu_local_s": round(local_s, 3),
            "ratio": round(remote_s / local_s, 4),
            "server_cpu_remote_s": None
            if remote["server_cpu_s"] is None
            else round(remote["server_cpu_s"] * scale, 3),
            "remote_fps": round(remote["fps"], 1),
            "local_fps": round(local["fps"], 1),
            "remote_bitrate_mbps": round(remote["bytes_received"] * 8 * rate / frames / 1e6, 2),
            "local_bitrate_mbps": round(local["bytes"] * 8 * rate / frames / 1e6, 2),
        }
    )
    result["goals"] = [
        {
            "name": "client CPU remote / local",
            "goal": "<= 0.10",
            "value": result["ratio"],
            "met": result["ratio"] <= 0.10,
        }
    ]
    return result


# --- bandwidth ----------------------------------------------------------------------------------

#: Rows of the reference README's bandwidth table that the issue asks for:
#: (label, width, height, fps). 4K is DCI 4096x2160, as in the reference table.
BANDWIDTH_FORMATS: tuple[tuple[str, int, int, int], ...] = (
    ("720p", 1280, 720, 30),
    ("720p", 1280, 720, 60),
    ("1080p", 1920, 1080, 30),
    ("1080p", 1920, 1080, 60),
    ("1440p", 2560, 1440, 60),
    ("4K (4096x2160)", 4096, 2160, 60),
)
#: (column, codec, wire pix_fmt, server engine)
BANDWIDTH_CODECS: tuple[tuple[str, str, str, str], ...] = (
    ("H.264 (NV12)", "h264", "nv12", "x264"),
    ("HEVC (P010)", "hevc", "p010le", "x264"),
)


def run_bandwidth(
    *,
    seconds: float = 1.0,
    sources: Sequence[str] = SOURCES,
    modes: Sequence[str] = MODES,
    formats: Sequence[tuple[str, int, int, int]] = BANDWIDTH_FORMATS,
    codecs: Sequence[tuple[str, str, str, str]] = BANDWIDTH_CODECS,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Required wire bandwidth = max(bytes in, bytes out) / media seconds (reference README).

    For each source, format and codec, ``seconds`` of media (fps x seconds
    distinct frames) go through one real encode session (``-b:v 10M -g 120``)
    with wire compression ``none``: its PACKET bytes are the *out* direction.
    The *in* direction depends only on the frames and the compression mode, not
    on the engine, so each mode's FRAME bytes come from a session over the same
    frames against a ``null``-engine server (``none`` from the real session).
    Byte counts include every message header from the first FRAME to DONE.
    """
    say = progress or Progress(False)
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "benchmark": "bandwidth",
        "machine": machine_info(),
        "params": {
            "seconds": seconds,
            "bitrate": BITRATE,
            "gop": GOP,
            "sources": list(sources),
            "modes": list(modes),
            "codecs": [c[0] for c in codecs],
        },
        "rows": rows,
    }
    engines = sorted({c[3] for c in codecs})
    servers = {e: ServerProcess(e) for e in engines}
    null = ServerProcess("null")
    try:
        for s in (*servers.values(), null):
            s.start()
        for source in sources:
            for label, width, height, fps in formats:
                count = max(1, round(fps * seconds))
                media_s = count / fps
                say(f"bandwidth: {source} {label}{fps}: generating {count} frames")
                # One render for both codecs; each gets its wire format (P010 of an 8-bit
                # source: the two extra significant bits are zero).
                base = make_frames(source, width, height, count, pix_fmt="yuv420p", rate=fps)
                for column, codec, pix_fmt, engine in codecs:
                    pics = [f.reformat(format=pix_fmt) for f in base]
                    real = encode_session(
                        servers[engine].address,
                        pics,
                        count,
                        codec=codec,
                        pix_fmt=pix_fmt,
                        compression="none",
                        window=None,
                        server_pid=None,
                        rate=fps,
                        bitrate=BITRATE,
                        gop=GOP,
                    )
                    out_mbps = real["bytes_received"] * 8 / media_s / 1e6
                    entry: dict[str, Any] = {
                        "source": source,
                        "format": label,
                        "width": width,
                        "height": height,
                        "fps": fps,
                        "codec": column,
                        "frames": count,
                        "media_seconds": media_s,
                        "out_mbps": round(out_mbps, 2),
                        "encode_fps": round(real["fps"], 1),
                        "modes": {},
                    }
                    for mode in modes:
                        sent = real["bytes_sent"]
                        if mode != "none":
                            r = encode_session(
                                null.address,
                                pics,
                                count,
                                codec=codec,
                                pix_fmt=pix_fmt,
                                compression=mode,
                                window=None,
                                server_pid=None,
                                rate=fps,
                            )
                            sent = r["bytes_sent"]
                        in_mbps = sent * 8 / media_s / 1e6
                        entry["modes"][mode] = {
                            "in_mbps": round(in_mbps, 2),
                            "out_mbps": round(out_mbps, 2),
                            "required_mbps": round(max(in_mbps, out_mbps), 2),
                        }
                    rows.append(entry)
                    say(
                        f"bandwidth: {source} {label}{fps} {column}: "
                        + ", ".join(f"{m} {entry['modes'][m]['required_mbps']:.1f}" for m in modes)
                        + " Mb/s"
                    )
                    del pics
                del base
    finally:
        for s in (*servers.values(), null):
            s.stop()
    return result


# --- decode -------------------------------------------------------------------------------------


def make_clip(
    path: str,
    codec: str,
    frames: Sequence[av.VideoFrame],
    *,
    rate: int = 30,
    bitrate: int = BITRATE,
    gop: int = GOP,
) -> None:
    """Write ``frames`` encoded locally to an MP4: libx264 ``veryfast``, or libx265
    ``ultrafast`` (x265 ``veryfast`` makes 1080p at ~5 frames/s here, too slow to
    prepare a clip; the decoder's work differs little)."""
    first = frames[0]
    name = "libx264" if codec == "h264" else "libx265"
    with quiet_libav(), av.open(path, "w") as out:
        stream = cast("av.video.stream.VideoStream", out.add_stream(name, rate=rate))
        stream.width = first.width
        stream.height = first.height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bitrate
        stream.codec_context.gop_size = gop
        opts = {"preset": "veryfast"}
        if name == "libx265":
            opts = {"preset": "ultrafast", "x265-params": "log-level=error"}
        stream.codec_context.options = opts
        for i, frame in enumerate(frames):
            f = frame.reformat(format="yuv420p")
            f.pts = i
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))


def _read_packets(path: str) -> tuple[list[Any], Any]:
    container = av.open(path)
    stream = container.streams.video[0]
    packets = [p for p in container.demux(stream) if p.size]
    return packets, container


def local_decode(path: str) -> dict[str, Any]:
    """Decode a file with PyAV in this process (frame threads on, as ffmpeg does)."""
    packets, container = _read_packets(path)
    with container:
        ctx = container.streams.video[0].codec_context
        ctx.thread_type = "AUTO"
        n = 0
        with Stopwatch() as sw:
            for p in packets:
                n += len(ctx.decode(p))
            n += len(ctx.decode(None))
    return {"frames": n, "fps": n / sw.wall, "seconds": sw.wall, "cpu_s": sw.cpu}


def remote_decode(
    address: str, path: str, *, compression: str, server_pid: int | None
) -> dict[str, Any]:
    """Decode a file through the real client and server; timed from first packet to DONE."""
    from vtremote.client import RemoteDecoder

    packets, container = _read_packets(path)
    with container:
        stream = container.streams.video[0]
        with RemoteDecoder.from_stream(
            address, stream, compression=compression, timeout=30.0
        ) as dec:
            n = 0
            with Stopwatch(server_pid) as sw:
                for p in packets:
                    n += len(dec.decode(p))
                n += len(dec.flush())
            pipelined = dec.pipelined
            received = dec.stats.bytes_received
    return {
        "frames": n,
        "fps": n / sw.wall,
        "seconds": sw.wall,
        "cpu_s": sw.cpu,
        "server_cpu_s": sw.server_cpu,
        "pipelined": pipelined,
        "bytes_received": received,
    }


def run_decode(
    *,
    frames: int = 300,
    width: int = 1920,
    height: int = 1080,
    source: str = "testsrc2",
    codecs: Sequence[str] = ("h264", "hevc"),
    modes: Sequence[str] = ("none",),
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Remote decode fps (real client, x264-engine server decoding with FFmpeg) vs a
    local PyAV decode of the same MP4 file. The files are made before timing."""
    say = progress or Progress(False)
    rate = 30
    result: dict[str, Any] = {
        "benchmark": "decode",
        "machine": machine_info(),
        "params": {
            "frames": frames,
            "width": width,
            "height": height,
            "source": source,
            "bitrate": BITRATE,
            "gop": GOP,
        },
        "codecs": {},
    }
    say(f"decode: generating {frames} {width}x{height} {source} frames")
    pics = make_frames(source, width, height, frames, rate=rate)
    with (
        tempfile.TemporaryDirectory(prefix="vtremote-bench-") as tmp,
        ServerProcess("x264") as server,
    ):
        for codec in codecs:
            path = os.path.join(tmp, f"clip-{codec}.mp4")
            say(f"decode: encoding the {codec} clip")
            make_clip(path, codec, pics, rate=rate)
            local = local_decode(path)
            entry: dict[str, Any] = {
                "local_fps": round(local["fps"], 1),
                "local_cpu_ms_per_frame": round(local["cpu_s"] * 1000 / local["frames"], 3),
                "frames": local["frames"],
                "file_bytes": os.path.getsize(path),
                "remote": {},
            }
            say(f"decode: {codec} local {local['fps']:.0f} fps")
            for mode in modes:
                r = remote_decode(server.address, path, compression=mode, server_pid=server.pid)
                if r["frames"] != local["frames"]:
                    raise RuntimeError(
                        f"remote {codec} decode returned {r['frames']} frames, local {local['frames']}"
                    )
                entry["remote"][mode] = {
                    "fps": round(r["fps"], 1),
                    "ratio_to_local": round(r["fps"] / local["fps"], 3),
                    "client_cpu_ms_per_frame": round(r["cpu_s"] * 1000 / r["frames"], 3),
                    "server_cpu_ms_per_frame": None
                    if r["server_cpu_s"] is None
                    else round(r["server_cpu_s"] * 1000 / r["frames"], 3),
                    "pipelined": r["pipelined"],
                    "wire_mbps_at_30fps": round(
                        r["bytes_received"] * 8 * rate / r["frames"] / 1e6, 1
                    ),
                }
                say(f"decode: {codec} remote ({mode}) {r['fps']:.0f} fps")
            result["codecs"][codec] = entry
    return result


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
            sent: dict[int, float] = {}
            enc = _TimedEncoder(
                server.address,
                "h264",
                width=width,
                height=height,
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
                raise RuntimeError(
                    f"no PACKET with pts {missing[:5]} came back ({len(missing)} missing)"
                )
            lat = [arrivals[p] - sent[p] for p in sorted(sent)]
            key = f"{height}p"
            result["sizes"][key] = {"width": width, "height": height, **summarize_ms(lat)}
            say(
                f"latency: {key} p50 {result['sizes'][key]['p50_ms']:.1f} ms, p99 {result['sizes'][key]['p99_ms']:.1f} ms"
            )
    return result
