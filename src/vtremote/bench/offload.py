"""Offload cost: a local PyAV encode against the same encode on a vtremoted."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any, cast

import av
import av.filter

from vtremote.bench.common import (
    BITRATE,
    GOP,
    MODES,
    Progress,
    ServerProcess,
    Stopwatch,
    cycle_frames,
    encode_session,
    machine_info,
    make_frames,
    quiet_libav,
)

# --- offload -----------------------------------------------------------------------------------


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
        by_mode = _client_cpu_by_mode(pics, modes, probe_frames, say)
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
    result.update(_figures(remote, local, frames, rate))
    result["goals"] = [
        {
            "name": "client CPU remote / local",
            "goal": "<= 0.10",
            "value": result["ratio"],
            "met": result["ratio"] <= 0.10,
        }
    ]
    return result


def _client_cpu_by_mode(
    pics: list[av.VideoFrame], modes: Sequence[str], probe_frames: int, say: Progress
) -> dict[str, Any]:
    """Client CPU ms per frame of each wire compression, against a ``null``-engine server."""
    by_mode: dict[str, Any] = {}
    with ServerProcess("null") as null:
        for mode in modes:  # untimed warm-up of each mode (server heap, socket buffers)
            encode_session(null.address, pics, 32, compression=mode, window=None, server_pid=None)
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
    return by_mode


def _figures(
    remote: dict[str, Any], local: dict[str, Any], frames: int, rate: int
) -> dict[str, Any]:
    """The reported figures of a remote and a local encode of ``frames`` frames."""
    scale = 1000 / frames
    remote_s = remote["client_cpu_s"] * scale
    local_s = local["cpu_s"] * scale
    return {
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
