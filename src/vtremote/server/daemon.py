"""The server: listening socket, accept loop, TLS, metrics, graceful shutdown.

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

Session slots, admission and the session registry are the server's state
(server/state.py, server/admission.py): every accepted connection is *pending*
until its HELLO is accepted, bounded per source address and in total (the oldest
of the busiest source is evicted with a busy ERROR), and must send HELLO within
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
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from vtremote.engines import registry
from vtremote.engines.base import CODECS, MODES
from vtremote.errors import (
    EngineUnavailableError,
    UnsupportedConfigError,
)
from vtremote.server import fdlimit, logs
from vtremote.server import tls as tlsmod
from vtremote.server.admission import Ticket
from vtremote.server.config import ServerConfig, parse_listen
from vtremote.server.faults import FaultHooks
from vtremote.server.logs import RATE_LIMITED
from vtremote.server.metrics import Metrics, MetricsServer
from vtremote.server.session import Session
from vtremote.server.state import ServerState
from vtremote.server.worker import POLL_INTERVAL
from vtremote.tlsutil import TLSSocket

log = logging.getLogger(__name__)

#: listen() backlog (the reference used 8).
BACKLOG = 64
#: Waits after a failed accept (e.g. EMFILE): the first, then doubling up to the last.
ACCEPT_BACKOFF_MIN = 0.05
ACCEPT_BACKOFF_MAX = 1.0


def format_address(host: str, port: int) -> str:
    """``HOST:PORT``, with brackets around IPv6 addresses."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Server:
    """A VTR1 server: one thread per session, one engine per session."""

    def __init__(
        self, config: ServerConfig | None = None, *, faults: FaultHooks | None = None
    ) -> None:
        """``faults``: test hooks (server/faults.py); never given in production."""
        self._config = config or ServerConfig()
        #: Slots, admission, the session registry: what sessions talk to (server/state.py).
        self.state = ServerState(self._config, faults)
        self._listener: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._wake_r: socket.socket | None = None  # wakes the accept loop on shutdown
        self._wake_w: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._stopped = threading.Event()
        self._shutdown_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._metrics_server: MetricsServer | None = None
        self._ssl: ssl.SSLContext | None = None
        self._log_filter: logs.RateLimitFilter | None = None
        #: SHA-256 fingerprint of the TLS certificate ("" without TLS).
        self.tls_fingerprint = ""

    @property
    def config(self) -> ServerConfig:
        return self._config

    @property
    def metrics(self) -> Metrics:
        return self.state.metrics

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return self._metrics_server.address if self._metrics_server else None

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
        self.state.pool = self._pool
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="vtremoted-accept", daemon=True
        )
        self._log_filter = logs.install()
        fdlimit.check(self._config)
        if self._config.metrics:
            host, port = parse_listen(self._config.metrics)
            self._metrics_server = MetricsServer(self.metrics, host, port, self._health)
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
        ok = not self.state.shutting_down
        return ok, {
            "status": "ok" if ok else "draining",
            "sessions_active": self.state.active_sessions,
            "max_sessions": self._config.max_sessions,
            "pending_connections": self.state.pending_connections,
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
            self.state.engine_labels = dict.fromkeys(CODECS, name)
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
                    self.state.engine_labels[codec] = cls.name
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
        backoff = 0.0  # after a failed accept (EMFILE...): wait, doubling up to ACCEPT_BACKOFF_MAX
        try:
            while not self.state.shutting_down:
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
                        backoff = min(ACCEPT_BACKOFF_MAX, max(ACCEPT_BACKOFF_MIN, 2 * backoff))
                        log.error(
                            "accept failed: %s; retrying in %g s", e, backoff, extra=RATE_LIMITED
                        )
                        self._stop_requested.wait(backoff)  # do not spin on a full fd table
                        continue
                    backoff = 0.0
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
        if self.state.shutting_down:
            self.metrics.refused.labels("shutting_down").inc()
            conn.close()
            return
        session = Session(conn, peer, self.state)
        ticket = self.state.admit(session, source)
        thread = threading.Thread(
            target=self._run_session,
            args=(session, ticket),
            name=f"vtremoted-session-{session.id}",
            daemon=True,
        )
        self.state.register(thread, session)
        thread.start()

    def _run_session(self, session: Session, ticket: Ticket) -> None:
        try:
            if self._ssl is not None and not self._start_tls(session, ticket):
                return
            session.run()
            if session.stream is not None:
                st = session.stats
                self.metrics.session_ended(
                    frames_in=st.frames_in,
                    packets_out=st.output.packets_out,
                    packets_in=st.packets_in,
                    frames_out=st.output.frames_out,
                    bytes_in=session.conn.bytes_received,
                    bytes_out=session.conn.bytes_sent,
                )
        finally:
            self.state.forget(threading.current_thread(), session)
            if self._config.once:
                self._stop_requested.set()

    def _start_tls(self, session: Session, ticket: Ticket) -> bool:
        """Tell TLS from plain by the first byte; wrap TLS. False: the connection is closed.

        All of it runs under the connection's admission ticket: the handshake deadline counts
        from accept, and an eviction shuts the socket at once (``Ticket.interrupt``), so a
        pending TLS handshake costs what a pending plain connection costs and no more.
        """
        assert self._ssl is not None
        sock = session.sock
        deadline = ticket.accepted + self._config.handshake_timeout
        ticket.interrupt = lambda: _shut(sock)
        try:
            first = self._first_byte(sock, ticket, deadline)
            if not tlsmod.is_tls_hello(first):
                if self._config.require_tls:
                    self.metrics.refused.labels("tls_required").inc()
                    self.state.refuse(
                        session,
                        UnsupportedConfigError(
                            "this server accepts TLS connections only: "
                            "connect with TLS (-vt_remote_tls 1)"
                        ),
                    )
                return True  # plain VTR1 (or the refusal, sent by the session as an ERROR)
            tls = TLSSocket.handshake(
                sock,
                self._ssl,
                server_side=True,
                deadline=deadline,
                poll=lambda: self._check_pending(ticket, deadline),
                poll_interval=POLL_INTERVAL,
            )
            session.sock = tls  # type: ignore[assignment]  # the socket API the session uses
            return True
        except (OSError, ssl.SSLError) as e:
            if isinstance(e, ssl.SSLError):
                self.metrics.refused.labels("tls_failed").inc()
            if ticket.evicted is None:  # an eviction was logged when it happened (state.py)
                # The peer hanging up is its own business; a failed or late handshake is ours.
                level = logging.DEBUG if isinstance(e, ConnectionError) else logging.WARNING
                log.log(
                    level,
                    "connection from %s closed before a session: %s",
                    session.peer,
                    e,
                    extra=RATE_LIMITED,
                )
            with contextlib.suppress(OSError):
                sock.close()
            return False
        finally:
            ticket.interrupt = None

    def _check_pending(self, ticket: Ticket, deadline: float) -> None:
        """Raise if a connection still before its session must go (evicted, late, shutdown)."""
        if ticket.evicted is not None or self.state.shutting_down:
            raise TimeoutError("evicted")
        if time.monotonic() >= deadline:
            self.metrics.refused.labels("handshake_timeout").inc()
            raise TimeoutError(
                f"no TLS handshake within {self._config.handshake_timeout:g} s of connecting"
            )

    def _first_byte(self, sock: socket.socket, ticket: Ticket, deadline: float) -> bytes:
        while True:
            self._check_pending(ticket, deadline)
            sock.settimeout(max(0.001, min(deadline - time.monotonic(), POLL_INTERVAL)))
            try:
                first = sock.recv(1, socket.MSG_PEEK)
            except TimeoutError:
                continue
            if not first:
                raise ConnectionError("closed before sending anything")
            return first

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
            self.state.begin_shutdown()
            self._stop_requested.set()
            if self._wake_w is not None:
                with contextlib.suppress(OSError):
                    self._wake_w.send(b"x")
            if self._accept_thread is not None:
                self._accept_thread.join()
            if self._listener is not None:
                self._listener.close()
            threads = self.state.session_threads()
            if threads:
                log.info(
                    "shutting down: waiting up to %gs for %d session(s)", timeout, len(threads)
                )
            deadline = time.monotonic() + timeout
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            left = self.state.session_threads(alive_only=True)
            if left:
                log.warning("shutting down: closing %d session(s) still running", len(left))
                self.state.close_all()
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


def _shut(sock: socket.socket) -> None:
    """Wake a thread blocked on ``sock`` (its owner closes it)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


__all__ = ["Server", "format_address"]
