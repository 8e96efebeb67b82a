"""Wake-on-LAN for pool members that sleep: the magic packet, and waiting for the host.

A member with ``mac`` in the config (:class:`~vtremote.client.config.WakeTarget`)
that cannot be reached gets one magic packet (6 x ``0xFF`` then its MAC 16 times,
UDP to ``broadcast:wake_port``). Placement then either waits for it
(``wake = "wait"``, when no awake member could take the session) or goes on with
the other members and the fallback while it boots (``wake = "background"``).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from vtremote.client.config import PoolMember, WakeTarget
from vtremote.errors import ConnectionLostError, TimeoutExpiredError, VTRemoteError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two tries of a woken host.
POLL_S = 1.0
#: Seconds between two "still waiting" lines.
PROGRESS_S = 10.0


def magic_packet(mac: bytes) -> bytes:
    """The Wake-on-LAN payload: 6 bytes 0xFF, then the 6-byte MAC 16 times (102 bytes)."""
    if len(mac) != 6:
        raise ValueError(f"a MAC has 6 bytes, not {len(mac)}")
    return b"\xff" * 6 + mac * 16


def send_magic_packet(target: WakeTarget) -> None:
    """One magic packet to ``target.broadcast:target.port`` (UDP, broadcast allowed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.sendto(magic_packet(target.mac), (target.broadcast, target.port))


def unreachable(error: VTRemoteError) -> bool:
    """True for a connect that found nobody (not a busy or refusing server)."""
    return isinstance(error, (ConnectionLostError, TimeoutExpiredError)) and (
        "cannot reach" in str(error)
    )


class Waker:
    """The members one placement woke, and until when each may take to answer."""

    def __init__(self, pool: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self._clock = clock
        #: address -> (member, monotonic time it must have answered by).
        self._booting: dict[str, tuple[PoolMember, float]] = {}

    def wake(self, member: PoolMember) -> bool:
        """Send the magic packet to an unreachable member that names a MAC (once while it
        boots). False when it cannot be woken."""
        target = member.wake
        if target is None:
            return False
        now = self._clock()
        booting = self._booting.get(member.address)
        if booting is not None and now < booting[1]:
            return True
        try:
            send_magic_packet(target)
        except OSError as e:
            log.warning(
                "pool %s: cannot send Wake-on-LAN for %s to %s:%d: %s",
                self.pool,
                member.address,
                target.broadcast,
                target.port,
                e.strerror or e,
            )
            return False
        self._booting[member.address] = (member, now + target.timeout_s)
        log.warning(
            "pool %s: %s cannot be reached: sent Wake-on-LAN for %s to %s:%d%s",
            self.pool,
            member.address,
            target.mac_text,
            target.broadcast,
            target.port,
            " (going on without it while it boots)"
            if target.background
            else f" (waiting up to {target.timeout_s:g} s if no other server can take the session)",
        )
        return True

    def waiting(self, exclude: Iterable[str] = ()) -> list[PoolMember]:
        """The woken members placement should wait for (``wake = "wait"``, still in time)."""
        now, skip = self._clock(), set(exclude)
        return [
            mb
            for a, (mb, until) in self._booting.items()
            if a not in skip and now < until and mb.wake is not None and not mb.wake.background
        ]

    def wait(
        self, members: list[PoolMember], attempt: Callable[[PoolMember], T | None]
    ) -> T | None:
        """Try each member every :data:`POLL_S` until one answers (``attempt`` returns
        non-None) or every one's time is up; a line every :data:`PROGRESS_S`."""
        start = last_line = self._clock()
        pending = list(members)
        while pending:
            for mb in list(pending):
                result = attempt(mb)
                if result is not None:
                    log.warning(
                        "pool %s: %s answered %.1f s after Wake-on-LAN",
                        self.pool,
                        mb.address,
                        self._clock() - start,
                    )
                    self._booting.pop(mb.address, None)
                    return result
                if self._clock() >= self._booting.get(mb.address, (mb, 0.0))[1]:
                    pending.remove(mb)
                    log.warning(
                        "pool %s: %s did not answer within %g s of Wake-on-LAN",
                        self.pool,
                        mb.address,
                        mb.wake.timeout_s if mb.wake else 0,
                    )
            now = self._clock()
            if pending and now - last_line >= PROGRESS_S:
                last_line = now
                log.warning(
                    "pool %s: waiting for %s to wake (%.0f s)",
                    self.pool,
                    ", ".join(mb.address for mb in pending),
                    now - start,
                )
            if pending:
                time.sleep(POLL_S)
        return None
