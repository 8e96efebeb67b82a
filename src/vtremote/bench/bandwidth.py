"""Bandwidth: the wire bytes each source, size and compression mode needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import av

from vtremote.bench.common import (
    BITRATE,
    GOP,
    MODES,
    SOURCES,
    Progress,
    ServerProcess,
    encode_session,
    machine_info,
    make_frames,
)

# --- bandwidth ----------------------------------------------------------------------------------

#: Rows of the reference README's bandwidth table that this benchmark measures:
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
            for fmt in formats:
                rows += _measure_format(
                    source, fmt, seconds, codecs, modes, servers, null.address, say
                )
    finally:
        for s in (*servers.values(), null):
            s.stop()
    return result


def _measure_format(
    source: str,
    fmt: tuple[str, int, int, int],
    seconds: float,
    codecs: Sequence[tuple[str, str, str, str]],
    modes: Sequence[str],
    servers: dict[str, ServerProcess],
    null_address: str,
    say: Progress,
) -> list[dict[str, Any]]:
    """The rows of one source and format: one per codec."""
    label, width, height, fps = fmt
    count = max(1, round(fps * seconds))
    say(f"bandwidth: {source} {label}{fps}: generating {count} frames")
    # One render for both codecs; each gets its wire format (P010 of an 8-bit
    # source: the two extra significant bits are zero).
    base = make_frames(source, width, height, count, pix_fmt="yuv420p", rate=fps)
    rows = []
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
        entry: dict[str, Any] = {
            "source": source,
            "format": label,
            "width": width,
            "height": height,
            "fps": fps,
            "codec": column,
            "frames": count,
            "media_seconds": count / fps,
        }
        entry.update(_directions(real, pics, codec, pix_fmt, fps, modes, null_address))
        rows.append(entry)
        say(
            f"bandwidth: {source} {label}{fps} {column}: "
            + ", ".join(f"{m} {entry['modes'][m]['required_mbps']:.1f}" for m in modes)
            + " Mb/s"
        )
        del pics
    del base
    return rows


def _directions(
    real: dict[str, Any],
    pics: list[av.VideoFrame],
    codec: str,
    pix_fmt: str,
    fps: int,
    modes: Sequence[str],
    null_address: str,
) -> dict[str, Any]:
    """Mb/s out (PACKETs of the real session) and in (FRAMEs, per compression mode)."""
    media_s = len(pics) / fps
    out_mbps = real["bytes_received"] * 8 / media_s / 1e6
    by_mode: dict[str, Any] = {}
    for mode in modes:
        sent = real["bytes_sent"]
        if mode != "none":
            r = encode_session(
                null_address,
                pics,
                len(pics),
                codec=codec,
                pix_fmt=pix_fmt,
                compression=mode,
                window=None,
                server_pid=None,
                rate=fps,
            )
            sent = r["bytes_sent"]
        in_mbps = sent * 8 / media_s / 1e6
        by_mode[mode] = {
            "in_mbps": round(in_mbps, 2),
            "out_mbps": round(out_mbps, 2),
            "required_mbps": round(max(in_mbps, out_mbps), 2),
        }
    return {
        "out_mbps": round(out_mbps, 2),
        "encode_fps": round(real["fps"], 1),
        "modes": by_mode,
    }
