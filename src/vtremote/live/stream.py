"""One source inside the receiver: its decode thread, clock, statistics and recording.

A :class:`SourceStream` lives as long as its source id: a source that connects
again gets a new :class:`SourceLink` (how to talk back) but keeps its stream, so
its statistics and its recording go on. Pictures and metadata reach the decode
thread in order through a queue bounded in items and bytes.

The stream knows nothing of the receiver that owns it: it reports decoded
pictures and its end through :class:`SourceEvents`, and the receiver decides
what to do with them (composite, hand to the application, wake a waiter).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vtremote.errors import EngineError, VTRemoteError
from vtremote.live import protocol as p
from vtremote.live.clock import ClockSync
from vtremote.live.codec import LiveDecoder
from vtremote.live.datagram import Lost, Reassembler
from vtremote.live.recorder import Recorder, path_for_source
from vtremote.live.stats import SourceStats

log = logging.getLogger(__name__)

CONTROL_INTERVAL_NS = 500_000_000
KEYFRAME_REQUEST_INTERVAL_NS = 200_000_000
DECODE_QUEUE = 64
#: Compressed bytes waiting for one source's decoder; beyond, TCP readers wait and UDP drops.
DECODE_QUEUE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class ReceivedFrame:
    """One decoded picture and when it was captured, on both clocks."""

    source_id: int
    seq: int
    frame: av.VideoFrame
    keyframe: bool
    capture_ns: int  # sender's clock
    capture_local_ns: int  # the same instant on this machine's clock
    latency_ns: int  # capture to decoded
    metadata: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SourceEvents:
    """What a :class:`SourceStream` reports to its owner (called from its decode thread)."""

    #: A picture was decoded: ``(stream, picture)``; its statistics are already counted.
    on_frame: Callable[[SourceStream, ReceivedFrame], None]
    #: The source said BYE.
    on_ended: Callable[[SourceStream], None]


class SourceLink:
    """One connection or UDP association of a source, as the receiver sees it: how to talk back.

    ``on_close`` is how the owner of the connection ends it (shut the TCP socket
    down, forget the UDP association); :meth:`close` runs it once.
    """

    def __init__(
        self,
        source: SourceStream,
        send: Callable[[p.Message], None],
        transport: str,
        on_close: Callable[[], None],
    ) -> None:
        self.source = source
        self.send_control = send
        self.transport = transport
        self.closed = False
        self.clock_id = 0
        self.next_control = 0
        self.last_kf_request = 0
        self._seen = self._missing = 0
        self._on_close = on_close

    def close(self) -> None:
        """This link is over (replaced, BYE, silent, or the receiver stops)."""
        self.closed = True
        self._on_close()

    def control_tick(self, now: int, reassembler: Reassembler | None = None) -> None:
        if now < self.next_control:
            return
        self.next_control = now + CONTROL_INTERVAL_NS
        self.clock_id += 1
        st = self.source.stats
        recent = st.recent(now, CONTROL_INTERVAL_NS)  # what the sender reacts to: the last interval
        loss = 0
        if reassembler is not None:  # over the last interval, not the whole session
            seen = reassembler.datagrams + reassembler.missing_total
            d_seen, d_missing = seen - self._seen, reassembler.missing_total - self._missing
            self._seen, self._missing = seen, reassembler.missing_total
            loss = int(1000 * d_missing / d_seen) if d_seen > 0 else 0
        try:
            self.send_control(p.ClockRequest(self.clock_id & 0xFFFFFFFF, time.monotonic_ns()))
            self.send_control(
                p.Stats(
                    st.frames & 0xFFFFFFFF,
                    st.lost & 0xFFFFFFFF,
                    st.bytes,
                    _us(recent["p50"]),
                    _us(recent["p99"]),
                    min(loss, 1000),
                )
            )
        except (OSError, VTRemoteError):
            pass

    def request_keyframe(self, reason: p.KeyframeReason, seq: int) -> None:
        now = time.monotonic_ns()
        if now - self.last_kf_request < KEYFRAME_REQUEST_INTERVAL_NS:
            return
        self.last_kf_request = now
        self.source.stats.keyframe_requests += 1
        with contextlib.suppress(OSError, VTRemoteError):
            self.send_control(p.KeyframeRequest(reason, seq & 0xFFFFFFFF))


def _us(ms: float) -> int:
    return 0 if ms != ms else min(0xFFFFFFFF, int(ms * 1000))


class SourceStream:
    """Everything about one source id: stats, clock, decoder thread, recording.

    ``record``: the recording path the receiver was given (this source's file is
    derived from it), or None.
    """

    def __init__(
        self, hello: p.Hello, index: int, events: SourceEvents, *, record: Path | None = None
    ) -> None:
        self.hello = hello
        self.index = index
        self.record = record
        self._events = events
        self.stats = SourceStats(
            hello.source_id, p.Codec(hello.codec).name.lower(), hello.width, hello.height
        )
        self.clock = ClockSync()
        self.link: SourceLink | None = None
        self._queue: deque[p.Message | Lost | None] = deque()
        self._queued_bytes = 0
        self._queue_cond = threading.Condition()
        self.ended = False
        self.ended_at = 0.0
        self.disconnected_at: float | None = None
        self._decoder = LiveDecoder(hello.codec)
        self._waiting_key = True
        self._pending_meta: list[p.Metadata] = []
        self._recorder: Recorder | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"live-decode-{hello.source_id}", daemon=True
        )
        self._thread.start()

    def attach(self, link: SourceLink, hello: p.Hello) -> None:
        old, self.link = self.link, link
        if old is not None and old is not link:
            old.close()
        self.hello = hello
        self.stats.connections += 1
        self.ended = False
        self.disconnected_at = None
        self.put(Lost(0, 0), block=True)  # reset the decoder, in order with the pictures

    def detach(self, link: SourceLink, *, at: float | None = None) -> None:
        """``link`` is gone: the source counts as disconnected since ``at`` (default: now)."""
        if self.link is link and not self.ended:
            self.disconnected_at = time.monotonic() if at is None else at

    def gone(self, now: float, wait_s: float) -> bool:
        """Ended (BYE), or disconnected for longer than ``wait_s`` at ``now`` (monotonic s)."""
        return self.ended or (
            self.disconnected_at is not None and now - self.disconnected_at > wait_s
        )

    def put(self, item: p.Message | Lost | None, *, block: bool) -> bool:
        """Queue for the decoder: at most DECODE_QUEUE items and DECODE_QUEUE_BYTES bytes.

        ``block``: wait (up to 2 s) for room, else False at once. Control items
        (None, Lost) always fit.
        """
        size = _size(item)
        deadline = time.monotonic() + 2.0
        with self._queue_cond:
            while (
                size
                and self._queue
                and (
                    len(self._queue) >= DECODE_QUEUE
                    or self._queued_bytes + size > DECODE_QUEUE_BYTES
                )
            ):
                left = deadline - time.monotonic()
                if not block or left <= 0:
                    return False
                self._queue_cond.wait(left)
            self._queue.append(item)
            self._queued_bytes += size
            self._queue_cond.notify_all()
        return True

    def _get(self) -> p.Message | Lost | None:
        with self._queue_cond:
            while not self._queue:
                self._queue_cond.wait()
            item = self._queue.popleft()
            self._queued_bytes -= _size(item)
            self._queue_cond.notify_all()
            return item

    def close(self) -> None:
        self.put(None, block=True)
        self._thread.join(10.0)

    def _run(self) -> None:
        try:
            while True:
                item = self._get()
                if item is None:
                    break
                self._handle(item)
        except Exception:
            log.exception("live: decode thread of source %d failed", self.hello.source_id)
        finally:
            if self._recorder is not None:
                self._recorder.close()
            self.ended = True
            self.ended_at = time.monotonic()

    # --- the decode thread: one item at a time, in order ---------------------------------

    def _handle(self, item: p.Message | Lost) -> None:
        if isinstance(item, Lost):
            if item.count == 0:  # a new connection: start over at its keyframe
                self._decoder.reset()
            self._waiting_key = True
        elif isinstance(item, p.Metadata):
            self.stats.metadata += 1
            self._pending_meta.append(item)
            if len(self._pending_meta) > 1000:
                self._pending_meta.pop(0)
        elif isinstance(item, p.Bye):
            self._bye(item)
        elif isinstance(item, p.Audio):
            self.stats.audio_packets += 1
            if self._recorder is not None:
                self._recorder.audio(bytes(item.data), item.capture_ns)
        elif isinstance(item, p.Video):
            self._video(item)

    def _bye(self, item: p.Bye) -> None:
        log.info(
            "live: source %d said BYE (sent %d, dropped %d)",
            self.hello.source_id,
            item.frames_sent,
            item.frames_dropped,
        )
        self.stats.sender_dropped = max(self.stats.sender_dropped, item.frames_dropped)
        self.ended = True
        self.ended_at = time.monotonic()
        self._events.on_ended(self)

    def _video(self, item: p.Video) -> None:
        st = self.stats
        data = bytes(item.data)
        st.bytes += len(data)
        st.sender_dropped = max(st.sender_dropped, item.sender_dropped)
        # Its own metadata, and any of earlier frames that were dropped before it.
        metas = [m for m in self._pending_meta if not _after(m.seq, item.seq)]
        self._pending_meta = [m for m in self._pending_meta if _after(m.seq, item.seq)]
        frames = self._decode(item, data)
        if frames is None:
            self._orphans(metas)
            return
        now = time.monotonic_ns()
        best = self.clock.best()
        if best is not None:
            st.clock_offset_ns, st.clock_delay_ns = best.offset_ns, best.delay_ns
        local = self.clock.to_local(item.capture_ns)
        latency = now - local
        if not frames:
            st.lost += 1
            self._orphans(metas)
            return
        self._record(data, item, metas)
        st.frame(now, len(data), latency / 1e6, item.keyframe)
        self._events.on_frame(
            self,
            ReceivedFrame(
                self.hello.source_id,
                item.seq,
                frames[-1],
                item.keyframe,
                item.capture_ns,
                local,
                latency,
                tuple(m.value() for m in metas),
            ),
        )

    def _decode(self, item: p.Video, data: bytes) -> list[av.VideoFrame] | None:
        """The pictures of ``item``; None (counted lost, keyframe asked for) if not decodable."""
        link = self.link
        if self._waiting_key and not item.keyframe:
            self.stats.lost += 1
            if link is not None:
                link.request_keyframe(
                    p.KeyframeReason.LOSS if self.stats.frames else p.KeyframeReason.JOIN,
                    item.seq,
                )
            return None
        try:
            frames = self._decoder.decode(data)
        except EngineError as e:
            log.warning("live: source %d frame %d: %s", self.hello.source_id, item.seq, e)
            self.stats.lost += 1
            self._waiting_key = True
            self._decoder.reset()
            if link is not None:
                link.request_keyframe(p.KeyframeReason.DECODE_ERROR, item.seq)
            return None
        self._waiting_key = False
        return frames

    def _record(self, data: bytes, item: p.Video, metas: list[p.Metadata]) -> None:
        path = self.record
        if path is None:
            return
        if self._recorder is None:
            self._recorder = Recorder(
                path_for_source(path, self.index, self.hello.source_id),
                self.hello.codec,
                self.hello.width,
                self.hello.height,
                Fraction(self.hello.fps_num, self.hello.fps_den),
                audio=bool(self.hello.capabilities & p.Capability.AUDIO),
            )
        pts = self._recorder.write(data, item.keyframe, item.capture_ns)
        for m in metas:
            self._recorder.metadata(self._metadata_entry(m, self._recorder.frames - 1, pts))

    def _orphans(self, metas: list[p.Metadata]) -> None:
        """Metadata of a picture that was not shown: still recorded, with no frame."""
        if self._recorder is not None:
            for m in metas:
                self._recorder.metadata(self._metadata_entry(m, None, None))

    def _metadata_entry(self, m: p.Metadata, frame: int | None, pts: int | None) -> dict[str, Any]:
        """One line of the recording's metadata file."""
        return {
            "source": self.hello.source_id,
            "seq": m.seq,
            "frame": frame,
            "pts_ms": pts,
            "capture_ns": m.capture_ns,
            "data": m.value(),
        }


def _size(item: p.Message | Lost | None) -> int:
    """Bytes an item holds in a decode queue; 0 for the receiver's own markers, which always fit."""
    if item is None or isinstance(item, Lost):
        return 0
    if isinstance(item, (p.Video, p.Audio, p.Metadata)):
        return max(1, p.nbytes(item.data))
    return 1


def _after(a: int, b: int) -> bool:
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000
