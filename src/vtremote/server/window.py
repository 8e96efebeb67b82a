"""Keeping a plain v1 encode client's window moving (docs/protocol.md, "Lock-step clients").

The reference encoder stops sending FRAMEs once ``vt_remote_inflight`` (1 to 128) are
unanswered and then blocks until a PACKET comes (VTR1.md §10.1). It never says what
its window is. Three situations would leave it waiting for a packet no encoder can
give; this module recognises them and says what the session does about each:

* **A frame sent twice.** The frame that fills the window is sent again after the
  next PACKET (§10.1 steps 3 and 4). The copy is encoded once (one PACKET per
  distinct frame), so the client counts one frame in flight that is never answered:
  its window is one smaller from then on. That is harmless while the frames the
  encoder holds back leave it a place (copies + held < window). Where they would
  not, the copy is answered at once with an empty PACKET (muxers drop empty
  packets): a copy of the first frame (a window of 1), or a copy that comes when the
  encoder holds frames and the frames sent show that no place would be left.
* **An encoder that holds more frames than the window** (B-frames, a lookahead):
  before its first packet the client sent all it may and waits. When no FRAME comes
  for a while (:meth:`PlainWindow.wait`) and no packet has gone out yet, the window is
  exactly the frames received: the session reopens the engine with a delay that fits
  and encodes those frames again (:attr:`PlainWindow.replay`). No packet was sent, so
  the stream simply starts with the new encoder's IDR; fewer B-frames is the price.
* **A copy the window could not spare**: with frames held by the encoder and one
  slot lost to an unanswered copy, the client may again wait for a packet that needs
  another frame first. After the same wait the oldest unanswered copy gets its empty
  PACKET.

How long is "a while"? For most clients only the clock can tell: a silence of
STALL_WAIT, or longer for a slow source. The reference FFmpeg client (HELLO client name
``ffmpeg-vtremote``) can be asked: it reads the socket only inside its encode calls, so
it answers a PING at once only while it is blocked waiting for a PACKET; a client that
is busy making its next frame answers with that frame (PONG, then FRAME). For such a
*probed* client the window sends a PING after PROBE_AFTER of silence and takes a PONG
with no FRAME within PONG_GRACE as the proof: a small window costs a few milliseconds
instead of a guess, and a slow source is never taken for a blocked one. Waiting is
enough to act on: the session asks only while its engine thread is idle, every frame
received already encoded, and an engine gives packets only from encode calls, so a
client that waits then would wait for ever.

Sans-IO apart from the clock: the session's connection thread asks
:class:`RepeatedFrames` whether a FRAME is a copy; its engine worker (server/worker.py)
calls :class:`PlainWindow` and does the sending, the reopening and the encoding.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from enum import Enum

import av

from vtremote.wire import messages

#: Shortest silence (seconds) after which a plain client that is owed nothing it can
#: get counts as blocked. A client producing frames slowly (a live source, a slow
#: decoder) gets three of its own frame intervals (:meth:`PlainWindow.wait`).
STALL_WAIT = 0.04

#: The silence after the first frame, before any interval is known: only a window of
#: one stops there, and a slow source must not lose its B-frames for nothing.
FIRST_FRAME_WAIT = 0.1

#: Probed clients (see the module docstring): the silence before a PING is sent, the
#: time a FRAME may take to follow a PONG (the client sends both in one encode call),
#: and how long a client that does not answer may stay silent before it counts as blocked.
PROBE_AFTER = 0.002
PONG_GRACE = 0.01
PROBE_FALLBACK = 1.0

#: The client name the reference FFmpeg client sends in HELLO: a probed client.
PROBED_CLIENT = "ffmpeg-vtremote"

#: Frames kept for encoding again, at most: an engine holds back at most
#: MAX_FRAME_DELAY (8) frames before its first packet, x265 with B-frames a few more.
REPLAY_LIMIT = 16


class Action(Enum):
    RESTART = "restart"  # reopen the engine with a delay that fits and encode the replay again
    ANSWER_COPY = "answer-copy"  # send an empty PACKET for one unanswered copy
    PROBE = "probe"  # send a PING: is the client waiting? (then call probe_sent)


@dataclass(frozen=True)
class Stall:
    action: Action
    #: The client's window as the frames it sent show it (RESTART).
    window: int = 0


class RepeatedFrames:
    """Tells a FRAME sent twice in a row (the connection thread's half of the window)."""

    def __init__(self) -> None:
        self._last_key: tuple[int, ...] | None = None

    def is_copy(self, msg: messages.Frame) -> bool:
        """True if ``msg`` repeats the FRAME just before it (same pts, flags and plane bytes).

        Only the previous FRAME can be repeated that way; sizes and a CRC of each plane's
        ends tell it at any frame size for almost no work.
        """
        key: tuple[int, ...] = (msg.pts, msg.duration, msg.flags)
        for p in msg.planes:
            data = memoryview(p.data).cast("B") if not isinstance(p.data, bytes) else p.data
            key += (
                p.stride,
                p.height,
                len(data),
                zlib.crc32(data[:4096]),
                zlib.crc32(data[-4096:]),
            )
        if key == self._last_key:
            return True
        self._last_key = key
        return False


class PlainWindow:
    """Window bookkeeping for one encode session of a client that negotiated no extension."""

    def __init__(self, probed: bool = False) -> None:
        #: The client answers a PING at once only while it waits for a PACKET (module docstring).
        self.probed = probed
        self._probe_at: float | None = None  # when the outstanding PING went out
        self._pong_at: float | None = None  # when its PONG came
        self._pong_bytes = 0  # bytes read on the connection when it came
        #: Distinct frames given to the engine.
        self.frames = 0
        #: Copies encoded once and not answered: each takes one place of the client's window.
        self.copies_unanswered = 0
        self.copies_answered = 0
        self._copies = 0  # copies received
        self.restarts = 0
        #: The most frames the engine held without a packet after an encode (its delay, as seen).
        self.max_hold = 0
        self._packets_before_last = 0  # PACKETs sent when the last distinct FRAME arrived
        self.packet_sent = False
        #: The frames given to the engine before its first packet (index pts set), for RESTART.
        self.replay: list[av.VideoFrame] | None = []
        self._last_activity = (
            0.0  # the later of the last FRAME read and the last PACKET sent (monotonic)
        )
        self._last_arrival = 0.0
        self._gap = 0.0  # smoothed interval between frames
        self._last_gap = 0.0

    def on_frame(self, frame: av.VideoFrame, arrived: float, packets_before: int) -> None:
        """A distinct frame is about to be encoded (its pts already the engine's index).

        ``arrived``: when it was read; ``packets_before``: PACKETs sent by then.
        """
        self._packets_before_last = packets_before
        self._probe_at = self._pong_at = None  # the client was not blocked
        if self.frames:
            gap = max(0.0, arrived - self._last_arrival)
            self._gap = gap if self.frames == 1 else 0.75 * self._gap + 0.25 * gap
            self._last_gap = gap
        self._last_arrival = arrived
        self._last_activity = max(self._last_activity, arrived)
        self.frames += 1
        if self.replay is not None:
            self.replay.append(frame)
            if len(self.replay) > REPLAY_LIMIT:
                self.replay = None

    def held(self, frames: int) -> None:
        """After an encode: ``frames`` are in the engine without a packet."""
        self.max_hold = max(self.max_hold, frames)

    def on_copy(self, arrived: float) -> bool:
        """A copy came (after every frame before it was encoded); True: answer it now.

        The client sent it right after reading the PACKET that unblocked it, with its
        window full: so the window is the FRAMEs it had sent up to the copied one, less
        the PACKETs it had read then; those are at most the PACKETs sent when that frame
        arrived, which gives a lower bound.
        """
        self._last_activity = max(self._last_activity, arrived)
        self._probe_at = self._pong_at = None
        window = self.frames + self._copies - self._packets_before_last
        self._copies += 1
        first = self.frames == 1 and not self.copies_answered
        if first or (self.max_hold and self.copies_unanswered + 1 + self.max_hold >= window):
            self.copies_answered += 1
            return True
        self.copies_unanswered += 1
        return False

    def on_packet(self, now: float | None = None) -> None:
        """A PACKET went out: from now on nothing can be encoded again.

        The client's silence counts from here too: a slow engine's packets are what a
        full window waits for, and the next FRAME follows them.
        """
        self.packet_sent = True
        self.replay = None
        self._probe_at = self._pong_at = None  # a PING sent before this PACKET proves nothing now
        self._last_activity = max(self._last_activity, time.monotonic() if now is None else now)

    def probe_sent(self, now: float | None = None) -> None:
        """The PING asked for by Action.PROBE went out."""
        self._probe_at = time.monotonic() if now is None else now
        self._pong_at = None

    def on_pong(self, arrived: float, received: int) -> None:
        """A PONG was read at ``arrived``, with ``received`` bytes read on the connection by
        then."""
        if self._probe_at is not None and self._pong_at is None and arrived >= self._probe_at:
            self._pong_at = arrived
            self._pong_bytes = received

    def wait(self) -> float:
        """Silence after which an unprobed client counts as blocked: STALL_WAIT, or three of its
        frame intervals (the smoothed one or the last, whichever is longer: a source that slows
        down after a burst is not taken for a blocked client)."""
        if self.frames < 2 and not self._copies:
            return FIRST_FRAME_WAIT
        return max(STALL_WAIT, 3 * max(self._gap, self._last_gap))

    def owed(self, held: int) -> bool:
        """Could the client be waiting for something only a stall action gives it?"""
        return bool(self._can_restart(held) or self.copies_unanswered)

    def _can_restart(self, held: int) -> bool:
        return bool(held and not self.packet_sent and self.replay is not None and not self.restarts)

    def deadline(self, held: int) -> float:
        """When :meth:`on_idle` next has something to decide (infinity: nothing is owed)."""
        if not self.owed(held):
            return float("inf")
        if not self.probed:
            return self._last_activity + self.wait()
        if self._pong_at is not None:
            return self._pong_at + PONG_GRACE
        if self._probe_at is None:
            return self._last_activity + PROBE_AFTER
        return self._last_activity + PROBE_FALLBACK

    def on_idle(self, held: int, now: float | None = None, received: int = 0) -> Stall | None:
        """Nothing came from the client; ``held`` frames are in the engine without a packet.

        ``received``: bytes read on the connection so far (a probed client that answered
        and is now sending a large FRAME is not blocked). Returns what to do, or None (not
        blocked long enough, or owed nothing).
        """
        now = time.monotonic() if now is None else now
        if now < self.deadline(held):
            return None
        if self.probed and self._pong_at is None and self._probe_at is None:
            return Stall(Action.PROBE)
        if self._pong_at is not None and received > self._pong_bytes:
            self._pong_at, self._pong_bytes = now, received  # a FRAME is on its way: look again
            return None
        self._probe_at = self._pong_at = None
        if self._can_restart(held):
            self.restarts += 1
            self._last_activity = now
            self.max_hold = 0  # the reopened engine's delay is seen afresh
            return Stall(Action.RESTART, window=self.frames)
        if self.copies_unanswered:
            self.copies_unanswered -= 1
            self.copies_answered += 1
            self._last_activity = now
            return Stall(Action.ANSWER_COPY)
        return None


def restart_budget(window: int) -> int:
    """Frames the reopened encoder may hold back for a client whose window is ``window``.

    The client filled its window with the frame that made it wait, so it re-sends that
    frame after the first PACKET: the copy takes one place for good, and the encoder
    may hold one frame fewer than the places left (``window - 2``, at least 0).
    """
    return max(0, window - 2)
