"""The engine thread of a session: it owns the engine and sends what comes out.

:class:`EngineThread` is mixed into :class:`~vtremote.server.session.Session`; the
connection thread (server/session.py) reads the socket and feeds the bounded work
queue, this side takes the items in order: FRAMEs to encode (and a transcode
session's PACKETs to decode, filter and encode), PACKETs to decode, PINGs to answer
after the output before them, FLUSH to drain. It keeps one PACKET per distinct frame
with the client's timestamps (server/timestamps.py), a plain client's window moving
(server/window.py), and reports any failure to the connection thread, which sends
the ERROR.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import av

from vtremote.engines.base import Engine, StreamConfig
from vtremote.errors import VTRemoteError
from vtremote.server.planes import wire_planes
from vtremote.server.sei import insert_captions
from vtremote.server.timestamps import FrameInfo, TimestampMapper
from vtremote.server.transcode import TranscodeJob
from vtremote.server.window import Action, PlainWindow, restart_budget
from vtremote.wire import annexb, messages
from vtremote.wire.constants import PacketFlags, WireCompression
from vtremote.wire.messages import Buffer

if TYPE_CHECKING:
    import logging

    from vtremote.server.session import SessionHost, Stats
    from vtremote.wire.connection import Connection

#: How often blocked calls (socket reads, the engine's queue) wake up to check for
#: aborts, shutdown and idleness.
POLL_INTERVAL = 0.25

# Work items for the engine thread.
_FRAME = "frame"
_PACKET = "packet"
_PING = "ping"
_FLUSH = "flush"
_RESENT = "resent"
_PONG = "pong"  # a probed plain client answered (server/window.py)
_WAKE = "wake"  # no work: the session aborted, stop without waiting out POLL_INTERVAL


class EngineThread:
    """The engine side of a Session (see the module docstring); its state is the Session's."""

    # Set up by Session.__init__ and the handshake (server/session.py).
    log: logging.LoggerAdapter[logging.Logger]
    host: SessionHost
    stats: Stats
    stream: StreamConfig | None
    engine: Engine | None
    compression: WireCompression
    conn: Connection
    _abort: threading.Event
    _finished: threading.Event
    _queue: queue.Queue[tuple[Any, ...]]
    _engine_busy: bool
    _engine_active: float
    _flushing: bool
    _timestamps: TimestampMapper | None
    _pending_frames: deque[av.VideoFrame]
    _warned_pts: bool
    _transcode: TranscodeJob | None
    _window: PlainWindow | None
    _extradata: bytes
    _inband: bytes
    _last_packet_ts: tuple[int, int]

    def _send(self, msg: messages.Message) -> None:
        raise NotImplementedError  # Session._send: the write lock, one sendmsg per message

    def _abort_with(self, err: BaseException) -> None:
        raise NotImplementedError  # Session._abort_with

    def _engine_main(self, engine: Engine, config: StreamConfig, opened: Future[bytes]) -> None:
        running = False
        try:
            try:
                extradata = engine.open(config)
            except BaseException as e:
                opened.set_exception(e)
                return
            # From here self.engine is this thread's (the connection thread set it before
            # starting us); a plain client's small window may replace it (server/window.py).
            running = True
            opened.set_result(extradata)
            self._engine_loop()
        except BaseException as e:
            if not self._abort.is_set():
                if isinstance(e, VTRemoteError):
                    self._abort_with(e)
                else:
                    self.log.exception("engine thread failed")
                    self._abort_with(
                        VTRemoteError(f"internal server error: {type(e).__name__}: {e}")
                    )
        finally:
            self._queue_drop()
            if self._transcode is not None:
                self._transcode.close()
            try:
                (self.engine if running and self.engine is not None else engine).close()
            except Exception:
                self.log.exception("engine close failed")

    def _queue_drop(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _engine_loop(self) -> None:
        window = self._window
        while not self._abort.is_set():
            timeout = POLL_INTERVAL
            if window is not None and not self._flushing:
                held = self._timestamps.pending if self._timestamps is not None else 0
                timeout = min(timeout, max(0.001, window.deadline(held) - time.monotonic()))
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                if window is not None and not self._flushing:
                    self._check_window(window)
                continue
            if self._abort.is_set():
                return
            engine = self.engine
            assert engine is not None
            self._engine_busy = True
            try:
                kind = item[0]
                if kind == _FRAME:
                    self._encode(engine, item[1], item[2], item[3])
                elif kind == _PACKET and self._transcode is not None:
                    for frame, info in self._transcode.frames(engine, item[1]):
                        self._encode(engine, frame, info)
                elif kind == _PACKET:
                    self._decode(engine, item[1])
                elif kind == _PING:
                    self._send(messages.Pong())
                elif kind == _PONG:
                    if window is not None:
                        window.on_pong(item[1], item[2])
                elif kind == _RESENT:
                    assert window is not None
                    if window.on_copy(item[1]):
                        self._answer_copy()
                elif kind == _FLUSH:
                    self._drain(engine)
                    self._send(messages.Done())
                    self._finished.set()
                    return
            finally:
                self._engine_busy = False
                self._engine_active = time.monotonic()

    def _encode(
        self, engine: Engine, frame: av.VideoFrame, info: FrameInfo, packets_before: int = 0
    ) -> None:
        ts = self._timestamps
        assert ts is not None
        frame.pts = ts.add(info)
        window = self._window
        if window is not None:
            window.on_frame(frame, info.received, packets_before)
        for pkt in engine.encode(frame):
            self._send_packet(pkt)
        if window is not None:
            window.held(ts.pending)

    # ==== a plain client's window (server/window.py) ==========================================

    def _answer_copy(self) -> None:
        """An empty PACKET for a copy of a frame: the client counts it against the copy."""
        pts, dts = self._last_packet_ts
        self._send(messages.Packet(pts=pts, dts=dts, duration=0, flags=0, data=b""))

    def _check_window(self, window: PlainWindow) -> None:
        """The client sent nothing for a while: is it waiting for a packet it cannot get?"""
        ts = self._timestamps
        assert ts is not None
        stall = window.on_idle(ts.pending, received=self.conn.bytes_received)
        if stall is None:
            return
        if stall.action is Action.PROBE:  # is it waiting? (answered at once only if so)
            self._send(messages.Ping())
            window.probe_sent()
        elif stall.action is Action.ANSWER_COPY:
            self.log.info(
                "the client waits with a frame it sent twice unanswered; an empty PACKET answers it"
            )
            self._answer_copy()
        else:
            self._reopen_for_window(stall.window)

    def _reopen_for_window(self, window: int) -> None:
        """Reopen the engine with a delay the client's window allows and encode its frames again.

        Called before any packet went out: the new encoder's stream simply starts the
        session. Its parameter sets, if they differ from CONFIGURE_ACK's, go in-band
        before its first keyframe.
        """
        old, config, frames = (
            self.engine,
            self.stream,
            self._window.replay if self._window else None,
        )
        assert old is not None and config is not None and frames is not None
        budget = min(restart_budget(window), config.max_delay)
        new_config = dataclasses.replace(config, max_delay=budget, least_delay=True)
        self.log.warning(
            "the client stopped after %d frame(s) without a packet: its window (vt_remote_inflight) is smaller "
            "than %s's delay; encoding again from the first frame with at most %d frame(s) held back",
            window,
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
        self.stream = new_config
        for w in new.warnings:
            self.log.info("reopened engine: %s", w)
        if extradata != self._extradata:
            self._inband = annexb.config_record_to_annexb(new_config.codec, extradata)
        ts = self._timestamps
        assert ts is not None and self._window is not None
        for frame in frames:
            for pkt in new.encode(frame):
                self._send_packet(pkt)
            self._window.held(ts.pending)

    def _drain(self, engine: Engine) -> None:
        if self._transcode is not None:  # what the decoder and the filters still hold
            for frame, info in self._transcode.frames(engine, None):
                self._encode(engine, frame, info)
        if self.stream is not None and self.stream.mode == "encode":
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
        assert ts is not None and self.stream is not None
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
            self.log.warning("client pts are not strictly increasing: some PACKETs have dts > pts")
        data: Buffer = memoryview(
            pkt
        )  # zero copy when the encoder already writes 4-byte start codes
        if self._window is not None:
            self._window.on_packet()
        if info.captions:
            data = insert_captions(self.stream.codec, bytes(data), info.captions)
        elif self.stream.codec != "av1" and not _four_byte_start_codes(data):  # AV1: OBUs
            data = b"".join(annexb.START_CODE + bytes(n) for n in annexb.iter_annexb(data))
        if (
            self._inband and pkt.is_keyframe
        ):  # a reopened engine's parameter sets (_reopen_for_window)
            data, self._inband = self._inband + bytes(data), b""
        flags = PacketFlags.KEYFRAME if pkt.is_keyframe else 0
        msg = messages.Packet(
            pts=info.pts, dts=dts, duration=max(info.duration, 0), flags=int(flags), data=data
        )
        self._send(msg)
        self._last_packet_ts = (info.pts, dts)
        self.stats.packets_out += 1
        self.stats.latency(time.monotonic() - info.received)
        self.host.metrics.latency.observe(time.monotonic() - info.received)

    def _decode(self, engine: Engine, pkt: av.Packet[Any]) -> None:
        self._pending_frames.extend(engine.decode(pkt))
        config = self.stream
        assert config is not None
        if config.pipelined:
            while self._pending_frames:
                self._send_frame(self._pending_frames.popleft())
        elif self._pending_frames:
            # Lock-step v1 client: at most one FRAME per PACKET (VTR1.md §10.3, §14).
            self._send_frame(self._pending_frames.popleft())

    def _send_frame(self, frame: av.VideoFrame) -> None:
        config = self.stream
        engine = self.engine
        assert config is not None and engine is not None
        width = config.width or frame.width
        height = config.height or frame.height
        planes = wire_planes(
            frame, width, height, engine.output_pix_fmt, self.compression, self.host.pool
        )
        pts = frame.pts if frame.pts is not None else 0
        duration = frame.duration if frame.duration and frame.duration > 0 else 0
        msg = messages.Frame(
            pts=pts,
            duration=duration,
            flags=0,
            planes=tuple(messages.Plane(stride, rows, data) for stride, rows, data in planes),
        )
        self._send(msg)
        self.stats.frames_out += 1


def _four_byte_start_codes(data: Buffer) -> bool:
    """True if ``data`` is Annex B whose every start code has 4 bytes."""
    raw = data if isinstance(data, bytes) else bytes(data)
    return raw.startswith(annexb.START_CODE) and raw.count(b"\x00\x00\x01") == raw.count(
        b"\x00\x00\x00\x01"
    )
