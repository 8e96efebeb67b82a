"""What a stream handler is, and the small part of a job it may see.

A :class:`Handler` makes one output stream from one input stream (packets in,
packets to the muxer out). It gets a :class:`JobContext`, not the job: the
output's spec, the output container and its muxer, the remote options of the
run, and a way to register the remote sessions it opens. It reports what it
did through :meth:`Handler.describe` and :attr:`Handler.video_frames`; the job
reads those and decides (children report, parents decide).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import av

from vtremote.client.stats import SessionReport
from vtremote.pipeline.inputs import Input
from vtremote.pipeline.output import Muxer
from vtremote.pipeline.spec import OutputSpec, RemoteOptions

Packet: TypeAlias = "av.Packet[Any]"


@dataclass(frozen=True)
class JobContext:
    """The part of a running job a handler uses.

    ``remote_output`` and ``remote_inputs`` are the run's remote options, host
    already resolved (the one named anywhere, else the embedded server);
    ``add_session`` registers a remote session for the wire totals, ``--json``
    and closing at the end of the run.
    """

    output: OutputSpec
    container: Any  # av.container.OutputContainer
    muxer: Muxer
    remote_output: RemoteOptions
    remote_inputs: tuple[RemoteOptions, ...]
    add_session: Callable[[SessionReport], None]

    @property
    def output_format(self) -> str:
        return str(self.container.format.name)

    def remote_for_input(self, inp: Input) -> RemoteOptions:
        return self.remote_inputs[inp.index]


class Handler(abc.ABC):
    """One output stream fed from one input stream."""

    sparse = False  # subtitles: do not keep the run alive waiting for them
    out_stream: Any

    def __init__(self, ctx: JobContext, inp: Input, in_stream: Any, out_index: int) -> None:
        self.ctx = ctx
        self.input = inp
        self.in_stream = in_stream
        self.out_index = out_index
        self.done = False
        out = ctx.output
        #: Source seconds that become output time 0 (ffmpeg: start time + -ss).
        self.origin = inp.start + inp.spec.seek + out.seek
        #: Source seconds subtracted from timestamps: the origin, or with -copyts none
        #: (only the input's start with -start_at_zero), as ffmpeg does.
        self.zero = (inp.start if out.start_at_zero else 0.0) if out.copyts else self.origin
        #: Source seconds where the output ends (None: where the input does): an output's
        #: -t / -to count in output time (with -copyts from the source's clock, as ffmpeg
        #: counts), an input's from its -ss.
        stops = []
        if (t := out.recording_time) is not None:
            stops.append((self.zero + out.seek if out.copyts else self.origin) + t)
        if (t := inp.spec.recording_time) is not None:
            stops.append(inp.start + inp.spec.seek + t)
        self.stop = min(stops) if stops else None
        #: The shortest -t / -to of the input and the output, in seconds (None: neither).
        lengths = [t for t in (out.recording_time, inp.spec.recording_time) if t is not None]
        self.length = min(lengths) if lengths else None
        #: The same end in seconds after the origin (what -t means without -copyts).
        self.end = self.stop - self.origin if self.stop is not None else None
        #: -ss -noaccurate_seek before -i (and no -ss after it): video starts at the keyframe
        #: the input seek landed on, before the origin, as ffmpeg's does.
        self.from_keyframe = inp.spec.seek > 0 and not inp.spec.accurate_seek and out.seek <= 0

    def started_at(self, t: float) -> None:
        """Video's first frame (or keyframe packet) kept is at source second ``t``: after a
        -noaccurate_seek, ffmpeg's -t counts from there."""
        if self.from_keyframe and self.length is not None:
            end = t + self.length
            self.stop = end if self.stop is None else min(self.stop, end)
            self.end = self.stop - self.origin

    @property
    def video_frames(self) -> int:
        """Video frames this handler has made (encoded or copied) so far: the job's count."""
        return 0

    @abc.abstractmethod
    def feed(self, packet: Packet) -> None: ...

    @abc.abstractmethod
    def finish(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.out_index,
            "input": f"{self.input.index}:{self.in_stream.index}",
            "type": self.in_stream.type,
        }

    def close(self) -> None:  # noqa: B027 - most handlers hold nothing to release
        """Release remote sessions (also on errors)."""


__all__ = ["Handler", "JobContext"]
