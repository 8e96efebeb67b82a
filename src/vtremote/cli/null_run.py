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
            for packet in c.demux(streams):
                while not clock.wait_running(0.2) and not stopped():
                    pass
                if stopped():
                    break
                if packet.size == 0:
                    continue
                if packet.stream.type == "video":
                    stats.frames += 1
                stats.bytes_out += packet.size
                if packet.pts is not None and packet.time_base is not None:
                    end = (packet.pts + (packet.duration or 0)) * packet.time_base
                    stats.out_time = max(stats.out_time, float(end))
                if stats.frames % 256 == 0:
                    on_progress(False)
    stats.finished = time.monotonic()
    on_progress(True)
    return stats
