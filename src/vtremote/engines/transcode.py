"""The decode and filter stages of a transcode session: any input codec -> filtered frames.

A transcode session runs three codec stages on one engine thread (STYLE.md
§1.3): an :class:`InputDecoder` for the source packets, a :class:`FilterStage`
built from validated :mod:`vtremote.wire.filters` specs, and the session's
encode engine. This module holds the first two.

* Decoders: FFmpeg's, by codec name (:data:`DECODERS`). An engine with a
  hardware decoder (``hwaccel_device``) decodes on the device when it takes the
  stream and in software otherwise (``allow_software_fallback``): unlike a
  decode session, whose client asked for the device, a transcode only needs
  frames.
* Filters: the graph is made of the steps :func:`vtremote.wire.filters.graph_steps`
  computes from the specs (every size a number worked out here), followed by a
  scale to the fixed output size when the input changed size mid-stream and by
  the encoder's pixel format. It is built on the first frame and rebuilt when a
  frame arrives with another size or pixel format (a new SPS): the output size
  never changes, so the encoder keeps going.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Any

import av
import av.filter
from av.codec.hwaccel import HWAccel
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType

from vtremote.engines import tonemap
from vtremote.engines.base import av_error_text
from vtremote.engines.limits import check_parameter_sets, decoder_options
from vtremote.errors import BitstreamError, ConfigError, EngineError, UnsupportedConfigError
from vtremote.wire import annexb
from vtremote.wire import filters as vf

log = logging.getLogger(__name__)

#: Input codec (FFmpeg codec name, as a demuxer's stream reports it) -> FFmpeg decoders,
#: best first. FFmpeg's native av1 decoder only works with a hwaccel: dav1d comes first.
DECODERS: dict[str, tuple[str, ...]] = {
    "h264": ("h264",),
    "hevc": ("hevc",),
    "mpeg2video": ("mpeg2video",),
    "mpeg1video": ("mpeg1video",),
    "mpeg4": ("mpeg4",),
    "vc1": ("vc1",),
    "wmv3": ("wmv3",),
    "vp8": ("vp8", "libvpx"),
    "vp9": ("vp9", "libvpx-vp9"),
    "av1": ("libdav1d", "av1"),
}
#: Codecs a hardware engine's hwaccel may take (the rest decode in software).
HWACCEL_CODECS = frozenset({"h264", "hevc", "mpeg2video", "vc1", "wmv3", "vp9", "av1"})
#: Largest input extradata accepted in a transcode CONFIGURE.
MAX_EXTRADATA = 256 * 1024
#: Most frames the filter graph may yield for one input frame: an fps filter filling a
#: timestamp gap (20 s at 30 fps). A longer gap is a discontinuity (FilterStage).
MAX_FRAMES_PER_INPUT = 600


@functools.cache
def _decoder_for(codec: str) -> str | None:
    for name in DECODERS.get(codec, ()):
        try:
            av.codec.Codec(name, "r")
        except (av.codec.codec.UnknownCodecError, ValueError):
            continue
        if name == "av1":  # the native decoder decodes nothing without a device
            continue
        return name
    return None


def available_decoders() -> tuple[str, ...]:
    """Input codecs this FFmpeg build can decode (what ext:transcode announces)."""
    return tuple(c for c in DECODERS if _decoder_for(c) is not None)


class InputDecoder:
    """Decodes the source packets of one transcode session."""

    def __init__(
        self,
        codec: str,
        extradata: bytes,
        time_base: Fraction,
        size: tuple[int, int],
        hwaccel_device: str | None = None,
    ) -> None:
        name = _decoder_for(codec)
        if name is None:
            offered = ", ".join(available_decoders())
            raise UnsupportedConfigError(
                f"no decoder for input codec {codec!r} here (this server decodes {offered})"
            )
        self.codec = codec
        self.name = name
        self.time_base = time_base
        self.packets = 0
        self.frames = 0
        #: The configured source size: decoded pictures are bounded by it (engines/limits.py).
        self.size = size
        self._nal_length_size = 4
        if extradata and codec in ("h264", "hevc"):
            params = extradata
            if not annexb.is_annexb(extradata):  # avcC/hvcC: the packets are length-prefixed
                params = b""  # a record the decoder refuses is reported when it opens
                with contextlib.suppress(BitstreamError):
                    ps = annexb.parse_extradata(codec, extradata)
                    params, self._nal_length_size = ps.annexb(), ps.nal_length_size
            check_parameter_sets(codec, params, *size, "the input extradata")
        hw = None
        if hwaccel_device and codec in HWACCEL_CODECS:
            hw = HWAccel(hwaccel_device, allow_software_fallback=True)
        try:
            ctx = av.CodecContext.create(name, "r", hwaccel=hw)
        except av.FFmpegError as e:
            raise EngineError(f"{name} decoder cannot be created: {av_error_text(e)}") from e
        assert isinstance(ctx, VideoCodecContext)
        if extradata:
            ctx.extradata = extradata
        # Slice threads: with frame threads a packet the decoder rejects is reported late or
        # not at all (its error stays in a worker), and the session must answer it with ERROR.
        ctx.thread_type = "SLICE"
        ctx.thread_count = 0
        ctx.options = decoder_options(*size)
        try:
            ctx.open()
        except av.FFmpegError as e:
            raise BitstreamError(
                f"{name} decoder refused the input extradata: {av_error_text(e)}"
            ) from e
        self.hardware = bool(getattr(ctx, "is_hwaccel", False))
        self._ctx: VideoCodecContext | None = ctx

    def decode(self, packet: av.Packet[Any] | None) -> list[av.VideoFrame]:
        """Frames that became ready, in presentation order; None drains."""
        ctx = self._ctx
        if ctx is None:
            raise EngineError("input decoder is closed")
        if packet is not None:
            self.packets += 1
            check_parameter_sets(
                self.codec,
                memoryview(packet),
                *self.size,
                f"PACKET {self.packets} (pts={packet.pts})",
                self._nal_length_size,
            )
        try:
            frames = ctx.decode(packet)
        except av.error.InvalidDataError as e:
            what = (
                "the end of the stream"
                if packet is None
                else f"PACKET {self.packets} (pts={packet.pts})"
            )
            raise BitstreamError(f"{what} is not valid {self.codec}: {av_error_text(e)}") from e
        except av.FFmpegError as e:
            what = "drain" if packet is None else f"PACKET {self.packets}"
            raise EngineError(f"{self.name} failed to decode {what}: {av_error_text(e)}") from e
        self.frames += len(frames)
        return frames

    def close(self) -> None:
        self._ctx = None


class FilterStage:
    """The filter chain of one session, from decoded frames to encoder frames.

    ``output`` is the geometry announced in CONFIGURE_ACK: every frame that comes
    out has its size, its pixel format ``pix_fmt`` and pts in its time base.

    Frames come out one at a time (:meth:`push` is a generator): the caller encodes
    each before the graph makes the next, so the stage buffers only what the graph
    itself holds. An fps filter fills a gap in the source's timestamps with copies,
    as FFmpeg's does, up to :data:`MAX_FRAMES_PER_INPUT` frames; a longer gap (a
    timestamp jump of hours in a broken file) is a discontinuity: the graph is
    drained and rebuilt at the new time, the gap stays empty and the output's
    timestamps jump with the source's (logged once per session).
    """

    def __init__(
        self, chain: Sequence[vf.FilterSpec], source: vf.Geometry, output: vf.Geometry, pix_fmt: str
    ) -> None:
        self.chain = tuple(chain)
        self.source = source
        self.output = output
        self.pix_fmt = pix_fmt
        self.rebuilds = 0
        self.frames_out = 0
        #: Timestamp gaps not filled (too long), and frames the graph yielded beyond the bound.
        self.discontinuities = 0
        self.dropped = 0
        self._graph: av.filter.Graph | None = None
        self._key: tuple[int, int, str, tonemap.SourceTags | None] | None = None
        #: Tone mapping depends on the source's colour tags: a change of them rebuilds the graph.
        self._tags_matter = any(isinstance(s, vf.Tonemap) for s in self.chain)
        self._sink_tb: Fraction = output.time_base
        self._last_pts: int | None = None
        self._last_in_pts: int | None = None
        self._fills = any(isinstance(spec, vf.Fps) for spec in self.chain)

    def _build(self, width: int, height: int, fmt: str, tags: tonemap.SourceTags | None) -> None:
        geometry = vf.Geometry(width, height, self.source.time_base, self.source.frame_rate)
        try:
            steps, out = vf.graph_steps(self.chain, geometry)
        except ConfigError as e:
            raise UnsupportedConfigError(f"the input changed to {width}x{height}: {e}") from e
        if tags is not None:
            steps = tonemap.expand(self.chain, steps, tags)
        if (out.width, out.height) != (self.output.width, self.output.height):
            steps.append(("scale", f"{self.output.width}:{self.output.height}"))
        steps.append(("format", f"pix_fmts={self.pix_fmt}"))
        graph = av.filter.Graph()
        src_args = {
            "video_size": f"{width}x{height}",
            "pix_fmt": fmt,
            "time_base": str(self.source.time_base),
            "pixel_aspect": "1/1",
        }
        if self.source.frame_rate:
            src_args["frame_rate"] = str(self.source.frame_rate)
        try:
            nodes = [graph.add("buffer", **src_args)]
            # Only numbers computed by wire.filters and names from its allowlist reach FFmpeg.
            nodes += [graph.add(name, args) for name, args in steps]
            nodes.append(graph.add("buffersink"))
            graph.link_nodes(*nodes).configure()
        except av.FFmpegError as e:
            _free_graph(graph)
            raise EngineError(
                f"filter graph {steps} for {width}x{height} {fmt} failed: {av_error_text(e)}"
            ) from e
        self._graph = graph
        self._key = (width, height, fmt, tags)
        tb = getattr(nodes[-1], "time_base", None)  # not every PyAV exposes the sink's time base
        self._sink_tb = tb if isinstance(tb, Fraction) else out.time_base
        log.debug("filter graph for %dx%d %s: %s", width, height, fmt, steps)

    def push(self, frame: av.VideoFrame | None) -> Iterator[av.VideoFrame]:
        """Filter one decoded frame (None: the end of the stream); yields what comes out."""
        if frame is None:
            if self._graph is not None:
                yield from self._drain()
            return
        tags = None
        if self._tags_matter:
            full = int(frame.color_range) == 2 or frame.format.name.startswith("yuvj")
            tags = tonemap.SourceTags(int(frame.color_trc), int(frame.colorspace), full)
        key = (frame.width, frame.height, frame.format.name, tags)
        if key != self._key:
            if self._graph is not None:
                yield from self._drain()  # what the old graph still holds, in the old geometry
                self.rebuilds += 1
                log.info("input changed from %s to %s: filter graph rebuilt", self._key, key)
            self._build(*key)
        elif self._gap_too_long(frame):
            yield from self._drain()  # up to the last frame before the gap
            self._build(*key)
        self._last_in_pts = frame.pts
        graph = self._graph
        assert graph is not None
        frame.pict_type = PictureType.NONE  # the source's frame types do not bind the encoder
        try:
            graph.vpush(frame)
        except av.error.EOFError:
            return  # a trim has reached its end: later frames are not wanted
        except av.FFmpegError as e:
            raise EngineError(f"filter graph refused a frame: {av_error_text(e)}") from e
        yield from self._pull(graph)

    def _gap_too_long(self, frame: av.VideoFrame) -> bool:
        """Would an fps filter fill the gap before ``frame`` with more than the bound?"""
        last, rate = self._last_in_pts, self.output.frame_rate
        if not self._fills or last is None or frame.pts is None or not rate:
            return False
        fill = (frame.pts - last) * self.source.time_base * rate
        if fill <= MAX_FRAMES_PER_INPUT:
            return False
        self.discontinuities += 1
        if self.discontinuities == 1:
            gap = float((frame.pts - last) * self.source.time_base)
            log.warning(
                "the source's timestamps jump by %.1f s (%d frames at %s fps, at most %d are "
                "made up for one input frame): the gap is left empty and the output's "
                "timestamps jump with it",
                gap,
                round(fill),
                rate,
                MAX_FRAMES_PER_INPUT,
            )
        return True

    def _drain(self) -> Iterator[av.VideoFrame]:
        graph = self._graph
        assert graph is not None
        try:
            graph.vpush(None)
        except av.error.EOFError:
            pass  # ended already (a trim): what it made is still to pull
        except av.FFmpegError as e:
            raise EngineError(
                f"filter graph failed at the end of the stream: {av_error_text(e)}"
            ) from e
        yield from self._pull(graph)
        self.close()

    def _pull(self, graph: av.filter.Graph) -> Iterator[av.VideoFrame]:
        made = 0
        while True:
            try:
                frame = graph.vpull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            except av.FFmpegError as e:
                raise EngineError(f"filter graph failed: {av_error_text(e)}") from e
            if made > MAX_FRAMES_PER_INPUT:  # the gap check let through a graph that multiplies
                self.dropped += 1
                log.warning(
                    "the filter graph made more than %d frames for one input frame: the rest "
                    "are dropped and the graph is rebuilt",
                    MAX_FRAMES_PER_INPUT,
                )
                self.close()
                return
            pts = frame.pts
            if pts is not None and self._sink_tb != self.output.time_base:
                pts = round(pts * self._sink_tb / self.output.time_base)
            if pts is None:
                pts = 0 if self._last_pts is None else self._last_pts + 1
            frame.pts = pts
            frame.time_base = self.output.time_base
            self._last_pts = pts
            self.frames_out += 1
            made += 1
            yield frame

    def close(self) -> None:
        """Free the graph now (its filters' threads and the frames it holds)."""
        graph, self._graph, self._key = self._graph, None, None
        if graph is not None:
            _free_graph(graph)


def _free_graph(graph: av.filter.Graph) -> None:
    """Let ``graph`` go when its last reference does, not at the next garbage collection.

    PyAV's Graph keeps its FilterContexts in registries and each FilterContext keeps
    the Graph: a cycle, which only Python's cyclic collector would free, with the
    graph's worker threads and buffered frames. Emptying the registries (the Graph's
    own dicts and lists) breaks it without running the collector.
    """
    for ref in gc.get_referents(graph):
        if isinstance(ref, dict | list):
            ref.clear()


__all__ = [
    "DECODERS",
    "MAX_EXTRADATA",
    "MAX_FRAMES_PER_INPUT",
    "FilterStage",
    "InputDecoder",
    "available_decoders",
]
