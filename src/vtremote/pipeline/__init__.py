"""Whole jobs: inputs -> per-stream handlers -> one output, without the command line.

:class:`Job` runs a :class:`JobSpec` (what ``vtremote``'s command line parses
into). A handler (:mod:`.handler`) makes one output stream and sees only a
``JobContext``; copy and audio handlers live in :mod:`.streams`, the video
strategies (raw frames to a remote encoder, remote decode, packet transcode,
parallel segments) in :mod:`.video`, and :mod:`.remote_sessions` says which
client session a remote codec gets.
"""

from __future__ import annotations

from vtremote.pipeline.job import Job, check_spec
from vtremote.pipeline.spec import InputSpec, JobSpec, MapSpec, OutputSpec, RemoteOptions
from vtremote.pipeline.stats import JobStats

__all__ = [
    "InputSpec",
    "Job",
    "JobSpec",
    "JobStats",
    "MapSpec",
    "OutputSpec",
    "RemoteOptions",
    "check_spec",
]
