"""What the translator needs to know of a media server's main video input, read from its header."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import av.error


@dataclass(frozen=True)
class MediaInfo:
    """What the translator needs to know of the main video input (read from its header)."""

    width: int = 0
    height: int = 0
    sar: float = 1.0
    rate: Fraction | None = None
    duration: float | None = None
    start: float = 0.0
    codec: str | None = None
    bits: int = 8


def probe_media(url: str, fmt: str | None, options: dict[str, str]) -> MediaInfo:
    """Open the input's header with PyAV; an input that does not open gives an empty MediaInfo
    (the job itself will then say why). Network inputs (live TV) are opened with a timeout."""
    try:
        container = av.open(
            url, format=fmt, options=options or None, timeout=10.0 if "://" in url else None
        )
    except (av.error.FFmpegError, ValueError, OSError):
        return MediaInfo()
    try:
        streams = [
            s
            for s in container.streams.video
            if not (s.disposition & av.stream.Disposition.attached_pic)
        ]
        duration = container.duration / 1_000_000 if container.duration else None
        start = container.start_time / 1_000_000 if container.start_time else 0.0
        if not streams:
            return MediaInfo(duration=duration, start=start)
        s = streams[0]
        ctx = s.codec_context
        sar = ctx.sample_aspect_ratio
        fmt_obj = ctx.format
        bits = max((c.bits for c in fmt_obj.components), default=8) if fmt_obj is not None else 8
        return MediaInfo(
            ctx.width,
            ctx.height,
            float(sar) if sar else 1.0,
            s.average_rate or s.guessed_rate or None,
            duration,
            start,
            ctx.name,
            bits,
        )
    finally:
        container.close()
