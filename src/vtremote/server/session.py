"""One client connection = one session: handshake, one engine worker, streaming, summary.

Threads (STYLE.md §1.3): this object is the connection thread's. It reads the socket
(``recv_into`` the receiver's own buffer, no copy), runs the handshake and the state
machine, decompresses FRAME planes and feeds its engine worker's bounded queue
(server/worker.py). The worker owns the engine, opens, encodes or decodes and closes
it, and sends what comes out through this session, its :class:`~.worker.Outbox`
(:meth:`Session.send`, :meth:`Session.abort`). Sends from both threads go through one
write lock with one ``sendmsg`` per message; the sans-IO
:class:`~vtremote.wire.Connection` is guarded by a second, short lock. CONFIGURE is
decided by :func:`~vtremote.server.configure.plan_configure`; the session applies the
plan.

Backpressure: the queue is bounded, so a slow engine stops the reader, then TCP,
then the client; nothing grows without bound.

Failure handling (VTR1.md §13, the reference closed silently): every failure
becomes one ERROR with its code from :mod:`vtremote.errors` and a message that
states the fact and the limit, then the socket is shut down for writing and
drained briefly so the ERROR is not lost to a reset. A client that vanishes
stops the engine at once; nothing a session does can take the process down.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import socket
import threading
import time
from concurrent.futures import Executor
from typing import Protocol

import av

from vtremote.engines.base import Engine, StreamConfig
from vtremote.errors import (
    AuthenticationError,
    CapacityError,
    EngineError,
    LocalProtocolError,
    RemoteProtocolError,
    ShutdownError,
    TimeoutExpiredError,
    UnsupportedConfigError,
    VTRemoteError,
)
from vtremote.server.budget import (
    MemoryBudget,
    Reservation,
    estimate_session,
    give_back_memory,
    packet_limit,
)
from vtremote.server.config import ServerConfig
from vtremote.server.configure import (
    ConfigurePlan,
    configure_ack,
    log_configured,
    log_request,
    plan_configure,
)
from vtremote.server.faults import FaultHooks
from vtremote.server.hello import hello_ack, token_matches
from vtremote.server.logs import RATE_LIMITED, SessionLog, describe, log_client_gone
from vtremote.server.metrics import Metrics
from vtremote.server.planes import picture_from_wire
from vtremote.server.sockets import (
    LINGER_SECONDS,
    LINGER_UNAUTHENTICATED,
    ClientGone,
    close_gently,
    quickack,
    send_buffers,
    setup_socket,
)
from vtremote.server.stats import Closing, Stats, log_summary
from vtremote.server.timestamps import FrameInfo
from vtremote.server.window import RepeatedFrames
from vtremote.server.worker import (
    POLL_INTERVAL,
    QUEUE_DEPTH,
    AnswerPing,
    Drain,
    EncodeFrame,
    EngineWorker,
    FrameRepeated,
    PongRead,
    SourcePacket,
    WorkItem,
)
from vtremote.wire import messages
from vtremote.wire.connection import Connection, Role, State
from vtremote.wire.constants import (
    CODECS,
    HelloStatus,
    MessageType,
    PacketFlags,
    SideDataType,
)
from vtremote.wire.extensions import session_codec

logger = logging.getLogger(__name__)

#: Longest wait for the engine thread when the session ends (it checks between frames).
ENGINE_STOP_TIMEOUT = 30.0
#: After DONE: longest wait for the client to close before our FIN (see sockets.close_gently).
POST_DONE_WAIT = 10.0


class SessionHost(Protocol):
    """What a session needs from the server (server/state.py)."""

    @property
    def config(self) -> ServerConfig: ...

    @property
    def shutting_down(self) -> bool: ...

    @property
    def force_close(self) -> bool: ...

    @property
    def pool(self) -> Executor: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def faults(self) -> FaultHooks | None:
        """Test hooks (server/faults.py); None in production."""

    @property
    def budget(self) -> MemoryBudget:
        """The memory budget sessions reserve their share of at CONFIGURE (server/budget.py)."""

    def acquire_slot(self) -> tuple[bool, int]: ...

    def release_slot(self) -> None: ...

    def engine_label(self, codec: str) -> str: ...

    # Admission (server/state.py, server/admission.py).
    def check_handshake(self, session: Session) -> None:
        """Raise if the connection must go before its HELLO (deadline passed, evicted)."""

    def throttle_hello(self, session: Session) -> None:
        """Before the token is checked: wait while the source is slowed down; raise if blocked."""

    def auth_failed(self, session: Session) -> None:
        """A wrong token: count it against the source address."""

    def authenticated(self, session: Session) -> None:
        """HELLO accepted: the connection stops counting as unauthenticated."""


#: States before CONFIGURE_ACK: a draining server refuses these sessions at once.
_HANDSHAKE = (
    State.START,
    State.HELLO,
    State.READY,
    State.CONFIGURING_ENCODE,
    State.CONFIGURING_DECODE,
    State.CONFIGURING_TRANSCODE,
)

#: Errors a client can cause: a warning, not an error, in the log.
_CLIENT_FAULTS = (
    RemoteProtocolError,
    TimeoutExpiredError,
    ShutdownError,
    AuthenticationError,
    CapacityError,
    UnsupportedConfigError,
)


class Session:
    """Serves one connection from HELLO to DONE (or ERROR). Call :meth:`run` in its own thread."""

    def __init__(self, sock: socket.socket, peer: str, host: SessionHost) -> None:
        self.id = secrets.token_hex(2)
        self.log = SessionLog(logger, {"id": self.id})
        self.sock = sock
        self.peer = peer
        self.host = host
        self.cfg = host.config
        self.conn = Connection(Role.SERVER, self.cfg.limits)
        self.stats = Stats()
        self.codec = ""
        self.client_name = ""
        #: What CONFIGURE asked for (None until then).
        self.plan: ConfigurePlan | None = None

        self._state_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._aborted = threading.Event()
        self._abort_error: BaseException | None = None
        self._finished = threading.Event()  # DONE sent
        self._worker: EngineWorker | None = None
        #: This session's share of the memory budget (taken at CONFIGURE).
        self._reservation: Reservation | None = None
        self._last_rx = time.monotonic()
        self._eof = False
        self._slot = False
        self._flushing = False
        self._authenticated = False
        #: The client negotiated none of our extensions (until CONFIGURE says otherwise).
        self._plain_client = True
        #: A plain client's encode session: FRAMEs it sends twice (server/window.py).
        self._repeats: RepeatedFrames | None = None
        #: That client is probed with PING (server/window.py): its PONGs go to the worker.
        self._awaits_pong = False

    @property
    def stream(self) -> StreamConfig | None:
        """The stream as CONFIGURE set it up (None before)."""
        return self.plan.stream if self.plan is not None else None

    # ==== lifecycle ==========================================================================

    def run(self) -> None:
        """Serve the connection; never raises."""
        outcome = "closed"
        try:
            setup_socket(self.sock, POLL_INTERVAL)
            self.log.info("open from %s", self.peer, extra=RATE_LIMITED)
            self._serve()
            outcome = "done"
        except ClientGone as e:
            outcome = "client gone"
            self._stop(e)
            streaming = self.stream is not None and not self._finished.is_set()
            log_client_gone(self.log, e, streaming=streaming, has_data=self.stats.has_data())
        except VTRemoteError as e:
            outcome = f"error {int(e.code)}"
            self._stop(e)
            self._report(e)
        except Exception as e:  # a bug must cost one session, never the server
            outcome = "internal error"
            self.log.exception("internal error")
            err = VTRemoteError(f"internal server error: {type(e).__name__}: {e}")
            self._stop(err)
            self._report(err)
        finally:
            self._teardown(outcome)

    def _stop(self, error: BaseException) -> None:
        """The connection thread ends the session: the engine worker stops too."""
        self.abort(error)
        if self._worker is not None:
            self._worker.stop()

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

    def _teardown(self, outcome: str) -> None:
        worker = self._worker
        stopped = True
        if worker is not None:
            worker.stop()
            stopped = worker.join(timeout=ENGINE_STOP_TIMEOUT)
            if stopped and outcome not in ("done",):
                self.log.info("engine %s closed", worker.engine.name)
            self.stats.output = worker.stats
        reservation, self._reservation = self._reservation, None
        self.host.budget.session_ended(
            reservation, worker, stopped=stopped, log=self.log, waited=ENGINE_STOP_TIMEOUT
        )
        # The error's traceback holds this session's frames (and it, them): let both go now.
        self._abort_error = None
        if self._slot:
            self._slot = False
            self.host.release_slot()
        if self.plan is not None:
            self._log_summary(outcome)
        after_done = outcome == "done"
        close_gently(
            self.sock,
            wait_for_client=min(self.cfg.idle_timeout, POST_DONE_WAIT) if after_done else 0.0,
            linger=LINGER_SECONDS if self._authenticated else LINGER_UNAUTHENTICATED,
            stop=lambda: self.host.shutting_down,
        )
        give_back_memory()  # what the connection side freed: its buffers, the last FRAMEs

    def _log_summary(self, outcome: str) -> None:
        plan = self.plan
        assert plan is not None
        # The transcode stage was the engine worker's; it has stopped (_teardown).
        closing = Closing(
            mode=plan.mode,
            client_name=self.client_name,
            outcome=outcome,
            bytes_in=self.conn.bytes_received,
            bytes_out=self.conn.bytes_sent,
            transcode=plan.transcode.summary() if plan.transcode is not None else "",
        )
        log_summary(self.log, self.stats, closing)
        out = self.stats.output
        pictures = {"encode": self.stats.frames_in, "decode": out.frames_out}
        self.host.metrics.speed.record(pictures.get(plan.mode, out.packets_out), out.busy)

    # ==== the worker's outbox (any thread) =====================================================

    def send(self, message: messages.Message) -> None:
        """Send one message: state check and bytes in the same order."""
        with self._write_lock:
            with self._state_lock:
                bufs = self.conn.send(message)
            if self.log.isEnabledFor(logging.DEBUG):
                self.log.debug("-> %s", describe(message))
            send_buffers(self.sock, bufs, self._send_stalled)
        if isinstance(message, messages.Done):
            self._finished.set()

    def abort(self, error: BaseException) -> None:
        """End the session with ``error`` (the first one wins); the reader raises it."""
        if self._abort_error is None:
            self._abort_error = error
        self._aborted.set()

    def bytes_received(self) -> int:
        return self.conn.bytes_received

    def _send_stalled(self, last_progress: float) -> None:
        """A send made no progress for a while: give up if it will never finish."""
        if self._aborted.is_set() and isinstance(self._abort_error, ClientGone):
            raise ClientGone("session aborted while sending")
        if time.monotonic() - last_progress > self.cfg.idle_timeout:
            raise ClientGone(f"client has not read for {self.cfg.idle_timeout:g} s (idle timeout)")
        if self.host.force_close:
            raise ClientGone("server shutting down while the client is not reading")

    def _report(self, err: VTRemoteError) -> None:
        """One ERROR with the error's code and text, if the connection still allows it."""
        code = int(err.code)
        text = str(err) or type(err).__name__
        self.host.metrics.error(code)
        if not self._authenticated:  # anyone can cause these: rate limited (server/logs.py)
            self.log.warning("ERROR %d to client %s: %s", code, self.peer, text, extra=RATE_LIMITED)
        elif isinstance(err, _CLIENT_FAULTS):
            self.log.warning("ERROR %d to client: %s", code, text)
        else:
            self.log.error("ERROR %d to client: %s", code, text)
        try:
            with self._write_lock:
                with self._state_lock:
                    bufs = self.conn.send_error(code, text[:4096])
                if bufs is not None:
                    send_buffers(self.sock, bufs, self._send_stalled)
        except (ClientGone, LocalProtocolError, OSError) as e:
            self.log.debug("could not send ERROR: %s", e)

    # ==== reading ============================================================================

    def _check_interrupts(self) -> None:
        if self._aborted.is_set():
            err = self._abort_error
            if isinstance(err, BaseException):
                raise err
            raise ClientGone("session aborted")
        if self.host.force_close or (self.host.shutting_down and self.conn.state in _HANDSHAKE):
            raise ShutdownError("server shutting down")

    def _check_idle(self) -> None:
        now = time.monotonic()
        worker_idle = self._worker.idle_since() if self._worker is not None else self.stats.started
        if worker_idle is None:
            return  # the client is waiting for us, not the other way round
        idle = now - max(self._last_rx, worker_idle)
        if idle >= self.cfg.idle_timeout:
            raise TimeoutExpiredError(
                f"no message from the client for {idle:.1f} s "
                f"(idle timeout {self.cfg.idle_timeout:g} s)"
            )

    def _read(self) -> messages.Message | None:
        """The next message from the client; None once the session is finished (DONE sent)."""
        while True:
            try:
                with self._state_lock:
                    msg = self.conn.next_event()
            except RemoteProtocolError:
                if self._finished.is_set():
                    # Bytes after DONE (e.g. a repeated FLUSH) are never read (VTR1.md §6.1).
                    return None
                raise
            if msg is not None:
                self._last_rx = time.monotonic()
                if self.log.isEnabledFor(logging.DEBUG):
                    self.log.debug("<- %s", describe(msg))
                return msg
            if self._finished.is_set() or self.conn.state is State.DONE:
                return None
            self._check_interrupts()
            if self.conn.state is State.START:
                self.host.check_handshake(self)
            if self._eof:
                raise ClientGone("connection closed by the client")
            self._receive()

    def _receive(self) -> None:
        """One ``recv_into`` the connection's buffer (or a timeout: the idle check)."""
        buf = self.conn.get_buffer()
        try:
            n = self.sock.recv_into(buf)
        except TimeoutError:
            self._check_idle()
            return
        except OSError as e:
            raise ClientGone(f"receive failed: {e}") from e
        if n == 0:
            self._eof = True
            self.conn.receive_eof()  # next_event raises if EOF cut a message
            return
        if self._plain_client:  # ours sends whole messages with TCP_NODELAY: no ACK to hurry
            quickack(self.sock)
        self.conn.buffer_updated(n)

    # ==== handshake ==========================================================================

    def _hello_ack(self, status: HelloStatus, active: int) -> messages.HelloAck:
        label = self.host.engine_label(self.codec if self.codec in CODECS else "h264")
        return hello_ack(self.cfg, status, active, label, self.host.metrics.speed.fps)

    def _on_hello(self, hello: messages.Hello) -> None:
        self.client_name = hello.client_name
        self.codec = hello.codec
        self.host.throttle_hello(self)
        if not token_matches(hello, self.cfg.token):
            self.log.warning(
                "HELLO authfail from %s codec=%s peer=%s",
                hello.client_name,
                hello.codec,
                self.peer,
                extra=RATE_LIMITED,
            )
            self.host.auth_failed(self)
            self.send(self._hello_ack(HelloStatus.AUTH_FAILED, 0))
            raise AuthenticationError("authentication failed")
        if hello.codec not in CODECS:
            raise UnsupportedConfigError(
                f"unsupported codec {hello.codec!r} in HELLO; "
                f"this server handles {', '.join(CODECS)}"
            )
        ok, active = self.host.acquire_slot()
        if not ok:
            self.host.metrics.refused.labels("busy").inc()
            self.send(self._hello_ack(HelloStatus.BUSY, active))
            raise CapacityError(f"server busy: {active} of {self.cfg.max_sessions} sessions in use")
        self._slot = True
        self._authenticated = True
        self.host.authenticated(self)
        self.send(self._hello_ack(HelloStatus.OK, active))
        self.log.info(
            "HELLO ok client=%s build=%s codec=%s", hello.client_name, hello.build, hello.codec
        )

    def _on_configure(self, msg: messages.Configure) -> None:
        """Plan the session (configure.py), open an engine in a worker, answer CONFIGURE_ACK."""
        # ext:codecs: a HELLO names a v1 codec; CONFIGURE may ask for another one (AV1).
        self.codec = session_codec(self.codec, msg.option_map(), self.cfg.extensions)
        log_request(self.log, msg, self.codec)
        plan = plan_configure(msg, codec=self.codec, client_name=self.client_name, config=self.cfg)
        self.plan = plan
        self._reserve_memory(plan)
        self._plain_client = plan.plain_client
        if plan.watch_window:
            self._repeats = RepeatedFrames()
            self._awaits_pong = plan.probed
        engine, extradata = self._start_worker(plan)
        ack = configure_ack(plan, engine, extradata, self.log)
        self.send(ack)
        log_configured(plan, engine, ack, self.log)

    def _reserve_memory(self, plan: ConfigurePlan) -> None:
        """Take the session's share of the memory budget before anything is opened (or
        refuse the session), and bound its PACKETs by its geometry (server/budget.py)."""
        self._reservation = self.host.budget.reserve(
            estimate_session(plan, QUEUE_DEPTH, self.cfg.limits)
        )
        with self._state_lock:
            receiver = self.conn.receiver
            receiver.limits = dataclasses.replace(
                receiver.limits, packet=packet_limit(plan, self.cfg.limits)
            )

    def _start_worker(self, plan: ConfigurePlan) -> tuple[Engine, bytes]:
        """Start a worker with the first candidate engine that opens; that engine (from now
        on the worker's: only its fixed facts are read here) and its extradata."""
        candidates = plan.candidates()
        for i, engine_cls in enumerate(candidates):
            engine = engine_cls()
            worker = EngineWorker(
                engine,
                plan,
                self,
                self.host.pool,
                self.host.metrics.latency.observe,
                self.log,
                name=f"vtremoted-engine-{self.id}",
            )
            self._worker = worker
            try:
                return engine, worker.start()
            except EngineError as e:
                if i + 1 == len(candidates):
                    raise
                # Only under --engine auto: a device that probed fine may still refuse this
                # configuration (10-bit, size); the next engine in the auto order takes it.
                self.log.warning(
                    "engine %s cannot serve %s: %s; trying %s",
                    engine.name,
                    plan.stream.describe(),
                    e,
                    candidates[i + 1].name,
                )
        raise EngineError(f"no engine can serve {plan.stream.describe()}")

    # ==== streaming ==========================================================================

    def _stream_loop(self) -> None:
        faults = self.host.faults
        while True:
            msg = self._read()
            if msg is None:
                return  # DONE sent
            kind = messages.message_type(msg)
            if faults is not None:  # test-only crashes and throttles (server/faults.py)
                faults.on_message(self.id, kind)
            if isinstance(msg, messages.Frame):
                self._on_frame(msg)
            elif isinstance(msg, messages.Packet):
                self._on_packet(msg)
            elif kind == MessageType.FLUSH:
                if not self._flushing:  # the reference encoder may repeat FLUSH (VTR1.md §6.1)
                    self._flushing = True
                    self._enqueue(Drain())
            elif kind == MessageType.PING:
                self._enqueue(AnswerPing())  # answered in order, after earlier output
            elif kind == MessageType.PONG and self._awaits_pong:
                self._enqueue(PongRead(self._last_rx, self.conn.bytes_received))
            # Other PONGs and unknown types are read and ignored (VTR1.md §1.4 step 7).

    def _enqueue(self, item: WorkItem) -> None:
        worker = self._worker
        assert worker is not None
        while True:
            self._check_interrupts()
            if worker.put(item, timeout=POLL_INTERVAL):
                return

    def _on_frame(self, msg: messages.Frame) -> None:
        plan = self.plan
        assert plan is not None
        if self._repeats is not None and self._repeats.is_copy(msg):
            # The reference re-sends the frame that filled its window (VTR1.md §10.1):
            # encoded once; the engine worker decides whether the copy needs an answer.
            self.stats.frames_resent += 1
            self._enqueue(FrameRepeated(time.monotonic()))
            self.log.debug("FRAME pts=%d sent again by the client; encoded once", msg.pts)
            return
        frame = picture_from_wire(msg, plan.stream, plan.compression, self.host.pool)
        captions = b""
        if plan.captions and msg.side_data:
            captions = b"".join(
                bytes(sd.data) for sd in msg.side_data if sd.type == SideDataType.A53_CC
            )
        self.stats.frames_in += 1
        self._enqueue(
            EncodeFrame(frame, FrameInfo(msg.pts, msg.duration, time.monotonic(), captions))
        )

    def _on_packet(self, msg: messages.Packet) -> None:
        # The one copy: into the AVPacket (PyAV's stubs take a buffer from 18.1 on).
        pkt = av.Packet(msg.data)  # type: ignore[arg-type,unused-ignore]
        pkt.pts = msg.pts
        pkt.dts = msg.dts
        pkt.is_keyframe = bool(msg.flags & PacketFlags.KEYFRAME)
        if msg.duration > 0:
            pkt.duration = msg.duration
        self.stats.packets_in += 1
        self._enqueue(SourcePacket(pkt))


__all__ = ["Session", "SessionHost"]
