"""The engine worker of a session: it owns the engine and turns work into messages.

One :class:`EngineWorker` per session runs one thread (STYLE.md §1.3): it opens the
engine, takes the work the connection thread queues, in order (FRAMEs to encode, a
transcode session's PACKETs to decode, filter and encode, PACKETs to decode, PINGs to
answer after the output before them, FLUSH to drain), and closes the engine. It owns
everything that thread touches: the engine, the bounded queue, the timestamp
bookkeeping (server/timestamps.py), a plain client's window (server/window.py) and
the transcode stage (server/transcode.py). It speaks to the connection side only
through its :class:`Outbox` (send a message, abort the session) and the queue.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Protocol

import av

from vtremote.engines.base import Engine
from vtremote.errors import EngineError, VTRemoteError
from vtremote.server.configure import ConfigurePlan
from vtremote.server.planes import wire_planes
from vtremote.server.sei import insert_captions
from vtremote.server.stats import EngineStats
from vtremote.server.timestamps import FrameInfo, TimestampMapper
from vtremote.server.window import Action, PlainWindow, restart_budget
from vtremote.wire import annexb, messages
from vtremote.wire.constants import PacketFlags
from vtremote.wire.messages import Buffer

#: How often blocked calls (socket reads, the engine's queue) wake up to check for
#: aborts, shutdown and idleness.
POLL_INTERVAL = 0.25
#: Work items queued between the reader and the engine (bounded: backpressure).
QUEUE_DEPTH = 4
#: Longest an engine may take to open (hardware initialisation included).
ENGINE_OPEN_TIMEOUT = 60.0


# ==== work items (connection thread -> engine thread) =============================================


@dataclass(frozen=True, slots=True)
class EncodeFrame:
    """A distinct FRAME, already a picture for the encoder."""

    frame: av.VideoFrame
    info: FrameInfo


@dataclass(frozen=True, slots=True)
class SourcePacket:
    """A PACKET: decoded (mode=decode) or decoded, filtered and encoded (mode=transcode)."""

    packet: av.Packet[Any]


@dataclass(frozen=True, slots=True)
class FrameRepeated:
    """A plain client sent the previous FRAME again (VTR1.md §10.1); it was not encoded."""

    arrived: float


@dataclass(frozen=True, slots=True)
class AnswerPing:
    """A PING: answered in order, after the output of the work before it."""


@dataclass(frozen=True, slots=True)
class PongRead:
    """A probed plain client answered our PING (server/window.py)."""

    arrived: float
    received: int  # bytes read on the connection by then


@dataclass(frozen=True, slots=True)
class Drain:
    """FLUSH: drain the engine, send DONE, stop."""


@dataclass(frozen=True, slots=True)
class Wake:
    """No work: the session aborted, stop without waiting out POLL_INTERVAL."""


WorkItem = EncodeFrame | SourcePacket | FrameRepeated | AnswerPing | PongRead | Drain | Wake


class Outbox(Protocol):
    """How the engine worker talks back to its session's connection side."""

    def send(self, message: messages.Message) -> None:
        """Send one message to the client (one write lock, one ``sendmsg``)."""

    def abort(self, error: BaseException) -> None:
        """The worker failed: the session ends with this error (an ERROR to the client)."""

    def bytes_received(self) -> int:
        """Bytes read on the connection so far."""


class EngineWorker:
    """The engine thread of one session (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        plan: ConfigurePlan,
        outbox: Outbox,
        pool: Executor,
        observe_latency: Callable[[float], None],
        log: logging.LoggerAdapter[logging.Logger],
        name: str,
    ) -> None:
        #: The engine: this worker's thread's while it runs (read it after :meth:`join`).
        self.engine = engine
        #: Output counters: the same (read them after :meth:`join`).
        self.stats = EngineStats()
        self._stream = plan.stream
        self._compression = plan.compression
        self._window = PlainWindow(probed=plan.probed) if plan.watch_window else None
        self._transcode = plan.transcode
        self._outbox = outbox
        self._pool = pool
        self._observe_latency = observe_latency
        self._log = log
        self._name = name
        self._queue: queue.Queue[WorkItem] = queue.Queue(QUEUE_DEPTH)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._timestamps = (
            TimestampMapper(plan.stream.frame_ticks) if plan.stream.mode == "encode" else None
        )
        self._pending_frames: deque[av.VideoFrame] = deque()
        self._warned_pts = False
        self._extradata = b""  # what CONFIGURE_ACK carries (set by the engine thread)
        self._inband = b""  # parameter sets to put before the next keyframe (a reopened engine's)
        self._last_packet_ts = (0, 0)  # pts, dts of the last PACKET sent
        # PACKETs sent, for the window: their send times until a later FRAME's arrival counts them.
        self._packet_times: deque[float] = deque()
        self._packets_before = 0
        # Read by the connection thread's idle check (idle_since), under this lock.
        self._activity = threading.Lock()
        self._busy = False
        self._active = time.monotonic()
        # Called once the thread has closed everything (when_stopped), under this lock.
        self._exit_lock = threading.Lock()
        self._exited = False
        self._on_exit: list[Callable[[], None]] = []

    # ==== the connection thread's side ============================================================

    def start(self) -> bytes:
        """Start the thread, which opens the engine; returns the extradata (raises its error)."""
        opened: Future[bytes] = Future()
        thread = threading.Thread(target=self._main, args=(opened,), name=self._name, daemon=True)
        self._thread = thread
        thread.start()
        try:  # raises the engine's error (EngineError, EngineUnavailableError, ConfigError...)
            return opened.result(timeout=ENGINE_OPEN_TIMEOUT)
        except FutureTimeout:
            raise EngineError(
                f"engine {self.engine.name} did not open within {ENGINE_OPEN_TIMEOUT:g} s"
            ) from None
        except EngineError:
            thread.join(timeout=5.0)  # it returns right after a failed open
            raise

    def put(self, item: WorkItem, timeout: float) -> bool:
        """Queue ``item``; False if the queue stayed full for ``timeout`` s (backpressure)."""
        try:
            self._queue.put(item, timeout=timeout)
        except queue.Full:
            return False
        return True

    def idle_since(self) -> float | None:
        """When the engine last finished work; None while it works or has work queued."""
        with self._activity:
            if self._busy or not self._queue.empty():
                return None
            return self._active

    def stop(self) -> None:
        """Stop soon (from any thread): the current item finishes, the rest is dropped."""
        self._stop.set()
        with contextlib.suppress(queue.Full):  # a full queue wakes the engine thread anyway
            self._queue.put_nowait(Wake())

    def when_stopped(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the thread has ended and closed its codecs (at once if it
        has): a stuck engine's memory stays reserved until then."""
        with self._exit_lock:
            if not self._exited:
                self._on_exit.append(callback)
                return
        callback()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; False if it is still running after ``timeout`` s."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout=timeout)
        return not thread.is_alive()

    # ==== the engine thread =======================================================================

    def _main(self, opened: Future[bytes]) -> None:
        engine = self.engine
        running = False
        try:
            try:
                extradata = engine.open(self._stream)
            except BaseException as e:
                opened.set_exception(e)
                return
            # From here self.engine is this thread's; a plain client's small window may
            # replace it (_reopen_for_window).
            running = True
            self._extradata = extradata
            opened.set_result(extradata)
            self._loop()
        except BaseException as e:
            if not self._stop.is_set():
                if isinstance(e, VTRemoteError):
                    self._outbox.abort(_detached(e))
                else:
                    self._log.exception("engine thread failed")
                    self._outbox.abort(
                        VTRemoteError(f"internal server error: {type(e).__name__}: {e}")
                    )
            _detached(e)
        finally:
            self._close(engine, running)

    def _close(self, engine: Engine, running: bool) -> None:
        """Close every codec and graph now, on this thread: their threads and pictures go
        with the session, not at the next garbage collection."""
        self._drop_queue()
        self._pending_frames.clear()
        if self._window is not None:
            self._window.replay = None
        try:
            if self._transcode is not None:
                self._transcode.close()
        finally:
            try:
                (self.engine if running else engine).close()
            except Exception:
                self._log.exception("engine close failed")
            with self._exit_lock:
                self._exited = True
                callbacks, self._on_exit = self._on_exit, []
            for callback in callbacks:
                callback()

    def _drop_queue(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _next_item(self) -> WorkItem | None:
        """The next work item; None when none came in time (the window is checked then)."""
        window = self._window
        timeout = POLL_INTERVAL
        if window is not None:
            held = self._timestamps.pending if self._timestamps is not None else 0
            timeout = min(timeout, max(0.001, window.deadline(held) - time.monotonic()))
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            if window is not None:
                self._check_window(window)
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            item = self._next_item()
            if item is None:
                continue
            if self._stop.is_set():
                return
            with self._activity:
                self._busy = True
            began = time.monotonic()
            try:
                if self._handle(item):
                    return
            finally:
                with self._activity:
                    self._busy = False
                    self._active = time.monotonic()
                    self.stats.busy += self._active - began

    def _handle(self, item: WorkItem) -> bool:
        """Do one item; True once the session is finished (DONE sent)."""
        engine = self.engine
        window = self._window
        if isinstance(item, EncodeFrame):
            self._encode(engine, item.frame, item.info)
        elif isinstance(item, SourcePacket) and self._transcode is not None:
            self._encode_all(engine, self._transcode.frames(engine, item.packet))
        elif isinstance(item, SourcePacket):
            self._decode(engine, item.packet)
        elif isinstance(item, AnswerPing):
            self._outbox.send(messages.Pong())
        elif isinstance(item, PongRead):
            if window is not None:
                window.on_pong(item.arrived, item.received)
        elif isinstance(item, FrameRepeated):
            assert window is not None
            if window.on_copy(item.arrived):
                self._answer_copy()
        elif isinstance(item, Drain):
            self._drain(engine)
            self._outbox.send(messages.Done())
            return True
        return False

    def _encode(self, engine: Engine, frame: av.VideoFrame, info: FrameInfo) -> None:
        ts = self._timestamps
        assert ts is not None
        frame.pts = ts.add(info)
        window = self._window
        if window is not None:
            window.on_frame(frame, info.received, self._packets_sent_by(info.received))
        for pkt in engine.encode(frame):
            self._send_packet(pkt)
        if window is not None:
            window.held(ts.pending)

    def _encode_all(
        self, engine: Engine, frames: Iterator[tuple[av.VideoFrame, FrameInfo]]
    ) -> None:
        """Encode what the transcode stage makes, one frame at a time; an abort stops it
        between any two frames."""
        for frame, info in frames:
            if self._stop.is_set():
                return
            self._encode(engine, frame, info)

    def _packets_sent_by(self, moment: float) -> int:
        """PACKETs that had gone out when a FRAME arrived at ``moment`` (frames come in order)."""
        times = self._packet_times
        while times and times[0] <= moment:
            times.popleft()
            self._packets_before += 1
        return self._packets_before

    # ==== a plain client's window (server/window.py) ==============================================

    def _answer_copy(self) -> None:
        """An empty PACKET for a copy of a frame: the client counts it against the copy."""
        pts, dts = self._last_packet_ts
        self._outbox.send(messages.Packet(pts=pts, dts=dts, duration=0, flags=0, data=b""))

    def _check_window(self, window: PlainWindow) -> None:
        """The client sent nothing for a while: is it waiting for a packet it cannot get?"""
        ts = self._timestamps
        assert ts is not None
        stall = window.on_idle(ts.pending, received=self._outbox.bytes_received())
        if stall is None:
            return
        if stall.action is Action.PROBE:  # is it waiting? (answered at once only if so)
            self._outbox.send(messages.Ping())
            window.probe_sent()
        elif stall.action is Action.ANSWER_COPY:
            self._log.info(
                "the client waits with a frame it sent twice unanswered; an empty PACKET answers it"
            )
            self._answer_copy()
        else:
            self._reopen_for_window(window, stall.window)

    def _reopen_for_window(self, window: PlainWindow, client_window: int) -> None:
        """Reopen the engine with a delay the client's window allows and encode its frames again.

        Called before any packet went out: the new encoder's stream simply starts the
        session. Its parameter sets, if they differ from CONFIGURE_ACK's, go in-band
        before its first keyframe.
        """
        old, config, frames = self.engine, self._stream, window.replay
        assert frames is not None
        budget = min(restart_budget(client_window), config.max_delay)
        new_config = dataclasses.replace(config, max_delay=budget, least_delay=True)
        self._log.warning(
            "the client stopped after %d frame(s) without a packet: its window "
            "(vt_remote_inflight) is smaller than %s's delay; encoding again from the first "
            "frame with at most %d frame(s) held back",
            client_window,
            old.name,
            budget,
        )
        old.close()  # first: a hardware encoder may allow only so many sessions at once
        new = type(old)()
        try:
            extradata = new.open(new_config)
        except BaseException:
            new.close()
            raise
        self.engine = new
        self._stream = new_config
        for w in new.warnings:
            self._log.info("reopened engine: %s", w)
        if extradata != self._extradata:
            self._inband = annexb.config_record_to_annexb(new_config.codec, extradata)
        ts = self._timestamps
        assert ts is not None
        for frame in frames:
            for pkt in new.encode(frame):
                self._send_packet(pkt)
            window.held(ts.pending)

    # ==== output ==================================================================================

    def _drain(self, engine: Engine) -> None:
        if self._transcode is not None:  # what the decoder and the filters still hold
            self._encode_all(engine, self._transcode.frames(engine, None))
            if self._stop.is_set():
                return
        if self._stream.mode == "encode":
            for pkt in engine.encode(None):
                self._send_packet(pkt)
            ts = self._timestamps
            if ts is not None and ts.pending:
                raise VTRemoteError(
                    f"{engine.codec_name} lost {ts.pending} frame(s): no packet came out for them"
                )
        else:
            self._pending_frames.extend(engine.decode(None))
            while self._pending_frames:
                self._send_frame(self._pending_frames.popleft())

    def _send_packet(self, pkt: av.Packet[Any]) -> None:
        ts = self._timestamps
        assert ts is not None
        if pkt.pts is None:
            raise VTRemoteError("the encoder returned a packet without pts")
        try:
            info, dts = ts.take(pkt.pts, pkt.dts)
        except KeyError:
            raise VTRemoteError(
                f"the encoder returned a packet for unknown frame index {pkt.pts}"
            ) from None
        if ts.violations and not self._warned_pts:
            self._warned_pts = True
            self._log.warning("client pts are not strictly increasing: some PACKETs have dts > pts")
        # Zero copy when the encoder already writes 4-byte start codes.
        data: Buffer = memoryview(pkt)
        if self._window is not None:
            self._window.on_packet()
        if info.captions:
            data = insert_captions(self._stream.codec, bytes(data), info.captions)
        elif self._stream.codec != "av1" and not _four_byte_start_codes(data):  # AV1: OBUs
            data = b"".join(annexb.START_CODE + bytes(n) for n in annexb.iter_annexb(data))
        if self._inband and pkt.is_keyframe:  # a reopened engine's parameter sets
            data, self._inband = self._inband + bytes(data), b""
        flags = PacketFlags.KEYFRAME if pkt.is_keyframe else 0
        msg = messages.Packet(
            pts=info.pts, dts=dts, duration=max(info.duration, 0), flags=int(flags), data=data
        )
        self._outbox.send(msg)
        self._last_packet_ts = (info.pts, dts)
        sent = time.monotonic()
        if self._window is not None:
            self._packet_times.append(sent)
        self.stats.packets_out += 1
        self.stats.latency(sent - info.received)
        self._observe_latency(sent - info.received)

    def _decode(self, engine: Engine, pkt: av.Packet[Any]) -> None:
        self._pending_frames.extend(engine.decode(pkt))
        if self._stream.pipelined:
            while self._pending_frames:
                self._send_frame(self._pending_frames.popleft())
        elif self._pending_frames:
            # Lock-step v1 client: at most one FRAME per PACKET (VTR1.md §10.3, §14).
            self._send_frame(self._pending_frames.popleft())

    def _send_frame(self, frame: av.VideoFrame) -> None:
        config = self._stream
        width = config.width or frame.width
        height = config.height or frame.height
        planes = wire_planes(
            frame, width, height, self.engine.output_pix_fmt, self._compression, self._pool
        )
        pts = frame.pts if frame.pts is not None else 0
        duration = frame.duration if frame.duration and frame.duration > 0 else 0
        msg = messages.Frame(
            pts=pts,
            duration=duration,
            flags=0,
            planes=tuple(messages.Plane(stride, rows, data) for stride, rows, data in planes),
        )
        self._outbox.send(msg)
        self.stats.frames_out += 1


def _detached(error: BaseException) -> BaseException:
    """``error`` without its tracebacks (and its causes'): they hold the engine thread's
    frames, whose locals (codec contexts, pictures) would otherwise live as long as the
    session keeps the error, or until a garbage collection breaks the cycle."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__
    return error


def _four_byte_start_codes(data: Buffer) -> bool:
    """True if ``data`` is Annex B whose every start code has 4 bytes."""
    raw = data if isinstance(data, bytes) else bytes(data)
    return raw.startswith(annexb.START_CODE) and raw.count(b"\x00\x00\x01") == raw.count(
        b"\x00\x00\x00\x01"
    )


__all__ = [
    "POLL_INTERVAL",
    "QUEUE_DEPTH",
    "AnswerPing",
    "Drain",
    "EncodeFrame",
    "EngineWorker",
    "FrameRepeated",
    "Outbox",
    "PongRead",
    "SourcePacket",
    "Wake",
    "WorkItem",
]
