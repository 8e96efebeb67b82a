"""Where a video handler's frames go: a local PyAV encoder or a remote one.

A :class:`FrameSink` owns the output stream. It is created up front (streams
are added in ``-map`` order) and opened with the first frame, when the size
after the filters and the time base are known.
"""

from __future__ import annotations

import abc
import logging
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeAlias

import av
import av.error

from vtremote.client import RemoteEncoder
from vtremote.client.encoder import EncoderSettings
from vtremote.errors import JobError
from vtremote.pipeline.handler import JobContext
from vtremote.pipeline.output import open_output_stream_for_packets
from vtremote.pipeline.remote_sessions import open_encoder
from vtremote.pipeline.spec import OutputSpec, asked_wire_format

if TYPE_CHECKING:
    from vtremote.client.failover import FailoverEncoder

log = logging.getLogger(__name__)

Packet: TypeAlias = "av.Packet[Any]"
VideoFrame = av.VideoFrame

AVFMT_GLOBALHEADER = 0x0040
AV_CODEC_FLAG_GLOBAL_HEADER = 1 << 22
#: The ffmpeg 8 command line sets AV_CODEC_FLAG_FRAME_DURATION on every encoder;
#: the reference captures carry it (``flags=256``), so the CONFIGURE does too.
AV_CODEC_FLAG_FRAME_DURATION = 1 << 8
#: Options only a local encoder understands; a remote encoder says it ignores them.
LOCAL_ONLY_OPTIONS = ("preset", "tune", "crf", "x264-params", "x265-params", "bufsize", "threads")


def color_settings(source: Any) -> dict[str, Any]:
    """The colour tags of a frame or a decoder's codec context, as encoder settings."""
    return {
        "color_range": int(source.color_range),
        "colorspace": int(source.colorspace),
        "color_primaries": int(source.color_primaries),
        "color_trc": int(source.color_trc),
    }


def remote_settings(
    ctx: JobContext, colors: dict[str, Any], sar: Fraction | None
) -> EncoderSettings:
    """The remote encoder's settings: the output's video options over the source's colours,
    the muxer's flags."""
    out = ctx.output
    settings: dict[str, Any] = colors | dict(out.video)
    flags = AV_CODEC_FLAG_FRAME_DURATION
    if ctx.container.format.flags & AVFMT_GLOBALHEADER:
        flags |= AV_CODEC_FLAG_GLOBAL_HEADER
    settings["flags"] = settings.get("flags", 0) | flags
    if sar:
        settings.setdefault("sar", (sar.numerator, sar.denominator))
    ignored = sorted(k for k in out.codec_options if k in LOCAL_ONLY_OPTIONS)
    if ignored:
        log.warning(
            "%s ignores %s (local encoder options)",
            out.video_codec,
            ", ".join("-" + k for k in ignored),
        )
    return EncoderSettings.from_kwargs(**settings)


def remote_pix_fmt(out: OutputSpec, remote_codec: str, frame: VideoFrame) -> str:
    """NV12, or P010 for HEVC from a source of more than 8 bits (``-pix_fmt`` may choose)."""
    want = out.pix_fmt
    # More than 8 bits per sample picks P010 for HEVC (a name test would take nv12 for 12-bit).
    deep = max(c.bits for c in frame.format.components) > 8
    default = "p010le" if remote_codec == "hevc" and deep else "nv12"
    if want is None:
        return default
    asked = asked_wire_format(want, remote_codec)
    if asked is not None:
        return asked
    log.warning(
        "incompatible pixel format %r for %s, auto-selecting %s", want, out.video_codec, default
    )
    return default


class FrameSink(abc.ABC):
    """Frames in, packets for the output stream out."""

    #: The remote session behind this sink, if any (for wire stats and --json).
    session: RemoteEncoder | FailoverEncoder | None = None
    out_stream: Any

    @property
    @abc.abstractmethod
    def is_open(self) -> bool: ...

    @abc.abstractmethod
    def open(
        self, frame: VideoFrame, time_base: Fraction, rate: Fraction | None, sar: Fraction | None
    ) -> None:
        """Open the encoder for frames like ``frame`` (the stream's context already has size,
        rate, colours)."""

    @abc.abstractmethod
    def encode(self, frame: VideoFrame, keyframe: bool) -> list[Packet]: ...

    @abc.abstractmethod
    def flush(self) -> list[Packet]: ...

    @property
    def default_duration(self) -> int:
        """Duration for a frame that has none (ticks of the encoder's time base)."""
        return 0

    def close(self) -> None:  # noqa: B027 - a local encoder holds nothing to release
        """Release the remote session (also on errors)."""


class LocalEncode(FrameSink):
    """A PyAV encoder of this machine (``-c:v libx264`` ...)."""

    def __init__(self, ctx: JobContext, codec: str, rate: Fraction | None) -> None:
        self.out = ctx.output
        try:
            self.out_stream = ctx.container.add_stream(codec, rate=rate or 25)
        except (ValueError, av.error.FFmpegError) as e:
            raise JobError(
                f"video encoder {codec!r} cannot write into {ctx.output_format}: {e}"
            ) from e
        self.ctx: Any = self.out_stream.codec_context

    @property
    def is_open(self) -> bool:
        return bool(self.ctx.is_open)

    def open(
        self, frame: VideoFrame, time_base: Fraction, rate: Fraction | None, sar: Fraction | None
    ) -> None:
        ctx = self.ctx
        formats = [f.name for f in (ctx.codec.video_formats or [])]
        want = self.out.pix_fmt or frame.format.name
        if formats and want not in formats:
            chosen = formats[0]
            if self.out.pix_fmt:
                log.warning(
                    "incompatible pixel format %r for %s, auto-selecting %s",
                    want,
                    ctx.codec.name,
                    chosen,
                )
            want = chosen
        ctx.pix_fmt = want
        if "threads" in self.out.codec_options:
            ctx.thread_count = int(self.out.codec_options["threads"])
        options = {k: v for k, v in self.out.codec_options.items() if k != "threads"}
        ctx.options = options
        try:
            ctx.open()
        except av.error.FFmpegError as e:
            raise JobError(
                f"local encoder {ctx.codec.name} does not open with these options ({options}): {e}"
            ) from e

    def encode(self, frame: VideoFrame, keyframe: bool) -> list[Packet]:
        frame.pict_type = (
            av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        )
        if frame.format.name != self.ctx.pix_fmt:
            frame = frame.reformat(format=self.ctx.pix_fmt)
        packets: list[Packet] = self.out_stream.encode(frame)
        return packets

    def flush(self) -> list[Packet]:
        if not self.is_open:
            return []
        packets: list[Packet] = self.out_stream.encode(None)
        return packets


class RemoteEncode(FrameSink):
    """A :class:`RemoteEncoder` session: raw frames travel, packets come back."""

    def __init__(self, ctx: JobContext, remote_codec: str) -> None:
        self.ctx = ctx
        self.out = ctx.output
        self.remote_codec = remote_codec
        try:
            self.out_stream = open_output_stream_for_packets(ctx.container, remote_codec)
        except (ValueError, av.error.FFmpegError) as e:
            raise JobError(
                f"video encoder {self.out.video_codec!r} cannot write into {ctx.output_format}: {e}"
            ) from e

    @property
    def is_open(self) -> bool:
        return self.session is not None

    def open(
        self, frame: VideoFrame, time_base: Fraction, rate: Fraction | None, sar: Fraction | None
    ) -> None:
        pix_fmt = remote_pix_fmt(self.out, self.remote_codec, frame)
        ctx = self.out_stream.codec_context
        # A pool or a fallback gets the failover encoder (pipeline/remote_sessions.py).
        self.session = open_encoder(
            self.ctx.remote_output,
            self.remote_codec,
            width=frame.width,
            height=frame.height,
            pix_fmt=pix_fmt,
            time_base=time_base,
            framerate=rate,
            settings=remote_settings(self.ctx, color_settings(frame), sar),
        )
        self.ctx.add_session(self.session)
        ctx.pix_fmt = "yuv420p10le" if pix_fmt.startswith("p010") else "yuv420p"
        if self.session.extradata:
            ctx.extradata = self.session.extradata
        else:
            log.warning(
                "%s sent no extradata; the output may need in-band parameter sets",
                self.session.server,
            )

    def encode(self, frame: VideoFrame, keyframe: bool) -> list[Packet]:
        assert self.session is not None
        return self.session.encode(frame, keyframe=keyframe)

    def flush(self) -> list[Packet]:
        return self.session.flush() if self.session is not None else []

    @property
    def default_duration(self) -> int:
        return self.session.default_duration if self.session is not None else 0

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


__all__ = ["FrameSink", "LocalEncode", "RemoteEncode", "color_settings", "remote_settings"]
