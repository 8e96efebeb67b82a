"""Where a video handler's frames come from: a local PyAV decoder or a remote one.

Both turn the input stream's packets into ``av.VideoFrame``s with the same
calls, so the frame path (:mod:`vtremote.pipeline.video.frame_path`) does not care
which one it has.
"""

from __future__ import annotations

import abc
import contextlib
import logging
from typing import TYPE_CHECKING, Any, TypeAlias

import av
import av.error

from vtremote.client import RemoteDecoder
from vtremote.errors import UsageError
from vtremote.pipeline.handler import JobContext
from vtremote.pipeline.inputs import Input
from vtremote.pipeline.remote_sessions import open_decoder

if TYPE_CHECKING:
    from vtremote.client.failover_decoder import FailoverDecoder

log = logging.getLogger(__name__)

Packet: TypeAlias = "av.Packet[Any]"
VideoFrame = av.VideoFrame


class FrameSource(abc.ABC):
    """Packets of one input stream in, decoded frames out."""

    #: The remote session behind this source, if any (for wire stats and --json).
    session: RemoteDecoder | FailoverDecoder | None = None

    @abc.abstractmethod
    def decode(self, packet: Packet) -> list[VideoFrame]: ...

    @abc.abstractmethod
    def flush(self) -> list[VideoFrame]:
        """Every frame still inside the decoder (end of input)."""

    def close(self) -> None:  # noqa: B027 - a local decoder holds nothing to release
        """Release the remote session (also on errors)."""


class LocalDecode(FrameSource):
    """The input stream's own PyAV decoder, threaded."""

    def __init__(self, inp: Input, in_stream: Any) -> None:
        self.input = inp
        self.in_stream = in_stream
        self.ctx = in_stream.codec_context
        with contextlib.suppress(Exception):  # a codec without threading keeps its default
            self.ctx.thread_type = "AUTO"
        if "threads" in inp.spec.options:
            self.ctx.thread_count = int(inp.spec.options["threads"])

    def decode(self, packet: Packet) -> list[VideoFrame]:
        try:
            frames: list[VideoFrame] = self.ctx.decode(packet)
        except av.error.InvalidDataError as e:
            log.warning(
                "video stream %d:%d: a packet does not decode: %s",
                self.input.index,
                self.in_stream.index,
                e,
            )
            return []
        return frames

    def flush(self) -> list[VideoFrame]:
        try:
            frames: list[VideoFrame] = self.ctx.decode(None)
        except av.error.EOFError:
            return []
        return frames


class RemoteDecode(FrameSource):
    """A :class:`RemoteDecoder` session (``-c:v h264_videotoolbox_remote`` before ``-i``)."""

    def __init__(self, ctx: JobContext, inp: Input, in_stream: Any, codec: str) -> None:
        name = in_stream.codec_context.name
        if name != codec:
            raise UsageError(
                f"input stream {inp.index}:{in_stream.index} is {name}; "
                f"{inp.spec.video_codec} decodes {codec} only"
            )
        # A pool gets the failover decoder (pipeline/remote_sessions.py).
        self.session = open_decoder(ctx.remote_for_input(inp), in_stream)
        ctx.add_session(self.session)

    def decode(self, packet: Packet) -> list[VideoFrame]:
        assert self.session is not None
        return self.session.decode(packet)

    def flush(self) -> list[VideoFrame]:
        assert self.session is not None
        return self.session.flush()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def open_frame_source(ctx: JobContext, inp: Input, in_stream: Any) -> FrameSource:
    """The input's remote decoder when ``-c:v *_videotoolbox_remote`` precedes ``-i``, else
    PyAV's."""
    remote = inp.spec.remote_codec
    return RemoteDecode(ctx, inp, in_stream, remote) if remote else LocalDecode(inp, in_stream)
