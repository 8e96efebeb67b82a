"""Segments in parallel (``-vt_remote_parallel N``): one output stream encoded on N servers at once.

:class:`ParallelEncode` is a :class:`~vtremote.pipeline.video.frame_sinks.FrameSink`.
It cuts the frames it is given into segments of whole GOPs (at least
:data:`MIN_SEGMENT_FRAMES` frames), each starting with a forced IDR, and
encodes up to N segments at the same time, each in its own session placed on
the pool by free capacity (busy servers are skipped, so N servers of one
session each get one segment each). The segments' packets are joined in
order into one bitstream:

* every segment starts with an IDR and references nothing before it (closed
  GOP), so the join is a plain concatenation;
* pts are the frames' own; dts are made strictly increasing across joins
  (without B-frames they already are);
* every segment uses the job's bitrate, so the whole file has it too;
* parameter sets come from the first segment; a segment whose server sent
  other ones gets them in-band in front of its IDR (see client/failover.py);
* a segment whose server fails (reset, timeout, ERROR, missing packets) is
  encoded again from its first frame on another server; with
  ``-vt_remote_fallback local`` a segment no server can take is encoded here.

Memory: the frames of the segments in flight are held (at most ``2 N``
segments of raw pictures); the caller blocks beyond that.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, TypeAlias, TypeVar

import av

from vtremote.client import RemoteEncoder
from vtremote.client.failover import (
    FAILOVER_ERRORS,
    EncodeFormat,
    IncreasingDts,
    with_parameter_sets,
)
from vtremote.client.fallback import LocalEncoder
from vtremote.client.options import ConnectionOptions
from vtremote.client.pool import Placer, Pool
from vtremote.client.stats import SessionStats, describe_session
from vtremote.client.transport import Transport
from vtremote.errors import ConnectionLostError, JobError, NoServerError
from vtremote.pipeline.handler import JobContext
from vtremote.pipeline.remote_sessions import pool_of
from vtremote.pipeline.video.frame_sinks import (
    RemoteEncode,
    color_settings,
    remote_pix_fmt,
    remote_settings,
)
from vtremote.wire.constants import PixelFormat, WireCompression

log = logging.getLogger(__name__)

Packet: TypeAlias = "av.Packet[Any]"
T = TypeVar("T")

#: A segment is whole GOPs and at least this many frames (sessions cost a round trip or two).
MIN_SEGMENT_FRAMES = 60
#: Tries per segment before the job fails (each on a server not failed yet, then the fallback).
MAX_TRIES = 6
#: How long a segment waits for a free server when all are busy with other segments (s).
BUSY_WAIT = 30.0


def allow_interleave(container: Any, lag: float) -> None:
    """The other streams (audio read beside the video) run up to ``lag`` seconds ahead of the
    video of parallel segments: FFmpeg's interleaving must wait that long (10 s by default), or
    it writes them early, and an HLS muxer puts them into earlier segments. Call before the
    first packet is muxed (the options are read when the header is written)."""
    options = container.options
    if isinstance(options, dict):
        delta = max(10.0, 2 * lag)
        options.setdefault("max_interleave_delta", str(round(delta * 1_000_000)))


@dataclass
class Segment:
    index: int
    frames: list[tuple[av.VideoFrame, bool]] = field(default_factory=list)
    packets: list[Packet] = field(default_factory=list)
    extradata: bytes = b""
    server: str = ""
    tries: int = 0


class ParallelSessions:
    """What the job reports about a parallel encode (it stands in the job's session list as
    a :class:`~vtremote.client.stats.SessionReport`)."""

    def __init__(self, pool: Pool, codec: str) -> None:
        self.pool = pool
        self.codec = codec
        self.server = f"pool {pool.name}"
        self.server_name = "vtremoted"
        self.server_version = ""
        self.engine = ""
        self.compression = WireCompression.NONE
        self._lock = threading.Lock()
        self._stats = SessionStats()
        self._t0 = time.monotonic()
        self.segments = 0
        self.redone = 0
        self.fell_back = False
        self.by_server: dict[str, int] = {}

    def add(self, server: str, st: SessionStats, frames: int) -> None:
        with self._lock:
            self._stats.bytes_sent += st.bytes_sent
            self._stats.bytes_received += st.bytes_received
            self._stats.frames += frames
            self._stats.packets += frames
            self.segments += 1
            self.by_server[server] = self.by_server.get(server, 0) + 1

    @property
    def failovers(self) -> int:
        """Segments encoded again after their server failed."""
        return self.redone

    @property
    def stats(self) -> SessionStats:
        with self._lock:
            st = SessionStats(
                **{
                    k: getattr(self._stats, k)
                    for k in ("frames", "packets", "bytes_sent", "bytes_received")
                }
            )
        st.elapsed = time.monotonic() - self._t0
        return st

    def describe(self) -> dict[str, Any]:
        return describe_session("encode", self, self.stats, extra=self.pool_info())

    def pool_info(self) -> dict[str, Any]:
        return {
            "pool": self.pool.name,
            "servers": sorted(self.by_server),
            "segments": self.segments,
            "segments_by_server": dict(sorted(self.by_server.items())),
            "failovers": self.redone,
            "fallback": self.fell_back,
        }

    def close(self) -> None:
        """Sessions are closed segment by segment."""


class SegmentPlacer:
    """Opens the session of each segment on the pool, one at a time, skipping the servers that
    failed a segment, waiting while every live server is busy with the job's other segments."""

    def __init__(
        self, pool: Pool, codec: str, connection: ConnectionOptions, report: ParallelSessions
    ) -> None:
        self.pool = pool
        self.codec = codec
        self.connection = connection
        self.report = report
        self._dead: set[str] = set()
        self._lock = threading.Lock()
        self._placing = threading.Lock()

    def failed(self, server: str) -> None:
        """``server`` failed a segment: no later segment goes there."""
        with self._lock:
            self._dead.add(server)

    def open(
        self,
        opener: Callable[[Transport], T],
        label: str,
        local: Callable[[], T] | None = None,
    ) -> T:
        """A session for one segment; with ``-vt_remote_fallback local`` and ``local``, one on
        this machine when no server can take it."""
        deadline = time.monotonic() + BUSY_WAIT
        while True:
            with self._lock:
                dead = set(self._dead)
            placer = Placer(self.pool, self.codec, self.connection)
            try:
                # One placement at a time: a placement greets every member, and greetings of the
                # job's own segments would count as sessions in each other's eyes.
                with self._placing:
                    return placer.open(opener, exclude=dead)[0]
            except NoServerError:
                busy = any("busy" in why for why in placer.skipped.values())
                if busy and time.monotonic() < deadline:
                    time.sleep(0.1)  # every live server is taken by our other segments
                    continue
                if local is not None and self.pool.fallback == "local":
                    self.report.fell_back = True
                    log.warning(
                        "%s: %s; encoding it here (local fallback)",
                        label,
                        placer.failure_message(),
                    )
                    return local()
                raise


class ParallelEncode(RemoteEncode):
    """Encode keyframe-aligned segments on several servers at once and join them."""

    def __init__(self, ctx: JobContext, remote_codec: str) -> None:
        super().__init__(ctx, remote_codec)
        ro = ctx.remote_output
        self.workers = ro.parallel
        self.pool = pool_of(ro)
        #: The settings of every segment's session (the HELLO carries the pool's token).
        self.connection = ro.connection().replace(token=self.pool.token)
        self.report = ParallelSessions(self.pool, remote_codec)
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[Segment, Future[Segment]]] = deque()
        self._current: Segment | None = None
        self._next_index = 0
        self.placer = SegmentPlacer(self.pool, remote_codec, self.connection, self.report)
        self._first_lock = threading.Lock()
        self._dts = IncreasingDts()
        self._first_extradata: bytes | None = None
        self._first_session: RemoteEncoder | None = None
        self._opened = False
        self._default_duration = 0
        self.segment_frames = MIN_SEGMENT_FRAMES
        #: What every segment's session opens with (known with the first frame).
        self.format: EncodeFormat | None = None

    @property
    def is_open(self) -> bool:
        return self._opened

    def open(
        self, frame: av.VideoFrame, time_base: Fraction, rate: Fraction | None, sar: Fraction | None
    ) -> None:
        deep = remote_pix_fmt(self.out, self.remote_codec, frame).startswith("p010")
        settings = remote_settings(self.ctx, color_settings(frame), sar)
        gop = settings.gop or 12
        self.segment_frames = gop * math.ceil(MIN_SEGMENT_FRAMES / gop)
        # The raw frames of up to 2N segments are held while the other streams are read on.
        fps = rate if rate else Fraction(24)
        allow_interleave(
            self.ctx.container, float((2 * self.workers + 1) * self.segment_frames / fps)
        )
        self.format = EncodeFormat(
            self.remote_codec,
            frame.width,
            frame.height,
            PixelFormat.P010 if deep else PixelFormat.NV12,
            time_base,
            rate,
            settings,
        )
        # The first segment's session opens now: its parameter sets are the output's extradata.
        first, _ = Placer(self.pool, self.remote_codec, self.connection).open(self._opener)
        self._first_session = first
        self._first_extradata = first.extradata
        self._default_duration = first.default_duration
        self.report.engine = first.engine
        self.report.compression = first.compression
        ctx = self.out_stream.codec_context
        ctx.pix_fmt = "yuv420p10le" if deep else "yuv420p"
        if first.extradata:
            ctx.extradata = first.extradata
        self.ctx.add_session(self.report)
        self._executor = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="vtremote-segment"
        )
        self._opened = True
        log.info(
            "parallel encode on pool %s: %d at once, segments of %d frames",
            self.pool.name,
            self.workers,
            self.segment_frames,
        )

    @property
    def default_duration(self) -> int:
        return self._default_duration

    def _opener(self, transport: Transport) -> RemoteEncoder:
        assert self.format is not None  # open() sets it before any session opens
        return self.format.remote(transport, self.connection)

    # -- frames in --------------------------------------------------------------------------------

    def encode(self, frame: av.VideoFrame, keyframe: bool) -> list[Packet]:
        seg = self._current
        if seg is None or len(seg.frames) >= self.segment_frames:
            if seg is not None:
                self._submit(seg)
            seg = self._current = Segment(self._next_index)
            self._next_index += 1
        seg.frames.append((frame, keyframe or not seg.frames))
        return self._collect(block=False)

    def flush(self) -> list[Packet]:
        if not self._opened:
            return []
        if self._current is not None and self._current.frames:
            self._submit(self._current)
            self._current = None
        return self._collect(block=True)

    def _submit(self, seg: Segment) -> None:
        assert self._executor is not None
        # Bound the raw frames held: wait for the oldest segment beyond 2N.
        if len(self._pending) >= 2 * self.workers:
            self._pending[0][1].result()
        self._pending.append((seg, self._executor.submit(self._encode_segment, seg)))

    def _collect(self, block: bool) -> list[Packet]:
        """Packets of the finished segments at the front, joined."""
        out: list[Packet] = []
        while self._pending and (block or self._pending[0][1].done()):
            seg, fut = self._pending.popleft()
            done = fut.result()  # raises the segment's final error
            out += self._join(done)
        return out

    def _join(self, seg: Segment) -> list[Packet]:
        packets = seg.packets
        if packets and seg.extradata and seg.extradata != self._first_extradata:
            packets[0] = with_parameter_sets(packets[0], seg.extradata)
        self._dts.apply(packets)
        seg.frames.clear()
        return packets

    # -- one segment, on a worker thread -----------------------------------------------------------

    def _take_first_session(self) -> RemoteEncoder | None:
        with self._first_lock:
            session, self._first_session = self._first_session, None
        return session

    def _place(self, seg: Segment) -> RemoteEncoder | LocalEncoder:
        if seg.index == 0 and seg.tries == 1:  # the session open() placed is the first segment's
            first = self._take_first_session()
            if first is not None:
                return first
        assert self.format is not None
        local: Callable[[], RemoteEncoder | LocalEncoder] = self.format.local
        opener: Callable[[Transport], RemoteEncoder | LocalEncoder] = self._opener
        return self.placer.open(opener, f"segment {seg.index}", local)

    def _encode_segment(self, seg: Segment) -> Segment:
        while True:
            seg.tries += 1
            session = self._place(seg)
            server = session.server
            packets: list[Packet] = []
            try:
                try:
                    for i, (frame, keyframe) in enumerate(seg.frames):
                        packets += session.encode(frame, keyframe=keyframe or i == 0)
                    packets += session.flush()
                    if len(packets) != len(seg.frames):
                        raise ConnectionLostError(
                            f"{server} returned {len(packets)} packets for {len(seg.frames)} frames"
                        )
                finally:
                    stats = session.stats
                    session.close()
            except FAILOVER_ERRORS as e:
                if not isinstance(session, LocalEncoder):
                    self.placer.failed(server)
                self.report.redone += 1
                log.warning(
                    "segment %d failed on %s (%s); encoding it again elsewhere",
                    seg.index,
                    server,
                    e,
                )
                if seg.tries >= MAX_TRIES:
                    raise JobError(
                        f"segment {seg.index} failed {seg.tries} times; last on {server}: {e}"
                    ) from e
                continue
            seg.packets = packets
            seg.extradata = session.extradata
            seg.server = server
            self.report.add(server, stats, len(seg.frames))
            return seg

    def close(self) -> None:
        first = self._take_first_session()
        if first is not None:
            first.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
