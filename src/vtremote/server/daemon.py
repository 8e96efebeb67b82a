"""The server: listening socket, accept loop, session slots, graceful shutdown.

Lifecycle like uvicorn's (STYLE.md §7)::

    server = Server(ServerConfig(listen="127.0.0.1:0"))
    server.start()                 # binds, accepts in a background thread, returns
    host, port = server.address
    ...
    server.shutdown(timeout=10.0)  # stop accepting, drain sessions, join threads

or ``with Server(cfg) as server: ...``; the CLI calls :meth:`Server.serve_forever`
and :meth:`Server.request_shutdown` from its signal handlers.

Shutdown drains: the listener closes at once (new clients are refused),
sessions still in their handshake get ERROR 7, streaming sessions may finish
until the timeout, after which they get ERROR 7 too and are closed.

Admission (server/admission.py): every accepted connection is *pending* until
its HELLO is accepted, bounded per source address and in total (the oldest of
the busiest source is evicted with a busy ERROR), and must send HELLO within
``handshake_timeout``. Wrong tokens slow their source down, then block it.
With TLS (server/tls.py) the session thread looks at the first byte: 0x16 is
a TLS handshake, anything else plain VTR1 (refused under ``require_tls``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import selectors
import socket
import ssl
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from types import TracebackType

from vtremote.engines import registry
from vtremote.engines.base import CODECS, MODES
from vtremote.errors import (
    AuthenticationError,
    CapacityError,
    EngineUnavailableError,
    TimeoutExpiredError,
    UnsupportedConfigError,
    VTRemoteError,
)
from vtremote.server import logs
from vtremote.server import tls as tlsmod
from vtremote.server.admission import Admission, AdmissionLimits, AuthGuard, AuthPolicy, Ticket
from vtremote.server.config import ServerConfig, parse_listen
from vtremote.server.engine_thread import POLL_INTERVAL
from vtremote.server.logs import RATE_LIMITED
from vtremote.server.metrics import Metrics, MetricsServer
from vtremote.server.session import Session
from vtremote.tlsutil import TLSSocket

log = logging.getLogger(__name__)

#: listen() backlog (the reference used 8).
BACKLOG = 64


def format_address(host: str, port: int) -> str:
    """``HOST:PORT``, with brackets around IPv6 addresses."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Server:
    """A VTR1 server: one thread per session, one engine per session."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self._config = config or ServerConfig()
        self._listener: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._wake_r: socket.socket | None = None  # wakes the accept loop on shutdown
        self._wake_w: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sessions: dict[threading.Thread, Session] = {}
        self._active = 0
        self._shutting_down = False
        self._force_close = False
        self._stop_requested = threading.Event()
        self._stopped = threading.Event()
        self._shutdown_lock = threading.Lock()
        self._once_served = False
        self._engine_labels: dict[str, str] = {}
        self._pool: ThreadPoolExecutor | None = None
        cfg = self._config
        self._admission = Admission(
            AdmissionLimits(
                cfg.handshake_timeout, cfg.max_handshakes, cfg.max_handshakes_per_source
            )
        )
        self._auth = AuthGuard(
            AuthPolicy(block_after=cfg.auth_block_after, block_seconds=cfg.auth_block_seconds)
        )
        self._tickets: dict[Session, Ticket] = {}
        self._refusals: dict[Session, VTRemoteError] = {}
        self._metrics = Metrics(lambda: self.active_sessions)
        self._metrics_server: MetricsServer | None = None
        self._ssl: ssl.SSLContext | None = None
        self._log_filter: logs.RateLimitFilter | None = None
        #: SHA-256 fingerprint of the TLS certificate ("" without TLS).
        self.tls_fingerprint = ""

    # -- SessionHost ----------------------------------------------------------------------------

    @property
    def config(self) -> ServerConfig:
        return self._config

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def force_close(self) -> bool:
        return self._force_close

    @property
    def pool(self) -> Executor:
        if self._pool is None:
            raise RuntimeError("server not started")
        return self._pool

    def acquire_slot(self) -> tuple[bool, int]:
        """Take a session slot; (False, active) when all ``max_sessions`` are in use."""
        with self._lock:
            limit = self._config.max_sessions
            if limit and self._active >= limit:
                return False, self._active
            self._active += 1
            return True, self._active

    def release_slot(self) -> None:
        with self._lock:
            self._active = max(0, self._active - 1)

    def engine_label(self, codec: str) -> str:
        """The engine name announced in HELLO_ACK for ``codec`` (ext:engine=...)."""
        return self._engine_labels.get(codec, self._config.engine_name)

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return self._metrics_server.address if self._metrics_server else None

    def check_handshake(self, session: Session) -> None:
        ticket = self._tickets.get(session)
        if ticket is None:
            return
        now = time.monotonic()
        refusal = self._refusals.pop(session, None)
        if refusal is not None:
            raise refusal
        if not ticket.screened:
            ticket.screened = True
            left = self._auth.blocked(ticket.source, now)
            if left > 0:
                self._metrics.refused.labels("auth_blocked").inc()
                raise AuthenticationError(
                    f"too many failed authentications from {ticket.source}: blocked for {left:.0f} s more"
                )
        if ticket.evicted is not None:
            raise CapacityError(f"server busy: {ticket.evicted}")
        if self._admission.expired(ticket, now):
            self._metrics.refused.labels("handshake_timeout").inc()
            raise TimeoutExpiredError(
                f"no complete HELLO within {self._config.handshake_timeout:g} s of connecting (handshake timeout)"
            )

    def throttle_hello(self, session: Session) -> None:
        ticket = self._tickets.get(session)
        if ticket is None:
            return
        now = time.monotonic()
        delay = self._auth.delay(ticket.source, now)
        deadline = now + delay
        while time.monotonic() < deadline:
            if ticket.evicted is not None:  # no answer: the guess stays unknown to the sender
                raise CapacityError(f"server busy: {ticket.evicted}")
            if self._shutting_down:
                break
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        left = self._auth.blocked(ticket.source, time.monotonic())
        if left > 0:
            self._metrics.refused.labels("auth_blocked").inc()
            raise AuthenticationError(
                f"too many failed authentications from {ticket.source}: blocked for {left:.0f} s more"
            )

    def auth_failed(self, session: Session) -> None:
        self._metrics.auth_failures.inc()
        self._metrics.refused.labels("auth_failed").inc()
        ticket = self._tickets.get(session)
        if ticket is None:
            return
        _, blocked = self._auth.failed(ticket.source, time.monotonic())
        if blocked:  # once per burst; the single failures are rate limited
            log.warning(
                "%d wrong tokens from %s: refusing it for %g s",
                self._auth.policy.block_after,
                ticket.source,
                self._auth.policy.block_seconds,
            )

    def authenticated(self, session: Session) -> None:
        ticket = self._tickets.get(session)
        if ticket is not None:
            self._admission.authenticated(ticket)
        self._metrics.sessions_total.inc()

    @property
    def pending_connections(self) -> int:
        """Connections not yet past HELLO."""
        return self._admission.pending

    @property
    def active_sessions(self) -> int:
        """Sessions past HELLO that hold a slot."""
        with self._lock:
            return self._active

    @property
    def connections(self) -> int:
        """Open connections (sessions in any phase)."""
        with self._lock:
            return len(self._sessions)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound; port 0 in the config becomes the real port."""
        if self._address is None:
            raise RuntimeError("server not started")
        return self._address

    def start(self) -> None:
        """Check the engine, bind, listen and accept in a background thread; returns at once."""
        if self._listener is not None:
            raise RuntimeError("server already started")
        self._select_engines()
        if self._config.tls_enabled:
            self._setup_tls()
        self._listener = self._bind()
        self._wake_r, self._wake_w = socket.socketpair()
        addr = self._listener.getsockname()
        self._address = (str(addr[0]), int(addr[1]))
        self._pool = ThreadPoolExecutor(
            max_workers=max(2, os.cpu_count() or 1), thread_name_prefix="vtremoted-planes"
        )
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="vtremoted-accept", daemon=True
        )
        self._log_filter = logs.install()
        if self._config.metrics:
            host, port = parse_listen(self._config.metrics)
            self._metrics_server = MetricsServer(self._metrics, host, port, self._health)
            self._metrics_server.start()
            log.info(
                "metrics on http://%s/metrics (health: /healthz)",
                format_address(*self._metrics_server.address),
            )
        self._accept_thread.start()
        cfg = self._config
        log.info(
            "listening on %s (max_sessions=%s, idle_timeout=%gs, auth=%s, tls=%s)",
            format_address(*self._address),
            cfg.max_sessions or "unlimited",
            cfg.idle_timeout,
            "token" if cfg.token else "off",
            ("required" if cfg.require_tls else "optional")
            + (", client certificates" if cfg.tls_client_ca else "")
            if cfg.tls_enabled
            else "off",
        )
        if not cfg.token and not _is_loopback(self._address[0]):
            log.warning(
                "no token: anyone who can reach %s can use this server (see --token-file)",
                format_address(*self._address),
            )

    def _setup_tls(self) -> None:
        cfg = self._config
        pair = tlsmod.load_or_create(cfg.tls_cert, cfg.tls_key, cfg.tls_state_dir or None)
        self._ssl = tlsmod.server_context(pair, cfg.tls_client_ca)
        self.tls_fingerprint = tlsmod.certificate_fingerprint(pair.cert)
        if pair.created:
            log.warning("TLS: made a self-signed certificate %s", pair.cert)
        log.info("TLS certificate %s SHA-256 fingerprint %s", pair.cert, self.tls_fingerprint)

    def _health(self) -> tuple[bool, dict[str, object]]:
        ok = not self._shutting_down
        return ok, {
            "status": "ok" if ok else "draining",
            "sessions_active": self.active_sessions,
            "max_sessions": self._config.max_sessions,
            "pending_connections": self._admission.pending,
        }

    def _select_engines(self) -> None:
        name = self._config.engine_name
        if name != "auto":
            cls = registry.engine_class(name)
            results = {(c, m): cls.probe_error(c, m) for c in CODECS for m in MODES}
            if all(r is not None for r in results.values()):
                reasons = "; ".join(f"{c} {m}: {r}" for (c, m), r in results.items())
                raise EngineUnavailableError(f"engine {name} does not work here: {reasons}")
            for (c, m), reason in results.items():
                if reason is not None:
                    log.warning("engine %s cannot %s %s: %s", name, m, c, reason)
            self._engine_labels = dict.fromkeys(CODECS, name)
            log.info("engine %s (%s)", name, cls.description)
            return
        chosen: list[str] = []
        for codec in CODECS:
            for mode in MODES:
                try:
                    cls = registry.resolve("auto", codec, mode)
                except EngineUnavailableError as e:
                    log.warning("engine auto: nothing can %s %s here: %s", mode, codec, e)
                    continue
                chosen.append(f"{codec} {mode}={cls.name}")
                if mode == "encode":
                    self._engine_labels[codec] = cls.name
        if not chosen:
            raise EngineUnavailableError("engine auto: no engine works on this host")
        log.info("engine auto: %s", ", ".join(chosen))

    def _bind(self) -> socket.socket:
        host, port = self._config.host, self._config.port
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as e:
            raise OSError(f"cannot resolve listen host {host!r}: {e}") from e
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
                sock.listen(BACKLOG)
                sock.setblocking(False)
                return sock
            except OSError as e:
                sock.close()
                last = e
        raise OSError(f"cannot listen on {self._config.listen}: {last}")

    def _accept_loop(self) -> None:
        listener = self._listener
        wake = self._wake_r
        assert listener is not None and wake is not None
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ)
        sel.register(wake, selectors.EVENT_READ)
        try:
            while not self._shutting_down:
                if self._log_filter is not None:
                    self._log_filter.flush()
                for key, _ in sel.select(1.0):
                    if key.fileobj is wake:
                        return
                    try:
                        conn, addr = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        log.error("accept failed: %s", e)
                        time.sleep(0.1)  # e.g. EMFILE: do not spin
                        continue
                    self._spawn(conn, addr)
                    if self._config.once:
                        listener.close()  # --once: nobody else waits in the backlog for nothing
                        return
        finally:
            sel.close()

    def _spawn(self, conn: socket.socket, addr: tuple[object, ...]) -> None:
        conn.setblocking(True)
        source = str(addr[0])
        peer = format_address(source, int(str(addr[1])))
        if self._shutting_down:
            self._metrics.refused.labels("shutting_down").inc()
            conn.close()
            return
        # Never refused for lack of room: the oldest pending connection of the busiest
        # source makes way (admission.py), so a flooding host only displaces itself.
        ticket, evicted = self._admission.admit(source, time.monotonic())
        for victim in evicted:
            self._metrics.refused.labels("evicted").inc()
            log.warning(
                "closing a connection from %s: %s",
                victim.source,
                victim.evicted,
                extra=RATE_LIMITED,
            )
        with self._lock:
            session = Session(conn, peer, self)
            self._tickets[session] = ticket
            thread = threading.Thread(
                target=self._run_session,
                args=(session,),
                name=f"vtremoted-session-{session.id}",
                daemon=True,
            )
            self._sessions[thread] = session
        thread.start()

    def _run_session(self, session: Session) -> None:
        ticket = self._tickets[session]
        try:
            if self._ssl is not None and not self._start_tls(session, ticket):
                return
            session.run()
            if session.stream is not None:
                st = session.stats
                self._metrics.session_ended(
                    frames_in=st.frames_in,
                    packets_out=st.packets_out,
                    packets_in=st.packets_in,
                    frames_out=st.frames_out,
                    bytes_in=session.conn.bytes_received,
                    bytes_out=session.conn.bytes_sent,
                )
        finally:
            self._admission.release(ticket)
            with self._lock:
                self._sessions.pop(threading.current_thread(), None)
                self._tickets.pop(session, None)
                self._refusals.pop(session, None)
            if self._config.once:
                self._once_served = True
                self._stop_requested.set()

    def _start_tls(self, session: Session, ticket: Ticket) -> bool:
        """Tell TLS from plain by the first byte; wrap TLS. False: the connection is closed."""
        assert self._ssl is not None
        sock = session.sock
        deadline = ticket.accepted + self._config.handshake_timeout
        first = b""
        try:
            while not first:
                if ticket.evicted is not None or self._shutting_down:
                    raise TimeoutError("evicted")
                left = deadline - time.monotonic()
                if left <= 0:
                    self._metrics.refused.labels("handshake_timeout").inc()
                    raise TimeoutError("no data")
                sock.settimeout(min(left, POLL_INTERVAL))
                try:
                    first = sock.recv(1, socket.MSG_PEEK)
                except TimeoutError:
                    continue
                if not first:
                    raise ConnectionError("closed before sending anything")
            if not tlsmod.is_tls_hello(first):
                if self._config.require_tls:
                    self._metrics.refused.labels("tls_required").inc()
                    self._refusals[session] = UnsupportedConfigError(
                        "this server accepts TLS connections only: connect with TLS (-vt_remote_tls 1)"
                    )
                return True  # plain VTR1 (or the refusal, sent by the session as an ERROR)
            tls = TLSSocket.handshake(sock, self._ssl, server_side=True, deadline=deadline)
            session.sock = tls  # type: ignore[assignment]  # the socket API the session uses
            return True
        except (OSError, ssl.SSLError) as e:
            if isinstance(e, ssl.SSLError):
                self._metrics.refused.labels("tls_failed").inc()
            log.warning(
                "connection from %s closed before a session: %s",
                session.peer,
                e,
                extra=RATE_LIMITED,
            )
            with contextlib.suppress(OSError):
                sock.close()
            return False

    def request_shutdown(self) -> None:
        """Ask :meth:`serve_forever` to shut down (safe from a signal handler)."""
        self._stop_requested.set()

    def serve_forever(self) -> None:
        """Start if needed, block until :meth:`request_shutdown` (or the --once session ends),
        then shut down gracefully."""
        if self._listener is None:
            self.start()
        while not self._stop_requested.wait(0.5):
            pass
        self.shutdown(self._config.drain_timeout)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop accepting, let sessions finish for up to ``timeout`` s, then close the rest."""
        with self._shutdown_lock:
            if self._stopped.is_set():
                return
            self._shutting_down = True
            self._stop_requested.set()
            if self._wake_w is not None:
                with contextlib.suppress(OSError):
                    self._wake_w.send(b"x")
            if self._accept_thread is not None:
                self._accept_thread.join()
            if self._listener is not None:
                self._listener.close()
            with self._lock:
                threads = list(self._sessions)
            if threads:
                log.info(
                    "shutting down: waiting up to %gs for %d session(s)", timeout, len(threads)
                )
            deadline = time.monotonic() + timeout
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            with self._lock:
                left = [t for t in self._sessions if t.is_alive()]
            if left:
                log.warning("shutting down: closing %d session(s) still running", len(left))
                self._force_close = True
                for t in left:
                    t.join(5.0)
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            if self._metrics_server is not None:
                self._metrics_server.close()
            if self._log_filter is not None:
                self._log_filter.flush(final=True)
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._stopped.set()
            log.info("stopped")

    def __enter__(self) -> Server:
        if self._listener is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


__all__ = ["Server", "format_address"]
