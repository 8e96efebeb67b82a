"""Runs that write nothing and encode nothing: a filter source into ``-f null``.

Media servers start ffmpeg this way to learn what it can do: Jellyfin's runtime-key
check runs ``-hide_banner -f lavfi -i nullsrc=s=1x1:d=500 -f null -``, writes ``?`` on
stdin and reads stderr to the end. ffmpeg does that in a couple of seconds; the job
pipeline, built for real outputs, spends a handler, a muxer and a progress update on
each of the 12500 one-pixel frames. Such a run needs none of them: its result is the
frame count and the media time, which the demuxer gives. :func:`counting_only` says when
a job is one; :func:`run_counting` runs it (stop and pause requests honoured).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import av

from vtremote.pipeline.inputs import RunClock
from vtremote.pipeline.spec import JobSpec
from vtremote.pipeline.stats import JobStats


def counting_only(spec: JobSpec) -> bool:
    """A ``-f null`` output of filter sources, with no encoder, filter, map or trim asked for."""
    out = spec.output
    return (
        out.format == "null"
        and all(i.format == "lavfi" and not i.seek and i.duration is None for i in spec.inputs)
        and all(c == "copy" for c in out.codecs.values())
        and not (out.video_filter or out.audio_filter or out.maps or out.size or out.rate)
        and not (out.seek or out.duration is not None or out.max_frames is not None)
    )


def _seconds(ends: dict[int, int], container: Any) -> float:
    streams = container.streams
    return max((float(t * streams[i].time_base) for i, t in ends.items()), default=0.0)


def run_counting(
    spec: JobSpec,
    stats: JobStats,
    clock: RunClock,
    stopped: Callable[[], bool],
    on_progress: Callable[[bool], None],
) -> JobStats:
    """Read every packet of the inputs, count video frames and media time, write nothing."""
    out = spec.output
    clock.restart()
    for inp in spec.inputs:
        with av.open(inp.url, format=inp.format, options=dict(inp.options) or None) as c:
            streams = [
                s
                for s in c.streams
                if not (s.type == "video" and out.no_video)
                and not (s.type == "audio" and out.no_audio)
            ]
            video = {s.index for s in streams if s.type == "video"}
            # Per packet only what is cheap: the frame count and the largest end time in the
            # stream's ticks (turned into seconds once per stream, not with Fractions each time).
            ends: dict[int, int] = {}
            for packet in c.demux(streams):
                if clock.paused or stopped():
                    while not clock.wait_running(0.2) and not stopped():
                        pass
                    if stopped():
                        break
                pts = packet.pts
                if pts is None or not packet.size:
                    continue
                index = packet.stream.index
                end = pts + (packet.duration or 0)
                if index not in ends or end > ends[index]:
                    ends[index] = end
                stats.bytes_out += packet.size
                if index in video:
                    stats.frames += 1
                    if not stats.frames & 1023:
                        stats.out_time = _seconds(ends, c)
                        on_progress(False)
            stats.out_time = max(stats.out_time, _seconds(ends, c))
    stats.finished = time.monotonic()
    on_progress(True)
    return stats
