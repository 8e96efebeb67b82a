"""Video strategies: how one output video stream is made.

Each strategy is a :class:`~vtremote.pipeline.streams.Handler` (packets of one
input stream in, packets of one output stream out). :func:`make_video_handler`
takes the first that can serve the stream and logs, once, why the ones before
it could not:

* packet transcode (:mod:`.transcode`): compressed packets travel, the server
  decodes, filters and encodes;
* the frame path (:mod:`.frames`): a local or remote decoder, filters on this
  machine, a local or remote encoder (raw frames travel to a remote encoder).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from vtremote.errors import UnsupportedConfigError, UsageError
from vtremote.pipeline.inputs import Input
from vtremote.pipeline.streams import Handler
from vtremote.pipeline.video.decoders import open_frame_source
from vtremote.pipeline.video.encoders import open_frame_sink
from vtremote.pipeline.video.frames import FrameHandler
from vtremote.pipeline.video.transcode import TranscodeHandler, chain_refusal, why_not_transcode

if TYPE_CHECKING:
    from vtremote.pipeline.job import Job

log = logging.getLogger(__name__)


def make_video_handler(job: Job, inp: Input, in_stream: Any, out_index: int, codec: str) -> Handler:
    """The handler for one output video stream (``codec`` is the ``-c:v`` name, not ``copy``)."""
    out = job.spec.output
    if out.remote_codec is not None:
        # Structural reasons (trimming, uncompressed input, -vt_remote_transcode 0) are
        # logged at INFO; a chain or a server that refuses costs wire bandwidth: WARNING.
        level, reason = logging.INFO, why_not_transcode(job, inp, in_stream)
        if reason is None:
            level, reason = logging.WARNING, chain_refusal(out)
        if reason is None:
            try:
                return TranscodeHandler(job, inp, in_stream, out_index, codec)
            except (
                UnsupportedConfigError
            ) as e:  # the server's answer: no transcode, codec or filter
                reason = str(e)
        if out.transcode == "on":
            raise UsageError(f"-vt_remote_transcode 1: packet transcode is not possible: {reason}")
        log.log(
            level,
            "video %d:%d: raw frames to the remote encoder, not packet transcode: %s",
            inp.index,
            in_stream.index,
            reason,
        )
    source = open_frame_source(job, inp, in_stream)
    return FrameHandler(
        job,
        inp,
        in_stream,
        out_index,
        codec,
        source,
        lambda rate: open_frame_sink(job, codec, rate),
    )


__all__ = ["FrameHandler", "TranscodeHandler", "make_video_handler"]
