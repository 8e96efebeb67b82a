"""Capture sources for the sender: a PyAV input (lavfi, a file, a device) paced in real time.

A file or a lavfi graph gives frames as fast as they decode; :func:`paced_frames`
releases each at its own time (pts) on the monotonic clock, which then is its
capture time. A frame that is already more than one frame interval late when it
comes out of the demuxer is dropped (drop, don't queue) and counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av

from vtremote.errors import ConfigError


@dataclass
class Capture:
    container: av.container.InputContainer
    stream: av.VideoStream
    width: int
    height: int
    fps: Fraction
    late_dropped: int = 0
    audio: av.AudioStream | None = None  # the first audio stream, when asked for and there is one

    def close(self) -> None:
        self.container.close()


def open_capture(
    url: str, fmt: str | None = None, options: dict[str, str] | None = None, *, audio: bool = False
) -> Capture:
    """Open ``url`` (with ``-f fmt``) and find its first video stream.

    With ``audio``, also its first audio stream.
    """
    try:
        container = av.open(url, format=fmt, options=options or {})
    except av.FFmpegError as e:
        raise ConfigError(f"cannot open input {url!r}: {e}") from e
    if not container.streams.video:
        container.close()
        raise ConfigError(f"input {url!r} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate or Fraction(30)
    cc = stream.codec_context
    sound = container.streams.audio[0] if audio and container.streams.audio else None
    return Capture(container, stream, cc.width, cc.height, Fraction(rate), audio=sound)


def paced_frames(
    cap: Capture,
    *,
    seconds: float | None = None,
    on_late: Callable[[], None] | None = None,
    clock: Callable[[], int] = time.monotonic_ns,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[tuple[av.VideoFrame | av.AudioFrame, int]]:
    """``(frame, capture_ns)`` at the input's own rate, for ``seconds`` of media at most.

    A video frame dropped for being late is counted in ``cap.late_dropped`` and reported to
    ``on_late`` as it happens (the sender counts it with its own drops, so its BYE says it).
    ``clock`` (nanoseconds) and ``sleep`` (seconds) are the monotonic clock and a sleep on it.

    With an audio stream, its frames come too (as they are demuxed, not paced:
    the video paces the input), on the same clock: the first frame of either
    kind is captured now, every other one at its media time after it.
    """
    start_ns: int | None = None
    first_pts: float | None = None
    interval_ns = int(1e9 / cap.fps)
    n = 0
    streams: list[av.VideoStream | av.AudioStream] = [cap.stream]
    if cap.audio is not None:
        streams.append(cap.audio)
    for frame in cap.container.decode(*streams):
        if not isinstance(frame, (av.VideoFrame, av.AudioFrame)):
            continue
        video = isinstance(frame, av.VideoFrame)
        if frame.time is not None:
            t = float(frame.time)
        elif video:
            t = n / float(cap.fps)
        else:
            continue  # audio with no time cannot be placed on the clock
        n += video
        if first_pts is None:
            first_pts = t
        media = t - first_pts
        if seconds is not None and media >= seconds - 1e-9:
            if video:
                return
            continue
        due = (start_ns or 0) + int(media * 1e9)
        now = clock()
        if start_ns is None:
            start_ns = now
            due = now
        elif not video:
            pass
        elif now < due:
            sleep((due - now) / 1e9)
        elif now - due > interval_ns:
            cap.late_dropped += 1
            if on_late is not None:
                on_late()
            continue
        yield frame, due  # late (within an interval) frames keep their due time: latency counts it
