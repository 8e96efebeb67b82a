"""What the running server knows about its connections: the admission gate and the registry.

:class:`ServerState` is kept apart from the accept loop (server/daemon.py) as uvicorn
keeps ``ServerState`` apart from ``Server``: it is the :class:`~.session.SessionHost`
every session talks to. It holds the session slots, the connections not yet past
HELLO (server/admission.py: bounded per source address and in total, a deadline for
HELLO, wrong tokens slowing their source down and then blocking it), the open
sessions and the shutdown flags. The daemon admits and registers each accepted
connection here, and reads the counts for its health answer and for shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Executor

from vtremote.errors import AuthenticationError, CapacityError, TimeoutExpiredError, VTRemoteError
from vtremote.server.admission import Admission, AdmissionLimits, AuthGuard, AuthPolicy, Ticket
from vtremote.server.budget import MemoryBudget
from vtremote.server.config import ServerConfig
from vtremote.server.faults import FaultHooks
from vtremote.server.logs import RATE_LIMITED
from vtremote.server.metrics import Metrics
from vtremote.server.session import Session

log = logging.getLogger(__name__)


class ServerState:
    """Slots, admission and the session registry of one server (module docstring)."""

    def __init__(self, config: ServerConfig, faults: FaultHooks | None = None) -> None:
        self._config = config
        self._faults = faults
        self._lock = threading.Lock()
        self._sessions: dict[threading.Thread, Session] = {}
        self._active = 0
        self._shutting_down = False
        self._force_close = False
        self._admission = Admission(
            AdmissionLimits(
                config.handshake_timeout, config.max_handshakes, config.max_handshakes_per_source
            )
        )
        self._auth = AuthGuard(
            AuthPolicy(block_after=config.auth_block_after, block_seconds=config.auth_block_seconds)
        )
        self._tickets: dict[Session, Ticket] = {}
        self._refusals: dict[Session, VTRemoteError] = {}
        self._metrics = Metrics(lambda: self.active_sessions)
        self._pool: Executor | None = None
        self._budget = MemoryBudget(config.max_memory)
        #: The engine announced in HELLO_ACK per codec (set once the engines are probed).
        self.engine_labels: dict[str, str] = {}

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

    @pool.setter
    def pool(self, pool: Executor) -> None:
        self._pool = pool

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    @property
    def faults(self) -> FaultHooks | None:
        return self._faults

    @property
    def budget(self) -> MemoryBudget:
        return self._budget

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
        return self.engine_labels.get(codec, self._config.engine_name)

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
            self._refuse_if_blocked(ticket, now)
        if ticket.evicted is not None:
            raise CapacityError(f"server busy: {ticket.evicted}")
        if self._admission.expired(ticket, now):
            self._metrics.refused.labels("handshake_timeout").inc()
            raise TimeoutExpiredError(
                f"no complete HELLO within {self._config.handshake_timeout:g} s of connecting "
                "(handshake timeout)"
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
        self._refuse_if_blocked(ticket, time.monotonic())

    def _refuse_if_blocked(self, ticket: Ticket, now: float) -> None:
        left = self._auth.blocked(ticket.source, now)
        if left > 0:
            self._metrics.refused.labels("auth_blocked").inc()
            raise AuthenticationError(
                f"too many failed authentications from {ticket.source}: "
                f"blocked for {left:.0f} s more"
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

    # -- the daemon's side ----------------------------------------------------------------------

    def admit(self, session: Session, source: str) -> Ticket:
        """Count a new connection as pending; the oldest of the busiest source may make way."""
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
            interrupt = victim.interrupt  # read once: its owner clears it when done
            if interrupt is not None:
                interrupt()
        with self._lock:
            self._tickets[session] = ticket
        return ticket

    def register(self, thread: threading.Thread, session: Session) -> None:
        with self._lock:
            self._sessions[thread] = session

    def refuse(self, session: Session, error: VTRemoteError) -> None:
        """The session answers its first read with ``error`` (e.g. TLS required)."""
        self._refusals[session] = error

    def forget(self, thread: threading.Thread, session: Session) -> None:
        """The session's thread ends: its ticket, slot in the registry and refusal go."""
        ticket = self._tickets.get(session)
        if ticket is not None:
            self._admission.release(ticket)
        with self._lock:
            self._sessions.pop(thread, None)
            self._tickets.pop(session, None)
            self._refusals.pop(session, None)

    def begin_shutdown(self) -> None:
        """No new sessions; those in their handshake get ERROR 7."""
        self._shutting_down = True

    def close_all(self) -> None:
        """Sessions still running get ERROR 7 and are closed."""
        self._force_close = True

    def session_threads(self, alive_only: bool = False) -> list[threading.Thread]:
        with self._lock:
            return [t for t in self._sessions if not alive_only or t.is_alive()]

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


__all__ = ["ServerState"]
