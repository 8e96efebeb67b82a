"""Helpers of the packet-transcode tests: source files made with PyAV, output checks, SSIM."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.frame import PictureType

from decoding import decode_stream
from media import encode_file as encode_file
from media import testsrc_frames
from vtremote.client import RemoteTranscoder

#: The name the transcode tests know the one decoding helper by.
decode_output = decode_stream


def encoder_available(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


@dataclass(frozen=True)
class StreamInfo:
    """What the tests read of a source stream, copied while its container is open
    (a PyAV stream must not be used once its container is closed)."""

    time_base: Fraction
    sample_aspect_ratio: Fraction | None


def source_frames(path: Path) -> tuple[list[av.VideoFrame], StreamInfo]:
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        frames = list(src.decode(stream))
        assert stream.time_base is not None
        info = StreamInfo(stream.time_base, stream.sample_aspect_ratio)
    return frames, info


def run_transcode(
    addr: str, path: Path, **kwargs: Any
) -> tuple[RemoteTranscoder, list[av.Packet], list[av.Packet]]:
    """Demux ``path`` through a RemoteTranscoder; returns it (closed), the source and output
    packets."""
    sent: list[av.Packet] = []
    out: list[av.Packet] = []
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        with RemoteTranscoder.from_stream(addr, stream, **kwargs) as tc:
            for pkt in src.demux(stream):
                if pkt.size:
                    sent.append(pkt)
                out += tc.transcode(pkt)
            out += tc.flush()
    return tc, sent, out


def local_reference(frames: list[av.VideoFrame], width: int, height: int) -> list[np.ndarray]:
    """Luma of the source frames scaled as the server scales them (swscale bicubic)."""
    out = []
    for f in frames:
        g = f.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")
        out.append(g.to_ndarray()[:height])
    return out


def luma(frame: av.VideoFrame) -> np.ndarray:
    return frame.reformat(format="yuv420p").to_ndarray()[: frame.height]


def ssim(a: np.ndarray, b: np.ndarray, win: int = 7) -> float:
    """Mean SSIM of two luma planes with a uniform ``win`` x ``win`` window (8-bit)."""
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def mean(z: np.ndarray) -> np.ndarray:
        return np.lib.stride_tricks.sliding_window_view(z, (win, win)).mean(axis=(-1, -2))

    mx, my = mean(x), mean(y)
    vx = mean(x * x) - mx * mx
    vy = mean(y * y) - my * my
    cxy = mean(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def check_timestamps(packets: list[av.Packet]) -> None:
    """dts strictly increasing, dts <= pts, one packet per frame (pts unique)."""
    dts = [p.dts for p in packets]
    assert all(d is not None for d in dts)
    assert all(a < b for a, b in zip(dts, dts[1:], strict=False)), dts
    assert all(p.dts <= p.pts for p in packets), [(p.pts, p.dts) for p in packets]
    pts = [p.pts for p in packets]
    assert len(set(pts)) == len(pts)


def bitrate(packets: list[av.Packet], seconds: float) -> float:
    return sum(p.size for p in packets) * 8 / seconds


def vfr_frames(n: int, width: int, height: int) -> list[av.VideoFrame]:
    """Frames with irregular millisecond timestamps (time base 1/1000)."""
    frames = testsrc_frames(n, width, height, "yuv420p")
    t = 0
    for i, f in enumerate(frames):
        f.pts = t
        f.time_base = Fraction(1, 1000)
        f.pict_type = PictureType.NONE
        t += (33, 40, 25, 50, 17)[i % 5]
    return frames
