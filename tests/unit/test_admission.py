"""Admission, wrong-token accounting and log rate limiting, with the clock passed in."""

from __future__ import annotations

import logging

import pytest

from vtremote.server.admission import Admission, AdmissionLimits, AuthGuard, AuthPolicy
from vtremote.server.logs import RATE_LIMITED, RateLimitFilter


def test_a_source_over_its_cap_displaces_its_own_oldest_connection() -> None:
    adm = Admission(
        AdmissionLimits(handshake_timeout=5, max_handshakes=10, max_handshakes_per_source=3)
    )
    mine = [adm.admit("10.0.0.1", float(t))[0] for t in range(3)]
    other, evicted = adm.admit("10.0.0.2", 3.0)
    assert evicted == []
    t4, evicted = adm.admit("10.0.0.1", 4.0)
    assert evicted == [mine[0]] and mine[0].evicted is not None
    assert "too many unauthenticated connections from 10.0.0.1 (limit 3)" in mine[0].evicted
    assert other.evicted is None and adm.pending_from("10.0.0.1") == 3 and adm.pending == 4


def test_the_total_cap_evicts_from_the_busiest_source() -> None:
    adm = Admission(AdmissionLimits(max_handshakes=4, max_handshakes_per_source=4))
    a = [adm.admit("a", float(t))[0] for t in range(3)]
    b, _ = adm.admit("b", 3.0)
    c, evicted = adm.admit("c", 4.0)
    assert evicted == [a[0]] and b.evicted is None and c.evicted is None
    assert "4 unauthenticated connections (limit 4)" in (a[0].evicted or "")


def test_authenticated_connections_do_not_count_and_deadline() -> None:
    adm = Admission(
        AdmissionLimits(handshake_timeout=2, max_handshakes=2, max_handshakes_per_source=2)
    )
    t1, _ = adm.admit("a", 0.0)
    t2, _ = adm.admit("a", 0.5)
    adm.authenticated(t1)
    assert adm.pending == 1
    _, evicted = adm.admit("a", 1.0)
    assert evicted == []  # t1 holds a session now: never evicted
    assert not adm.expired(t2, 2.4) and adm.expired(t2, 2.5) and not adm.expired(t1, 100.0)
    adm.release(t2)
    adm.release(t2)  # twice is harmless
    assert adm.pending == 1


def test_wrong_tokens_grow_the_delay_then_block() -> None:
    guard = AuthGuard(
        AuthPolicy(base_delay=0.25, max_delay=2.0, block_after=5, block_seconds=60, window=60)
    )
    assert guard.delay("x", 0.0) == 0.0
    delays = []
    for i in range(4):
        d, blocked = guard.failed("x", float(i))
        assert not blocked
        delays.append(guard.delay("x", float(i)))
    assert delays == [0.25, 0.5, 1.0, 2.0]  # doubling, capped at max_delay
    assert guard.blocked("x", 4.0) == 0.0
    _, blocked = guard.failed("x", 4.0)
    assert blocked and guard.blocked("x", 5.0) == pytest.approx(59.0)
    assert guard.blocked("y", 5.0) == 0.0  # per source
    assert guard.blocked("x", 64.0) == 0.0  # temporary
    assert guard.delay("x", 200.0) == 0.0  # a quiet source starts again from zero


def test_repeats_are_summarised(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    logger = logging.getLogger("vtremote.test.ratelimit")
    flt = RateLimitFilter(burst=3, window=10, clock=lambda: now[0])
    logger.addFilter(flt)
    try:
        with caplog.at_level(logging.INFO, logger="vtremote.test.ratelimit"):
            for i in range(100):
                logger.warning("[session %04x] refusing %s", i, f"10.0.0.{i}", extra=RATE_LIMITED)
                logger.warning("[session %04x] not limited %d", i, i)
            now[0] = 10.5
            flt.flush()
    finally:
        logger.removeFilter(flt)
    limited = [r for r in caplog.records if "refusing 10." in r.getMessage()]
    unlimited = [r for r in caplog.records if "not limited" in r.getMessage()]
    summaries = [r.getMessage() for r in caplog.records if "more like" in r.getMessage()]
    assert len(limited) == 3 and len(unlimited) == 100
    assert summaries == ["... 97 more like 'refusing %s' in the last 10 s"]
