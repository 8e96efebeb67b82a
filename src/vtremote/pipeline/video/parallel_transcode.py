"""Segments in parallel on packets: one output stream transcoded on N servers at once.

With ``-vt_remote_parallel N`` and a job that can be a packet transcode,
:class:`ParallelTranscodeHandler` cuts the SOURCE's packets at its keyframes
into segments (each at least the output's keyframe interval, or
:data:`SEGMENT_SECONDS`, long) and sends each segment to its own
:class:`~vtremote.client.RemoteTranscoder` session, placed on the pool by free
capacity, with the job's filter chain and settings. The segments' output
packets are joined in order into one bitstream:

* a segment starts at a source keyframe and its session's first output frame
  is an IDR (the encoder's first frame; the key schedule forces it too), so the
  join is a plain concatenation; the servers keep the source's time line, so the
  pts run on across the joins as in one session, and forced keyframes
  (``-force_key_frames``, an HLS output's ``hls_time``) fall where one session
  puts them; dts are made strictly increasing across joins;
* parameter sets: sessions with the same engine and settings send the same
  ones, and the first segment's are the output's extradata; a segment whose
  server sent other ones gets them in-band in front of its IDR, with a WARNING;
* a segment whose server fails is transcoded again from its first packet on a
  server that has not failed (up to :data:`MAX_TRIES` tries); there is no local
  fallback for packets (``-vt_remote_fallback local`` keeps the frame path).

Segments are muxed in order, each as soon as it and those before it are done:
an HLS playlist grows in order while later segments are being encoded on the
other servers. The first segment's session is opened before any packet is
read, so it has a server first. Source packets of at most ``2 N`` segments
(about ``2 N + 1`` segment lengths of source) are held; the reader waits beyond
that, and the output's interleaving waits for the video as long.

Not split: a source whose keyframes have leading pictures (open GOP, a packet
after the keyframe in decode order shown before it) stays in the segment it is
in, and an ``fps`` filter (``-r``) keeps the job on the frame path, because a
filter that drops and repeats frames by time cannot be cut and joined exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from vtremote.client.failover import FAILOVER_ERRORS, IncreasingDts, with_parameter_sets
from vtremote.client.pool import Placer, Pool
from vtremote.client.transport import Transport
from vtremote.errors import ConfigError, JobError
from vtremote.pipeline.handler import JobContext
from vtremote.pipeline.inputs import Input
from vtremote.pipeline.remote_sessions import pool_of
from vtremote.pipeline.video.frame_path import output_filters
from vtremote.pipeline.video.frame_sinks import color_settings, remote_settings
from vtremote.pipeline.video.packet_transcode import (
    Packet,
    PacketTranscodeHandler,
    chain_refusal,
    chain_text,
    key_schedule,
    shift_packet,
    why_not_transcode,
)
from vtremote.pipeline.video.parallel_encode import (
    ParallelSessions,
    SegmentPlacer,
    allow_interleave,
)

if TYPE_CHECKING:
    from vtremote.client.packet_transcoder import RemoteTranscoder

log = logging.getLogger(__name__)

#: Shortest segment without a keyframe interval (seconds of source; a session costs round trips).
SEGMENT_SECONDS = 2.0
#: Tries per segment before the job fails (each on a server not failed yet).
MAX_TRIES = 6


def parallel_refusal(ctx: JobContext, inp: Input, in_stream: Any, pool: Pool) -> str | None:
    """Why this stream cannot be transcoded from packets in segments, or None if it can."""
    ro = ctx.remote_output
    if pool.fallback == "local":
        return "the local fallback encodes raw frames"
    out = ctx.output
    trimmed = inp.spec.seek > 0 or out.seek > 0 or out.max_frames is not None
    if trimmed or out.recording_time is not None or inp.spec.recording_time is not None:
        return "-ss, -t, -to and -frames:v are not cut into segments"
    # The single-server rules, with the first member standing for the pool.
    one = dataclasses.replace(ro, host=pool.addresses[0], parallel=0, fallback="none")
    reason = why_not_transcode(dataclasses.replace(ctx, remote_output=one), inp, in_stream)
    if reason is None:
        reason = chain_refusal(ctx.output)
    if reason is None and any(name == "fps" for name, _ in output_filters(ctx.output)):
        return "-r adds an fps filter, which cannot be cut into segments exactly"
    if reason is None and "fps" in chain_names(ctx.output.video_filter):
        return "an fps filter cannot be cut into segments exactly"
    return reason


def chain_names(text: str | None) -> set[str]:
    from vtremote.wire import filters as wire_filters

    try:
        return {spec.name for spec in wire_filters.parse(text or "")}
    except ConfigError:
        return set()


@dataclass
class Segment:
    """Source packets of one segment (appended by the reader), and what its session made."""

    index: int
    source: list[Packet] = field(default_factory=list)
    complete: bool = False  # the reader has given every packet of it
    output: list[Packet] = field(default_factory=list)
    done: bool = False
    error: BaseException | None = None
    server: str = ""
    extradata: bytes = b""
    time_base: Fraction | None = None
    tries: int = 0


class ParallelTranscodeHandler(PacketTranscodeHandler):
    """Source segments transcoded on several servers at once, joined in order."""

    strategy = "parallel transcode"

    def __init__(
        self, ctx: JobContext, inp: Input, in_stream: Any, out_index: int, codec: str, pool: Pool
    ) -> None:
        ro = ctx.remote_output
        self.pool = pool
        self.workers = ro.parallel
        self.connection = ro.connection().replace(token=pool.token, compression="none")
        assert ctx.output.remote_codec is not None
        self.report = ParallelSessions(pool, ctx.output.remote_codec)
        self.placer = SegmentPlacer(pool, ctx.output.remote_codec, self.connection, self.report)
        self._first: RemoteTranscoder | None = None
        # The job sees the segments' report, not the first segment's session.
        super().__init__(
            dataclasses.replace(ctx, add_session=lambda _s: None), inp, in_stream, out_index, codec
        )
        self.ctx = ctx
        ctx.add_session(self.report)
        self.report.engine = self.session.engine
        every = key_schedule(ctx.output.force_key_frames)[1]
        tb = in_stream.time_base
        #: Source ticks a segment spans at least before a keyframe may start the next.
        self.segment_ticks = round(Fraction(every or SEGMENT_SECONDS) / tb) - 1
        #: How far (source ticks) the reader may run ahead of the oldest segment not muxed yet.
        self.read_ahead = (2 * self.workers + 1) * (self.segment_ticks + 1)
        allow_interleave(ctx.container, float(self.read_ahead * tb))
        self._cond = threading.Condition()
        self._segments: deque[Segment] = deque()
        self._current: Segment | None = None
        self._held: Packet | None = None  # a keyframe that may start the next segment
        self._open_gop = False
        self._closing = False
        self._dts = IncreasingDts()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="vtremote-segment")
        self.segments_by_index: list[str] = []
        log.info(
            "parallel transcode on pool %s: %d at once, segments of at least %gs cut at source "
            "keyframes",
            pool.name,
            self.workers,
            float(every or SEGMENT_SECONDS),
        )

    def _open_session(self, sar: Fraction | None) -> RemoteTranscoder:
        """The first segment's session, placed before any packet is read."""
        out = self.ctx.output
        key_times, key_every = key_schedule(out.force_key_frames)
        from vtremote.client.packet_transcoder import RemoteTranscoder

        settings = remote_settings(self.ctx, color_settings(self.in_stream.codec_context), sar)
        chain = chain_text(out.video_filter, output_filters(out))

        def opener(transport: Transport) -> RemoteTranscoder:
            return RemoteTranscoder.from_stream(
                transport,
                self.in_stream,
                codec=out.remote_codec,
                filters=chain,
                pix_fmt=out.pix_fmt,
                force_key_frames=key_times or None,
                force_key_every=key_every,
                settings=settings,
                connection=self.connection,
            )

        self._opener = opener
        first, _ = Placer(self.pool, out.remote_codec or "", self.connection).open(opener)
        self._first = first
        return first

    # -- the reader's side --------------------------------------------------------------------

    def feed(self, packet: Packet) -> None:
        if self.done or packet.size == 0:
            return
        shift_packet(packet, self.shift)
        self.packets_in += 1
        held, self._held = self._held, None
        if held is not None:
            if packet.pts is not None and held.pts is not None and packet.pts < held.pts:
                if not self._open_gop:
                    log.info("the source has open GOPs: segments are not cut at them")
                self._open_gop = True
                self._append(held)
            else:
                self._start_segment(held)
        if self._current is None:
            self._start_segment(packet)
        elif self._cuts(packet):
            self._held = packet
        else:
            self._append(packet)
        self._mux_done(block=False)

    def _cuts(self, packet: Packet) -> bool:
        seg = self._current
        if not packet.is_keyframe or seg is None or packet.pts is None:
            return False
        start = seg.source[0].pts
        return start is not None and packet.pts - start >= self.segment_ticks

    def _append(self, packet: Packet) -> None:
        assert self._current is not None
        with self._cond:
            self._current.source.append(packet)
            self._cond.notify_all()

    def _start_segment(self, packet: Packet) -> None:
        self._end_current()
        while self._segments and (
            len(self._segments) >= 2 * self.workers or self._ahead(packet) > self.read_ahead
        ):
            self._mux_done(block=True, one=True)
        seg = Segment(len(self.segments_by_index), [packet])
        self.segments_by_index.append("")
        with self._cond:
            self._segments.append(seg)
        self._current = seg
        self._executor.submit(self._run, seg)

    def _ahead(self, packet: Packet) -> int:
        """Source ticks from the oldest segment not muxed yet to ``packet``."""
        start = self._segments[0].source[0].pts
        return 0 if packet.pts is None or start is None else packet.pts - start

    def _end_current(self) -> None:
        if self._current is not None:
            with self._cond:
                self._current.complete = True
                self._cond.notify_all()
            self._current = None

    def finish(self) -> None:
        if self._held is not None:
            self._append(self._held)
            self._held = None
        self._end_current()
        self._mux_done(block=True)

    # -- joining, on the reader's thread ------------------------------------------------------

    def _mux_done(self, block: bool, one: bool = False) -> None:
        """Mux the finished segments at the front, in order; ``block``: wait for them."""
        while True:
            with self._cond:
                while block and self._segments and not self._segments[0].done:
                    self._cond.wait(0.5)
                if not self._segments or not self._segments[0].done:
                    return
                seg = self._segments.popleft()
            if seg.error is not None:
                raise seg.error
            self._join(seg)
            if one:
                return

    def _join(self, seg: Segment) -> None:
        packets = seg.output
        if seg.time_base != self.server_tb:
            raise JobError(
                f"segment {seg.index} came back from {seg.server} in time base {seg.time_base}, "
                f"not {self.server_tb} as the first segment"
            )
        first_extradata = self.session.extradata
        if packets and seg.extradata != first_extradata:
            log.warning(
                "segment %d: %s sent other parameter sets than the first segment's server; "
                "they go in-band in front of its IDR",
                seg.index,
                seg.server,
            )
            packets[0] = with_parameter_sets(packets[0], seg.extradata)
        for pkt in packets:
            self._retime(pkt)
            self._dts.apply([pkt])
            if not pkt.duration and self.frame_ticks:
                pkt.duration = self.frame_ticks
            pkt.stream = self.out_stream
            self.packets_out += 1
            self.ctx.muxer.mux(self.out_index, pkt)
        self.segments_by_index[seg.index] = seg.server
        seg.source.clear()
        seg.output = []

    # -- one segment, on a worker thread ------------------------------------------------------

    def _place(self, seg: Segment) -> RemoteTranscoder:
        if seg.index == 0 and seg.tries == 1 and self._first is not None:
            first, self._first = self._first, None
            return first
        return self.placer.open(self._opener, f"segment {seg.index}")

    def _run(self, seg: Segment) -> None:
        try:
            self._transcode(seg)
        except BaseException as e:  # handed to the reader's thread, which raises it
            seg.error = e
        with self._cond:
            seg.done = True
            self._cond.notify_all()

    def _next_packets(self, seg: Segment, sent: int) -> tuple[list[Packet], bool]:
        """The segment's packets from ``sent`` on as the reader gives them; True at its end."""
        with self._cond:
            while len(seg.source) == sent and not seg.complete and not self._closing:
                self._cond.wait(0.5)
            if self._closing:
                raise JobError("the job ended before the segment was read")
            return seg.source[sent:], seg.complete and len(seg.source) == sent

    def _transcode(self, seg: Segment) -> None:
        while True:
            seg.tries += 1
            session = self._place(seg)
            output: list[Packet] = []
            try:
                try:
                    sent, end = 0, False
                    while not end:
                        batch, end = self._next_packets(seg, sent)
                        for packet in batch:
                            output += session.transcode(packet)
                        sent += len(batch)
                    output += session.flush()
                finally:
                    stats = session.stats
                    session.close()
            except FAILOVER_ERRORS as e:
                self.placer.failed(session.server)
                self.report.redone += 1
                log.warning(
                    "segment %d failed on %s (%s); transcoding it again elsewhere",
                    seg.index,
                    session.server,
                    e,
                )
                if seg.tries >= MAX_TRIES:
                    raise JobError(
                        f"segment {seg.index} failed {seg.tries} times; last on "
                        f"{session.server}: {e}"
                    ) from e
                continue
            seg.output, seg.server = output, session.server
            seg.extradata, seg.time_base = session.extradata, session.time_base
            self.report.add(session.server, stats, len(output))
            return

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._first is not None:
            self._first.close()
            self._first = None

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "remote_transcoder": f"pool {self.pool.name}",
            "segments": len(self.segments_by_index),
            "segments_by_server": self.report.pool_info()["segments_by_server"],
        }


def open_parallel_transcode(
    ctx: JobContext, inp: Input, in_stream: Any, out_index: int, codec: str
) -> tuple[ParallelTranscodeHandler | None, str | None]:
    """The parallel packet transcode of this stream, or None and why it cannot be one."""
    pool = pool_of(ctx.remote_output)
    reason = parallel_refusal(ctx, inp, in_stream, pool)
    if reason is not None:
        return None, reason
    return ParallelTranscodeHandler(ctx, inp, in_stream, out_index, codec, pool), None
