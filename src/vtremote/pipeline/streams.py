"""Stream handlers: one output stream fed from one input stream.

* :class:`CopyHandler`: packets copied untouched (data byte for byte; only the
  timestamps move by the run's start offset).
* :class:`AudioHandler`: local decode + local PyAV encode (``-c:a aac`` ...).
* Video: the strategies in :mod:`vtremote.pipeline.video`.
"""

from __future__ import annotations

import contextlib
import logging
from fractions import Fraction
from typing import Any, TypeAlias

import av
import av.error

from vtremote.errors import JobError, UsageError
from vtremote.pipeline.filters import AudioFilter
from vtremote.pipeline.handler import Handler, JobContext
from vtremote.pipeline.inputs import Input
from vtremote.pipeline.timing import to_seconds, to_ticks

log = logging.getLogger(__name__)

Packet: TypeAlias = "av.Packet[Any]"
#: ``-ac N`` -> FFmpeg's default layout name for N channels.
CHANNEL_LAYOUTS = {
    1: "mono",
    2: "stereo",
    3: "2.1",
    4: "quad",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}


class CopyHandler(Handler):
    """Packets copied untouched; only the timestamps move by the run's start offset."""

    def __init__(self, ctx: JobContext, inp: Input, in_stream: Any, out_index: int) -> None:
        super().__init__(ctx, inp, in_stream, out_index)
        self.sparse = in_stream.type in ("subtitle", "data", "attachment")
        try:
            self.out_stream = ctx.container.add_stream_from_template(in_stream)
        except ValueError as e:
            ctx_name = in_stream.codec_context.name if in_stream.codec_context else in_stream.type
            raise JobError(
                f"cannot copy stream {inp.index}:{in_stream.index} ({ctx_name}) "
                f"into {ctx.output_format}: {e} (leave it out with -{in_stream.type[0]}n "
                "or -map, or choose another container)"
            ) from e
        self.video = in_stream.type == "video"
        # ffmpeg's stream copy: after an input -ss everything from the packet the seek landed
        # on (video: its keyframe, at or before -ss) is kept; an output -ss drops what comes
        # before it.
        self.drop_before = ctx.output.seek > 0
        self.started = not (self.video and (inp.spec.seek > 0 or self.drop_before))
        self.shift = to_ticks(self.zero, in_stream.time_base) if in_stream.time_base else 0
        self.packets = 0
        ctx.muxer.set_ready(out_index)

    @property
    def video_frames(self) -> int:
        return self.packets if self.video else 0

    def feed(self, packet: Packet) -> None:
        if self.done or packet.size == 0:
            return
        # ffmpeg ends a copied stream at the first packet whose decode time reaches the end.
        t = to_seconds(packet.dts if packet.dts is not None else packet.pts, packet.time_base)
        if t is not None:
            if self.stop is not None and t >= self.stop - 1e-9:
                self.done = True
                return
            if self.drop_before and t < self.origin - 1e-9:
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
        self.ctx.muxer.mux(self.out_index, packet)

    def finish(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"codec": "copy", "packets": self.packets}


class AudioHandler(Handler):
    """Local audio decode + local PyAV encode (``-c:a aac``, ``-b:a``, ``-ar``, ``-ac``)."""

    def __init__(
        self, ctx: JobContext, inp: Input, in_stream: Any, out_index: int, codec: str
    ) -> None:
        super().__init__(ctx, inp, in_stream, out_index)
        out = ctx.output
        rate = out.audio_rate or in_stream.codec_context.sample_rate or 48000
        try:
            self.out_stream = ctx.container.add_stream(codec, rate=rate)
        except (ValueError, av.error.FFmpegError) as e:
            raise JobError(
                f"audio encoder {codec!r} cannot write into {ctx.output_format}: {e}"
            ) from e
        codec_ctx: Any = self.out_stream.codec_context
        if out.audio_bitrate:
            codec_ctx.bit_rate = out.audio_bitrate
        layout: Any = in_stream.codec_context.layout
        if out.audio_channels:
            if out.audio_channels not in CHANNEL_LAYOUTS:
                raise UsageError(f"-ac {out.audio_channels}: give 1..8 channels")
            layout = CHANNEL_LAYOUTS[out.audio_channels]
        codec_ctx.layout = layout
        codec_ctx.time_base = Fraction(1, rate)
        self.shift = to_ticks(self.zero, in_stream.time_base)
        self.frames = 0
        self.filter = AudioFilter(out.audio_filter) if out.audio_filter else None
        ctx.muxer.set_ready(out_index)

    def feed(self, packet: Packet) -> None:
        if self.done or packet.size == 0:
            return  # size 0: the demuxer's end-of-stream marker; finish() drains
        try:
            frames = self.in_stream.codec_context.decode(packet)
        except av.error.FFmpegError as e:
            log.warning(
                "audio stream %d:%d: dropping a packet that does not decode: %s",
                self.input.index,
                self.in_stream.index,
                e,
            )
            return
        for frame in frames:
            self._frame(frame)

    def _frame(self, frame: Any) -> None:
        if frame.pts is None:
            return
        t_out = float(frame.pts * frame.time_base) - self.origin
        if t_out + frame.samples / frame.sample_rate <= 0 and not self.from_keyframe:
            return  # before -ss (-noaccurate_seek keeps what the seek landed on, as ffmpeg)
        if self.frames == 0:
            self.started_at(t_out + self.origin)
        if self.end is not None and t_out >= self.end - 1e-9:
            self.done = True
            return
        frame.pts -= self.shift
        self.frames += 1
        for out in self.filter.process(frame) if self.filter is not None else [frame]:
            for pkt in self.out_stream.encode(out):
                self.ctx.muxer.mux(self.out_index, pkt)

    def finish(self) -> None:
        if not self.done:
            with contextlib.suppress(av.error.EOFError):
                for frame in self.in_stream.codec_context.decode(None):
                    self._frame(frame)
        if self.filter is not None:
            for out in self.filter.process(None):
                for pkt in self.out_stream.encode(out):
                    self.ctx.muxer.mux(self.out_index, pkt)
        for pkt in self.out_stream.encode(None):
            self.ctx.muxer.mux(self.out_index, pkt)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "codec": self.out_stream.codec_context.name,
            "frames": self.frames,
        }
