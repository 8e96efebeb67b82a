"""Video strategies: how one output video stream is made.

Each strategy is a :class:`~vtremote.pipeline.streams.Handler` (packets of one
input stream in, packets of one output stream out) and says for itself whether
it can serve a stream. :func:`make_video_handler` asks them in order and logs
which one it took and why the ones before it could not:

* packet transcode (:mod:`.transcode`): compressed packets travel, the server
  decodes, filters and encodes;
* the frame path (:mod:`.frames`): a local or remote decoder, filters on this
  machine, a local or remote encoder (raw frames travel to a remote encoder).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vtremote.pipeline.inputs import Input
from vtremote.pipeline.streams import Handler
from vtremote.pipeline.video.decoders import open_frame_source
from vtremote.pipeline.video.encoders import open_frame_sink
from vtremote.pipeline.video.frames import FrameHandler

if TYPE_CHECKING:
    from vtremote.pipeline.job import Job


def make_video_handler(job: Job, inp: Input, in_stream: Any, out_index: int, codec: str) -> Handler:
    """The handler for one output video stream (``codec`` is the ``-c:v`` name, not ``copy``)."""
    source = open_frame_source(job, inp, in_stream)
    return FrameHandler(job, inp, in_stream, out_index, codec, source, lambda rate: open_frame_sink(job, codec, rate))


__all__ = ["FrameHandler", "make_video_handler"]
