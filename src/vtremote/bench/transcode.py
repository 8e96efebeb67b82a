"""Packet transcode against the alternatives: fps, wire bytes each way, CPU on both sides.

The job is a typical rendition: a 1080p30 source (``noise``, grainy, and
``testsrc2``, clean), encoded beforehand with PyAV as H.264 8 Mb/s and as HEVC
Main10 8 Mb/s, made into 720p H.264 at 4 Mb/s with a GOP of 120. Three ways:

* ``local``: PyAV on this machine (decode, scale, libx264), nothing on the wire;
* ``raw``: this machine decodes and scales, a vtremoted encodes the NV12 frames
  (:class:`~vtremote.client.RemoteEncoder`, wire compression ``zstd`` by default);
* ``packet``: the source packets go to the vtremoted, which decodes, scales and
  encodes (:class:`~vtremote.client.RemoteTranscoder`).

Wire bytes are counted on the client's socket (headers included), each way,
and given per second of content (the bandwidth a real-time run needs) and per
second of wall time. Client CPU is this process's user + system time
(``getrusage``); server CPU is the vtremoted process's, from ``/proc/PID/stat``
(Linux; None elsewhere). Both are per 1000 frames of the source. Each mode runs
once on the first source before anything is recorded (first-use costs).

:func:`run` returns a JSON-able dict; :func:`format_tables` prints it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.filter
from av.video.frame import PictureType

from vtremote.bench.common import ServerProcess, process_cpu_seconds
from vtremote.client import RemoteEncoder, RemoteTranscoder

WIDTH, HEIGHT, RATE = 1920, 1080, 30
SOURCE_BITRATE = 8_000_000
OUT_HEIGHT = 720
OUT_BITRATE = 4_000_000
GOP = 120
SOURCES = ("noise", "testsrc2")
CODECS = ("h264", "hevc10")
MODES = ("local", "raw", "packet")


@dataclass(frozen=True)
class Source:
    name: str  # "noise-h264"
    path: Path
    frames: int
    seconds: float
    video_bytes: int

    @property
    def mbps(self) -> float:
        return self.video_bytes * 8 / self.seconds / 1e6


def _picture(source: str, n: int) -> Iterator[av.VideoFrame]:
    graph = av.filter.Graph()
    src = graph.add("testsrc2", f"size={WIDTH}x{HEIGHT}:rate={RATE}")
    last = src
    if source == "noise":
        noise = graph.add("noise", "alls=40:allf=t+u")
        src.link_to(noise)
        last = noise
    sink = graph.add("buffersink")
    last.link_to(sink)
    graph.configure()
    for i in range(n):
        frame = graph.vpull()
        frame.pts = i
        frame.pict_type = PictureType.NONE
        yield frame


def make_source(folder: Path, source: str, codec: str, seconds: float) -> Source:
    """A 1080p30 clip of ``source`` as H.264 or HEVC Main10 at 8 Mb/s in Matroska (cached)."""
    n = round(seconds * RATE)
    path = folder / f"{source}-{codec}-{n}.mkv"
    if not path.exists():
        tmp = path.with_suffix(".part.mkv")
        with av.open(str(tmp), "w") as out:
            if codec == "h264":
                stream = out.add_stream("libx264", rate=RATE)
                stream.pix_fmt = "yuv420p"
                stream.codec_context.options = {
                    "preset": "veryfast",
                    "x264-params": "keyint=60:bframes=2",
                }
            else:
                stream = out.add_stream("libx265", rate=RATE)
                stream.pix_fmt = "yuv420p10le"
                stream.codec_context.options = {
                    "preset": "ultrafast",
                    "x265-params": "log-level=error:keyint=60:bframes=2",
                }
            stream.width, stream.height = WIDTH, HEIGHT
            stream.codec_context.bit_rate = SOURCE_BITRATE
            for frame in _picture(source, n):
                frame = frame.reformat(format=stream.pix_fmt)
                for pkt in stream.encode(frame):
                    out.mux(pkt)
            for pkt in stream.encode(None):
                out.mux(pkt)
        tmp.rename(path)
    with av.open(str(path)) as c:
        size = sum(p.size for p in c.demux(c.streams.video[0]))
    return Source(f"{source}-{codec}", path, n, n / RATE, size)


# --- measuring ---------------------------------------------------------------------------------


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_pid(pid: int | None) -> float | None:
    return None if pid is None else process_cpu_seconds(pid)


@contextlib.contextmanager
def local_server(engine: str = "x264") -> Iterator[tuple[str, int]]:
    """A vtremoted subprocess on loopback: yields (address, pid)."""
    with ServerProcess(engine) as server:
        assert server.pid is not None
        yield server.address, server.pid


class _Output:
    """Packets and bytes an encode or a transcode returned."""

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0

    def add(self, packets: Iterable[av.Packet[Any]]) -> None:
        for p in packets:
            self.packets += 1
            self.bytes += p.size

    def row(self, bytes_sent: int, bytes_received: int) -> dict[str, Any]:
        """The measured part of a row, with the client's wire bytes each way."""
        return {
            "frames": self.packets,
            "output_bytes": self.bytes,
            "bytes_sent": bytes_sent,
            "bytes_received": bytes_received,
        }


def _time_base(stream: av.video.stream.VideoStream) -> Fraction:
    return stream.time_base or Fraction(1, RATE)


def _scaler(stream: av.video.stream.VideoStream) -> tuple[av.filter.Graph, int]:
    ctx = stream.codec_context
    out_w = round(ctx.width * OUT_HEIGHT / ctx.height / 2) * 2
    graph = av.filter.Graph()
    pix_fmt = ctx.format.name if ctx.format is not None else "yuv420p"
    src = graph.add(
        "buffer",
        video_size=f"{ctx.width}x{ctx.height}",
        pix_fmt=pix_fmt,
        time_base=str(_time_base(stream)),
        pixel_aspect="1/1",
    )
    scale = graph.add("scale", f"{out_w}:{OUT_HEIGHT}")
    fmt = graph.add("format", "pix_fmts=nv12")
    sink = graph.add("buffersink")
    graph.link_nodes(src, scale, fmt, sink).configure()
    return graph, out_w


def _scaled(graph: av.filter.Graph, frame: av.VideoFrame | None) -> list[av.VideoFrame]:
    graph.vpush(frame)
    out: list[av.VideoFrame] = []
    while True:
        try:
            f = graph.vpull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return out
        f.pict_type = PictureType.NONE
        out.append(f)


def _local(src: Source) -> dict[str, Any]:
    out_bytes = 0
    with av.open(str(src.path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        graph, out_w = _scaler(stream)
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = out_w, OUT_HEIGHT, "nv12"
        enc.time_base = _time_base(stream)
        enc.framerate = Fraction(RATE)
        enc.bit_rate = OUT_BITRATE
        enc.options = {
            "preset": "veryfast",
            "x264-params": f"keyint={GOP}:min-keyint={GOP // 2 + 1}:scenecut=0:bframes=0",
        }
        frames = 0
        for frame in c.decode(stream):
            for f in _scaled(graph, frame):
                frames += 1
                out_bytes += sum(p.size for p in enc.encode(f))
        for f in _scaled(graph, None):
            frames += 1
            out_bytes += sum(p.size for p in enc.encode(f))
        out_bytes += sum(p.size for p in enc.encode(None))
    return {"frames": frames, "output_bytes": out_bytes, "bytes_sent": 0, "bytes_received": 0}


def _raw(src: Source, address: str, compression: str) -> dict[str, Any]:
    out = _Output()
    with av.open(str(src.path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        graph, out_w = _scaler(stream)
        with RemoteEncoder(
            address,
            "h264",
            width=out_w,
            height=OUT_HEIGHT,
            time_base=_time_base(stream),
            framerate=RATE,
            bitrate=OUT_BITRATE,
            gop=GOP,
            compression=compression,
            inflight=16,
        ) as enc:
            # None at the end drains the scaler.
            for frame in itertools.chain(c.decode(stream), [None]):
                for f in _scaled(graph, frame):
                    out.add(enc.encode(f))
            out.add(enc.flush())
            st = enc.stats
    return {**out.row(st.bytes_sent, st.bytes_received), "compression": compression}


def _packet(src: Source, address: str) -> dict[str, Any]:
    out = _Output()
    with av.open(str(src.path)) as c:
        stream = c.streams.video[0]
        with RemoteTranscoder.from_stream(
            address,
            stream,
            codec="h264",
            filters=f"scale=-2:{OUT_HEIGHT}",
            bitrate=OUT_BITRATE,
            gop=GOP,
            inflight=16,
        ) as tc:
            for pkt in c.demux(stream):
                out.add(tc.transcode(pkt))
            out.add(tc.flush())
            st = tc.stats
    return out.row(st.bytes_sent, st.bytes_received)


def measure(
    src: Source, mode: str, address: str | None, server_pid: int | None, compression: str = "zstd"
) -> dict[str, Any]:
    """One row: run ``mode`` on ``src`` once and measure it."""
    cpu0, srv0, t0 = _cpu_self(), _cpu_pid(server_pid), time.perf_counter()
    if mode == "local":
        row = _local(src)
    elif mode == "raw":
        assert address is not None
        row = _raw(src, address, compression)
    else:
        assert address is not None
        row = _packet(src, address)
    wall = time.perf_counter() - t0
    cpu = _cpu_self() - cpu0
    srv1 = _cpu_pid(server_pid)
    server_cpu = None if (mode == "local" or srv0 is None or srv1 is None) else srv1 - srv0
    per_k = 1000 / max(src.frames, 1)
    row.update(
        source=src.name,
        mode=mode,
        wall_s=round(wall, 3),
        fps=round(src.frames / wall, 2),
        up_mbps=round(row["bytes_sent"] * 8 / src.seconds / 1e6, 3),
        down_mbps=round(row["bytes_received"] * 8 / src.seconds / 1e6, 3),
        output_mbps=round(row["output_bytes"] * 8 / src.seconds / 1e6, 3),
        source_mbps=round(src.mbps, 3),
        client_cpu_s_per_1000=round(cpu * per_k, 2),
        server_cpu_s_per_1000=None if server_cpu is None else round(server_cpu * per_k, 2),
    )
    return row


def run(
    seconds: float = 5.0,
    sources: Sequence[str] = SOURCES,
    codecs: Sequence[str] = CODECS,
    modes: Sequence[str] = MODES,
    compression: str = "zstd",
    address: str | None = None,
    cache: Path | None = None,
) -> dict[str, Any]:
    """Every (source, codec) x mode once; with ``address`` None a local vtremoted serves."""
    folder = cache or Path(tempfile.gettempdir()) / "vtremote-bench-transcode"
    folder.mkdir(parents=True, exist_ok=True)
    made = [make_source(folder, s, c, seconds) for s in sources for c in codecs]
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        pid: int | None = None
        if address is None and any(m != "local" for m in modes):
            address, pid = stack.enter_context(local_server())
        for mode in modes:  # warm-up, not recorded: imports, codec and connection first use
            measure(made[0], mode, address, pid, compression)
        for src in made:
            for mode in modes:
                rows.append(measure(src, mode, address, pid, compression))
    return {
        "job": {
            "source": f"{WIDTH}x{HEIGHT}@{RATE} {SOURCE_BITRATE // 1_000_000} Mb/s",
            "output": f"h264 {OUT_HEIGHT}p {OUT_BITRATE // 1_000_000} Mb/s gop {GOP}",
            "seconds": seconds,
            "compression": compression,
            "cpus": os.cpu_count(),
        },
        "sources": [{"name": s.name, "frames": s.frames, "mbps": round(s.mbps, 3)} for s in made],
        "rows": rows,
        "ratios": ratios(rows),
    }


def ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per source: packet wire / (source + output bitrate), raw wire / packet wire, and
    client CPU packet / local."""
    out = []
    for name in dict.fromkeys(r["source"] for r in rows):
        by = {r["mode"]: r for r in rows if r["source"] == name}
        entry: dict[str, Any] = {"source": name}
        p = by.get("packet")
        if p is not None:
            wire = p["up_mbps"] + p["down_mbps"]
            entry["packet_wire_over_bitrates"] = round(
                wire / (p["source_mbps"] + p["output_mbps"]), 3
            )
            if "raw" in by:
                raw = by["raw"]["up_mbps"] + by["raw"]["down_mbps"]
                entry["raw_wire_over_packet_wire"] = round(raw / wire, 1)
            if "local" in by and by["local"]["client_cpu_s_per_1000"] > 0:
                entry["client_cpu_packet_over_local"] = round(
                    p["client_cpu_s_per_1000"] / by["local"]["client_cpu_s_per_1000"], 4
                )
        out.append(entry)
    return out


def format_tables(result: dict[str, Any]) -> str:
    """Markdown tables of a :func:`run` result."""
    job = result["job"]
    lines = [
        f"Job: {job['source']} -> {job['output']}, {job['seconds']:g} s clips, raw-frame wire "
        f"compression {job['compression']}, {job['cpus']} CPUs.",
        "",
        "| source | mode | fps | up Mb/s | down Mb/s | client CPU s/1000 frames | server CPU "
        "s/1000 frames |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for r in result["rows"]:
        srv = "-" if r["server_cpu_s_per_1000"] is None else f"{r['server_cpu_s_per_1000']:.1f}"
        lines.append(
            f"| {r['source']} | {r['mode']} | {r['fps']:.1f} | {r['up_mbps']:.2f} | "
            f"{r['down_mbps']:.2f} | "
            f"{r['client_cpu_s_per_1000']:.1f} | {srv} |"
        )
    lines += [
        "",
        "| source | packet wire / (source + output bitrate) | raw wire / packet wire | "
        "client CPU packet / local |",
        "|---|--:|--:|--:|",
    ]
    for e in result["ratios"]:
        lines.append(
            f"| {e['source']} | {e.get('packet_wire_over_bitrates', '-')} | "
            f"{e.get('raw_wire_over_packet_wire', '-')} | "
            f"{e.get('client_cpu_packet_over_local', '-')} |"
        )
    lines += [
        "",
        "Required bandwidth for real time (both directions, Mb/s per second of content):",
        "",
        "| source | source Mb/s | output Mb/s | packet transcode | raw frames |",
        "|---|--:|--:|--:|--:|",
    ]
    for name in dict.fromkeys(r["source"] for r in result["rows"]):
        by = {r["mode"]: r for r in result["rows"] if r["source"] == name}
        p, raw = by.get("packet"), by.get("raw")
        ref = p or raw
        if ref is None:
            continue
        packet_text = "-" if p is None else f"{p['up_mbps'] + p['down_mbps']:.2f}"
        raw_text = "-" if raw is None else f"{raw['up_mbps'] + raw['down_mbps']:.1f}"
        lines.append(
            f"| {name} | {ref['source_mbps']:.2f} | {ref['output_mbps']:.2f} | {packet_text} | "
            f"{raw_text} |"
        )
    return "\n".join(lines)


__all__ = [
    "MODES",
    "Source",
    "format_tables",
    "local_server",
    "make_source",
    "measure",
    "ratios",
    "run",
]


def main(argv: Sequence[str] | None = None) -> int:
    """``vtremote bench transcode`` (and ``benchmarks/transcode.py``).

    Runs and prints the tables, or the JSON.
    """
    import argparse
    import json

    ap = argparse.ArgumentParser(
        prog="vtremote bench transcode",
        description="Local PyAV transcode, raw-frame remote encode and packet transcode of "
        "1080p30 H.264 and HEVC Main10 sources into 720p H.264 (docs/benchmarks.md).",
    )
    ap.add_argument("--seconds", type=float, default=5.0, help="clip length (default 5)")
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--codecs", default=",".join(CODECS))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument(
        "--compression", default="zstd", help="raw-frame wire compression (default zstd)"
    )
    ap.add_argument(
        "--address", help="use this vtremoted instead of starting one (server CPU is then not read)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run(
        args.seconds,
        args.sources.split(","),
        args.codecs.split(","),
        args.modes.split(","),
        args.compression,
        args.address,
    )
    print(json.dumps(result, indent=2) if args.json else format_tables(result))
    return 0
