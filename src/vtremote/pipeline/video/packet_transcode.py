"""Packet transcode: the source's compressed packets travel, the server decodes, filters, encodes.

Raw frames of real, grainy content need 0.5-1.5 Gb/s; the packets the client
already holds need the source's bitrate. When the output is a remote encoder,
the video chain is decode -> filters the server allows -> encode, and the
server offers ``ext:transcode`` with a decoder for the input, one
:class:`~vtremote.client.RemoteTranscoder` session does the whole chain and
this machine only demuxes and muxes. :func:`why_not_transcode` and
:func:`chain_refusal` say why a stream cannot take this path (the job then logs
it and uses the frame path).

Trimmed jobs take this path too: the input seek lands on the keyframe at or
before ``-ss`` and the packets go from there; ``trim`` filters at the server
(:func:`trim_filters`) drop what ffmpeg drops (frames before an accurate
``-ss``, after ``-t`` / ``-to``, past ``-frames:v``), so the server decodes the
pre-roll and only the frames kept are encoded.

Timestamps: packets are shifted by the run's start offset before they leave,
so the output starts at 0 as in the frame path; the server makes the output
pts/dts (dts strictly increasing, never above pts) in the time base its
CONFIGURE_ACK names, and a packet without a duration gets one frame at the
output rate.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeAlias

import av

from vtremote.errors import ConfigError
from vtremote.pipeline.handler import Handler, JobContext
from vtremote.pipeline.inputs import Input
from vtremote.pipeline.keyframes import parse_force_key_frames, parse_key_frames
from vtremote.pipeline.output import open_output_stream_for_packets
from vtremote.pipeline.remote_sessions import open_transcoder
from vtremote.pipeline.spec import OutputSpec
from vtremote.pipeline.timing import to_seconds, to_ticks
from vtremote.pipeline.video.frame_path import output_filters
from vtremote.pipeline.video.frame_sinks import color_settings, remote_settings
from vtremote.wire.constants import PixelFormat
from vtremote.wire.filter_specs import Trim, serialize

if TYPE_CHECKING:
    from vtremote.client.failover_transcoder import FailoverTranscoder
    from vtremote.client.packet_transcoder import RemoteTranscoder


Packet: TypeAlias = "av.Packet[Any]"

#: Codecs of inputs that are pictures already (lavfi sources, raw video): nothing to decode.
UNCOMPRESSED_CODECS = frozenset({"rawvideo", "wrapped_avframe"})
#: Demuxers whose packets carry no timestamps: the frame path numbers their frames.
UNTIMED_FORMATS = frozenset({"h264", "hevc", "mpegvideo", "m4v", "rawvideo", "ivf"})


def chain_text(out_filter: str | None, extra: list[tuple[str, str | None]]) -> str:
    """The whole video chain as one ``-vf`` text: ``-vf``, then what ``-s`` and ``-r`` add."""
    parts = [out_filter] if out_filter else []
    parts += [f"{name}={args}" if args else name for name, args in extra]
    return ",".join(parts)


#: Forced key frame times a transcode CONFIGURE carries as a list (one VTR1 string holds 64 KiB).
MAX_KEY_TIMES = 2000


def key_schedule(text: str | None) -> tuple[list[float], float | None]:
    """``-force_key_frames`` as the transcoder takes it: a time list, or an interval.

    A list that is an interval from 0 in disguise (``0,3,6,...``, as media servers
    expand ``expr:gte(t,n_forced*3)``) travels as the interval, whatever its length.
    """
    if not text:
        return [], None
    times, every = parse_force_key_frames(text)
    if len(times) > 2 and times[0] == 0:
        step = times[1]
        if step > 0 and all(abs(t - i * step) < 1e-6 for i, t in enumerate(times)):
            return [], step
    return times, every


def why_not_transcode(ctx: JobContext, inp: Input, in_stream: Any) -> str | None:
    """The reason this stream cannot be transcoded from packets, as far as this machine can tell
    (the server's own answer comes when the session opens); None when it may."""
    out = ctx.output
    if out.remote_codec is None:
        return "the output encoder is local"
    if out.transcode == "off":
        return "-vt_remote_transcode 0"
    if inp.spec.keyframes_only:
        return "-skip_frame nokey keeps the keyframes on this machine"
    keys = parse_key_frames(out.force_key_frames) if out.force_key_frames else None
    if keys is not None and keys.expression is not None and keys.interval() is None:
        return "the -force_key_frames expression is evaluated frame by frame here"
    if len(key_schedule(out.force_key_frames)[0]) > MAX_KEY_TIMES:
        return f"more than {MAX_KEY_TIMES} forced key frame times"
    if in_stream.codec_context.name in UNCOMPRESSED_CODECS:
        return "the input is uncompressed pictures"
    if inp.container.format.name.split(",")[0] in UNTIMED_FORMATS or in_stream.time_base is None:
        return f"the input ({inp.container.format.name}) has no packet timestamps"
    return None


def shift_packet(packet: Packet, ticks: int) -> None:
    """Move a packet ``ticks`` earlier (the run's start offset: the output starts at 0)."""
    if ticks:
        if packet.pts is not None:
            packet.pts -= ticks
        if packet.dts is not None:
            packet.dts -= ticks


def trim_filters(handler: Handler) -> tuple[str, str]:
    """The ``trim`` filters that make a trimmed job's frames on the server, as chain text to
    put before and after the output's own chain (empty: none).

    As ffmpeg inserts them: before the chain, frames before the start (an accurate ``-ss``;
    not with ``-noaccurate_seek``, whose video starts at the keyframe) and from the end on
    (``-t``, ``-to``) are dropped, on the clock the packets travel on (source seconds less
    the handler's zero); after it, ``-frames:v`` keeps that many. Timestamps are left as
    they are.
    """
    out = handler.ctx.output
    seeking = handler.input.spec.seek > 0 or out.seek > 0
    start = handler.origin - handler.zero if seeking and not handler.from_keyframe else None
    stop = handler.stop - handler.zero if handler.stop is not None else None
    before = Trim(
        round(start * 1_000_000) if start is not None else None,
        round(stop * 1_000_000) if stop is not None else None,
    )
    trims = [before] if before.args() else []
    length = handler.length if handler.from_keyframe else None
    if length is not None:
        # ffmpeg's trim counts -t from the first frame it keeps: here the keyframe, before
        # the origin (a separate trim: one trim keeps a frame that any of its ends allows).
        trims.append(Trim(duration_us=round(length * 1_000_000)))
    after = [Trim(end_frame=out.max_frames)] if out.max_frames is not None else []
    return serialize(trims), serialize(after)


def chain_refusal(out: OutputSpec) -> str | None:
    """Why the output's video chain cannot run on a server (a filter outside the allowlist),
    or None."""
    try:
        # Loaded only when packet transcode is possible: most commands never parse a chain.
        from vtremote.wire import filters as wire_filters

        wire_filters.parse(chain_text(out.video_filter, output_filters(out)))
    except ConfigError as e:
        return f"the filter chain runs on this machine only: {e}"
    return None


class PacketTranscodeHandler(Handler):
    """One :class:`RemoteTranscoder` session: source packets out, output packets back, muxed.

    Opening it raises :class:`~vtremote.errors.UnsupportedConfigError` when the server
    offers no packet transcode, or not for this codec or filter chain.
    """

    strategy = "transcode"

    def __init__(
        self, ctx: JobContext, inp: Input, in_stream: Any, out_index: int, codec: str
    ) -> None:
        super().__init__(ctx, inp, in_stream, out_index)
        out = ctx.output
        assert out.remote_codec is not None
        self.codec = codec
        self.shift = to_ticks(self.zero, in_stream.time_base)
        sar = in_stream.codec_context.sample_aspect_ratio or None
        self.session = self._open_session(sar)
        ctx.add_session(self.session)
        self.out_stream = open_output_stream_for_packets(ctx.container, out.remote_codec)
        #: The server's time base; the output counts in 1/rate instead when the rate is known,
        #: as ffmpeg's encoders do (an MKV source's millisecond clock would otherwise make
        #: 41/42 ms frames and a 24.02 fps MP4).
        self.server_tb = self.session.time_base
        rate = self.session.output_framerate
        tb = 1 / rate if rate and rate.denominator <= 1001 else self.server_tb
        self.out_tb = tb  # the muxer may change the stream's own once the header is written
        self._configure_stream(tb, rate, sar)
        #: Duration of one output frame, for packets the server sends without one.
        self.frame_ticks = max(round(1 / (rate * tb)), 1) if rate else 0
        self.last_dts: int | None = None
        #: After an input seek, packets before the first keyframe are not sent (nothing
        #: decodes from them).
        self.started = inp.spec.seek <= 0
        self.retimed = 0
        self.packets_in = 0
        self.packets_out = 0
        ctx.muxer.set_ready(out_index)

    def _open_session(self, sar: Fraction | None) -> RemoteTranscoder | FailoverTranscoder:
        """One server's session, or one that fails over on a pool (or to this machine)."""
        out = self.ctx.output
        key_times, key_every = key_schedule(out.force_key_frames)
        before, after = trim_filters(self)
        chain = chain_text(out.video_filter, output_filters(out))
        return open_transcoder(
            self.ctx.remote_output,
            self.in_stream,
            codec=out.remote_codec,
            filters=",".join(part for part in (before, chain, after) if part),
            pix_fmt=out.pix_fmt,
            force_key_frames=key_times or None,
            force_key_every=key_every,
            settings=remote_settings(self.ctx, color_settings(self.in_stream.codec_context), sar),
        )

    def _configure_stream(self, tb: Fraction, rate: Fraction | None, sar: Fraction | None) -> None:
        """The output stream as the server's output is: size, time base, format, extradata."""
        octx = self.out_stream.codec_context
        octx.width, octx.height = self.session.width, self.session.height
        octx.time_base = tb
        octx.pix_fmt = "yuv420p10le" if self.session.pix_fmt is PixelFormat.P010 else "yuv420p"
        if rate:
            octx.framerate = rate
        if sar:
            octx.sample_aspect_ratio = sar
        if self.session.extradata:
            octx.extradata = self.session.extradata
        self.out_stream.time_base = tb

    @property
    def video_frames(self) -> int:
        return self.packets_out

    def feed(self, packet: Packet) -> None:
        if self.done or packet.size == 0:
            return
        if not self.started:
            if not packet.is_keyframe:
                return
            self.started = True
            t = to_seconds(packet.pts, packet.time_base)
            if t is not None:
                self.started_at(t)  # as the server's trim counts -t (trim_filters)
        if self.stop is not None:
            # A frame shown before the end is decoded before it (dts <= pts): from the first
            # packet decoded at the end on, the server's trim has everything it keeps.
            t = to_seconds(packet.dts if packet.dts is not None else packet.pts, packet.time_base)
            if t is not None and t >= self.stop - 1e-9:
                self.done = True
                return
        shift_packet(packet, self.shift)
        self.packets_in += 1
        self._mux(self.session.transcode(packet))

    def _retime(self, pkt: Packet) -> None:
        """Server ticks -> output ticks; a dts that rounds onto its predecessor moves one tick
        on."""
        tb = self.out_tb
        if tb == self.server_tb:
            return
        scale = self.server_tb / tb
        if pkt.pts is not None:
            pkt.pts = round(pkt.pts * scale)
        if pkt.dts is not None:
            dts = round(pkt.dts * scale)
            if self.last_dts is not None and dts <= self.last_dts:
                dts = self.last_dts + 1
                self.retimed += 1
            if pkt.pts is not None and pkt.pts < dts:
                pkt.pts = dts
            pkt.dts = self.last_dts = dts
        pkt.duration = round(pkt.duration * scale) if pkt.duration else 0
        pkt.time_base = tb

    def _mux(self, packets: list[Packet]) -> None:
        for pkt in packets:
            self._retime(pkt)
            if not pkt.duration and self.frame_ticks:
                pkt.duration = self.frame_ticks
            pkt.stream = self.out_stream
            self.packets_out += 1
            self.ctx.muxer.mux(self.out_index, pkt)
        limit = self.ctx.output.max_frames
        if limit is not None and self.packets_out >= limit:
            self.done = True  # the server's trim made the last frame: it comes with the flush

    def finish(self) -> None:
        self._mux(self.session.flush())

    def close(self) -> None:
        self.session.close()

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "codec": self.codec,
            "strategy": self.strategy,
            "packets_in": self.packets_in,
            "frames": self.packets_out,
            "retimed": self.retimed,
            "remote_transcoder": self.session.server,
        }
