"""The local fallback: encode on this machine with PyAV when no server can be had.

:class:`LocalEncoder` has the calls :class:`~vtremote.client.failover.FailoverEncoder`
needs from a :class:`~vtremote.client.RemoteEncoder` (``encode(frame, keyframe=)``,
``flush()``, ``extradata``, ``stats``), so a job can start on it, or switch to it
mid-stream, with the same bookkeeping. It runs libx264 / libx265 with the
session's bitrate, GOP and B-frame settings; packets are Annex B like a
server's, with pts/dts in the session's time base.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, TypeAlias

import av
import av.error

from vtremote.client.encoder import EncoderSettings, frame_ticks
from vtremote.client.stats import SessionStats
from vtremote.engines.transcode import FilterStage, InputDecoder
from vtremote.errors import EngineError
from vtremote.wire import filters as vf
from vtremote.wire.constants import PixelFormat, WireCompression

Packet: TypeAlias = "av.Packet[Any]"

#: The PyAV encoder used for each wire codec.
LOCAL_CODECS = {"h264": "libx264", "hevc": "libx265"}
#: AV_CODEC_FLAG_GLOBAL_HEADER: parameter sets out of band (extradata) instead of in-band.
GLOBAL_HEADER = 1 << 22


class LocalEncoder:
    """A libx264/libx265 encoder of this process with the remote encoder's calls."""

    compression = WireCompression.NONE
    server_name = "local"
    server_version = ""
    config_record = b""
    pipelined = True

    def __init__(
        self,
        codec: str,
        *,
        width: int,
        height: int,
        pix_fmt: PixelFormat,
        time_base: Fraction,
        framerate: Fraction | None,
        settings: EncoderSettings,
    ) -> None:
        self.codec = codec
        self.engine = LOCAL_CODECS[codec]
        self.time_base = time_base
        self.width, self.height = width, height
        self.default_duration = frame_ticks(framerate, time_base)
        self._stats = SessionStats()
        self._t0 = time.monotonic()
        ctx: Any = av.CodecContext.create(self.engine, "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p10le" if pix_fmt is PixelFormat.P010 else "yuv420p"
        ctx.time_base = time_base
        if framerate:
            ctx.framerate = framerate
        if settings.bitrate:
            ctx.bit_rate = settings.bitrate
        if settings.gop:
            ctx.gop_size = settings.gop
        ctx.max_b_frames = settings.max_b_frames
        if settings.flags & GLOBAL_HEADER:
            ctx.flags |= GLOBAL_HEADER
        opts = {"preset": "veryfast"}
        if codec == "h264":
            opts["x264-params"] = "log=-1"  # its own stderr lines would break the progress line
        else:
            opts["x265-params"] = "log-level=none"
        ctx.options = opts
        try:
            ctx.open()
        except av.error.FFmpegError as e:
            raise EngineError(
                f"local fallback {self.engine} does not open for {width}x{height}: {e}"
            ) from e
        self._ctx = ctx
        #: Annex B parameter sets when they are out of band (global header), else empty.
        self.extradata = bytes(ctx.extradata or b"")
        self._flushed = False

    @property
    def server(self) -> str:
        return f"local {self.engine}"

    @property
    def stats(self) -> SessionStats:
        self._stats.elapsed = time.monotonic() - self._t0
        return self._stats

    def encode(self, frame: av.VideoFrame, *, keyframe: bool | None = None) -> list[Packet]:
        if frame.format.name != self._ctx.pix_fmt:
            pts, tb, duration = frame.pts, frame.time_base, frame.duration
            frame = frame.reformat(format=self._ctx.pix_fmt)
            frame.pts, frame.time_base, frame.duration = pts, tb, duration
        if keyframe is None:
            keyframe = frame.pict_type == av.video.frame.PictureType.I
        frame.pict_type = (
            av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        )
        self._stats.frames += 1
        return self._out(self._ctx.encode(frame))

    def flush(self) -> list[Packet]:
        if self._flushed:
            return []
        self._flushed = True
        return self._out(self._ctx.encode(None))

    def _out(self, packets: list[Packet]) -> list[Packet]:
        for p in packets:
            p.time_base = self.time_base
            self._stats.packets += 1
        return packets

    def _take(self) -> list[Packet]:
        return []  # nothing is ever waiting: encode() returns what the codec gave

    def close(self) -> None:
        """Nothing to release: the codec context is freed with the object."""


class LocalTranscoder:
    """Decode -> the allowlisted filter chain -> libx264/libx265, on this machine: the local
    fallback of a packet transcode, with the calls of a
    :class:`~vtremote.client.packet_transcoder.RemoteTranscoder` the failover needs.

    The decoder and the filter graph are the server's own stages
    (:mod:`vtremote.engines.transcode`), so the output has the geometry and time base a
    server announces for the same CONFIGURE; encoding is :class:`LocalEncoder`. Output
    frames at or after each of ``key_times`` (seconds) and every ``key_every`` seconds
    are IDR frames, as a server makes them.
    """

    compression = WireCompression.NONE
    server_name = "local"
    server_version = ""
    pipelined = True

    def __init__(
        self,
        codec: str,
        *,
        input_codec: str,
        input_extradata: bytes,
        source: vf.Geometry,
        chain: vf.Chain,
        pix_fmt: PixelFormat,
        settings: EncoderSettings,
        key_times: Sequence[Fraction] = (),
        key_every: Fraction | None = None,
    ) -> None:
        out = vf.output_geometry(chain, source)
        self.codec = codec
        self.pix_fmt = pix_fmt
        self.width, self.height, self.time_base = out.width, out.height, out.time_base
        self.output_framerate = out.frame_rate
        self._decoder = InputDecoder(
            input_codec, input_extradata, source.time_base, (source.width, source.height)
        )
        fmt = "nv12" if pix_fmt is PixelFormat.NV12 else "p010le"
        self._filters = FilterStage(chain, source, out, fmt)
        self._encoder = LocalEncoder(
            codec,
            width=out.width,
            height=out.height,
            pix_fmt=pix_fmt,
            time_base=out.time_base,
            framerate=out.frame_rate,
            settings=settings,
        )
        self.engine = self._encoder.engine
        self.server = self._encoder.server
        self.extradata = self._encoder.extradata
        self.config_record = b""
        self._keys = sorted(key_times)
        self._every = key_every
        self._next_every = Fraction(0)
        self._source_tb = source.time_base
        self._flushed = False

    @property
    def stats(self) -> SessionStats:
        return self._encoder.stats

    def transcode(self, packet: Packet) -> list[Packet]:
        packet.time_base = self._source_tb
        return self._encode(self._decoder.decode(packet), end=False)

    def flush(self) -> list[Packet]:
        if self._flushed:
            return []
        self._flushed = True
        return self._encode(self._decoder.decode(None), end=True) + self._encoder.flush()

    def _encode(self, decoded: list[av.VideoFrame], *, end: bool) -> list[Packet]:
        frames: list[av.VideoFrame] = []
        for frame in decoded:
            frame.time_base = self._source_tb
            frames += self._filters.push(frame)
        if end:
            frames += self._filters.push(None)
        out: list[Packet] = []
        for frame in frames:
            frame.time_base = self.time_base
            out += self._encoder.encode(frame, keyframe=self._forced(int(frame.pts or 0)))
        return out

    def _forced(self, pts: int) -> bool:
        """True for the first frame at or after a key time or an interval step."""
        t = pts * self.time_base
        reached = bisect.bisect_right(self._keys, t)  # key times at or before this frame
        del self._keys[:reached]
        if self._every is None or t < self._next_every:
            return reached > 0
        self._next_every = (t // self._every + 1) * self._every
        return True

    def _take(self) -> list[Packet]:
        return []

    def close(self) -> None:
        self._decoder.close()
        self._filters.close()
