"""The self-test's pictures and the checks that read a bitstream.

The source is FFmpeg's ``testsrc2`` test card with fresh grain on every frame
(``noise``, temporal + uniform): moving edges and text like a screen recording,
plus entropy like a camera sensor, so that an encoder really has to spend its
bitrate (a clean test card is so compressible that any encoder undershoots a
realistic target, and the bitrate check would test nothing).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

import av
import av.filter

#: Strength of the grain (0..100 on FFmpeg's scale): visible, like a dim indoor shot.
NOISE = 6

#: Local software encoders that write the reference clips the decode and transcode steps
#: read (they make a standard bitstream independent of the engine under test).
REFERENCE_ENCODERS = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}


@dataclass(frozen=True, slots=True)
class Source:
    """The size, rate and length of the synthetic source."""

    width: int
    height: int
    rate: int
    seconds: int

    @property
    def count(self) -> int:
        return self.rate * self.seconds

    @property
    def time_base(self) -> Fraction:
        return Fraction(1, self.rate)


def make_frames(source: Source, pix_fmt: str) -> list[av.VideoFrame]:
    """``source.count`` frames of the grainy test card in ``pix_fmt``, pts 0, 1, 2, ..."""
    graph = av.filter.Graph()
    nodes = [
        graph.add("testsrc2", f"size={source.width}x{source.height}:rate={source.rate}"),
        graph.add("noise", f"alls={NOISE}:allf=t+u:all_seed=7"),
        graph.add("format", f"pix_fmts={pix_fmt}"),
        graph.add("buffersink"),
    ]
    for a, b in zip(nodes, nodes[1:], strict=False):
        a.link_to(b)
    graph.configure()
    frames = []
    for i in range(source.count):
        frame = nodes[-1].pull()
        assert isinstance(frame, av.VideoFrame)
        frame.pts = i
        frame.time_base = source.time_base
        # testsrc2 marks every picture I; a client forces an IDR for those (VTR1.md §5.1).
        frame.pict_type = av.video.frame.PictureType.NONE
        frames.append(frame)
    return frames


def write_reference(
    path: str, codec: str, frames: Sequence[av.VideoFrame], source: Source, gop: int, bitrate: int
) -> None:
    """Encode ``frames`` with this machine's software encoder into an MP4 at ``path``."""
    name = REFERENCE_ENCODERS[codec]
    ten_bit = frames[0].format.name == "p010le"
    with av.open(path, "w") as out:
        stream = cast("av.video.stream.VideoStream", out.add_stream(name, rate=source.rate))
        stream.width, stream.height = source.width, source.height
        stream.pix_fmt = "yuv420p10le" if ten_bit else "yuv420p"
        stream.bit_rate = bitrate
        stream.codec_context.gop_size = gop
        options = {"preset": "veryfast"}
        if name == "libx265":
            options = {"preset": "ultrafast", "x265-params": "log-level=error"}
        elif name == "libsvtav1":
            options = {"preset": "12"}
        stream.codec_context.options = options
        for frame in frames:
            local = frame.reformat(format=stream.pix_fmt)
            local.pts = frame.pts
            out.mux(stream.encode(local))
        out.mux(stream.encode(None))


def reference_available(codec: str) -> str | None:
    """Why this machine cannot write a reference clip of ``codec``, or None if it can."""
    name = REFERENCE_ENCODERS.get(codec)
    if name is None:
        return f"no local reference encoder is known for {codec}"
    if name not in av.codecs_available:
        return f"this PyAV has no {name} to write the reference clip"
    return None


def decode_locally(
    codec: str, packets: Sequence[av.Packet[Any]], extradata: bytes
) -> tuple[list[av.VideoFrame], str]:
    """Decode packets with this machine's FFmpeg: (frames in output order, error text)."""
    # FFmpeg's own "av1" decoder needs a hardware device; libdav1d decodes in software.
    name = "libdav1d" if codec == "av1" and "libdav1d" in av.codecs_available else codec
    ctx = cast("av.video.codeccontext.VideoCodecContext", av.CodecContext.create(name, "r"))
    if extradata:
        ctx.extradata = extradata
    frames: list[av.VideoFrame] = []
    try:
        for p in [*packets, None]:
            frames.extend(ctx.decode(p))
    except av.FFmpegError as e:
        return frames, f"local {codec} decoder: {e}"
    return frames, ""


def scratch_dir() -> str:
    """Where the reference clips go (the caller removes it)."""
    import tempfile

    return tempfile.mkdtemp(prefix="vtremote-selftest-", dir=os.environ.get("TMPDIR"))
