"""The frame path: packets -> frames (local or remote decoder) -> filters -> frames -> packets.

Raw-frame remote encode and remote decode are this one handler with a
different :class:`FrameSource` or :class:`FrameSink`. It owns the timing rules
the two share with ffmpeg: output time 0 is the input's start plus ``-ss``,
``-t`` / ``-frames:v`` end the run, the encoder counts in 1/rate when the rate
is known (a frame that would not advance the clock is dropped, one only
slightly early slides to the next tick), keyframes only where forced.
Remote packets keep the server's pts/dts (VTR1.md §7.5); a zero duration
(the reference server never sets one, §13.17) is filled in from the frame
that produced the packet.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Any, TypeAlias

import av

from vtremote.pipeline.filters import (
    RATE_FILTERS,
    TIMING_NEUTRAL_FILTERS,
    VideoFilter,
    chain_rate,
    split_filter_chain,
)
from vtremote.pipeline.handler import Handler, JobContext
from vtremote.pipeline.inputs import Input
from vtremote.pipeline.keyframes import KeyFrameClock, parse_key_frames
from vtremote.pipeline.spec import OutputSpec
from vtremote.pipeline.timing import to_ticks
from vtremote.pipeline.video.frame_sinks import FrameSink, color_settings
from vtremote.pipeline.video.frame_sources import FrameSource

log = logging.getLogger(__name__)

Packet: TypeAlias = "av.Packet[Any]"
VideoFrame = av.VideoFrame


def output_filters(out: OutputSpec) -> list[tuple[str, str | None]]:
    """The filters ``-s`` and ``-r`` add after ``-vf``: a scale, then an fps."""
    chain: list[tuple[str, str | None]] = []
    if out.size is not None:
        chain.append(("scale", f"{out.size[0]}:{out.size[1]}"))
    if out.rate is not None:
        chain.append(("fps", f"fps={out.rate}"))
    return chain


class FrameHandler(Handler):
    """Decode (local or remote) -> filters -> encode (local or remote)."""

    strategy = "frames"

    def __init__(
        self,
        ctx: JobContext,
        inp: Input,
        in_stream: Any,
        out_index: int,
        codec: str,
        source: FrameSource,
        make_sink: Callable[[Fraction | None], FrameSink],
    ) -> None:
        super().__init__(ctx, inp, in_stream, out_index)
        out = ctx.output
        self.out = out
        self.codec = codec
        self.shift = to_ticks(self.zero, in_stream.time_base)
        self.sar = in_stream.codec_context.sample_aspect_ratio or None
        #: The input's frame rate (raw demuxers guess 25 unless -framerate is given).
        self.in_rate: Fraction | None = in_stream.average_rate or in_stream.guessed_rate or None
        user_chain = split_filter_chain(out.video_filter) if out.video_filter else []
        #: The encoder's frame rate: -r, a rate set by the filters, or the input's.
        self.rate = out.rate or chain_rate(user_chain, self.in_rate)
        #: Count in 1/rate (as ffmpeg does) unless the filters retime frames in ways we cannot know.
        self.cfr = out.rate is not None or all(
            name in TIMING_NEUTRAL_FILTERS or name in RATE_FILTERS for name, _ in user_chain
        )
        chain = user_chain + output_filters(out)
        self.filter = VideoFilter(chain) if chain else None
        self.key_clock: KeyFrameClock | None = (
            parse_key_frames(out.force_key_frames).clock() if out.force_key_frames else None
        )
        self.frames_out = 0
        self.frames_in = 0  # decoded frames kept so far (before -t and -frames:v)
        self.durations: dict[int, int] = {}
        self.synthetic: bool | None = (
            None  # True: the input has no timestamps (decided on its first packet)
        )
        self.next_pts = 0
        self.time_base: Fraction | None = None  # the encoder's, decided by the first frame
        self.last_pts: int | None = None
        self.dropped = 0
        self.source = source
        # The output stream now (map order); its parameters are filled in with the first frame.
        self.sink: FrameSink = make_sink(self.rate)
        self.out_stream = self.sink.out_stream

    @property
    def video_frames(self) -> int:
        return self.frames_out

    # -- decoding ------------------------------------------------------------------------------

    def feed(self, packet: Packet) -> None:
        if self.done:
            return
        if packet.size == 0:
            return  # end-of-stream marker of the demuxer; finish() drains
        if self.input.spec.keyframes_only and not packet.is_keyframe:
            return  # -skip_frame nokey: only keyframes reach the decoder, here or remote
        if self.synthetic is None:
            # Raw elementary streams (.h264, .hevc) carry no timestamps: number the
            # frames in output order instead, as ffmpeg's best-effort timestamps do.
            self.synthetic = packet.pts is None and packet.dts is None
        for frame in self.source.decode(packet):
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
        if t_out < -1e-9 and not self.from_keyframe:
            return  # before -ss (-noaccurate_seek keeps the frames from the keyframe)
        if self.frames_in == 0:
            self.started_at(t_out + self.origin)
        self.frames_in += 1
        if self.end is not None and t_out >= self.end - 1e-9:
            self.done = True  # -t reached: the rest of the input is not needed
            return
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
        if self.key_clock is None:
            return False
        t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else 0.0
        return self.key_clock.forced(t)

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
                    log.debug(
                        "dropping a frame at %s ticks: the clock is at %d (time base %s)",
                        exact,
                        self.last_pts,
                        tb,
                    )
                    return None
                pts = nxt
            frame.pts = pts
            frame.time_base = tb
            duration = round(span)
            frame.duration = max(duration, 1) if counting else duration
        if frame.pts is not None and self.last_pts is not None and frame.pts <= self.last_pts:
            self.dropped += 1
            log.debug(
                "dropping a frame at pts %d: the clock is at %d (time base %s)",
                frame.pts,
                self.last_pts,
                tb,
            )
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
        if not self.sink.is_open:
            self._open_encoder(frame)
        keyframe = self._keyframe(frame)
        self.frames_out += 1
        if frame.pts is not None:
            self.durations[frame.pts] = frame.duration or self.sink.default_duration
        self._mux_packets(self.sink.encode(frame, keyframe))
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
            self.ctx.muxer.mux(self.out_index, pkt)

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
        for key, value in color_settings(frame).items():
            with contextlib.suppress(AttributeError, ValueError):
                setattr(ctx, key, value)
        self.sink.open(frame, tb, self.rate, self.sar)
        self.out_stream.time_base = tb
        self.ctx.muxer.set_ready(self.out_index)

    def finish(self) -> None:
        if not self.done:
            for frame in self.source.flush():
                self._decoded(frame)
        else:
            self.source.close()  # its remaining output is not needed
        if self.filter is not None and not self.done:
            for frame in self.filter.process(None, self.sar):
                self._encode(frame)
        self._mux_packets(self.sink.flush())

    def close(self) -> None:
        self.source.close()
        self.sink.close()

    def describe(self) -> dict[str, Any]:
        d = super().describe() | {
            "codec": self.codec,
            "strategy": self.strategy,
            "frames": self.frames_out,
            "dropped": self.dropped,
        }
        if self.sink.session is not None:
            d["remote_encoder"] = self.sink.session.server
        if self.source.session is not None:
            d["remote_decoder"] = self.source.session.server
        return d
