"""``-force_key_frames``: ffmpeg's expression language, parsed once and evaluated per frame."""

from __future__ import annotations

import math
import re
from itertools import pairwise

import pytest

from vtremote.errors import UsageError
from vtremote.pipeline.keyframes import parse_key_frames

EMBY = "expr:if(isnan(prev_forced_t),eq(t,t),gte(t,prev_forced_t+3))"


def forced_times(
    text: str, *, fps: float = 25.0, frames: int = 400, start: float = 0.0
) -> list[float]:
    clock = parse_key_frames(text).clock()
    times = [start + i / fps for i in range(frames)]
    return [round(t, 4) for t in times if clock.forced(t)]


def test_emby_and_jellyfin_expressions() -> None:
    assert forced_times(EMBY) == [0.0, 3.0, 6.0, 9.0, 12.0, 15.0]
    assert forced_times("expr:gte(t,n_forced*3)") == [0.0, 3.0, 6.0, 9.0, 12.0, 15.0]
    # Emby's counts from the last forced frame, Jellyfin's from zero: they part on a late start.
    assert forced_times(EMBY, start=0.5, frames=200) == [0.5, 3.5, 6.5]
    assert forced_times("expr:gte(t,n_forced*3)", start=0.5, frames=200) == [0.5, 3.02, 6.02]
    # NTSC rates: each keyframe is the first frame at least 3 s after the previous one.
    ntsc = forced_times(EMBY, fps=24000 / 1001, frames=300)
    assert all(b - a >= 3 and b - a < 3 + 1001 / 24000 for a, b in pairwise(ntsc))


def test_variables_functions_and_operators() -> None:
    assert forced_times("expr:eq(mod(n,50),0)", frames=120) == [0.0, 2.0, 4.0]
    # n counts every frame, prev_forced_n is the n of the last forced one.
    assert forced_times("expr:if(isnan(prev_forced_n),1,gte(n-prev_forced_n,30))", frames=70) == [
        0.0,
        1.2,
        2.4,
    ]
    assert forced_times("expr:gte(t,2^2)*not(n_forced)+-1*0", frames=200) == [4.0]
    assert forced_times("expr:and(gt(n,10),lt(n_forced,2))") == [0.44, 0.48]
    assert forced_times("expr:or(lte(t,0),ifnot(lt(t,1),eq(n_forced,1)))") == [0.0, 1.0]
    assert forced_times("expr:gte(t, 1.5e0 * (n_forced + 0))", frames=80) == [0.0, 1.52, 3.0]
    assert forced_times("expr:isnan(0/0)", frames=2) == [0.0, 0.04]  # NaN is true, as in C
    assert forced_times("0,2.5,00:00:05", frames=200) == [0.0, 2.52, 5.0]


def test_interval_form_is_recognised() -> None:
    assert parse_key_frames("expr:gte(t,n_forced*2)").interval() == 2.0
    assert parse_key_frames(EMBY).interval() is None
    assert parse_key_frames("1,2").interval() is None
    assert math.isnan(parse_key_frames("expr:0").clock().env["prev_forced_t"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("expr:gte(t,", "ends too early"),
        ("expr:foo(t)", "unknown function foo"),
        ("expr:x+1", "unknown name 'x'"),
        ("expr:gte(t,1,2)", "takes 2 argument"),
        ("expr:1 2", "unexpected '2'"),
        ("expr:(t", "')' is missing"),
        ("expr:__import__(1)", "unknown function __import__"),
        ("expr:__import__('os')", 'unexpected "\'"'),
        ("expr:" + "1+" * 3000 + "1", "exceeds 4096"),
        ("source", "'source'"),
    ],
)
def test_bad_expressions_name_the_fault(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_key_frames(text)
