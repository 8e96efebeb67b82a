"""Clock mapping (NTP-style, minimum-delay filter) and the adaptive bitrate controller."""

from __future__ import annotations

from vtremote.live.clock import ClockSync
from vtremote.live.sender import RateController

MS = 1_000_000


def _exchange(clock: ClockSync, t0: int, offset: int, out_ns: int, back_ns: int) -> None:
    """Receiver sends at t0 (its clock); the sender's clock is receiver + offset."""
    t1 = t0 + out_ns + offset
    t2 = t1 + 1000
    t3 = t2 - offset + back_ns
    clock.add(t0, t1, t2, t3)


def test_symmetric_paths_give_the_exact_offset() -> None:
    clock = ClockSync()
    _exchange(clock, 10**9, offset=5 * 10**12, out_ns=2 * MS, back_ns=2 * MS)
    assert clock.offset_ns == 5 * 10**12
    assert clock.to_local(5 * 10**12 + 10**9) == 10**9


def test_the_sample_with_the_smallest_round_trip_wins() -> None:
    clock = ClockSync()
    _exchange(clock, 0, offset=777 * MS, out_ns=1 * MS, back_ns=1 * MS)
    # Replies queued behind video: long and asymmetric, each one off by tens of ms.
    for i in range(1, 10):
        _exchange(clock, i * 10**9, offset=777 * MS, out_ns=1 * MS, back_ns=200 * MS)
    assert clock.offset_ns == 777 * MS
    assert clock.best() is not None and clock.best().delay_ns == 2 * MS  # type: ignore[union-attr]


def test_inconsistent_exchanges_are_ignored() -> None:
    clock = ClockSync()
    assert clock.add(100, 50, 40, 200) is None  # reply left before the request came
    assert clock.add(100, 50, 60, 90) is None  # answer before the question
    assert not clock.synced and clock.offset_ns == 0


def test_congestion_cuts_to_the_drained_rate_and_quiet_probes_up_slowly() -> None:
    rc = RateController(6_000_000, 500_000, 6_000_000)
    assert rc.update(0, congested=True, drained_bps=3_000_000) == 2_400_000
    assert rc.ceiling == 2_400_000
    t = 0
    # Not raised within the first quiet second.
    assert rc.update(t + 500 * MS, congested=False, drained_bps=None) is None
    rates = []
    for step in range(1, 40):
        t = 1000 * MS + step * 250 * MS
        rc.update(t, congested=False, drained_bps=None)
        rates.append(rc.target)
    assert rates == sorted(rates) and rates[-1] <= 6_000_000
    # Beyond the ceiling only 2 % a step.
    assert all(b / a <= 1.021 for a, b in zip(rates, rates[1:], strict=False) if a >= 2_400_000)
    # Never below the minimum.
    for _ in range(50):
        rc.update(t, congested=True, drained_bps=10_000)
    assert rc.target == 500_000


def test_a_stream_starts_climbing_fast_until_its_first_congestion() -> None:
    rc = RateController(3_000_000, 750_000, 6_000_000)
    assert rc.update(0, congested=False, drained_bps=None) == 3_300_000  # no quiet second needed
    for i in range(1, 20):
        rc.update(i * 250 * MS, congested=False, drained_bps=None)
    assert rc.target == 6_000_000
    rc.update(6 * 10**9, congested=True, drained_bps=4_000_000)
    assert not rc.starting and rc.target == 3_200_000
    assert rc.update(6 * 10**9 + 250 * MS, congested=False, drained_bps=None) is None
