"""Admission control: who may hold a connection before proving it knows the token.

A connection is *pending* from accept until its HELLO is accepted (right
token, a session slot). Pending connections are what an unauthenticated host
can create, so they are bounded three ways:

* a **handshake deadline** (``handshake_timeout``, a few seconds): a complete
  HELLO must arrive within it, however slowly the bytes drip;
* a cap **per source address** (``max_handshakes_per_source``);
* a cap **in total** (``max_handshakes``).

A new connection is never refused because a cap is reached: the oldest
pending connection of the busiest source is evicted instead (it gets a busy
ERROR naming the reason). A host that floods therefore only ever displaces
its own connections, and a client that sends its HELLO at once, as every
real client does, gets through whatever the others do. Sessions that passed
HELLO are not counted here at all: unauthenticated load never refuses
authenticated work (``max_sessions`` alone bounds that).

:class:`AuthGuard` slows down wrong tokens per source address: each failure
in a burst doubles the delay before the refusal is sent, and after
``block_after`` failures the source is refused outright for ``block_seconds``.

Both classes are plain state with the clock passed in (``now``), so unit tests
drive them without sleeping.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(eq=False)
class Ticket:
    """One pending connection; the session polls :attr:`evicted` while it waits for HELLO."""

    source: str
    accepted: float
    #: Why the connection must go (set by :meth:`Admission.admit` on another connection).
    evicted: str | None = None
    authenticated: bool = False
    #: The source's auth block was checked (once, before anything is read).
    screened: bool = False
    #: Called when the ticket is evicted while its owner blocks where it cannot poll
    #: (a TLS handshake: no ERROR can be sent before it ends, so the socket is shut).
    interrupt: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    handshake_timeout: float = 5.0
    max_handshakes: int = 64
    max_handshakes_per_source: int = 8


class Admission:
    """Tracks pending connections per source; thread-safe."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        # source -> its pending tickets, oldest first (dict keeps insertion order)
        self._pending: dict[str, OrderedDict[int, Ticket]] = {}
        self._total = 0

    @property
    def pending(self) -> int:
        with self._lock:
            return self._total

    def pending_from(self, source: str) -> int:
        with self._lock:
            return len(self._pending.get(source, ()))

    def admit(self, source: str, now: float) -> tuple[Ticket, list[Ticket]]:
        """Register a new connection; returns its ticket and the tickets evicted to make room."""
        ticket = Ticket(source, now)
        evicted: list[Ticket] = []
        with self._lock:
            mine = self._pending.get(source)
            if mine is not None and len(mine) >= self.limits.max_handshakes_per_source:
                evicted.append(
                    self._evict_oldest(
                        source,
                        f"too many unauthenticated connections from {source} "
                        f"(limit {self.limits.max_handshakes_per_source}); the oldest is closed",
                    )
                )
            if self._total >= self.limits.max_handshakes:
                busiest = max(
                    self._pending,
                    key=lambda s: (
                        len(self._pending[s]),
                        -next(iter(self._pending[s].values())).accepted,
                    ),
                )
                evicted.append(
                    self._evict_oldest(
                        busiest,
                        f"server has {self._total} unauthenticated connections (limit "
                        f"{self.limits.max_handshakes}); "
                        "the oldest of the busiest source is closed",
                    )
                )
            self._pending.setdefault(source, OrderedDict())[id(ticket)] = ticket
            self._total += 1
        return ticket, evicted

    def _evict_oldest(self, source: str, reason: str) -> Ticket:
        tickets = self._pending[source]
        _, victim = tickets.popitem(last=False)
        if not tickets:
            del self._pending[source]
        self._total -= 1
        victim.evicted = reason
        return victim

    def authenticated(self, ticket: Ticket) -> None:
        """HELLO accepted: the connection no longer counts as pending."""
        self.release(ticket)
        ticket.authenticated = True

    def release(self, ticket: Ticket) -> None:
        """The connection closed (or was authenticated)."""
        with self._lock:
            tickets = self._pending.get(ticket.source)
            if tickets is None or tickets.pop(id(ticket), None) is None:
                return
            if not tickets:
                del self._pending[ticket.source]
            self._total -= 1

    def expired(self, ticket: Ticket, now: float) -> bool:
        """True once the handshake deadline of a still pending ticket has passed."""
        return not ticket.authenticated and now - ticket.accepted >= self.limits.handshake_timeout


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    #: Delay before answering the first wrong token of a burst; doubles with each one.
    base_delay: float = 0.25
    max_delay: float = 2.0
    #: Failures (within ``window`` of each other) after which the source is blocked.
    block_after: int = 10
    block_seconds: float = 60.0
    #: A source with no failure for this long starts again from zero.
    window: float = 60.0


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    blocked_until: float = 0.0
    refused_while_blocked: int = 0


#: Sources remembered at most (the least recently failing are forgotten first).
MAX_TRACKED_SOURCES = 4096


class AuthGuard:
    """Per-source wrong-token accounting: growing delay, then a temporary block; thread-safe."""

    def __init__(self, policy: AuthPolicy | None = None) -> None:
        self.policy = policy or AuthPolicy()
        self._lock = threading.Lock()
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self.failures_total = 0

    def blocked(self, source: str, now: float) -> float:
        """Seconds the source remains blocked (0.0: not blocked)."""
        with self._lock:
            rec = self._records.get(source)
            if rec is None or rec.blocked_until <= now:
                return 0.0
            rec.refused_while_blocked += 1
            return rec.blocked_until - now

    def delay(self, source: str, now: float) -> float:
        """How long to hold any HELLO from ``source`` before answering it.

        Right and wrong tokens wait alike while the source has recent failures:
        otherwise a guess that is not refused at once would be known to be right.
        """
        p = self.policy
        with self._lock:
            rec = self._records.get(source)
            if rec is None or rec.failures == 0 or now - rec.last > p.window:
                return 0.0
            return float(min(p.max_delay, p.base_delay * 2 ** (rec.failures - 1)))

    def failed(self, source: str, now: float) -> tuple[float, bool]:
        """Record a wrong token; returns (delay before the refusal, this failure starts a block)."""
        p = self.policy
        with self._lock:
            self.failures_total += 1
            rec = self._records.pop(source, None) or _Record()
            self._records[source] = rec  # most recent last
            while len(self._records) > MAX_TRACKED_SOURCES:
                self._records.popitem(last=False)
            if now - rec.last > p.window and rec.blocked_until <= now:
                rec.failures = 0
            rec.failures += 1
            rec.last = now
            delay = min(p.max_delay, p.base_delay * 2 ** (rec.failures - 1))
            if rec.failures >= p.block_after and rec.blocked_until <= now:
                rec.blocked_until = now + p.block_seconds
                rec.failures = 0
                return delay, True
            return delay, False


__all__ = ["Admission", "AdmissionLimits", "AuthGuard", "AuthPolicy", "Ticket"]
