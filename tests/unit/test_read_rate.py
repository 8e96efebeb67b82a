"""``-re`` / ``-readrate``: packets leave no faster than the rate allows, on the run's clock."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import pytest

from vtremote.pipeline.inputs import RunClock, paced
from vtremote.pipeline.spec import InputSpec


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def packets(seconds: float, fps: int = 25, stream: int = 0) -> list[Any]:
    tb = Fraction(1, 90000)
    step = 90000 // fps
    start = 126000  # an MPEG-TS input starting at 1.4 s
    return [
        SimpleNamespace(
            dts=start + i * step,
            pts=start + i * step,
            time_base=tb,
            stream=SimpleNamespace(index=stream),
        )
        for i in range(round(seconds * fps))
    ]


def read_times(spec: InputSpec, items: list[Any], fake: FakeTime, clock: RunClock) -> list[float]:
    out = []
    for _ in paced(iter(items), spec, clock, sleep=fake.sleep):
        out.append(clock.elapsed())
    return out


@pytest.mark.parametrize(("rate", "burst"), [(1.0, 0.0), (1.0, 0.5), (2.0, 0.0), (0.5, 1.0)])
def test_packets_wait_for_their_time(rate: float, burst: float) -> None:
    fake = FakeTime()
    clock = RunClock(now=lambda: fake.now)
    spec = InputSpec("live.ts", read_rate=rate, read_burst=burst)
    items = packets(8.0)
    times = read_times(spec, items, fake, clock)
    for i, t in enumerate(times):
        due = max(i / 25 - burst, 0.0) / rate
        assert due - 0.001 <= t < due + 0.06  # never early, late by at most one sleep step
    # 8 s of input take 8 s / rate less the burst, not the 1.8 s of an unpaced read.
    assert times[-1] == pytest.approx((8.0 - 1 / 25 - burst) / rate, abs=0.06)


def test_unpaced_input_reads_at_once_and_pauses_do_not_count() -> None:
    fake = FakeTime()
    clock = RunClock(now=lambda: fake.now)
    assert read_times(InputSpec("a.mkv"), packets(4.0), fake, clock) == [0.0] * 100
    spec = InputSpec("live.ts", read_rate=1.0, read_burst=0.0)
    it = paced(iter(packets(4.0)), spec, clock, sleep=fake.sleep)
    clock.restart()
    next(it)
    assert clock.pause() and not clock.pause() and clock.paused
    fake.now += 30.0  # a long pause: the clock stands still
    assert clock.elapsed() == 0.0
    assert clock.resume() and not clock.resume()
    rest = []
    for _ in it:
        rest.append(clock.elapsed())
    assert rest[0] == pytest.approx(1 / 25, abs=0.06)  # no burst to catch up the pause
    assert rest[-1] == pytest.approx(99 / 25, abs=0.06)
