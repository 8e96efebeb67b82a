"""One client connection = one session: handshake, one engine, streaming, summary.

Threads (STYLE.md §1.3): the connection thread reads the socket (``recv_into``
the receiver's own buffer, no copy), runs the handshake, decompresses FRAME
planes and feeds a bounded queue; the engine thread owns the engine (opens it,
encodes or decodes, closes it) and sends what comes out. Sends from both
threads go through one write lock with one ``sendmsg`` per message; the
sans-IO :class:`~vtremote.wire.Connection` is guarded by a second, short lock.
This file is the connection thread; CONFIGURE is :mod:`vtremote.server.configure`,
the engine thread :mod:`vtremote.server.engine_thread` (both mixed into Session).

Backpressure: the queue is bounded, so a slow engine stops the reader, then TCP,
then the client; nothing grows without bound.

Failure handling (VTR1.md §13, the reference closed silently): every failure
becomes one ERROR with its code from :mod:`vtremote.errors` and a message that
states the fact and the limit, then the socket is shut down for writing and
drained briefly so the ERROR is not lost to a reset. A client that vanishes
stops the engine at once; nothing a session does can take the process down.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import queue
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import MutableMapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
from av.video.frame import PictureType

import vtremote
from vtremote import frames as framesmod
from vtremote.engines import registry
from vtremote.engines.base import Engine, StreamConfig
from vtremote.errors import (
    AuthenticationError,
    CapacityError,
    ConnectionLostError,
    LocalProtocolError,
    RemoteProtocolError,
    ShutdownError,
    TimeoutExpiredError,
    UnsupportedConfigError,
    VTRemoteError,
)
from vtremote.server.config import ServerConfig
from vtremote.server.configure import ConfigureStep
from vtremote.server.engine_thread import (
    _FLUSH,
    _FRAME,
    _PACKET,
    _PING,
    _PONG,
    _RESENT,
    _WAKE,
    POLL_INTERVAL,
)
from vtremote.server.logs import RATE_LIMITED
from vtremote.server.metrics import Metrics
from vtremote.server.timestamps import FrameInfo, TimestampMapper
from vtremote.server.transcode import TranscodeJob
from vtremote.server.transcode import offer as transcode_offer
from vtremote.server.window import PlainWindow
from vtremote.wire import messages
from vtremote.wire.compression import decompress_plane
from vtremote.wire.connection import Connection, Role, State
from vtremote.wire.constants import (
    CODECS,
    HelloStatus,
    MessageType,
    PacketFlags,
    SideDataType,
    WireCompression,
)
from vtremote.wire.extensions import (
    CAP_BUSY,
    CAP_DECODE_PIPELINE,
    CAP_ENGINE_PREFIX,
    CAP_ERRORS,
    CAP_KEEPALIVE,
    CAP_WINDOW,
    codecs_capability,
)
from vtremote.wire.messages import Buffer, nbytes

logger = logging.getLogger(__name__)

#: Socket buffers, as the reference sets them (VTR1.md §6.5).
SOCKET_BUFFER = 4 * 1024 * 1024
#: Work items queued between the reader and the engine (bounded: backpressure).
QUEUE_DEPTH = 4
#: After an ERROR or DONE: how long / how much we read and discard before closing,
#: so unread client bytes do not turn our close into a reset that eats the ERROR.
LINGER_SECONDS = 1.0
#: The same for a connection that never got past HELLO (floods must not hold threads long).
LINGER_UNAUTHENTICATED = 0.2
LINGER_BYTES = 64 * 1024 * 1024
#: After DONE: longest wait for the client to close before our FIN (see _close_socket).
POST_DONE_WAIT = 10.0
#: Linux only: acknowledge every read at once instead of delaying the ACK (up to 40 ms).
#: The reference decoder writes a message as two ``send`` calls without TCP_NODELAY, so
#: Nagle holds its second write until our ACK of the first arrives; a delayed ACK turned
#: every lock-step PACKET into a ~40 ms round trip (docs/protocol.md "Lock-step clients").
#: The kernel clears the flag after it acts, so it is set again after each read.
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class SessionHost(Protocol):
    """What a session needs from the daemon."""

    @property
    def config(self) -> ServerConfig: ...

    @property
    def shutting_down(self) -> bool: ...

    @property
    def force_close(self) -> bool: ...

    @property
    def pool(self) -> Executor: ...

    def acquire_slot(self) -> tuple[bool, int]: ...

    def release_slot(self) -> None: ...

    def engine_label(self, codec: str) -> str: ...

    # Admission (server/admission.py) and metrics (server/metrics.py).
    @property
    def metrics(self) -> Metrics: ...

    def check_handshake(self, session: Session) -> None:
        """Raise if the connection must go before its HELLO (deadline passed, evicted)."""

    def throttle_hello(self, session: Session) -> None:
        """Before the token is checked: wait while the source is being slowed down; raise if blocked."""

    def auth_failed(self, session: Session) -> None:
        """A wrong token: count it against the source address."""

    def authenticated(self, session: Session) -> None:
        """HELLO accepted: the connection stops counting as unauthenticated."""


class _Prefixed(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with ``[session 3f2a]`` (STYLE.md §7)."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[session {self.extra['id'] if self.extra else '?'}] {msg}", kwargs


class ClientGone(ConnectionLostError):
    """The client closed or reset the connection (or stopped reading): nothing more can be sent."""


@dataclass(slots=True)
class Stats:
    """Counters for the SUMMARY line (VTR1.md §9.3)."""

    started: float = field(default_factory=time.monotonic)
    frames_in: int = 0
    packets_out: int = 0
    packets_in: int = 0
    frames_out: int = 0
    frames_resent: int = 0  # FRAMEs a plain v1 client sent twice (counted once in frames_in)
    latency_total: float = 0.0
    latency_max: float = 0.0
    latency_count: int = 0

    def has_data(self) -> bool:
        return bool(self.frames_in or self.packets_in)

    def latency(self, seconds: float) -> None:
        self.latency_total += seconds
        self.latency_count += 1
        self.latency_max = max(self.latency_max, seconds)


#: States before CONFIGURE_ACK: a draining server refuses these sessions at once.
_HANDSHAKE = (
    State.START,
    State.HELLO,
    State.READY,
    State.CONFIGURING_ENCODE,
    State.CONFIGURING_DECODE,
    State.CONFIGURING_TRANSCODE,
)


class Session(ConfigureStep):
    """Serves one connection from HELLO to DONE (or ERROR). Call :meth:`run` in its own thread."""

    def __init__(self, sock: socket.socket, peer: str, host: SessionHost) -> None:
        self.id = secrets.token_hex(2)
        self.log = _Prefixed(logger, {"id": self.id})
        self.sock = sock
        self.peer = peer
        self.host = host
        self.cfg = host.config
        self.conn = Connection(Role.SERVER, self.cfg.limits)
        self.stats = Stats()
        self.codec = ""
        self.client_name = ""
        self.stream: StreamConfig | None = None
        self.engine: Engine | None = None
        self.compression = WireCompression.NONE

        self._state_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._abort = threading.Event()
        self._abort_error: BaseException | None = None
        self._finished = threading.Event()
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(QUEUE_DEPTH)
        self._engine_thread: threading.Thread | None = None
        self._engine_busy = False
        self._engine_active = time.monotonic()
        self._last_rx = time.monotonic()
        self._eof = False
        self._slot = False
        self._flushing = False
        self._closed_write = False
        self._timestamps: TimestampMapper | None = None
        self._pending_frames: deque[av.VideoFrame] = deque()
        self._warned_pts = False
        self._captions = False
        self._transcode: TranscodeJob | None = None  # mode=transcode (server/transcode.py)
        #: The client negotiated none of our extensions: the reference client or alike.
        self._plain_client = True
        #: An encode session of a plain client: its window's bookkeeping (server/window.py).
        self._window: PlainWindow | None = None
        self._extradata = b""  # what CONFIGURE_ACK carried
        self._inband = b""  # parameter sets to put before the next keyframe (a reopened engine's)
        self._last_packet_ts = (0, 0)  # pts, dts of the last PACKET sent
        self._authenticated = False

    # ==== lifecycle ==========================================================================

    def run(self) -> None:
        """Serve the connection; never raises."""
        outcome = "closed"
        try:
            self._setup_socket()
            self.log.info("open from %s", self.peer, extra=RATE_LIMITED)
            self._serve()
            outcome = "done"
        except ClientGone as e:
            outcome = "client gone"
            self._abort_with(e)
            if self.stream is not None and not self._finished.is_set() and self.stats.has_data():
                self.log.warning("client vanished mid-stream (%s); stopping the engine", e)
            elif self.stream is not None and not self._finished.is_set():
                # FFmpeg opens and closes a codec while probing a stream: not a failure.
                self.log.info(
                    "client closed the session before sending data (%s)", e, extra=RATE_LIMITED
                )
            else:
                self.log.info("client closed the connection (%s)", e, extra=RATE_LIMITED)
        except VTRemoteError as e:
            outcome = f"error {int(e.code)}"
            self._abort_with(e)
            self._report(e)
        except Exception as e:  # a bug must cost one session, never the server
            outcome = "internal error"
            self.log.exception("internal error")
            err = VTRemoteError(f"internal server error: {type(e).__name__}: {e}")
            self._abort_with(err)
            self._report(err)
        finally:
            self._teardown(outcome)

    def _setup_socket(self) -> None:
        s = self.sock
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):  # the OS may cap it: fine
                s.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        s.settimeout(POLL_INTERVAL)
        self._quickack()

    def _quickack(self) -> None:
        if _QUICKACK is not None:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)

    def _serve(self) -> None:
        hello = self._read()
        if not isinstance(hello, messages.Hello):  # the state machine allows only HELLO here
            raise RemoteProtocolError(f"expected HELLO, got {type(hello).__name__.upper()}")
        self._on_hello(hello)
        configure = self._read()
        if not isinstance(configure, messages.Configure):
            raise RemoteProtocolError(f"expected CONFIGURE, got {type(configure).__name__.upper()}")
        self._on_configure(configure)
        self._stream_loop()

    def _abort_with(self, err: BaseException) -> None:
        if self._abort_error is None:
            self._abort_error = err
        self._stop_engine()

    def _stop_engine(self) -> None:
        self._abort.set()
        with contextlib.suppress(queue.Full):  # a full queue wakes the engine thread anyway
            self._queue.put_nowait((_WAKE,))

    def _teardown(self, outcome: str) -> None:
        self._stop_engine()
        thread = self._engine_thread
        if thread is not None:
            thread.join(timeout=30.0)
            if thread.is_alive():
                self.log.error("engine thread did not stop within 30 s")
            elif outcome not in ("done",):
                self.log.info("engine %s closed", self.engine.name if self.engine else "?")
        if self._slot:
            self._slot = False
            self.host.release_slot()
        if self.stream is not None:
            self._log_summary(outcome)
        self._close_socket(after_done=outcome == "done")

    def _close_socket(self, after_done: bool = False) -> None:
        """Half-close, discard what the client still sends for a moment, close (no RST).

        After DONE our FIN waits for the client's (or POST_DONE_WAIT): the reference
        encoder reads PACKETs and DONE into a queue and drops what is still queued as
        soon as it sees EOF (VTR1.md §10.2). Its repeated FLUSHes say nothing about
        whether DONE was read, so only its close is a safe signal. The session slot
        and the engine are already free by then.
        """
        s = self.sock
        try:
            s.settimeout(0.1)
            buf = bytearray(65536)
            drained = 0
            if after_done and not self._closed_write:
                deadline = time.monotonic() + min(self.cfg.idle_timeout, POST_DONE_WAIT)
                while (
                    time.monotonic() < deadline
                    and not self.host.shutting_down
                    and drained < LINGER_BYTES
                ):
                    try:
                        n = s.recv_into(buf)
                    except TimeoutError:
                        continue
                    if n == 0:
                        return  # the client closed: close too (finally)
                    drained += n
            if not self._closed_write:
                s.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + (
                LINGER_SECONDS if self._authenticated else LINGER_UNAUTHENTICATED
            )
            while time.monotonic() < deadline and drained < LINGER_BYTES:
                try:
                    n = s.recv_into(buf)
                except TimeoutError:
                    continue
                if n == 0:
                    break
                drained += n
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                s.close()

    # ==== reading ============================================================================

    def _check_interrupts(self) -> None:
        if self._abort.is_set():
            err = self._abort_error
            if isinstance(err, BaseException):
                raise err
            raise ClientGone("session aborted")
        if self.host.force_close or (self.host.shutting_down and self.conn.state in _HANDSHAKE):
            raise ShutdownError("server shutting down")

    def _check_idle(self) -> None:
        now = time.monotonic()
        if self._engine_busy or not self._queue.empty():
            return  # the client is waiting for us, not the other way round
        idle = now - max(self._last_rx, self._engine_active)
        if idle >= self.cfg.idle_timeout:
            raise TimeoutExpiredError(
                f"no message from the client for {idle:.1f} s (idle timeout {self.cfg.idle_timeout:g} s)"
            )

    def _read(self) -> messages.Message | None:
        """The next message from the client; None once the session is finished (DONE sent)."""
        while True:
            try:
                with self._state_lock:
                    msg = self.conn.next_event()
            except RemoteProtocolError:
                if self._finished.is_set():
                    return None  # bytes after DONE (e.g. a repeated FLUSH) are never read (VTR1.md §6.1)
                raise
            if msg is not None:
                self._last_rx = time.monotonic()
                if self.log.isEnabledFor(logging.DEBUG):
                    self.log.debug("<- %s", _describe(msg))
                return msg
            if self._finished.is_set() or self.conn.state is State.DONE:
                return None
            self._check_interrupts()
            if self.conn.state is State.START:
                self.host.check_handshake(self)
            if self._eof:
                raise ClientGone("connection closed by the client")
            buf = self.conn.get_buffer()
            try:
                n = self.sock.recv_into(buf)
            except TimeoutError:
                self._check_idle()
                continue
            except OSError as e:
                raise ClientGone(f"receive failed: {e}") from e
            if n == 0:
                self._eof = True
                self.conn.receive_eof()  # next_event raises if EOF cut a message
                continue
            if self._plain_client:  # ours sends whole messages with TCP_NODELAY: no ACK to hurry
                self._quickack()
            self.conn.buffer_updated(n)

    # ==== writing ============================================================================

    def _send(self, msg: messages.Message) -> None:
        """Send one message (any thread): state check and bytes in the same order."""
        with self._write_lock:
            if self._closed_write:
                raise ClientGone("connection already closed for writing")
            with self._state_lock:
                bufs = self.conn.send(msg)
            if self.log.isEnabledFor(logging.DEBUG):
                self.log.debug("-> %s", _describe(msg))
            self._send_buffers(bufs)

    def _send_buffers(self, bufs: list[Buffer]) -> None:
        """All of ``bufs`` with ``sendmsg`` (one syscall per message unless the socket is full)."""
        views = [b if isinstance(b, memoryview) else memoryview(b) for b in bufs if nbytes(b)]
        views = [v if v.format == "B" and v.ndim == 1 else v.cast("B") for v in views]
        last_progress = time.monotonic()
        while views:
            try:
                sent = self.sock.sendmsg(views)
            except TimeoutError:
                if self._abort.is_set() and isinstance(self._abort_error, ClientGone):
                    raise ClientGone("session aborted while sending") from None
                if time.monotonic() - last_progress > self.cfg.idle_timeout:
                    raise ClientGone(
                        f"client has not read for {self.cfg.idle_timeout:g} s (idle timeout)"
                    ) from None
                if self.host.force_close:
                    raise ClientGone(
                        "server shutting down while the client is not reading"
                    ) from None
                continue
            except OSError as e:
                raise ClientGone(f"send failed: {e}") from e
            last_progress = time.monotonic()
            while sent and views:
                head = views[0]
                if sent >= len(head):
                    sent -= len(head)
                    views.pop(0)
                else:
                    views[0] = head[sent:]
                    sent = 0

    def _report(self, err: VTRemoteError) -> None:
        """One ERROR with the error's code and text, if the connection still allows it."""
        code = int(err.code)
        text = str(err) or type(err).__name__
        self.host.metrics.error(code)
        if not self._authenticated:  # anyone can cause these: rate limited (server/logs.py)
            self.log.warning("ERROR %d to client %s: %s", code, self.peer, text, extra=RATE_LIMITED)
        elif isinstance(
            err,
            (
                RemoteProtocolError | TimeoutExpiredError | ShutdownError,
                AuthenticationError | CapacityError | UnsupportedConfigError,
            ),
        ):
            self.log.warning("ERROR %d to client: %s", code, text)
        else:
            self.log.error("ERROR %d to client: %s", code, text)
        try:
            with self._write_lock:
                if self._closed_write:
                    return
                with self._state_lock:
                    bufs = self.conn.send_error(code, text[:4096])
                if bufs is not None:
                    self._send_buffers(bufs)
        except (ClientGone, LocalProtocolError, OSError) as e:
            self.log.debug("could not send ERROR: %s", e)

    # ==== handshake ==========================================================================

    def _hello_ack(self, status: HelloStatus, active: int) -> messages.HelloAck:
        if not self.cfg.extensions:
            # The reference daemon's 22 bytes: empty strings, h264/hevc, constants 4 and 1.
            return messages.HelloAck(status=int(status))
        caps: tuple[str, ...] = (
            *CODECS,
            CAP_BUSY,
            CAP_ERRORS,
            f"{CAP_KEEPALIVE}={self.cfg.idle_timeout_ms}",
            CAP_DECODE_PIPELINE,
            CAP_WINDOW,
            transcode_offer(),
            codecs_capability(registry.extension_codecs(self.cfg.engine)),  # AV1: on request
        )
        label = self.host.engine_label(self.codec if self.codec in CODECS else "h264")
        caps = (*caps, f"{CAP_ENGINE_PREFIX}{label}")
        return messages.HelloAck(
            status=int(status),
            server_name="vtremoted",
            server_version=vtremote.__version__,
            capabilities=caps,
            max_sessions=self.cfg.max_sessions,
            active_sessions=min(active, 0xFFFF),
        )

    def _on_hello(self, hello: messages.Hello) -> None:
        self.client_name = hello.client_name
        self.codec = hello.codec
        self.host.throttle_hello(self)
        token = self.cfg.token
        if token and not hmac.compare_digest(
            hello.token.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
        ):
            self.log.warning(
                "HELLO authfail from %s codec=%s peer=%s",
                hello.client_name,
                hello.codec,
                self.peer,
                extra=RATE_LIMITED,
            )
            self.host.auth_failed(self)
            self._send(self._hello_ack(HelloStatus.AUTH_FAILED, 0))
            raise AuthenticationError("authentication failed")
        if hello.codec not in CODECS:
            raise UnsupportedConfigError(
                f"unsupported codec {hello.codec!r} in HELLO; this server handles {', '.join(CODECS)}"
            )
        ok, active = self.host.acquire_slot()
        if not ok:
            self.host.metrics.refused.labels("busy").inc()
            self._send(self._hello_ack(HelloStatus.BUSY, active))
            raise CapacityError(f"server busy: {active} of {self.cfg.max_sessions} sessions in use")
        self._slot = True
        self._authenticated = True
        self.host.authenticated(self)
        self._send(self._hello_ack(HelloStatus.OK, active))
        self.log.info(
            "HELLO ok client=%s build=%s codec=%s", hello.client_name, hello.build, hello.codec
        )

    # ==== streaming: reader side ==============================================================

    def _stream_loop(self) -> None:
        while True:
            msg = self._read()
            if msg is None:
                return  # DONE sent
            kind = messages.message_type(msg)
            if self.cfg.faults is not None:  # test-only crashes and throttles (server/faults.py)
                self.cfg.faults.on_message(self.id, kind)
            if isinstance(msg, messages.Frame):
                self._on_frame(msg)
            elif isinstance(msg, messages.Packet):
                self._on_packet(msg)
            elif kind == MessageType.FLUSH:
                if not self._flushing:  # the reference encoder may repeat FLUSH (VTR1.md §6.1)
                    self._flushing = True
                    self._enqueue((_FLUSH,))
            elif kind == MessageType.PING:
                self._enqueue((_PING,))  # answered in order, after earlier output
            elif kind == MessageType.PONG and self._window is not None and self._window.probed:
                self._enqueue((_PONG, self._last_rx, self.conn.bytes_received))
            # Other PONGs and unknown types are read and ignored (VTR1.md §1.4 step 7).

    def _enqueue(self, item: tuple[Any, ...]) -> None:
        while True:
            self._check_interrupts()
            try:
                self._queue.put(item, timeout=POLL_INTERVAL)
                return
            except queue.Full:
                continue

    def _on_frame(self, msg: messages.Frame) -> None:
        config = self.stream
        assert config is not None
        if self._window is not None and self._window.is_copy(msg):
            # The reference re-sends the frame that filled its window (VTR1.md §10.1):
            # encoded once; the engine thread decides whether the copy needs an answer.
            self.stats.frames_resent += 1
            self._enqueue((_RESENT, time.monotonic()))
            self.log.debug("FRAME pts=%d sent again by the client; encoded once", msg.pts)
            return
        # Geometry was checked by the Connection; the expected sizes are bounded.
        p0, p1 = msg.planes
        mode = self.compression
        if mode == WireCompression.NONE:
            d0 = decompress_plane(mode, p0.data, p0.size)
            d1 = decompress_plane(mode, p1.data, p1.size)
        else:  # both planes in parallel (VTR1.md §4)
            fut = self.host.pool.submit(decompress_plane, mode, p1.data, p1.size)
            try:
                d0 = decompress_plane(mode, p0.data, p0.size)
            finally:
                d1 = fut.result()
        # The one copy of this hop: wire planes -> the encoder's frame.
        frame = framesmod.frame_from_planes(
            config.width,
            config.height,
            config.pix_fmt,
            [(p0.stride, p0.height, d0), (p1.stride, p1.height, d1)],
        )
        if msg.flags & 1:
            frame.pict_type = PictureType.I  # forced IDR (VTR1.md §5.1)
        captions = b""
        if self._captions and msg.side_data:
            captions = b"".join(
                bytes(sd.data) for sd in msg.side_data if sd.type == SideDataType.A53_CC
            )
        self.stats.frames_in += 1
        info = FrameInfo(msg.pts, msg.duration, time.monotonic(), captions)
        self._enqueue((_FRAME, frame, info, self.stats.packets_out))

    def _on_packet(self, msg: messages.Packet) -> None:
        pkt = av.Packet(msg.data)  # type: ignore[arg-type,unused-ignore]  # the one copy: into the AVPacket
        pkt.pts = msg.pts
        pkt.dts = msg.dts
        pkt.is_keyframe = bool(msg.flags & PacketFlags.KEYFRAME)
        if msg.duration > 0:
            pkt.duration = msg.duration
        self.stats.packets_in += 1
        self._enqueue((_PACKET, pkt))

    # ==== summary ===========================================================================

    def _log_summary(self, outcome: str) -> None:
        st = self.stats
        seconds = max(time.monotonic() - st.started, 1e-9)
        bytes_in = self.conn.bytes_received
        bytes_out = self.conn.bytes_sent
        mbps_in = bytes_in * 8 / seconds / 1e6
        mbps_out = bytes_out * 8 / seconds / 1e6
        config = self.stream
        assert config is not None
        if self._transcode is not None:
            self.log.info(
                "DONE client=%s packets_in=%d packets_out=%d (%s)",
                self.client_name,
                st.packets_in,
                st.packets_out,
                outcome,
            )
            self.log.info(
                "SUMMARY mode=transcode packets_in=%d packets_out=%d %s in=%dB out=%dB duration=%.3fs "
                "in_mbps=%.2f out_mbps=%.2f",
                st.packets_in,
                st.packets_out,
                self._transcode.summary(),
                bytes_in,
                bytes_out,
                seconds,
                mbps_in,
                mbps_out,
            )
        elif config.mode == "encode":
            self.log.info(
                "DONE client=%s frames=%d packets=%d (%s)",
                self.client_name,
                st.frames_in,
                st.packets_out,
                outcome,
            )
            if st.frames_resent:
                self.log.info(
                    "the client sent %d FRAME(s) twice; each was encoded once", st.frames_resent
                )
            avg = st.latency_total / st.latency_count * 1000 if st.latency_count else 0.0
            self.log.info(
                "SUMMARY mode=encode frames_in=%d packets_out=%d in=%dB out=%dB duration=%.3fs "
                "in_mbps=%.2f out_mbps=%.2f avg_encode_ms=%.2f max_encode_ms=%.2f frames_resent=%d",
                st.frames_in,
                st.packets_out,
                bytes_in,
                bytes_out,
                seconds,
                mbps_in,
                mbps_out,
                avg,
                st.latency_max * 1000,
                st.frames_resent,
            )
        else:
            self.log.info(
                "DONE client=%s packets=%d frames=%d (%s)",
                self.client_name,
                st.packets_in,
                st.frames_out,
                outcome,
            )
            self.log.info(
                "SUMMARY mode=decode packets_in=%d frames_out=%d in=%dB out=%dB duration=%.3fs "
                "in_mbps=%.2f out_mbps=%.2f",
                st.packets_in,
                st.frames_out,
                bytes_in,
                bytes_out,
                seconds,
                mbps_in,
                mbps_out,
            )


def _describe(msg: messages.Message) -> str:
    if isinstance(msg, messages.Frame):
        return (
            f"FRAME pts={msg.pts} dur={msg.duration} flags={msg.flags} "
            f"planes={[(p.stride, p.height, nbytes(p.data)) for p in msg.planes]}"
        )
    if isinstance(msg, messages.Packet):
        return f"PACKET pts={msg.pts} dts={msg.dts} dur={msg.duration} flags={msg.flags} bytes={nbytes(msg.data)}"
    if isinstance(msg, messages.Configure):
        return f"CONFIGURE {msg.width}x{msg.height} pix={msg.pix_fmt} options={dict(msg.options)}"
    if isinstance(msg, messages.ConfigureAck):
        return f"CONFIGURE_ACK extradata={nbytes(msg.extradata)}B pix={msg.pix_fmt} warnings={len(msg.warnings)}"
    if isinstance(msg, messages.Hello):
        return f"HELLO client={msg.client_name} codec={msg.codec} build={msg.build}"
    if isinstance(msg, messages.Unknown):
        return f"unknown type {msg.raw_type} ({len(msg.payload)} bytes)"
    return type(msg).__name__.upper()


__all__ = ["ClientGone", "Session", "SessionHost", "Stats"]
