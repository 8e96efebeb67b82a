"""Video filter chains run on the client: ``-vf`` text -> a PyAV filter graph.

``split_filter_chain`` cuts the text into (name, arguments) pairs with FFmpeg's
quoting rules; ``chain_rate`` tells the frame rate after the chain; a
:class:`VideoFilter` builds the graph from the first frame's geometry.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from typing import Any

import av
import av.error

from vtremote.errors import UsageError
from vtremote.pipeline.values import parse_rate

VideoFrame = av.VideoFrame


#: Filters that never change frame timing: with only these the encoder still counts in 1/rate.
TIMING_NEUTRAL_FILTERS = frozenset(
    [
        "scale",
        "format",
        "crop",
        "pad",
        "hflip",
        "vflip",
        "transpose",
        "rotate",
        "setsar",
        "setdar",
        "drawtext",
        "drawbox",
        "drawgrid",
        "eq",
        "hue",
        "noise",
        "unsharp",
        "boxblur",
        "gblur",
        "smartblur",
        "deband",
        "colorspace",
        "colorchannelmixer",
        "colorlevels",
        "curves",
        "lut",
        "lutrgb",
        "lutyuv",
        "negate",
        "null",
        "copy",
        "fade",
        "vignette",
        "sharpen",
        "convolution",
        "scale2ref",
        "zscale",
    ]
)
#: Filters that set a new constant frame rate (their ``fps``/``rate`` argument).
RATE_FILTERS = frozenset({"fps", "framerate"})


def chain_rate(chain: list[tuple[str, str | None]], default: Fraction | None) -> Fraction | None:
    """The frame rate after the chain: the last fps/framerate filter's, else ``default``."""
    rate = default
    for name, args in chain:
        if name in RATE_FILTERS and args:
            first = args.split(":")[0]
            named = {k: v for k, _, v in (p.partition("=") for p in args.split(":")) if v}
            value = named.get("fps", named.get("rate", first if "=" not in first else None))
            if value:
                with contextlib.suppress(UsageError):
                    rate = parse_rate(value)
    return rate


def split_filter_chain(text: str) -> list[tuple[str, str | None]]:
    """``scale=640:360,format=nv12`` -> [("scale", "640:360"), ("format", "nv12")].

    Commas inside quotes or escaped with a backslash stay in the arguments, as in
    FFmpeg's filter syntax. Graphs with labels or several chains (``[a]...;``)
    need ``-filter_complex``, which is not supported.
    """
    items: list[str] = []
    buf: list[str] = []
    quote = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            buf.append(text[i : i + 2])
            i += 2
            continue
        if ch == "'":
            quote = not quote
        elif not quote and ch in ";[":
            raise UsageError(
                f"-vf {text!r}: labels and ';' need -filter_complex, which vtremote does not "
                "support; use a single chain"
            )
        if ch == "," and not quote:
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    items.append("".join(buf))
    chain: list[tuple[str, str | None]] = []
    for item in items:
        item = item.strip()
        if not item:
            raise UsageError(f"-vf {text!r} has an empty filter")
        name, sep, args = item.partition("=")
        chain.append((name.strip(), args if sep else None))
    return chain


def link_chain(
    g: av.filter.Graph, src: Any, chain: list[tuple[str, str | None]], sink_name: str, option: str
) -> Any:
    """Add ``chain`` after ``src`` and a sink to ``g``, link and configure it; returns the sink.
    A filter that cannot be created or a graph that does not configure is a usage error."""
    nodes = [src]
    for name, args in chain:
        try:
            nodes.append(g.add(name, args))
        except (ValueError, KeyError, av.error.FFmpegError) as e:
            raise UsageError(
                f"{option}: filter {name}{'=' + args if args else ''} cannot be created: {e}"
            ) from e
    sink = g.add(sink_name)
    nodes.append(sink)
    for a, b in zip(nodes, nodes[1:], strict=False):
        a.link_to(b)
    try:
        g.configure()
    except av.error.FFmpegError as e:
        raise UsageError(f"{option}: the filter chain does not configure: {e}") from e
    return sink


class VideoFilter:
    """A PyAV filter graph for one chain, built from the first frame's geometry."""

    def __init__(self, chain: list[tuple[str, str | None]]) -> None:
        self.chain = chain
        self.graph: av.filter.Graph | None = None
        self._src: Any = None
        self._sink: Any = None

    def _build(self, frame: VideoFrame, sar: Fraction | None) -> None:
        g = av.filter.Graph()
        tb = frame.time_base or Fraction(1, 1000)
        src = g.add(
            "buffer",
            video_size=f"{frame.width}x{frame.height}",
            pix_fmt=frame.format.name,
            time_base=str(tb),
            pixel_aspect=str(sar if sar and sar > 0 else Fraction(1, 1)),
        )
        chain: list[tuple[str, str | None]] = self.chain
        if any(name == "tonemap" for name, _ in chain):  # vtremote's own (engines/tonemap.py)
            from vtremote.engines.tonemap import local_chain

            tags = int(frame.color_trc), int(frame.colorspace), int(frame.color_range) == 2
            chain = local_chain(chain, *tags)
        sink = link_chain(g, src, chain, "buffersink", "-vf")
        self.graph, self._src, self._sink = g, src, sink

    def process(self, frame: VideoFrame | None, sar: Fraction | None) -> list[VideoFrame]:
        """Push a frame (None: end of stream) and pull every frame the graph has ready."""
        if frame is not None and self.graph is None:
            self._build(frame, sar)
        if self.graph is None:
            return []
        self._src.push(frame)
        out: list[VideoFrame] = []
        while True:
            try:
                out.append(self._sink.pull())
            except (av.error.BlockingIOError, av.error.EOFError):
                return out


class AudioFilter:
    """An audio filter chain (``-af volume=2``), built from the first frame's format."""

    def __init__(self, text: str) -> None:
        self.chain = split_filter_chain(text)
        self.graph: av.filter.Graph | None = None
        self._src: Any = None
        self._sink: Any = None

    def _build(self, frame: av.AudioFrame) -> None:
        g = av.filter.Graph()
        src = g.add(
            "abuffer",
            sample_rate=str(frame.sample_rate),
            sample_fmt=frame.format.name,
            channel_layout=frame.layout.name,
            time_base=str(frame.time_base or Fraction(1, frame.sample_rate)),
        )
        sink = link_chain(g, src, self.chain, "abuffersink", "-af")
        self.graph, self._src, self._sink = g, src, sink

    def process(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
        """Push a frame (None: end of stream) and pull every frame the graph has ready."""
        if frame is not None and self.graph is None:
            self._build(frame)
        if self.graph is None:
            return []
        self._src.push(frame)
        out: list[av.AudioFrame] = []
        while True:
            try:
                out.append(self._sink.pull())
            except (av.error.BlockingIOError, av.error.EOFError):
                return out
