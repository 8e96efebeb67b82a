"""Several servers as one: pools, placement by free capacity, the error that names every host.

A pool comes from ``-vt_remote_host``:

* ``a:5555,b:5555`` — a list of servers, weight 1 each;
* ``studio`` — a ``[pools.studio]`` table of the config file (:mod:`vtremote.client.config`),
  whose hosts may carry their own token, TLS settings and a MAC to wake them by;
* ``mdns`` — whatever answers ``_vtremote._tcp`` on the LAN (:mod:`vtremote.client.discovery`).

Placement (:class:`Placer`) greets every member at once with the session's own HELLO (VTR1.md
§2), each with its own token and TLS settings: HELLO_ACK carries ``active_sessions`` and
``max_sessions`` (real numbers when the server announces ``ext:busy``) and, from a server
announcing ``ext:capacity``, how many sessions its engine runs at full speed and the fps its
sessions achieved lately, so the expected throughput is known without a separate probe. Members
are ranked by free capacity x fps x weight (:meth:`Offer.expected`: a server that reports no fps
counts at the mean of those that do; one past its capacity by its share of it); the session is
then configured over the connection of the best one (its HELLO is already done, so no other
client can take the slot between the look and the use), and the others are closed. A busy,
unreachable or refusing member is skipped with the reason in the log (an unreachable one with a
MAC is woken, :mod:`vtremote.client.wake`, and waited for when no other can take the session);
when every member fails, one :class:`~vtremote.errors.NoServerError` names each host and why."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from vtremote.client.config import ClientConfig, PoolMember, load_config
from vtremote.client.options import ConnectionOptions, client_hello
from vtremote.client.transport import Transport
from vtremote.client.wake import Waker, unreachable
from vtremote.errors import BusyError, ConfigError, NoServerError, VTRemoteError
from vtremote.wire import extensions as ext
from vtremote.wire import messages as m

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``-vt_remote_host mdns``: the servers that answer on the LAN.
MDNS = "mdns"
#: Free slots assumed for a server with no session limit (``max_sessions`` 0).
UNLIMITED_FREE = 64
#: Placement tries again this many times (0.1, 0.2, 0.4 s apart) when every member is busy.
BUSY_RETRIES = 3
#: How long ``mdns`` listens for answers before placing (seconds).
DISCOVERY_WAIT = 1.5


@dataclass(frozen=True, slots=True)
class Pool:
    """The servers one job may use, and what to do when none can be had."""

    name: str
    members: tuple[PoolMember, ...]
    token: str = ""
    fallback: str = "none"
    timeout_ms: int | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise ConfigError(f"pool {self.name!r} has no servers")

    @property
    def addresses(self) -> list[str]:
        return [mb.address for mb in self.members]


def is_pool(host: str | None, config: ClientConfig | None = None) -> bool:
    """True when ``host`` names more than one server, a configured pool, or ``mdns``."""
    if not host:
        return False
    if "," in host or host == MDNS:
        return True
    if ":" in host or "." in host:
        return False  # a single HOST:PORT; read no config for it
    cfg = config if config is not None else load_config()
    return cfg.pool(host) is not None


def resolve_pool(
    host: str,
    *,
    token: str = "",
    fallback: str | None = None,
    config: ClientConfig | None = None,
    discover: Callable[[float], list[str]] | None = None,
) -> Pool:
    """``-vt_remote_host`` (+ token, fallback) -> a :class:`Pool`.

    ``fallback`` given here (``-vt_remote_fallback``) wins over the pool's and
    the file's. ``discover(wait)`` lists ``HOST:PORT``s for ``mdns`` (default:
    :func:`vtremote.client.discovery.discover_addresses`).
    """
    cfg = config if config is not None else load_config()
    text = host.strip()
    if text == MDNS:
        if discover is None:
            from vtremote.client.discovery import discover_addresses

            discover = discover_addresses
        found = discover(DISCOVERY_WAIT)
        if not found:
            raise NoServerError(
                f"no vtremoted answered on the LAN (mDNS _vtremote._tcp, {DISCOVERY_WAIT:g} s)"
            )
        members = tuple(PoolMember(a) for a in found)
        return Pool(MDNS, members, token, fallback or cfg.fallback)
    named = cfg.pool(text)
    if named is not None:
        return Pool(
            named.name,
            named.members,
            token or named.token or "",
            fallback or named.fallback or cfg.fallback,
            named.timeout_ms,
        )
    parts = [p.strip() for p in text.split(",")]
    if not all(parts):
        raise ConfigError(f"-vt_remote_host {host!r}: empty entry in the list")
    return Pool(text, tuple(PoolMember(p) for p in parts), token, fallback or cfg.fallback)


class GreetedTransport(Transport):
    """A transport whose HELLO was sent by placement: the session's HELLO gets that answer.

    :meth:`greet` does the real exchange; the next :meth:`hello` (the session's own)
    returns the HELLO_ACK already read instead of sending a second HELLO.
    """

    _greeting: m.HelloAck | None = None

    def greet(self, hello: m.Hello) -> m.HelloAck:
        ack = super().hello(hello)
        self._greeting = ack
        return ack

    def hello(self, hello: m.Hello) -> m.HelloAck:
        ack, self._greeting = self._greeting, None
        return ack if ack is not None else super().hello(hello)


@dataclass(frozen=True, slots=True)
class Offer:
    """One member that said yes to HELLO, with its free capacity."""

    member: PoolMember
    transport: GreetedTransport
    active: int
    max: int
    counts_known: bool
    #: ``ext:capacity``: sessions the engine runs at full speed at once (None: not said).
    capacity: int | None = None
    #: ``ext:capacity``: recent fps of one of its sessions (None: not said or not measured).
    fps: float | None = None

    @property
    def free(self) -> int:
        """Slots left besides the one this HELLO took (the ACK counts it)."""
        if not self.counts_known:
            return 1  # a plain v1 server reports constants (VTR1.md §2.2)
        if self.max == 0:
            return UNLIMITED_FREE
        return max(self.max - self.active + 1, 1)

    @property
    def free_capacity(self) -> float:
        """Full-speed sessions left besides this one: the engine's capacity (bounded by the
        session limit) less the sessions running; past it, this session's share (< 1)."""
        if self.capacity is None or not self.counts_known:
            return float(self.free)
        limit = self.capacity if self.max == 0 else min(self.capacity, self.max)
        left = limit - self.active + 1
        return float(left) if left >= 1 else limit / max(self.active, 1)

    @property
    def score(self) -> float:
        """Free capacity x weight (no speed: see :meth:`expected`)."""
        return self.free_capacity * self.member.weight

    def expected(self, reference_fps: float = 1.0) -> float:
        """Expected throughput: free capacity x fps x weight (``reference_fps`` stands in
        for a server that reports none)."""
        return self.score * (self.fps if self.fps else reference_fps)


class Placer:
    """Opens sessions on the members of a pool, best first (see the module docstring)."""

    def __init__(self, pool: Pool, codec: str, connection: ConnectionOptions | None = None) -> None:
        self.pool = pool
        self.codec = codec
        #: Timeout and TLS of every greeting (the HELLO carries the pool's token).
        self.connection = connection if connection is not None else ConnectionOptions()
        #: Reasons of the last :meth:`open`'s skipped members, ``address -> why``.
        self.skipped: dict[str, str] = {}
        #: Members woken by Wake-on-LAN (client/wake.py).
        self.waker = Waker(pool.name)

    def token_for(self, member: PoolMember) -> str:
        """The HELLO token of ``member``: its own, else the pool's, else ``$VTREMOTE_TOKEN``."""
        if member.token is not None:
            return member.token
        return self.pool.token or self.connection.hello_token()

    def _greet(self, member: PoolMember) -> Offer:
        transport = GreetedTransport.connect(
            member.address,
            timeout=self.connection.timeout,
            tls=member.tls_for(self.connection.tls),
        )
        assert isinstance(transport, GreetedTransport)  # connect() builds cls
        try:
            ack = transport.greet(client_hello(self.token_for(member), self.codec))
        except BaseException:
            transport.close()
            raise
        known = ext.CAP_BUSY in ext.split_capabilities(ack.capabilities)[1]
        capacity = ext.parse_capacity(ext.capability_value(ack.capabilities, ext.CAP_CAPACITY))
        sessions, fps = capacity if capacity is not None else (None, None)
        return Offer(
            member, transport, ack.active_sessions, ack.max_sessions, known, sessions, fps or None
        )

    def offers(self, exclude: Mapping[str, str] | Iterable[str] = ()) -> list[Offer]:
        """Greet every member not excluded, in parallel; the ones that said yes, best first.

        ``exclude``: addresses not to try, or a mapping address -> why (for the error).
        """
        why = dict(exclude) if isinstance(exclude, Mapping) else dict.fromkeys(exclude, "")
        members = [mb for mb in self.pool.members if mb.address not in why]
        self.skipped = {
            a: "failed earlier in this session" + (f" ({why[a]})" if why[a] else "")
            for a in self.pool.addresses
            if a in why
        }
        if not members:
            return []
        results: list[Offer] = []
        with ThreadPoolExecutor(
            max_workers=min(len(members), 16), thread_name_prefix="vtremote-place"
        ) as ex:
            futures = [(mb, ex.submit(self._greet, mb)) for mb in members]
            for mb, fut in futures:
                try:
                    results.append(fut.result())
                except VTRemoteError as e:
                    self.skipped[mb.address] = _reason(str(e), mb.address)
                    if unreachable(e) and self.waker.wake(mb):
                        self.skipped[mb.address] += " (woken by Wake-on-LAN)"
                    # A full server is normal in a busy pool; one that cannot be reached is not.
                    level = logging.INFO if isinstance(e, BusyError) else logging.WARNING
                    log.log(
                        level,
                        "pool %s: skipping %s: %s",
                        self.pool.name,
                        mb.address,
                        self.skipped[mb.address],
                    )
        order = {mb.address: i for i, mb in enumerate(self.pool.members)}
        measured = [o.fps for o in results if o.fps]
        reference = sum(measured) / len(measured) if measured else 1.0
        results.sort(key=lambda o: (-o.expected(reference), order[o.member.address]))
        return results

    def open(
        self, opener: Callable[[Transport], T], exclude: Mapping[str, str] | Iterable[str] = ()
    ) -> tuple[T, str]:
        """Run ``opener`` on the best member's connection; the next best on failure.

        The members not chosen are let go before ``opener`` runs, so their slots are
        held for one HELLO round trip only. When every member answered busy, placement
        is tried again a few times (:data:`BUSY_RETRIES`): another client's HELLO may
        hold a slot for a moment. Returns the opener's result and the member's
        address; raises :class:`NoServerError` naming every member and why.
        """
        why = dict(exclude) if isinstance(exclude, Mapping) else dict.fromkeys(exclude, "")
        reasons: dict[str, str] = {}
        busy_tries = 0
        while True:
            offers = self.offers(why)
            for a, r in self.skipped.items():
                if a not in reasons or "busy" in reasons[a]:  # keep the first real reason
                    reasons[a] = r
            if not offers:
                woken = self._await_woken(why, reasons)
                if woken is not None:
                    offers = [woken]
            if not offers:
                live = [a for a in self.pool.addresses if a not in why]
                if (
                    live
                    and busy_tries < BUSY_RETRIES
                    and all("busy" in reasons.get(a, "") for a in live)
                ):
                    time.sleep(0.1 * 2**busy_tries)
                    busy_tries += 1
                    continue
                self.skipped = reasons
                raise NoServerError(self.failure_message())
            best = offers[0]
            for other in offers[1:]:
                with contextlib.suppress(Exception):
                    other.transport.close()
            address = best.member.address
            try:
                result = opener(best.transport)
            except VTRemoteError as e:
                best.transport.close()
                reasons[address] = why[address] = _reason(str(e), address)
                log.warning("pool %s: skipping %s: %s", self.pool.name, address, reasons[address])
                continue
            skipped = {a: r for a, r in reasons.items() if a != address}
            if len(self.pool.members) > 1:
                log.info(
                    "pool %s: placed on %s (%s; %d server(s) skipped)",
                    self.pool.name,
                    address,
                    _describe(best),
                    len(skipped),
                )
            self.skipped = skipped
            return result, address

    def _await_woken(self, exclude: Mapping[str, str], reasons: dict[str, str]) -> Offer | None:
        """With no awake member to take the session: wait for the woken ones (``wake =
        "wait"``); the first that answers HELLO, or None."""
        members = self.waker.waiting(exclude)
        if not members:
            return None

        def attempt(member: PoolMember) -> Offer | None:
            try:
                return self._greet(member)
            except VTRemoteError as e:
                if not unreachable(e):
                    reasons[member.address] = _reason(str(e), member.address)
                return None

        offer = self.waker.wait(members, attempt)
        for mb in members:
            if offer is None or mb is not offer.member:
                reasons.setdefault(mb.address, "cannot be reached")
                if "did not answer" not in reasons[mb.address] and mb.wake is not None:
                    reasons[mb.address] += (
                        f"; did not answer within {mb.wake.timeout_s:g} s of Wake-on-LAN"
                    )
        return offer

    def failure_message(self) -> str:
        reasons = "; ".join(f"{a}: {self.skipped.get(a, 'not tried')}" for a in self.pool.addresses)
        return f"no server of pool {self.pool.name} could take the {self.codec} session ({reasons})"


def _describe(offer: Offer) -> str:
    if not offer.counts_known:
        return "session counts not reported"
    limit = "no limit" if offer.max == 0 else f"{offer.active} of {offer.max} sessions in use"
    if offer.capacity is not None:
        limit += f", engine capacity {offer.capacity}"
    if offer.fps:
        limit += f", {offer.fps:g} fps per session"
    return f"{limit}, weight {offer.member.weight:g}"


def _reason(text: str, address: str) -> str:
    """An error's text without the host it already names, for lists that name it."""
    for form in (f" ({address})", f"cannot reach {address}: "):
        text = text.replace(form, "")
    return text
