"""The transcode job behind ``vtremote -i ... OUTPUT``: demux, decode, filter, encode, mux.

One loop on the caller's thread drives everything; the remote codecs pipeline
on their own receiver threads (client/), PyAV's codecs and filters release the
GIL. Per output stream one handler:

* :class:`CopyHandler`: packets copied untouched (data byte for byte; only the
  timestamps move by the run's start offset).
* :class:`VideoHandler`: local PyAV decoder or :class:`RemoteDecoder` -> trim ->
  PyAV filter graph (``-vf``, ``-s``, ``-r``) -> local PyAV encoder or
  :class:`RemoteEncoder` (extradata from its CONFIGURE_ACK).
* :class:`AudioHandler`: local decode + local encode (``-c:a aac`` ...).

Output streams are created up front, in ``-map`` order, and configured when
their first frame arrives (size after filters, time base); the :class:`Muxer`
holds packets back until every stream is configured, so the header is written
once with the right extradata, as ffmpeg does.

Timestamps: as in ffmpeg, output time 0 is the input's start time plus any
``-ss``; packets and frames are shifted by that offset, and ``-t`` / ``-frames:v``
end the run. Remote packets keep the server's pts/dts (VTR1.md §7.5); a zero
duration (the reference server never sets one, §13.17) is filled in from the
frame that produced the packet.
"""

from __future__ import annotations

import abc
import contextlib
import heapq
import io
import logging
import math
import os
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, TypeAlias

import av
import av.error

from vtremote.cli.options import (
    Command,
    InputSpec,
    MapSpec,
    OutputSpec,
    RemoteOptions,
    UsageError,
    parse_force_key_frames,
    parse_rate,
)
from vtremote.cli.progress import JobStats, ProgressDisplay
from vtremote.client import RemoteDecoder, RemoteEncoder
from vtremote.client.encoder import EncoderSettings
from vtremote.errors import ConfigError, VTRemoteError

log = logging.getLogger(__name__)

AVFMT_GLOBALHEADER = 0x0040
AV_CODEC_FLAG_GLOBAL_HEADER = 1 << 22
#: The ffmpeg 8 command line sets AV_CODEC_FLAG_FRAME_DURATION on every encoder;
#: the reference captures carry it (``flags=256``), so the CONFIGURE does too.
AV_CODEC_FLAG_FRAME_DURATION = 1 << 8
#: Packets held while waiting for every output stream to be configured.
MAX_PENDING_PACKETS = 20000

Packet: TypeAlias = "av.Packet[Any]"
VideoFrame = av.VideoFrame
#: ``-ac N`` -> FFmpeg's default layout name for N channels.
CHANNEL_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


class JobError(VTRemoteError):
    """The run cannot go on (input, output or stream problem); exit code 1."""


# --- helpers -------------------------------------------------------------------------------------


def _seconds(ts: int | None, tb: Fraction | None) -> float | None:
    if ts is None or tb is None:
        return None
    return float(ts * tb)


def _ticks(seconds: float, tb: Fraction) -> int:
    return round(Fraction(seconds).limit_denominator(1_000_000) / tb)


#: Filters that never change frame timing: with only these the encoder still counts in 1/rate.
TIMING_NEUTRAL_FILTERS = frozenset(
    ["scale", "format", "crop", "pad", "hflip", "vflip", "transpose", "rotate", "setsar", "setdar", "drawtext", "drawbox", "drawgrid", "eq", "hue", "noise", "unsharp", "boxblur", "gblur", "smartblur", "deband", "colorspace", "colorchannelmixer", "colorlevels", "curves", "lut", "lutrgb", "lutyuv", "negate", "null", "copy", "fade", "vignette", "sharpen", "convolution", "scale2ref", "zscale"]
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
            raise UsageError(f"-vf {text!r}: labels and ';' need -filter_complex, which vtremote does not support; use a single chain")
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
        nodes = [src]
        for name, args in self.chain:
            try:
                nodes.append(g.add(name, args))
            except (ValueError, KeyError, av.error.FFmpegError) as e:
                raise UsageError(f"-vf: filter {name}{'=' + args if args else ''} cannot be created: {e}") from e
        sink = g.add("buffersink")
        nodes.append(sink)
        for a, b in zip(nodes, nodes[1:], strict=False):
            a.link_to(b)
        try:
            g.configure()
        except av.error.FFmpegError as e:
            raise UsageError(f"-vf: the filter chain does not configure: {e}") from e
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


def open_output_stream_for_packets(output: av.container.OutputContainer, codec: str) -> Any:
    """An output stream that muxes packets made elsewhere (the remote encoder).

    ``add_stream`` would open a local encoder when the header is written and
    replace our extradata with its own. A stream created from a template is
    never opened, and its codec context still carries the parameters (size,
    extradata) the muxer copies into the header.
    """
    scratch = av.open(io.BytesIO(), "w", format="matroska")
    try:
        template = scratch.add_stream(codec)
        return output.add_stream_from_template(template)
    finally:
        scratch.close()


# --- muxing ---------------------------------------------------------------------------------------


class Muxer:
    """Writes packets once every output stream is configured; holds them until then."""

    def __init__(self, container: av.container.OutputContainer, stats: JobStats) -> None:
        self.container = container
        self.stats = stats
        self.ready: list[bool] = []
        self.pending: list[tuple[int, Packet]] = []
        self.started = False
        self.closed = False

    def add(self) -> int:
        self.ready.append(False)
        return len(self.ready) - 1

    def set_ready(self, index: int) -> None:
        self.ready[index] = True
        if not self.started and all(self.ready):
            self.started = True
            pending, self.pending = self.pending, []
            for idx, pkt in pending:
                self._write(idx, pkt)

    def mux(self, index: int, packet: Packet) -> None:
        if self.started:
            self._write(index, packet)
            return
        self.pending.append((index, packet))
        if len(self.pending) > MAX_PENDING_PACKETS:
            waiting = [i for i, r in enumerate(self.ready) if not r]
            raise JobError(
                f"{len(self.pending)} packets are waiting for output stream(s) {waiting} to receive their first frame"
            )

    def _write(self, index: int, packet: Packet) -> None:
        end = _seconds((packet.pts if packet.pts is not None else packet.dts or 0) + (packet.duration or 0), packet.time_base)
        self.stats.bytes_out += packet.size
        if end is not None and end > self.stats.out_time:
            self.stats.out_time = end
        try:
            self.container.mux(packet)
        except av.error.FFmpegError as e:
            raise JobError(f"writing {self.stats.output} failed on stream {index}: {e}") from e

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.started:
            waiting = [i for i, r in enumerate(self.ready) if not r]
            if waiting:
                raise JobError(f"output stream(s) {waiting} received no frames: nothing was encoded (check -ss / -t / -map)")
        self.container.close()


# --- inputs ---------------------------------------------------------------------------------------


class Input:
    def __init__(self, index: int, spec: InputSpec) -> None:
        self.index = index
        self.spec = spec
        options = {k: v for k, v in spec.options.items() if k != "threads"}
        try:
            self.container = av.open(spec.url, format=spec.format, options=options or None)
        except av.error.FFmpegError as e:
            raise JobError(f"cannot open input {spec.url!r}: {e.strerror or e}") from e
        except ValueError as e:  # unknown format name
            raise UsageError(f"cannot open input {spec.url!r}: {e}") from e
        start = self.container.start_time
        self.start = start / 1_000_000 if start is not None else 0.0
        if spec.seek > 0:
            try:
                self.container.seek(round((self.start + spec.seek) * 1_000_000), backward=True, any_frame=False)
            except (av.error.FFmpegError, ValueError) as e:
                log.info("input %d cannot seek (%s); decoding from the start and dropping until %.3f s", index, e, spec.seek)
        self.streams: list[Any] = list(self.container.streams)

    @property
    def duration(self) -> float | None:
        d = self.container.duration
        return d / 1_000_000 if d else None

    def close(self) -> None:
        self.container.close()


def merged_demux(inputs: list[tuple[Input, list[Any]]]) -> Iterator[tuple[Input, Packet]]:
    """Packets of several inputs, interleaved by decode time (one input: its own order)."""
    if len(inputs) == 1:
        inp, streams = inputs[0]
        for packet in inp.container.demux(streams):
            yield inp, packet
        return
    iters = [(inp, inp.container.demux(streams)) for inp, streams in inputs]
    heap: list[tuple[float, int, int, Packet]] = []
    seq = 0

    def push(k: int) -> None:
        nonlocal seq
        inp, it = iters[k]
        for packet in it:
            t = _seconds(packet.dts if packet.dts is not None else packet.pts, packet.time_base)
            heapq.heappush(heap, (t if t is not None else -math.inf, seq, k, packet))
            seq += 1
            return

    for k in range(len(iters)):
        push(k)
    while heap:
        _t, _s, k, packet = heapq.heappop(heap)
        yield iters[k][0], packet
        push(k)


# --- stream handlers --------------------------------------------------------------------------------


class Handler(abc.ABC):
    """One output stream fed from one input stream."""

    sparse = False  # subtitles: do not keep the run alive waiting for them

    def __init__(self, job: Job, inp: Input, in_stream: Any, out_index: int) -> None:
        self.job = job
        self.input = inp
        self.in_stream = in_stream
        self.out_index = out_index
        self.done = False
        out = job.cmd.output
        #: Source seconds that become output time 0 (ffmpeg: start time + -ss).
        self.origin = inp.start + inp.spec.seek + out.seek
        ends = []
        if out.duration is not None:
            ends.append(out.duration)
        if inp.spec.duration is not None:
            ends.append(inp.spec.duration - out.seek)
        self.end = min(ends) if ends else None

    @abc.abstractmethod
    def feed(self, packet: Packet) -> None: ...

    @abc.abstractmethod
    def finish(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        return {"index": self.out_index, "input": f"{self.input.index}:{self.in_stream.index}", "type": self.in_stream.type}

    def close(self) -> None:  # noqa: B027 - most handlers hold nothing to release
        """Release remote sessions (also on errors)."""


class CopyHandler(Handler):
    def __init__(self, job: Job, inp: Input, in_stream: Any, out_index: int) -> None:
        super().__init__(job, inp, in_stream, out_index)
        self.sparse = in_stream.type in ("subtitle", "data", "attachment")
        try:
            self.out_stream: Any = job.output.add_stream_from_template(in_stream)
        except ValueError as e:
            raise JobError(
                f"cannot copy stream {inp.index}:{in_stream.index} ({in_stream.codec_context.name if in_stream.codec_context else in_stream.type}) "
                f"into {job.output_format}: {e} (leave it out with -{in_stream.type[0]}n or -map, or choose another container)"
            ) from e
        self.video = in_stream.type == "video"
        self.trimmed = inp.spec.seek > 0 or job.cmd.output.seek > 0
        self.started = not (self.video and self.trimmed)
        self.shift = _ticks(self.origin, in_stream.time_base) if in_stream.time_base else 0
        self.packets = 0
        job.muxer.set_ready(out_index)

    def feed(self, packet: Packet) -> None:
        if self.done or packet.size == 0:
            return
        t = _seconds(packet.pts if packet.pts is not None else packet.dts, packet.time_base)
        if t is not None:
            t_out = t - self.origin
            if self.end is not None and t_out >= self.end - 1e-9:
                self.done = True
                return
            # ffmpeg's stream copy with -ss: packets before the start are dropped and
            # video starts at a keyframe. Without -ss everything is copied.
            if self.trimmed and t_out < -1e-9:
                return
        if not self.started:
            if not packet.is_keyframe:
                return
            self.started = True
        if self.shift:
            if packet.pts is not None:
                packet.pts -= self.shift
            if packet.dts is not None:
                packet.dts -= self.shift
        packet.stream = self.out_stream
        self.packets += 1
        if self.video:
            self.job.stats.frames += 1
        self.job.muxer.mux(self.out_index, packet)

    def finish(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"codec": "copy", "packets": self.packets}


class AudioHandler(Handler):
    """Local audio decode + local PyAV encode (``-c:a aac``, ``-b:a``, ``-ar``, ``-ac``)."""

    def __init__(self, job: Job, inp: Input, in_stream: Any, out_index: int, codec: str) -> None:
        super().__init__(job, inp, in_stream, out_index)
        out = job.cmd.output
        rate = out.audio_rate or in_stream.codec_context.sample_rate or 48000
        try:
            self.out_stream: Any = job.output.add_stream(codec, rate=rate)
        except (ValueError, av.error.FFmpegError) as e:
            raise JobError(f"audio encoder {codec!r} cannot write into {job.output_format}: {e}") from e
        ctx: Any = self.out_stream.codec_context
        if out.audio_bitrate:
            ctx.bit_rate = out.audio_bitrate
        layout: Any = in_stream.codec_context.layout
        if out.audio_channels:
            if out.audio_channels not in CHANNEL_LAYOUTS:
                raise UsageError(f"-ac {out.audio_channels}: give 1..8 channels")
            layout = CHANNEL_LAYOUTS[out.audio_channels]
        ctx.layout = layout
        ctx.time_base = Fraction(1, rate)
        self.shift = _ticks(self.origin, in_stream.time_base)
        self.frames = 0
        job.muxer.set_ready(out_index)

    def feed(self, packet: Packet) -> None:
        if self.done or packet.size == 0:
            return  # size 0: the demuxer's end-of-stream marker; finish() drains
        try:
            frames = self.in_stream.codec_context.decode(packet)
        except av.error.FFmpegError as e:
            log.warning("audio stream %d:%d: dropping a packet that does not decode: %s", self.input.index, self.in_stream.index, e)
            return
        for frame in frames:
            self._frame(frame)

    def _frame(self, frame: Any) -> None:
        if frame.pts is None:
            return
        t_out = float(frame.pts * frame.time_base) - self.origin
        if self.end is not None and t_out >= self.end - 1e-9:
            self.done = True
            return
        if t_out + frame.samples / frame.sample_rate <= 0:
            return
        frame.pts -= self.shift
        self.frames += 1
        for pkt in self.out_stream.encode(frame):
            self.job.muxer.mux(self.out_index, pkt)

    def finish(self) -> None:
        if not self.done:
            with contextlib.suppress(av.error.EOFError):
                for frame in self.in_stream.codec_context.decode(None):
                    self._frame(frame)
        for pkt in self.out_stream.encode(None):
            self.job.muxer.mux(self.out_index, pkt)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"codec": self.out_stream.codec_context.name, "frames": self.frames}


class VideoHandler(Handler):
    """Decode (local or remote) -> filters -> encode (local or remote)."""

    def __init__(self, job: Job, inp: Input, in_stream: Any, out_index: int, codec: str) -> None:
        super().__init__(job, inp, in_stream, out_index)
        out = job.cmd.output
        self.out = out
        self.codec = codec
        self.remote_codec = out.remote_codec
        self.shift = _ticks(self.origin, in_stream.time_base)
        self.sar = in_stream.codec_context.sample_aspect_ratio or None
        #: The input's frame rate (raw demuxers guess 25 unless -framerate is given).
        self.in_rate: Fraction | None = in_stream.average_rate or in_stream.guessed_rate or None
        chain = split_filter_chain(out.video_filter) if out.video_filter else []
        #: The encoder's frame rate: -r, a rate set by the filters, or the input's.
        self.rate = out.rate or chain_rate(chain, self.in_rate)
        #: Count in 1/rate (as ffmpeg does) unless the filters retime frames in ways we cannot know.
        self.cfr = out.rate is not None or all(name in TIMING_NEUTRAL_FILTERS or name in RATE_FILTERS for name, _ in chain)
        if out.size is not None:
            chain.append(("scale", f"{out.size[0]}:{out.size[1]}"))
        if out.rate is not None:
            chain.append(("fps", f"fps={out.rate}"))
        self.filter = VideoFilter(chain) if chain else None
        self.key_times, self.key_every = parse_force_key_frames(out.force_key_frames) if out.force_key_frames else ([], None)
        self.forced = 0
        self.frames_out = 0
        self.encoder: RemoteEncoder | None = None
        self.local_ctx: Any = None
        self.durations: dict[int, int] = {}
        self.decoder: RemoteDecoder | None = None
        self.synthetic: bool | None = None  # True: the input has no timestamps (decided on its first packet)
        self.next_pts = 0
        self.time_base: Fraction | None = None  # the encoder's, decided by the first frame
        self.last_pts: int | None = None
        self.dropped = 0
        # Output stream now (map order); its parameters are filled in with the first frame.
        try:
            self.out_stream: Any
            if self.remote_codec:
                self.out_stream = open_output_stream_for_packets(job.output, self.remote_codec)
            else:
                self.out_stream = job.output.add_stream(codec, rate=self.rate or 25)
                self.local_ctx = self.out_stream.codec_context
        except (ValueError, av.error.FFmpegError) as e:
            raise JobError(f"video encoder {codec!r} cannot write into {job.output_format}: {e}") from e
        remote_dec = inp.spec.remote_codec
        if remote_dec:
            self._open_remote_decoder(remote_dec)
        else:
            ctx = in_stream.codec_context
            with contextlib.suppress(Exception):  # a codec without threading keeps its default
                ctx.thread_type = "AUTO"
            if "threads" in inp.spec.options:
                ctx.thread_count = int(inp.spec.options["threads"])

    # -- decoding ------------------------------------------------------------------------------

    def _open_remote_decoder(self, codec: str) -> None:
        name = self.in_stream.codec_context.name
        have = {"h264": "h264", "hevc": "hevc"}.get(name)
        if have != codec:
            raise UsageError(
                f"input stream {self.input.index}:{self.in_stream.index} is {name}; "
                f"{self.input.spec.video_codec} decodes {codec} only"
            )
        ro = self.job.remote_for_input(self.input)
        self.decoder = RemoteDecoder.from_stream(
            ro.host or "",
            self.in_stream,
            token=ro.token,
            **ro.tls_kwargs(),
            timeout=ro.timeout_ms / 1000,
            compression=ro.compression,
            inflight=ro.inflight,
        )
        self.job.sessions.append(self.decoder)

    def feed(self, packet: Packet) -> None:
        if self.done:
            return
        if packet.size == 0:
            return  # end-of-stream marker of the demuxer; finish() drains
        if self.synthetic is None:
            # Raw elementary streams (.h264, .hevc) carry no timestamps: number the
            # frames in output order instead, as ffmpeg's best-effort timestamps do.
            self.synthetic = packet.pts is None and packet.dts is None
        if self.decoder is not None:
            frames = self.decoder.decode(packet)
        else:
            try:
                frames = self.in_stream.codec_context.decode(packet)
            except av.error.InvalidDataError as e:
                log.warning("video stream %d:%d: a packet does not decode: %s", self.input.index, self.in_stream.index, e)
                return
        for frame in frames:
            self._decoded(frame)

    def _decoded(self, frame: VideoFrame) -> None:
        if self.done:
            return
        tb = frame.time_base or self.in_stream.time_base
        if self.synthetic or frame.pts is None:
            # One frame at the input's rate (raw demuxers assume 25 fps unless -framerate says).
            step = max(round(1 / (self.in_rate * tb)), 1) if self.in_rate else (frame.duration or 1)
            frame.pts = self.next_pts
            self.next_pts += step
        t_out = float(frame.pts * tb) - self.origin
        if self.end is not None and t_out >= self.end - 1e-9:
            self.done = True  # -t reached: the rest of the input is not needed
            return
        if t_out < -1e-9:
            return  # before -ss
        frame.pts -= self.shift
        frame.time_base = tb
        frame.pict_type = av.video.frame.PictureType.NONE  # ffmpeg: keyframes only where forced
        if self.filter is None:
            self._encode(frame)
        else:
            for out in self.filter.process(frame, self.sar):
                self._encode(out)

    # -- encoding ------------------------------------------------------------------------------

    def _keyframe(self, frame: VideoFrame) -> bool:
        t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else 0.0
        if self.key_every is not None:
            if t >= self.forced * self.key_every - 1e-9:
                self.forced += 1
                return True
            return False
        hit = False
        while self.forced < len(self.key_times) and self.key_times[self.forced] <= t + 1e-9:
            self.forced += 1
            hit = True
        return hit

    def _cfr(self, frame: VideoFrame) -> VideoFrame | None:
        """Frame timestamps in the encoder time base; None drops the frame.

        As ffmpeg does when the frame rate is known, the encoder counts in
        1/rate (``-r`` or the stream's rate): pts = round(t * rate), duration 1.
        A frame that would not advance the clock (variable-rate input faster than
        the rate) is dropped rather than given a duplicate pts.
        """
        if self.time_base is None:
            rate = self.rate
            if self.cfr and rate is not None and 0 < rate <= 1000 and rate.denominator <= 1001:
                self.time_base = 1 / rate
            else:
                self.time_base = frame.time_base or self.in_stream.time_base
        tb = self.time_base
        assert tb is not None
        src_tb = frame.time_base or tb
        if src_tb != tb and frame.pts is not None:
            exact = Fraction(frame.pts) * src_tb / tb
            span = Fraction(frame.duration) * src_tb / tb if frame.duration else Fraction(0)
            counting = self.rate is not None and tb == 1 / self.rate
            if counting and not span:
                span = Fraction(1)
            pts = round(exact)
            if self.last_pts is not None and pts <= self.last_pts:
                nxt = self.last_pts + 1
                # Container timestamps are rounded (MKV counts in ms), so a frame of a
                # 23.976 fps stream can round onto its predecessor's tick. Like ffmpeg's
                # vsync, slide a frame that is only slightly early to the next tick and
                # drop only one that ends more than 0.6 tick before it.
                if exact + span <= nxt - Fraction(3, 5):
                    self.dropped += 1
                    log.debug("dropping a frame at %s ticks: the clock is at %d (time base %s)", exact, self.last_pts, tb)
                    return None
                pts = nxt
            frame.pts = pts
            frame.time_base = tb
            duration = round(span)
            frame.duration = max(duration, 1) if counting else duration
        if frame.pts is not None and self.last_pts is not None and frame.pts <= self.last_pts:
            self.dropped += 1
            log.debug("dropping a frame at pts %d: the clock is at %d (time base %s)", frame.pts, self.last_pts, tb)
            return None
        self.last_pts = frame.pts
        return frame

    def _encode(self, frame: VideoFrame) -> None:
        if self.out.max_frames is not None and self.frames_out >= self.out.max_frames:
            self.done = True
            return
        cfr = self._cfr(frame)
        if cfr is None:
            return
        frame = cfr
        if self.encoder is None and not (self.local_ctx is not None and self.local_ctx.is_open):
            self._open_encoder(frame)
        keyframe = self._keyframe(frame)
        self.frames_out += 1
        self.job.stats.frames += 1
        if self.encoder is not None:
            if frame.pts is not None:
                self.durations[frame.pts] = frame.duration or self.encoder.default_duration
            self._mux_packets(self.encoder.encode(frame, keyframe=keyframe))
        else:
            frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
            if frame.format.name != self.local_ctx.pix_fmt:
                frame = frame.reformat(format=self.local_ctx.pix_fmt)
            if frame.pts is not None:
                self.durations[frame.pts] = frame.duration
            self._mux_packets(self.out_stream.encode(frame))
        if self.out.max_frames is not None and self.frames_out >= self.out.max_frames:
            self.done = True

    def _mux_packets(self, packets: list[Packet]) -> None:
        """Mux encoded packets; a zero duration gets the duration of its frame."""
        for pkt in packets:
            if not pkt.duration and pkt.pts is not None:
                pkt.duration = self.durations.get(pkt.pts, 0)
            if pkt.pts is not None:
                self.durations.pop(pkt.pts, None)
            pkt.stream = self.out_stream
            self.job.muxer.mux(self.out_index, pkt)

    def _color_settings(self, frame: VideoFrame) -> dict[str, Any]:
        return {
            "color_range": int(frame.color_range),
            "colorspace": int(frame.colorspace),
            "color_primaries": int(frame.color_primaries),
            "color_trc": int(frame.color_trc),
        }

    def _open_encoder(self, frame: VideoFrame) -> None:
        tb = self.time_base
        assert tb is not None
        ctx = self.out_stream.codec_context
        ctx.width, ctx.height = frame.width, frame.height
        ctx.time_base = tb
        if self.rate:
            ctx.framerate = self.rate
        if self.sar:
            ctx.sample_aspect_ratio = self.sar
        for key, value in self._color_settings(frame).items():
            with contextlib.suppress(AttributeError, ValueError):
                setattr(ctx, key, value)
        if self.remote_codec:
            self._open_remote_encoder(frame, tb)
        else:
            self._open_local_encoder(frame)
        self.out_stream.time_base = tb
        self.job.muxer.set_ready(self.out_index)

    def _remote_pix_fmt(self, frame: VideoFrame) -> str:
        want = self.out.pix_fmt
        # More than 8 bits per sample picks P010 for HEVC (a name test would take nv12 for 12-bit).
        deep = max(c.bits for c in frame.format.components) > 8
        default = "p010le" if self.remote_codec == "hevc" and deep else "nv12"
        if want is None:
            return default
        if want in ("nv12", "p010le", "p010") and not (want.startswith("p010") and self.remote_codec == "h264"):
            return "p010le" if want.startswith("p010") else "nv12"
        log.warning(
            "incompatible pixel format %r for %s, auto-selecting %s", want, self.out.video_codec, default
        )
        return default

    def _open_remote_encoder(self, frame: VideoFrame, tb: Fraction) -> None:
        assert self.remote_codec is not None
        ro = self.job.remote_for_output()
        settings: dict[str, Any] = self._color_settings(frame) | dict(self.out.video)
        flags = AV_CODEC_FLAG_FRAME_DURATION
        if self.job.output.format.flags & AVFMT_GLOBALHEADER:
            flags |= AV_CODEC_FLAG_GLOBAL_HEADER
        settings["flags"] = settings.get("flags", 0) | flags
        if self.sar:
            settings.setdefault("sar", (self.sar.numerator, self.sar.denominator))
        ignored = sorted(k for k in self.out.codec_options if k in ("preset", "tune", "crf", "x264-params", "x265-params", "bufsize", "threads"))
        if ignored:
            log.warning("%s ignores %s (local encoder options)", self.out.video_codec, ", ".join("-" + k for k in ignored))
        pix_fmt = self._remote_pix_fmt(frame)
        self.encoder = RemoteEncoder(
            ro.host or "",
            self.remote_codec,
            width=frame.width,
            height=frame.height,
            pix_fmt=pix_fmt,
            time_base=tb,
            framerate=self.rate,
            token=ro.token,
            **ro.tls_kwargs(),
            timeout=ro.timeout_ms / 1000,
            compression=ro.compression,
            inflight=ro.inflight,
            settings=EncoderSettings.from_kwargs(**settings),
        )
        self.job.sessions.append(self.encoder)
        ctx = self.out_stream.codec_context
        ctx.pix_fmt = "yuv420p10le" if pix_fmt.startswith("p010") else "yuv420p"
        if self.encoder.extradata:
            ctx.extradata = self.encoder.extradata
        else:
            log.warning("%s sent no extradata; the output may need in-band parameter sets", self.encoder.server)

    def _open_local_encoder(self, frame: VideoFrame) -> None:
        ctx = self.local_ctx
        formats = [f.name for f in (ctx.codec.video_formats or [])]
        want = self.out.pix_fmt or frame.format.name
        if formats and want not in formats:
            chosen = formats[0]
            if self.out.pix_fmt:
                log.warning("incompatible pixel format %r for %s, auto-selecting %s", want, ctx.codec.name, chosen)
            want = chosen
        ctx.pix_fmt = want
        if "threads" in self.out.codec_options:
            ctx.thread_count = int(self.out.codec_options["threads"])
        options = {k: v for k, v in self.out.codec_options.items() if k != "threads"}
        ctx.options = options
        try:
            ctx.open()
        except av.error.FFmpegError as e:
            raise JobError(f"local encoder {ctx.codec.name} does not open with these options ({options}): {e}") from e

    def finish(self) -> None:
        if not self.done:
            if self.decoder is not None:
                frames = self.decoder.flush()
            else:
                try:
                    frames = self.in_stream.codec_context.decode(None)
                except av.error.EOFError:
                    frames = []
            for frame in frames:
                self._decoded(frame)
        elif self.decoder is not None:
            self.decoder.close()  # its remaining output is not needed
        if self.filter is not None and not self.done:
            for frame in self.filter.process(None, self.sar):
                self._encode(frame)
        if self.encoder is not None:
            self._mux_packets(self.encoder.flush())
        elif self.local_ctx is not None and self.local_ctx.is_open:
            self._mux_packets(self.out_stream.encode(None))

    def close(self) -> None:
        for session in (self.decoder, self.encoder):
            if session is not None:
                session.close()

    def describe(self) -> dict[str, Any]:
        d = super().describe() | {"codec": self.codec, "frames": self.frames_out, "dropped": self.dropped}
        if self.encoder is not None:
            d["remote_encoder"] = self.encoder.server
        if self.decoder is not None:
            d["remote_decoder"] = self.decoder.server
        return d


# --- the job ----------------------------------------------------------------------------------------


def _default_streams(inputs: list[Input], out: OutputSpec) -> list[tuple[Input, Any]]:
    """ffmpeg's automatic selection over all inputs: the video stream with the most
    pixels, the audio stream with the most channels, the first subtitle stream."""
    every: list[tuple[Input, Any]] = [(inp, s) for inp in inputs for s in inp.streams]
    videos = [(i, s) for i, s in every if s.type == "video" and not (s.disposition & av.stream.Disposition.attached_pic)]
    audios = [(i, s) for i, s in every if s.type == "audio"]
    subs = [(i, s) for i, s in every if s.type == "subtitle"]
    picked: list[tuple[Input, Any]] = []
    if videos and not out.no_video:
        picked.append(max(videos, key=lambda p: (p[1].codec_context.width * p[1].codec_context.height, -p[0].index, -p[1].index)))
    if audios and not out.no_audio:
        picked.append(max(audios, key=lambda p: (p[1].codec_context.channels, -p[0].index, -p[1].index)))
    if subs and not out.no_subtitles:
        picked.append(subs[0])
    return picked


def _can_copy(stream: Any, format_name: str) -> bool:
    """Whether a stream of this codec can be copied into this container (asked of FFmpeg)."""
    scratch = av.open(io.BytesIO(), "w", format=format_name)
    try:
        scratch.add_stream_from_template(stream)
    except ValueError:
        return False
    finally:
        scratch.close()
    return True


def _drop_uncopyable_subtitles(chosen: list[tuple[Input, Any]], output: Any, out: OutputSpec) -> list[tuple[Input, Any]]:
    """Automatic selection only: leave out subtitles the container cannot hold.

    ffmpeg would convert them (SubRip -> mov_text for MP4); vtremote copies
    subtitles only, so it says what it leaves out instead of failing the run.
    """
    if "s" in out.codecs:  # -c:s given: the user asked for these subtitles
        return chosen
    kept = []
    for inp, stream in chosen:
        if stream.type == "subtitle" and not _can_copy(stream, output.format.name):
            log.warning(
                "subtitle stream %d:%d (%s) left out: %s cannot hold it and vtremote does not convert subtitles",
                inp.index, stream.index, stream.codec_context.name, output.format.name,
            )
            continue
        kept.append((inp, stream))
    return kept


def _match(spec: MapSpec, stream: Any) -> bool:
    if spec.type is not None:
        kind = {"v": "video", "a": "audio", "s": "subtitle", "d": "data"}[spec.type]
        return bool(stream.type == kind)
    return spec.index is None or bool(stream.index == spec.index)


def select_streams(inputs: list[Input], out: OutputSpec) -> list[tuple[Input, Any]]:
    if not out.maps:
        return _default_streams(inputs, out)
    chosen: list[tuple[Input, Any]] = []
    for spec in out.maps:
        if spec.negative:
            continue
        if spec.input >= len(inputs):
            raise UsageError(f"-map {spec.input}: there are only {len(inputs)} input(s)")
        inp = inputs[spec.input]
        matches = [s for s in inp.streams if _match(spec, s)]
        if spec.type is not None and spec.index is not None:
            matches = matches[spec.index : spec.index + 1]
        if not matches and not spec.optional:
            raise UsageError(f"-map {_map_text(spec)} matches no stream of input {spec.input} ({inp.spec.url})")
        chosen += [(inp, s) for s in matches]
    for spec in out.maps:
        if spec.negative:
            chosen = [(i, s) for i, s in chosen if not (i.index == spec.input and _match(spec, s))]
    kinds = {"video": out.no_video, "audio": out.no_audio, "subtitle": out.no_subtitles, "data": out.no_data}
    return [(i, s) for i, s in chosen if not kinds.get(s.type, False)]


def _map_text(spec: MapSpec) -> str:
    return ":".join(str(p) for p in (spec.input, spec.type, spec.index) if p is not None)


class Job:
    """One run of ``vtremote -i ... OUTPUT``."""

    def __init__(self, cmd: Command, *, progress: bool = False) -> None:
        self.cmd = cmd
        self.show_progress = progress
        self.stats = JobStats(output=cmd.output.url)
        self.sessions: list[RemoteDecoder | RemoteEncoder] = []
        self.handlers: list[Handler] = []
        self.inputs: list[Input] = []
        self.server: Any = None
        self.server_address: str | None = None
        self.output: av.container.OutputContainer
        self.muxer: Muxer

    # -- remote hosts ----------------------------------------------------------------------------

    def _needs_remote(self) -> bool:
        return bool(self.cmd.output.remote_codec) or any(i.remote_codec for i in self.cmd.inputs)

    def _named_host(self) -> RemoteOptions | None:
        for ro in [self.cmd.output.remote, *(i.remote for i in self.cmd.inputs)]:
            if ro.host:
                return ro
        return None

    def remote_for_output(self) -> RemoteOptions:
        ro = self.cmd.output.remote
        named = self._named_host()
        ro = ro.merged(named) if named else ro
        return ro if ro.host else RemoteOptions(self.server_address, ro.token, ro.compression, ro.inflight, ro.timeout_ms)

    def remote_for_input(self, inp: Input) -> RemoteOptions:
        ro = inp.spec.remote
        named = self._named_host()
        ro = ro.merged(named) if named else ro
        return ro if ro.host else RemoteOptions(self.server_address, ro.token, ro.compression, ro.inflight, ro.timeout_ms)

    def _start_embedded_server(self) -> None:
        """No -vt_remote_host: serve this run from a vtremoted inside this process (loopback)."""
        try:
            from vtremote.server import Server, ServerConfig
        except ImportError as e:
            raise JobError(f"no -vt_remote_host given and the embedded server cannot start: {e}") from e
        self.server = Server(ServerConfig(listen="127.0.0.1:0", engine="auto"))
        self.server.start()
        host, port = self.server.address[:2]
        self.server_address = f"{host}:{port}"
        self.stats.embedded_server = self.server_address
        log.info("no -vt_remote_host: this run is served by an embedded vtremoted on %s", self.server_address)

    # -- output ----------------------------------------------------------------------------------

    @property
    def output_format(self) -> str:
        return self.output.format.name

    def _open_output(self) -> None:
        out = self.cmd.output
        fmt = out.format
        url = out.url
        if fmt != "null" and url != "-" and os.path.exists(url) and self.cmd.overwrite is not True:
            raise JobError(f"{url} already exists; use -y to overwrite it" + (" (-n given)" if self.cmd.overwrite is False else ""))
        if url == "-" and fmt != "null":
            raise UsageError("output '-' (stdout) is only supported with -f null")
        try:
            self.output = av.open(url if fmt != "null" else os.devnull, "w", format=fmt)
        except ValueError as e:
            raise UsageError(f"cannot tell the output format of {url!r}: {e}; name it with -f (mp4, mov, matroska, mpegts, nut, null)") from e
        except av.error.FFmpegError as e:
            raise JobError(f"cannot open output {url!r}: {e.strerror or e}") from e
        self.output.metadata.update(out.metadata)
        self.stats.format = self.output.format.name
        self.muxer = Muxer(self.output, self.stats)

    def _make_handler(self, inp: Input, stream: Any) -> Handler:
        out = self.cmd.output
        idx = self.muxer.add()
        kind = stream.type
        if kind == "video":
            codec = out.codecs.get("v") or self.output.default_video_codec
            if codec == "copy":
                return CopyHandler(self, inp, stream, idx)
            if codec in ("none", ""):
                raise UsageError("video codec 'none': use -vn")
            return VideoHandler(self, inp, stream, idx, codec)
        if kind == "audio":
            codec = out.codecs.get("a") or "copy"
            return CopyHandler(self, inp, stream, idx) if codec == "copy" else AudioHandler(self, inp, stream, idx, codec)
        codec = out.codecs.get("s" if kind == "subtitle" else "d") or "copy"
        if codec != "copy":
            raise UsageError(f"{kind} streams can only be copied (-c:{kind[0]} copy) or left out (-{kind[0]}n)")
        return CopyHandler(self, inp, stream, idx)

    # -- run -----------------------------------------------------------------------------------------

    def run(self) -> JobStats:
        try:
            self._run()
        finally:
            self._cleanup()
        return self.stats

    def _run(self) -> None:
        out = self.cmd.output
        if out.remote_codec is None and out.video_codec and out.video_codec.endswith("_remote"):
            raise UsageError(f"unknown remote encoder {out.video_codec!r}: use h264_videotoolbox_remote or hevc_videotoolbox_remote")
        for spec in self.cmd.inputs:
            if spec.remote_codec is None and spec.video_codec and spec.video_codec.endswith("_remote"):
                raise UsageError(f"unknown remote decoder {spec.video_codec!r}: use h264_videotoolbox_remote or hevc_videotoolbox_remote")
        self._open_output()
        self.inputs = [Input(i, spec) for i, spec in enumerate(self.cmd.inputs)]
        selected = select_streams(self.inputs, out)
        if not out.maps:
            selected = _drop_uncopyable_subtitles(selected, self.output, out)
        if not selected:
            raise UsageError("no stream selected for the output (check -map / -an / -vn / -sn)")
        if self._needs_remote() and self._named_host() is None:
            self._start_embedded_server()
        for inp, stream in selected:
            self.handlers.append(self._make_handler(inp, stream))
        self.stats.total_time = self._expected_duration()
        by_stream = {(h.input.index, h.in_stream.index): h for h in self.handlers}
        demux_plan = [(inp, [s for s in inp.streams if (inp.index, s.index) in by_stream]) for inp in self.inputs]
        demux_plan = [(inp, streams) for inp, streams in demux_plan if streams]
        with ProgressDisplay(self.stats, enabled=self.show_progress) as progress:
            for inp, packet in merged_demux(demux_plan):
                handler = by_stream.get((inp.index, packet.stream.index))
                if handler is None:
                    continue
                handler.feed(packet)
                self._update_wire()
                progress.update()
                if all(h.done for h in self.handlers if not h.sparse):
                    break
            for h in self.handlers:
                h.finish()
            self.muxer.close()
            self._update_wire()
            progress.update(force=True)
        self.stats.finished = time.monotonic()
        if out.format != "null" and out.url != "-":
            with contextlib.suppress(OSError):
                self.stats.size_bytes = os.path.getsize(out.url)
        self.stats.streams = [h.describe() for h in self.handlers]
        self.stats.remote = [self._session_info(s) for s in self.sessions]

    def _expected_duration(self) -> float | None:
        out = self.cmd.output
        ends = [h.end for h in self.handlers if h.end is not None]
        if ends:
            return min(ends)
        durations = [inp.duration - inp.spec.seek - out.seek for inp in self.inputs if inp.duration]
        return max(durations) if durations else None

    def _update_wire(self) -> None:
        sent = received = 0
        for s in self.sessions:
            st = s.stats
            sent += st.bytes_sent
            received += st.bytes_received
        self.stats.wire_sent, self.stats.wire_received = sent, received

    @staticmethod
    def _session_info(s: RemoteDecoder | RemoteEncoder) -> dict[str, Any]:
        return {
            "mode": "encode" if isinstance(s, RemoteEncoder) else "decode",
            "server": s.server,
            "server_name": s.server_name,
            "server_version": s.server_version,
            "engine": s.engine,
            "codec": s.codec,
            "compression": s.compression.name.lower(),
            "pipelined": getattr(s, "pipelined", True),
            **s.stats.as_dict(),
        }

    def _cleanup(self) -> None:
        for h in self.handlers:
            with contextlib.suppress(Exception):
                h.close()
        for s in self.sessions:
            s.close()
        with contextlib.suppress(Exception):
            if hasattr(self, "muxer") and not self.muxer.closed:
                self.muxer.closed = True
                self.output.close()
        for inp in self.inputs:
            with contextlib.suppress(Exception):
                inp.close()
        if self.server is not None:
            self.server.shutdown()
            self.server = None


def check_config(cmd: Command) -> None:
    """Checks that need no file or server (so that usage errors exit 2 before any work)."""
    out = cmd.output
    if out.remote_codec and out.video.get("level") is not None and out.remote_codec == "hevc":
        log.warning("-level is ignored by hevc_videotoolbox_remote (the reference's HEVC encoder has no level option)")
    try:
        EncoderSettings.from_kwargs(**out.video)
    except ConfigError as e:
        raise UsageError(str(e)) from e
