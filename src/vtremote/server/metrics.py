"""Prometheus metrics and a health answer for ``vtremoted --metrics HOST:PORT``.

``GET /metrics`` is the Prometheus text format; ``GET /healthz`` answers 200
with a small JSON document while the server accepts sessions and 503 once it
drains (for load balancers and service monitors). The counters live in their
own registry, so several servers in one process (tests) do not mix.

Metric names (all prefixed ``vtremoted_``): ``sessions_active``,
``sessions_total``, ``connections_refused_total{reason}``,
``auth_failures_total``, ``frames_received_total`` / ``frames_sent_total``,
``packets_received_total`` / ``packets_sent_total``, ``bytes_received_total``
/ ``bytes_sent_total``, ``encode_latency_seconds`` (histogram: FRAME received
to its PACKET sent), ``errors_total{code}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from vtremote.errors import ErrorCode
from vtremote.server.speed import SpeedMeter

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    """The server's counters; methods are cheap and thread-safe (prometheus_client locks)."""

    def __init__(self, active: Callable[[], int] = lambda: 0) -> None:
        #: The rolling fps announced in ext:capacity (server/speed.py).
        self.speed = SpeedMeter()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions_active = Gauge(
            "vtremoted_sessions_active", "Sessions past HELLO holding a slot", registry=r
        )
        self.sessions_active.set_function(lambda: float(active()))
        self.sessions_total = Counter(
            "vtremoted_sessions", "Sessions accepted at HELLO", registry=r
        )
        self.refused = Counter(
            "vtremoted_connections_refused",
            "Connections refused or closed before a session",
            ["reason"],
            registry=r,
        )
        self.auth_failures = Counter(
            "vtremoted_auth_failures", "HELLOs with a wrong token", registry=r
        )
        self.frames_in = Counter(
            "vtremoted_frames_received", "FRAMEs received (encode)", registry=r
        )
        self.frames_out = Counter("vtremoted_frames_sent", "FRAMEs sent (decode)", registry=r)
        self.packets_in = Counter(
            "vtremoted_packets_received", "PACKETs received (decode)", registry=r
        )
        self.packets_out = Counter("vtremoted_packets_sent", "PACKETs sent (encode)", registry=r)
        self.bytes_in = Counter(
            "vtremoted_bytes_received", "Wire bytes received by sessions", registry=r
        )
        self.bytes_out = Counter("vtremoted_bytes_sent", "Wire bytes sent by sessions", registry=r)
        self.latency = Histogram(
            "vtremoted_encode_latency_seconds",
            "FRAME received to its PACKET sent",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "vtremoted_errors", "ERROR messages sent, by code", ["code"], registry=r
        )
        for reason in (
            "evicted",
            "handshake_timeout",
            "busy",
            "auth_blocked",
            "auth_failed",
            "tls_required",
            "tls_failed",
            "shutting_down",
        ):
            self.refused.labels(reason)
        for code in ErrorCode:
            self.errors.labels(code.name.lower())

    def error(self, code: int) -> None:
        try:
            name = ErrorCode(code).name.lower()
        except ValueError:
            name = str(code)
        self.errors.labels(name).inc()

    def session_ended(
        self,
        *,
        frames_in: int,
        packets_out: int,
        packets_in: int,
        frames_out: int,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        self.frames_in.inc(frames_in)
        self.packets_out.inc(packets_out)
        self.packets_in.inc(packets_in)
        self.frames_out.inc(frames_out)
        self.bytes_in.inc(bytes_in)
        self.bytes_out.inc(bytes_out)

    def render(self) -> bytes:
        return generate_latest(self.registry)


#: Connections the endpoint serves at once; more are accepted and closed at once, so no load
#: here holds more descriptors or threads than this (the VTR1 port shares the process's).
MAX_METRICS_CONNECTIONS = 16
#: Each socket operation of a request (reading it, writing the answer) must finish within this.
METRICS_IO_TIMEOUT = 5.0
#: A whole connection, however slowly its bytes come: past this it is shut.
METRICS_DEADLINE = 10.0


class _Server(ThreadingMixIn, WSGIServer):
    """wsgiref's server with a connection cap, per-operation timeouts and a per-connection
    deadline; one request per connection (wsgiref answers one and closes)."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conn_lock = threading.Lock()
        #: Open connections -> their deadline (monotonic).
        self._open: dict[socket.socket, float] = {}
        self.connections_refused = 0
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError:
            time.sleep(0.05)  # e.g. EMFILE: serve_forever would retry at once, forever
            raise

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._conn_lock:
            if len(self._open) >= MAX_METRICS_CONNECTIONS:
                self.connections_refused += 1
                return False  # socketserver closes it
            self._open[request] = time.monotonic() + METRICS_DEADLINE
        return True

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Called by serve_forever about twice a second: shut connections past their deadline
        (their thread wakes, fails its read or write and closes)."""
        now = time.monotonic()
        with self._conn_lock:
            late = [sock for sock, deadline in self._open.items() if deadline <= now]
        for sock in late:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def open_connections(self) -> int:
        with self._conn_lock:
            return len(self._open)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A timed-out or vanished scraper; a peer must not be able to print tracebacks.
        log.debug("metrics connection from %s failed", client_address[0], exc_info=True)


class _QuietHandler(WSGIRequestHandler):
    timeout = METRICS_IO_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # a scraper every 15 s must not fill the log


class MetricsServer:
    """The HTTP endpoint; :meth:`start` binds and serves in a daemon thread.

    Bounded whatever its clients do: at most :data:`MAX_METRICS_CONNECTIONS` at once (one
    thread and one descriptor each; more are closed on accept), each socket operation within
    :data:`METRICS_IO_TIMEOUT` and each connection within :data:`METRICS_DEADLINE`.
    """

    def __init__(
        self,
        metrics: Metrics,
        host: str,
        port: int,
        health: Callable[[], tuple[bool, dict[str, Any]]],
    ):
        self.metrics = metrics
        self._health = health
        self._httpd = make_server(
            host, port, self._app, server_class=_Server, handler_class=_QuietHandler
        )
        self.address = (host, int(self._httpd.server_address[1]))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="vtremoted-metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    @property
    def open_connections(self) -> int:
        return self._httpd.open_connections

    @property
    def connections_refused(self) -> int:
        """Connections closed on accept because the cap was reached."""
        return self._httpd.connections_refused

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in ("/healthz", "/health"):
            ok, info = self._health()
            body = json.dumps(info).encode() + b"\n"
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        if path in ("/metrics", "/"):
            body = self.metrics.render()
            start_response(
                "200 OK",
                [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))],
            )
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"try /metrics or /healthz\n"]


__all__ = ["MAX_METRICS_CONNECTIONS", "Metrics", "MetricsServer"]
