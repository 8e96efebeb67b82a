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
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from types import TracebackType

from vtremote.engines import registry
from vtremote.engines.base import CODECS, MODES
from vtremote.errors import EngineUnavailableError
from vtremote.server.config import ServerConfig
from vtremote.server.session import Session

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
        self._listener = self._bind()
        self._wake_r, self._wake_w = socket.socketpair()
        addr = self._listener.getsockname()
        self._address = (str(addr[0]), int(addr[1]))
        self._pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1), thread_name_prefix="vtremoted-planes")
        self._accept_thread = threading.Thread(target=self._accept_loop, name="vtremoted-accept", daemon=True)
        self._accept_thread.start()
        log.info(
            "listening on %s (max_sessions=%s, idle_timeout=%gs, auth=%s)",
            format_address(*self._address),
            self._config.max_sessions or "unlimited",
            self._config.idle_timeout,
            "token" if self._config.token else "off",
        )

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
                for key, _ in sel.select():
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
        peer = format_address(str(addr[0]), int(str(addr[1])))
        with self._lock:
            limit = (self._config.max_sessions or 1024) + self._config.max_handshakes
            if len(self._sessions) >= limit or self._shutting_down:
                log.warning("refusing connection from %s: %d connections open", peer, len(self._sessions))
                conn.close()
                return
            session = Session(conn, peer, self)
            thread = threading.Thread(
                target=self._run_session, args=(session,), name=f"vtremoted-session-{session.id}", daemon=True
            )
            self._sessions[thread] = session
        thread.start()

    def _run_session(self, session: Session) -> None:
        try:
            session.run()
        finally:
            with self._lock:
                self._sessions.pop(threading.current_thread(), None)
            if self._config.once:
                self._once_served = True
                self._stop_requested.set()

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
                log.info("shutting down: waiting up to %gs for %d session(s)", timeout, len(threads))
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
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()


__all__ = ["Server", "format_address"]
