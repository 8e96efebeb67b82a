"""Video strategies: how one output video stream is made.

Each strategy is a :class:`~vtremote.pipeline.handler.Handler` (packets of one
input stream in, packets of one output stream out). :func:`make_video_handler`
takes the first that can serve the stream and logs, once, why the ones before
it could not:

* packet transcode (:mod:`.packet_transcode`): compressed packets travel, the
  server decodes, filters and encodes;
* the frame path (:mod:`.frame_path`): a local or remote decoder
  (:mod:`.frame_sources`), filters on this machine, a local or remote encoder
  (:mod:`.frame_sinks`; raw frames travel to a remote encoder), or segments
  encoded on several servers at once (:mod:`.parallel_encode`);
* with ``-vt_remote_parallel N``, segments of source packets transcoded on N
  servers at once (:mod:`.parallel_transcode`) when the job can be a packet
  transcode, else segments of raw frames.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

from vtremote.errors import NoServerError, UnsupportedConfigError, UsageError
from vtremote.pipeline.handler import Handler, JobContext
from vtremote.pipeline.inputs import Input
from vtremote.pipeline.video.frame_path import FrameHandler
from vtremote.pipeline.video.frame_sinks import FrameSink, LocalEncode, RemoteEncode
from vtremote.pipeline.video.frame_sources import open_frame_source
from vtremote.pipeline.video.packet_transcode import (
    PacketTranscodeHandler,
    chain_refusal,
    why_not_transcode,
)

log = logging.getLogger(__name__)


def make_video_handler(
    ctx: JobContext, inp: Input, in_stream: Any, out_index: int, codec: str
) -> Handler:
    """The handler for one output video stream (``codec`` is the ``-c:v`` name, not ``copy``)."""
    out = ctx.output
    if out.remote_codec is not None and ctx.remote_output.parallel > 1:
        return _parallel_or_frames(ctx, inp, in_stream, out_index, codec)
    if out.remote_codec is not None:
        # Structural reasons (trimming, uncompressed input, -vt_remote_transcode 0) are
        # logged at INFO; a chain or a server that refuses costs wire bandwidth: WARNING.
        level, reason = logging.INFO, why_not_transcode(ctx, inp, in_stream)
        if reason is None:
            level, reason = logging.WARNING, chain_refusal(out)
        if reason is None:
            try:
                return PacketTranscodeHandler(ctx, inp, in_stream, out_index, codec)
            except UnsupportedConfigError as e:  # the server's answer: no transcode, codec, filter
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
    return _frame_handler(ctx, inp, in_stream, out_index, codec)


def _parallel_or_frames(
    ctx: JobContext, inp: Input, in_stream: Any, out_index: int, codec: str
) -> Handler:
    """``-vt_remote_parallel N``: segments of source packets on N servers, else segments of
    raw frames (the reason logged)."""
    # Loaded only for a parallel job.
    from vtremote.pipeline.video.parallel_transcode import open_parallel_transcode

    level = logging.INFO  # the job's shape (uncompressed input, trims, ...)
    try:
        handler, reason = open_parallel_transcode(ctx, inp, in_stream, out_index, codec)
    except (UnsupportedConfigError, NoServerError) as e:  # the servers' answer
        level, handler, reason = logging.WARNING, None, str(e)
    if handler is not None:
        return handler
    if ctx.output.transcode == "on":
        raise UsageError(f"-vt_remote_transcode 1: packet transcode is not possible: {reason}")
    log.log(
        level,
        "video %d:%d: segments of raw frames, not of packets: %s",
        inp.index,
        in_stream.index,
        reason,
    )
    return _frame_handler(ctx, inp, in_stream, out_index, codec)


def _frame_handler(
    ctx: JobContext, inp: Input, in_stream: Any, out_index: int, codec: str
) -> Handler:
    source = open_frame_source(ctx, inp, in_stream)
    return FrameHandler(
        ctx,
        inp,
        in_stream,
        out_index,
        codec,
        source,
        lambda rate: open_frame_sink(ctx, codec, rate),
    )


def open_frame_sink(ctx: JobContext, codec: str, rate: Fraction | None) -> FrameSink:
    """The output's remote encoder (``-c:v *_videotoolbox_remote`` after ``-i``), segments on
    several servers (``-vt_remote_parallel``), else a PyAV one."""
    remote = ctx.output.remote_codec
    if remote and ctx.remote_output.parallel > 1:
        # Loaded only for a parallel encode.
        from vtremote.pipeline.video.parallel_encode import ParallelEncode

        return ParallelEncode(ctx, remote)
    return RemoteEncode(ctx, remote) if remote else LocalEncode(ctx, codec, rate)


__all__ = ["FrameHandler", "PacketTranscodeHandler", "make_video_handler", "open_frame_sink"]
