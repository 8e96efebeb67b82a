"""What :class:`RemoteEncoder` and :class:`RemoteDecoder` share: handshake, receiver thread, window.

One session = one TCP connection = one codec on the server (VTR1.md §0). The
caller's thread sends (FRAMEs or PACKETs); a receiver thread reads everything
the server sends, turns PACKET/FRAME messages into PyAV objects and queues them.
The caller never blocks on the socket to read, so a server that writes while we
write cannot deadlock us (VTR1.md §13.30), and results are picked up as they
arrive instead of one per call (§10.1).

The queue is bounded by the in-flight window: the caller sends at most
``inflight`` un-answered messages, so at most that many results (plus the codec's
own delay) can be waiting. Every wait of the caller has a deadline that restarts
whenever anything arrives ("no progress for ``timeout`` seconds").

The end of the stream follows VTR1.md §10.2 the correct way round: FLUSH is sent
exactly once, results are read until DONE, and every queued result is returned
before the end is reported.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any, Generic, Self, TypeVar

from vtremote.client.options import ConnectionOptions, client_hello
from vtremote.client.stats import SessionStats, describe_session
from vtremote.client.transport import Transport, auto_compression
from vtremote.errors import (
    ConfigError,
    ConnectionLostError,
    LocalProtocolError,
    TimeoutExpiredError,
    UnsupportedConfigError,
    VTRemoteError,
)
from vtremote.wire import extensions as ext
from vtremote.wire import messages as m
from vtremote.wire.constants import ALL_CODECS, EXTENSION_CODECS
from vtremote.wire.framing import MAX_DIMENSION

log = logging.getLogger(__name__)

T = TypeVar("T")

#: PING interval when the server did not announce ext:keepalive: well inside the 10 s
#: after which the reference daemon drops a silent session (VTR1.md §6.4).
V1_KEEPALIVE_S = 3.0
#: With messages in flight and no reply for this fraction of the timeout, a PING asks the
#: server whether it is alive; no PONG or result within the whole timeout: it stalled.
STALL_PING_FRACTION = 1 / 3

#: v1's codecs and the extension codecs (AV1), which need a server announcing ext:codecs.
CODECS = ALL_CODECS


def check_size(width: int, height: int) -> None:
    """The picture size a session may configure (the wire layer's FRAME limits, framing.py)."""
    if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION):
        raise ConfigError(
            f"frame size {width}x{height} is outside 1x1..{MAX_DIMENSION}x{MAX_DIMENSION}"
        )


def to_fraction(value: Fraction | int | str | tuple[int, int] | None, what: str) -> Fraction | None:
    """A time base / frame rate given as Fraction, int, "num/den" or (num, den)."""
    if value is None:
        return None
    try:
        if isinstance(value, tuple):
            return Fraction(value[0], value[1])
        return Fraction(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise ConfigError(f"{what} {value!r} is not a fraction like 1/30") from None


class RemoteSession(Generic[T]):
    """Base of the client objects. Not used directly.

    Subclasses build the CONFIGURE, call :meth:`_open`, and implement
    :meth:`_on_result` to turn a PACKET or FRAME message into a result.
    """

    _kind = "session"
    #: Decoders say whether PACKETs are pipelined; every other session always is.
    pipelined = True

    def __init__(self, address: str | Transport, codec: str, connection: ConnectionOptions) -> None:
        if codec not in CODECS:
            raise ConfigError(f"codec {codec!r} is not one of {', '.join(CODECS)}")
        #: The connection settings this session was opened with.
        self.connection = connection
        self.codec = codec
        self.inflight = connection.window
        self.timeout = connection.timeout
        self._t0 = time.monotonic()
        self._t_end: float | None = None
        self._cond = threading.Condition()
        self._ready: deque[T] = deque()
        self._error: BaseException | None = None
        self._done = False  # DONE received
        self._flushed = False  # FLUSH sent
        self._closed = False
        self._progress = 0  # messages received; waits restart their deadline on change
        self._pongs = 0
        self._last_receive = time.monotonic()  # receiver thread: when a message last came
        self._stall_ping = 0.0  # receiver thread: when it last asked a silent server
        #: PING ordinals sent behind PACKETs not yet answered (decoder, transcoder).
        self._unacked: deque[int] = deque()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._stats = SessionStats()

        self._transport = (
            address
            if isinstance(address, Transport)
            else Transport.connect(address, timeout=self.timeout, tls=connection.tls)
        )
        try:
            hello = client_hello(connection.hello_token(), ext.hello_codec(codec))
            self.hello_ack = self._transport.hello(hello)
            caps = self.hello_ack.capabilities
            if codec in EXTENSION_CODECS and codec not in ext.offered_codecs(caps):
                raise UnsupportedConfigError(
                    f"{self._transport.name} does not offer {codec} (its HELLO_ACK has no"
                    f" {ext.CAP_CODECS}={codec}: a v1 server or an older vtremoted)"
                )
            #: Extension capability names the server announced (VTR1.md §14; wire.extensions).
            self.extensions = ext.split_capabilities(caps)[1]
            self.engine = ext.capability_value(caps, ext.CAP_ENGINE_PREFIX.rstrip("=")) or ""
            announced = self._keepalive_interval(ext.capability_value(caps, ext.CAP_KEEPALIVE))
            #: The server announced ext:keepalive: say so in CONFIGURE (ext_keepalive=1).
            self._keepalive_negotiated = announced is not None
            # A v1 server answers PING once streaming but drops a session after 10 s without
            # a message (VTR1.md §6.3, §6.4, §13.13): a PING after a few idle seconds keeps a
            # stalled pipeline alive. PING is plain v1, no option needed.
            self._keepalive_s: float = V1_KEEPALIVE_S if announced is None else announced
            wanted = connection.wire_compression
            self.compression = (
                wanted if wanted is not None else auto_compression(self._transport.peer_is_loopback)
            )
        except BaseException:
            self._transport.close()
            raise

    @staticmethod
    def _keepalive_interval(value: str | None) -> float | None:
        """A third of the server's idle timeout (wire.extensions.CAP_KEEPALIVE)."""
        if value is None:
            return None
        try:
            ms = int(value)
        except ValueError:
            log.warning("ignoring malformed keepalive capability %r", value)
            return None
        return max(ms, 300) / 3000.0

    # -- public ----------------------------------------------------------------------------

    @property
    def server(self) -> str:
        """``host:port`` of the server, as every error message names it."""
        return self._transport.name

    @property
    def server_name(self) -> str:
        return self.hello_ack.server_name

    @property
    def server_version(self) -> str:
        return self.hello_ack.server_version

    @property
    def stats(self) -> SessionStats:
        """Counters of this session, wire bytes and elapsed time as of now."""
        self._stats.bytes_sent = self._transport.bytes_sent
        self._stats.bytes_received = self._transport.bytes_received
        self._stats.elapsed = (self._t_end or time.monotonic()) - self._t0
        return self._stats

    @property
    def keepalive(self) -> bool:
        """True when the server announced ``ext:keepalive`` (its idle timeout sets the PING
        interval). Otherwise PING still goes out after ``V1_KEEPALIVE_S`` idle seconds."""
        return self._keepalive_negotiated

    @property
    def failovers(self) -> int:
        """A one-server session never moves (:class:`SessionReport`)."""
        return 0

    @property
    def fell_back(self) -> bool:
        return False

    def describe(self) -> dict[str, Any]:
        """This session's ``remote_sessions`` entry of ``--json`` (:class:`SessionReport`)."""
        return describe_session(self._kind, self, self.stats, self.pipelined)

    def close(self) -> None:
        """End the session. Without a completed :meth:`flush` the server just sees EOF."""
        if self._closed:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._transport.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._stop_clock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Last resort for an object never closed: do not leave a socket and a thread behind.
        if getattr(self, "_transport", None) is not None and not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):  # interpreter shutdown: nobody to report to
                self._transport.close()

    # -- for subclasses --------------------------------------------------------------------

    def _extension_options(self) -> list[tuple[str, str]]:
        """Option keys of our extensions, each only when the server announced it."""
        opts: list[tuple[str, str]] = []
        if self.codec in EXTENSION_CODECS:  # offered in HELLO_ACK, checked on connecting
            opts.append((ext.OPT_CODEC, self.codec))
        if self._keepalive_negotiated:
            opts.append((ext.OPT_KEEPALIVE, "1"))
        if self._kind == "encode" and ext.CAP_WINDOW in self.extensions:
            # We stop sending FRAMEs while `inflight` are unanswered: the server must
            # not hold that many back, or a small window waits for nothing.
            opts.append((ext.OPT_WINDOW, str(self.inflight)))
        return opts

    def _configure(
        self,
        size: tuple[int, int],
        pix_fmt: int,
        time_base: Fraction | None,
        framerate: Fraction | None,
        options: list[tuple[str, str]],
        extradata: bytes = b"",
    ) -> m.ConfigureAck:
        """Send the CONFIGURE of this session (0/1 for an unknown rate or time base, as the
        reference sends, VTR1.md §3.2); ``options`` become :attr:`options`."""
        self.options = options
        tb = time_base or Fraction(0, 1)
        fr = framerate or Fraction(0, 1)
        return self._open(
            m.Configure(
                size[0],
                size[1],
                pix_fmt,
                tb.numerator,
                tb.denominator,
                fr.numerator,
                fr.denominator,
                tuple(options),
                extradata,
            )
        )

    @contextlib.contextmanager
    def _closed_on_error(self) -> Iterator[None]:
        """Close the session when set-up fails after the connection was made."""
        try:
            yield
        except BaseException:
            self.close()
            raise

    def _log_opened(self, description: str, *args: object) -> None:
        """The INFO line of a configured session: who serves it, then ``description``."""
        logging.getLogger(type(self).__module__).info(
            "%s session with %s (%s %s, engine %s): " + description,
            self._kind,
            self.server,
            self.server_name or "v1 server",
            self.server_version,
            self.engine or "?",
            *args,
        )

    def _open(self, configure: m.Configure) -> m.ConfigureAck:
        """Send CONFIGURE, wait for the ACK, start the receiver thread."""
        try:
            ack = self._transport.configure(configure)
        except BaseException:
            self._transport.close()
            self._closed = True
            raise
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"vtremote-{self._kind}-planes"
        )
        self._thread = threading.Thread(
            target=self._run, name=f"vtremote-{self._kind}-recv {self.server}", daemon=True
        )
        self._thread.start()
        return ack

    def _on_result(self, msg: m.Message) -> T | None:
        """Turn a PACKET/FRAME into a result (receiver thread). None: not a result."""
        raise NotImplementedError

    def _count_result(self) -> None:
        """Update counters for one queued result (called with the lock held)."""

    def _send(self, *msgs: m.Message) -> int:
        self._check_usable()
        try:
            return self._transport.send(*msgs)
        except VTRemoteError:
            # A broken pipe often hides the reason the server gave just before closing.
            self._raise_pending(grace=0.2)
            raise

    def _check_usable(self) -> None:
        if self._closed:
            raise LocalProtocolError(f"the {self._kind} session with {self.server} is closed")
        if self._error is not None:
            raise self._error

    def _raise_pending(self, grace: float) -> None:
        """Give the receiver thread ``grace`` s to report why the server went away."""
        with self._cond:
            if self._error is None:
                self._cond.wait(grace)
            if self._error is not None and not isinstance(self._error, ConnectionLostError):
                raise self._error

    # -- PACKETs answered by the PONG of a PING behind each (decoder, transcoder) --------

    def _acknowledge(self) -> None:
        """Forget the PACKETs whose PING the server has answered (lock held)."""
        while self._unacked and self._unacked[0] <= self._pongs:
            self._unacked.popleft()

    def _unanswered(self) -> int:
        """PACKETs sent that the server has not answered yet (lock held)."""
        self._acknowledge()
        return len(self._unacked)

    def _send_answered(
        self, msg: m.Packet, window: int, leaving: Callable[[], None], left: Callable[[], None]
    ) -> None:
        """Send ``msg`` with a PING behind it once fewer than ``window`` such PACKETs are
        unanswered; the PING's PONG answers it. ``leaving()`` runs (lock held) just before
        it leaves, ``left()`` (lock held) once it is counted as in flight."""
        self._wait(
            lambda: self._unanswered() < window,
            lambda: f"{len(self._unacked)} packets were unanswered (window {window})",
        )
        with self._cond:
            # Count this packet as in flight at the moment it leaves: its PONG may be
            # handled by the receiver thread before this thread records it below.
            self._stats.max_inflight = max(self._stats.max_inflight, self._unanswered() + 1)
            leaving()
        ordinal = self._send(msg, m.Ping())
        with self._cond:
            if ordinal > self._pongs:
                self._unacked.append(ordinal)
            left()

    def _take(self) -> list[T]:
        """Every result queued so far (caller's thread)."""
        with self._cond:
            out = list(self._ready)
            self._ready.clear()
        return out

    def _wait(self, predicate: Callable[[], bool], what: Callable[[], str]) -> None:
        """Block until ``predicate()`` (checked with the lock held) or fail.

        Fails with the receiver's error, with ConnectionLostError if the stream ended
        (DONE) without the predicate, or with TimeoutExpiredError after ``timeout``
        seconds without any message from the server.
        """
        with self._cond:
            seen = self._progress
            start = time.monotonic()
            partial = False
            while not predicate():
                if self._error is not None:
                    raise self._error
                if self._closed:
                    raise LocalProtocolError(
                        f"the {self._kind} session with {self.server} is closed"
                    )
                if self._done:
                    raise ConnectionLostError(
                        f"{self.server} ended the session (DONE) while {what()}"
                    )
                left = self.timeout - (time.monotonic() - start)
                if left <= 0 and self._transport.mid_message and not partial:
                    # A message is arriving: its own deadline (transport) ends it in time,
                    # and the receiver then reports what really stalled.
                    partial, start = True, time.monotonic()
                    continue
                if left <= 0:
                    raise TimeoutExpiredError(
                        f"no reply from {self.server} for {self.timeout:g} s while {what()}"
                    )
                self._cond.wait(left)
                if self._progress != seen:
                    seen, start = self._progress, time.monotonic()

    def _flush(self) -> list[T]:
        """Send FLUSH once, collect everything until DONE, return it all (VTR1.md §10.2)."""
        self._check_usable()
        if not self._flushed:
            self._flushed = True
            self._send(m.Flush())
        if not self._done:
            self._wait(lambda: self._done, lambda: "draining after FLUSH (waiting for DONE)")
        out = self._take()
        self._stop_clock()
        return out

    def _stop_clock(self) -> None:
        """Stop the session clock (DONE received or closed)."""
        if self._t_end is None and (self._done or self._closed):
            self._t_end = time.monotonic()

    # -- receiver thread -------------------------------------------------------------------

    def _awaiting(self) -> int:
        """Messages sent that the server has yet to answer (lock held); see the encoder."""
        return self._unanswered()

    def _run(self) -> None:
        tick = min(self._keepalive_s, self.timeout * STALL_PING_FRACTION)
        try:
            while True:
                try:
                    msg = self._transport.receive(timeout=tick)
                except TimeoutExpiredError:
                    if self._closed:
                        return
                    if self._transport.mid_message:
                        raise  # a message begun and not finished in time: not idleness
                    self._idle_tick()
                    continue
                self._last_receive = time.monotonic()
                if isinstance(msg, m.Ping):
                    self._transport.send(m.Pong())  # VTR1.md §6.3: both sides answer PING
                elif isinstance(msg, m.Error):
                    raise self._transport.remote_error(msg)
                elif isinstance(msg, m.Done):
                    with self._cond:
                        self._done = True
                        self._progress += 1
                        self._cond.notify_all()
                    return  # the server closes after DONE (VTR1.md §6.1)
                elif isinstance(msg, m.Pong):
                    with self._cond:
                        self._pongs += 1
                        self._progress += 1
                        self._cond.notify_all()
                else:
                    result = self._on_result(msg)
                    with self._cond:
                        self._progress += 1
                        if result is not None:
                            self._ready.append(result)
                            self._count_result()
                        self._cond.notify_all()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, not swallowed
            if isinstance(e, VTRemoteError) and self.server not in str(e):
                e.args = (
                    f"{e.args[0] if e.args else type(e).__name__} (from {self.server})",
                    *e.args[1:],
                )
            with self._cond:
                if not self._closed and self._error is None:
                    if isinstance(e, ConnectionLostError) and not self._done:
                        e = ConnectionLostError(
                            f"{self.server} closed the connection before DONE "
                            f"({self._stats.frames} frames, {self._stats.packets} packets so far)"
                        )
                    self._error = e
                self._cond.notify_all()

    def _idle_tick(self) -> None:
        """No message for a tick: find a stalled server while the window is open (the
        caller is not waiting, so no wait of its own would notice), then keep alive."""
        with self._cond:
            awaiting = 0 if self._flushed or self._closed else self._awaiting()
        now = time.monotonic()
        silent = now - self._last_receive
        if awaiting and silent >= self.timeout:
            asked = f" (a PING {now - self._stall_ping:.1f} s ago went unanswered)"
            raise TimeoutExpiredError(
                f"no reply from {self.server} for {silent:.1f} s with {awaiting} message(s)"
                f" in flight: the server stalled{asked if self._stall_ping else ''}"
            )
        if (
            awaiting
            and silent >= self.timeout * STALL_PING_FRACTION
            and self._stall_ping < self._last_receive
        ):
            log.debug("%s silent for %.1f s with %d in flight: PING", self.server, silent, awaiting)
            self._stall_ping = now
            self._transport.send(m.Ping())
            return
        self._keepalive_tick()

    def _keepalive_tick(self) -> None:
        # Never after FLUSH: a v1 server stops reading at FLUSH and unread bytes can turn
        # its close into a reset (§13.10).
        if self._flushed or self._closed:
            return
        if time.monotonic() - self._transport.last_send >= self._keepalive_s:
            log.debug("%s idle for %.1f s: PING", self.server, self._keepalive_s)
            self._transport.send(m.Ping())
