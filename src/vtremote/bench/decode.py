"""Remote decode against a local PyAV decode of the same clip."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any, cast

import av
import av.filter

from vtremote.bench.common import (
    BITRATE,
    GOP,
    Progress,
    ServerProcess,
    Stopwatch,
    machine_info,
    make_frames,
    quiet_libav,
)

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
                        f"remote {codec} decode returned {r['frames']} frames, local "
                        f"{local['frames']}"
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
