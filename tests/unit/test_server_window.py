"""server/window.py: what a plain client's window needs, decided from the frames it sent."""

from __future__ import annotations

import av
import pytest

from vtremote.server.window import (
    FIRST_FRAME_WAIT,
    PONG_GRACE,
    PROBE_AFTER,
    PROBE_FALLBACK,
    REPLAY_LIMIT,
    STALL_WAIT,
    Action,
    PlainWindow,
    RepeatedFrames,
    restart_budget,
)
from vtremote.wire import messages


def _wire_frame(pts: int, fill: int = 0) -> messages.Frame:
    y = bytes([fill]) * (64 * 16)
    return messages.Frame(
        pts, 1, 0, (messages.Plane(64, 16, y), messages.Plane(64, 8, y[: 64 * 8]))
    )


def _picture(i: int) -> av.VideoFrame:
    f = av.VideoFrame(64, 16, "nv12")
    f.pts = i
    return f


def _feed_pictures(
    w: PlainWindow, n: int, start: float = 0.0, gap: float = 0.001, packets: int = 0
) -> float:
    t = start
    for _ in range(n):
        w.on_frame(_picture(w.frames), t, packets)
        t += gap
    return t - gap


def test_only_the_frame_just_before_counts_as_a_copy() -> None:
    w = RepeatedFrames()
    assert not w.is_copy(_wire_frame(0))
    assert w.is_copy(_wire_frame(0))  # the same FRAME again
    assert not w.is_copy(_wire_frame(1))
    assert not w.is_copy(
        _wire_frame(0)
    )  # an older one is a new frame (pts going back is the client's business)
    assert not w.is_copy(_wire_frame(0, fill=7))  # same pts, other pixels


def test_a_copy_of_the_first_frame_is_answered() -> None:
    w = PlainWindow()
    _feed_pictures(w, 1)
    w.held(0)
    assert w.on_copy(0.01) is True  # a window of one: nothing else would ever move it
    assert (w.copies_answered, w.copies_unanswered) == (1, 0)


def test_a_copy_is_kept_when_the_window_has_room() -> None:
    """No B-frames, a window of 16: the lost place does not matter."""
    w = PlainWindow()
    _feed_pictures(w, 16, packets=3)
    w.held(0)
    assert w.on_copy(0.1) is False
    assert w.copies_unanswered == 1


def test_a_copy_is_answered_when_held_frames_leave_no_place() -> None:
    """x264 with 2 B-frames holds 2; a window of 3 filled by f0..f2, then p0 and a copy of f2."""
    w = PlainWindow()
    for i in range(3):
        w.on_frame(_picture(i), 0.001 * i, 0)
        w.held(i + 1 if i < 2 else 2)
    assert w.max_hold == 2
    assert w.on_copy(0.01) is True  # 1 lost + 2 held >= a window of 3: it would wait for ever
    w2 = PlainWindow()
    for i in range(4):  # a window of 4 leaves a place for the lost one
        w2.on_frame(_picture(i), 0.001 * i, 0)
        w2.held(min(i + 1, 2))
    assert w2.on_copy(0.01) is False


def test_a_client_stopped_before_the_first_packet_gets_a_restart_with_its_window() -> None:
    w = PlainWindow()
    last = _feed_pictures(w, 2, gap=0.001)
    assert w.on_idle(held=2, now=last + STALL_WAIT / 2) is None  # not long enough
    stall = w.on_idle(held=2, now=last + STALL_WAIT + 0.001)
    assert stall is not None and (stall.action, stall.window) == (Action.RESTART, 2)
    assert w.replay is not None and [f.pts for f in w.replay] == [0, 1]
    assert w.on_idle(held=2, now=last + 1.0) is None  # once per session


def test_the_first_frame_waits_longer() -> None:
    """A slow source between its first two frames must not lose its B-frames."""
    w = PlainWindow()
    _feed_pictures(w, 1)
    assert w.wait() == FIRST_FRAME_WAIT
    assert w.on_idle(held=1, now=FIRST_FRAME_WAIT / 2) is None
    stall = w.on_idle(held=1, now=FIRST_FRAME_WAIT + 0.001)
    assert stall is not None and stall.window == 1


def test_a_slow_client_gets_three_of_its_intervals() -> None:
    w = PlainWindow()
    last = _feed_pictures(w, 5, gap=0.1)  # 10 fps
    assert w.wait() == pytest.approx(0.3)
    assert w.on_idle(held=2, now=last + 0.2) is None


def _with_a_kept_copy(packets: int) -> tuple[PlainWindow, float]:
    """20 frames without B-frames, then a copy the window has room for (kept, not answered)."""
    w = PlainWindow()
    last = _feed_pictures(w, 20, packets=packets)
    w.held(0)
    assert w.on_copy(last) is False
    return w, last


def test_after_the_first_packet_an_unanswered_copy_is_answered_on_a_stall() -> None:
    w, last = _with_a_kept_copy(packets=5)
    w.on_packet(now=last)
    assert w.replay is None  # nothing can be encoded again once a packet went out
    assert w.on_idle(held=0, now=last + 0.001) is None
    stall = w.on_idle(held=0, now=last + 1.0)
    assert stall is not None and stall.action is Action.ANSWER_COPY
    assert (w.copies_unanswered, w.copies_answered) == (0, 1)
    assert w.on_idle(held=0, now=last + 5.0) is None  # owed nothing more


def test_nothing_is_done_for_a_client_owed_nothing() -> None:
    w = PlainWindow()
    last = _feed_pictures(w, 3, packets=0)
    w.on_packet(now=last)
    assert w.deadline(held=0) == float("inf")  # the engine thread sleeps its full poll interval
    assert w.on_idle(held=0, now=last + 10) is None


def test_silence_counts_from_the_last_packet_sent() -> None:
    """A slow engine's packets are what the client waits for: its silence starts after them."""
    w, last = _with_a_kept_copy(packets=2)
    w.on_packet(now=last + 1.0)  # the engine took a second for it
    assert w.on_idle(held=1, now=last + 1.0 + STALL_WAIT / 2) is None
    stall = w.on_idle(held=1, now=last + 1.0 + STALL_WAIT + 0.001)
    assert stall is not None and stall.action is Action.ANSWER_COPY


def test_the_replay_is_bounded() -> None:
    w = PlainWindow()
    _feed_pictures(w, REPLAY_LIMIT + 1)
    assert w.replay is None
    assert w.on_idle(held=REPLAY_LIMIT + 1, now=100.0) is None  # no restart without the frames


@pytest.mark.parametrize(("window", "budget"), [(1, 0), (2, 0), (3, 1), (5, 3), (9, 7)])
def test_restart_budget_leaves_a_place_for_the_copy(window: int, budget: int) -> None:
    assert restart_budget(window) == budget


# -- a probed client (the reference FFmpeg client): a PING tells waiting from busy ----------


def _probed_and_silent(frames: int = 1) -> tuple[PlainWindow, float]:
    """A probed client sent ``frames`` frames, all held by the engine; a PING went out."""
    w = PlainWindow(probed=True)
    last = _feed_pictures(w, frames)
    assert w.on_idle(held=frames, now=last + PROBE_AFTER / 2) is None
    stall = w.on_idle(held=frames, now=last + PROBE_AFTER)
    assert stall is not None and stall.action is Action.PROBE
    w.probe_sent(now=last + PROBE_AFTER)
    return w, last + PROBE_AFTER


def test_a_probed_client_that_answers_alone_is_blocked_at_once() -> None:
    """Window 1 with B-frames: no FIRST_FRAME_WAIT, a PONG and its grace."""
    w, probe = _probed_and_silent()
    assert w.on_idle(held=1, now=probe + 0.1) is None  # no answer yet: it may be busy
    w.on_pong(probe + 0.0002, received=1000)
    assert w.deadline(held=1) == pytest.approx(probe + 0.0002 + PONG_GRACE)
    assert w.on_idle(held=1, now=probe + PONG_GRACE / 2, received=1000) is None
    stall = w.on_idle(held=1, now=probe + 0.0002 + PONG_GRACE, received=1000)
    assert stall is not None and (stall.action, stall.window) == (Action.RESTART, 1)
    assert PROBE_AFTER + PONG_GRACE < FIRST_FRAME_WAIT / 4


def test_a_probed_client_answering_with_a_frame_is_busy_however_slow() -> None:
    """A 5 fps source: PONG and FRAME come together 200 ms later, B-frames stay."""
    w, probe = _probed_and_silent()
    w.on_pong(probe + 0.2, received=1000)
    w.on_frame(_picture(1), probe + 0.2, 0)  # the FRAME read right after the PONG
    assert w.on_idle(held=2, now=probe + 0.2 + PROBE_AFTER / 2) is None
    stall = w.on_idle(held=2, now=probe + 0.2 + PONG_GRACE + 0.001)  # silent again: ask again
    assert stall is not None and stall.action is Action.PROBE
    assert w.restarts == 0


def test_a_large_frame_on_its_way_after_the_pong_is_not_a_stall() -> None:
    """1080p over a LAN: the FRAME after the PONG takes longer than the grace to arrive."""
    w, probe = _probed_and_silent()
    w.on_pong(probe + 0.001, received=1000)
    assert (
        w.on_idle(held=1, now=probe + 0.001 + PONG_GRACE, received=900_000) is None
    )  # bytes are coming
    assert w.on_idle(held=1, now=probe + 0.001 + 1.5 * PONG_GRACE, received=3_000_000) is None
    w.on_frame(_picture(1), probe + 0.03, 0)
    assert w.restarts == 0


def test_a_pong_from_before_the_probe_proves_nothing() -> None:
    w, probe = _probed_and_silent()
    w.on_pong(probe - 0.001, received=1000)
    assert w.deadline(held=1) == pytest.approx(probe - PROBE_AFTER + PROBE_FALLBACK)


def test_a_probed_client_that_never_answers_falls_back_to_the_clock() -> None:
    w, probe = _probed_and_silent()
    last = probe - PROBE_AFTER
    assert w.on_idle(held=1, now=last + PROBE_FALLBACK - 0.01) is None
    stall = w.on_idle(held=1, now=last + PROBE_FALLBACK)
    assert stall is not None and stall.action is Action.RESTART


def test_a_probed_client_with_a_kept_copy_gets_its_empty_packet_on_a_lone_pong() -> None:
    w = PlainWindow(probed=True)
    last = _feed_pictures(w, 20, packets=5)
    w.held(0)
    assert w.on_copy(last) is False
    w.on_packet(now=last)
    stall = w.on_idle(held=0, now=last + PROBE_AFTER)
    assert stall is not None and stall.action is Action.PROBE
    w.probe_sent(now=last + PROBE_AFTER)
    w.on_pong(last + PROBE_AFTER, received=10)
    stall = w.on_idle(held=0, now=last + PROBE_AFTER + PONG_GRACE, received=10)
    assert stall is not None and stall.action is Action.ANSWER_COPY
    assert w.deadline(held=0) == float("inf")
