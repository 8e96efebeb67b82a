"""Transcode sessions on the server: source packets -> decode -> filters -> the session's encoder.

The extension ``ext:transcode`` (docs/protocol.md "Packet transcode"). A client
that sends CONFIGURE ``mode=transcode`` gets a session in which it sends the
source's compressed PACKETs and receives the encoded output's PACKETs; only
the bitstreams cross the network, never pictures.

:class:`TranscodeJob` is what :class:`vtremote.server.session.Session` adds to
an encode session for that: it validates the CONFIGURE (input codec, extradata,
filter chain, sizes), works out the output geometry and the encoder's
:class:`StreamConfig` before anything is opened, and on the engine thread
turns each source packet into the filtered frames the encoder takes, with the
:class:`FrameInfo` the session's timestamp mapper uses to stamp the output
PACKETs (pts of the filtered frame, dts strictly increasing, dts <= pts).

Errors: an input codec this build cannot decode, a filter outside the
allowlist or a geometry that does not fit is refused at CONFIGURE with ERROR 3
(unsupported); malformed option values with ERROR 4; a packet the decoder
rejects (AVERROR_INVALIDDATA) ends the session with ERROR 4 naming the packet
(damage the decoder conceals is not an error). A resolution change mid-stream
rebuilds the filter graph; the output size stays the announced one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from vtremote.engines.base import MAX_DIMENSION, Engine, StreamConfig
from vtremote.engines.options import ENCODE_KEYS
from vtremote.engines.transcode import MAX_EXTRADATA, FilterStage, InputDecoder, available_decoders
from vtremote.errors import ConfigError, UnsupportedConfigError
from vtremote.server.timestamps import FrameInfo
from vtremote.wire import extensions as ext
from vtremote.wire import filters as vf
from vtremote.wire.constants import PixelFormat
from vtremote.wire.messages import Configure

#: Transcode CONFIGURE options: key-frame times (seconds, comma-separated) and interval.
OPT_FORCE_KEY_TIMES = "ext_force_key_times"
OPT_FORCE_KEY_EVERY = "ext_force_key_every"
#: Transcode CONFIGURE: the source's sample aspect ratio, ``num/den`` (absent: 1/1).
OPT_INPUT_SAR = "ext_in_sar"
MAX_FORCED_KEYS = 4096


def offer() -> str:
    """The HELLO_ACK capability string of this server."""
    return ext.transcode_capability(available_decoders(), vf.ALLOWED)


@dataclass(frozen=True, slots=True)
class KeySchedule:
    """Output frames to make IDR: at listed times and/or every ``every`` seconds (FFmpeg's
    ``-force_key_frames`` semantics: the first frame at or after each time)."""

    times: tuple[Fraction, ...] = ()
    every: Fraction | None = None

    @classmethod
    def from_options(cls, opts: dict[str, str]) -> KeySchedule:
        times: list[Fraction] = []
        text = opts.get(OPT_FORCE_KEY_TIMES, "")
        try:
            times = sorted(Fraction(t) for t in text.split(",") if t.strip())
            every = Fraction(opts[OPT_FORCE_KEY_EVERY]) if opts.get(OPT_FORCE_KEY_EVERY) else None
        except (ValueError, ZeroDivisionError):
            raise ConfigError(
                "ext_force_key_times / ext_force_key_every must be decimal seconds"
            ) from None
        if len(times) > MAX_FORCED_KEYS:
            raise ConfigError(f"{len(times)} forced key frames, at most {MAX_FORCED_KEYS}")
        if every is not None and every <= 0:
            raise ConfigError(f"ext_force_key_every={every} must be positive")
        return cls(tuple(times), every)


class TranscodeJob:
    """Decode and filter stages of one transcode session (see the module docstring)."""

    def __init__(
        self,
        stream: StreamConfig,
        input_codec: str,
        extradata: bytes,
        chain: vf.Chain,
        source: vf.Geometry,
        output: vf.Geometry,
        keys: KeySchedule,
    ) -> None:
        self.stream = stream
        self.input_codec = input_codec
        self.extradata = extradata
        self.chain = chain
        self.source = source
        self.output = output
        self.keys = keys
        self.note = ext.OutputNote(
            output.width, output.height, output.time_base, output.frame_rate, output.sar
        ).text()
        self.decoder: InputDecoder | None = None
        self.filters: FilterStage | None = None
        self._next_key = 0
        self._next_every = Fraction(0)
        self._last_in_pts: int | None = None
        self._in_step = 1

    # -- CONFIGURE ------------------------------------------------------------------------

    @classmethod
    def from_configure(cls, codec: str, msg: Configure, *, extensions: bool) -> TranscodeJob:
        """Validate a ``mode=transcode`` CONFIGURE; raises UnsupportedConfigError / ConfigError."""
        if not extensions:
            raise UnsupportedConfigError(
                "mode=transcode is an extension this server does not offer (--no-extensions)"
            )
        opts = msg.option_map()
        input_codec = opts.get(ext.OPT_INPUT_CODEC, "")
        if not input_codec:
            raise ConfigError(f"a transcode CONFIGURE needs option {ext.OPT_INPUT_CODEC}")
        offered = available_decoders()
        if input_codec not in offered:
            raise UnsupportedConfigError(
                f"unsupported input codec {input_codec!r}; this server decodes {', '.join(offered)}"
            )
        extradata = bytes(msg.extradata)
        if len(extradata) > MAX_EXTRADATA:
            raise ConfigError(f"input extradata of {len(extradata)} bytes exceeds {MAX_EXTRADATA}")
        if not (0 < msg.width <= MAX_DIMENSION and 0 < msg.height <= MAX_DIMENSION):
            raise ConfigError(
                f"input size {msg.width}x{msg.height} is outside "
                f"1x1..{MAX_DIMENSION}x{MAX_DIMENSION}"
            )
        if msg.time_base_num <= 0 or msg.time_base_den <= 0:
            raise ConfigError(
                f"input time base {msg.time_base_num}/{msg.time_base_den} must be positive"
            )
        try:
            pix_fmt = PixelFormat(msg.pix_fmt)
        except ValueError:
            raise UnsupportedConfigError(
                f"unsupported pix_fmt={msg.pix_fmt}; supported: 1 (NV12), 2 (P010)"
            ) from None
        chain = vf.parse(opts.get(ext.OPT_FILTERS, ""))
        rate = (
            Fraction(msg.framerate_num, msg.framerate_den)
            if msg.framerate_num > 0 and msg.framerate_den > 0
            else None
        )
        try:
            sar = Fraction(opts.get(OPT_INPUT_SAR, "1"))
        except (ValueError, ZeroDivisionError):
            raise ConfigError(
                f"{OPT_INPUT_SAR}={opts[OPT_INPUT_SAR]!r} is not a ratio like 1/1"
            ) from None
        if not 0 < sar <= 255 or sar.denominator > 65535:
            raise ConfigError(f"{OPT_INPUT_SAR}={sar} is outside 1/65535..255")
        source = vf.Geometry(
            msg.width, msg.height, Fraction(msg.time_base_num, msg.time_base_den), rate, sar
        )
        output = vf.output_geometry(chain, source)
        if output.width % 2 or output.height % 2:
            raise UnsupportedConfigError(
                f"the filter chain makes {output.width}x{output.height} pictures; "
                "4:2:0 encoding needs an even size (use scale=-2:H or an even crop)"
            )
        # Encoder options: the encode keys of the CONFIGURE, the chain's colour tags unless given.
        enc = {k: v for k, v in opts.items() if k in ENCODE_KEYS}
        for key, value in vf.color_options(chain).items():
            enc.setdefault(key, value)
        enc.update(vf.forced_color_options(chain))  # tone-mapped pictures: BT.709, not the source's
        if output.sar != 1 and "sar_num" not in enc:  # scale keeps the display aspect (as FFmpeg)
            enc["sar_num"], enc["sar_den"] = str(output.sar.numerator), str(output.sar.denominator)
        enc["a53_cc"] = "0"
        stream = StreamConfig(
            mode="encode",
            codec=codec,
            width=output.width,
            height=output.height,
            pix_fmt=pix_fmt,
            time_base=output.time_base,
            framerate=output.frame_rate,
            options=enc,
        )
        return cls(
            stream, input_codec, extradata, chain, source, output, KeySchedule.from_options(opts)
        )

    def describe(self) -> str:
        return (
            f"{self.input_codec} {self.source.width}x{self.source.height}"
            f" -> [{vf.serialize(self.chain) or 'no filters'}]"
            f" -> {self.stream.codec} {self.output.width}x{self.output.height}"
            f" tb={self.output.time_base}"
        )

    # -- engine thread ------------------------------------------------------------------------

    def _open(self, engine: Engine) -> tuple[InputDecoder, FilterStage]:
        if self.decoder is None or self.filters is None:
            hw = getattr(type(engine), "hwaccel_device", None)
            self.decoder = InputDecoder(
                self.input_codec,
                self.extradata,
                self.source.time_base,
                (self.source.width, self.source.height),
                hw,
            )
            fmt_for = getattr(engine, "encoder_pix_fmt", None)
            if callable(fmt_for):
                pix_fmt = str(fmt_for(self.stream))
            else:
                pix_fmt = "nv12" if self.stream.pix_fmt is PixelFormat.NV12 else "p010le"
            self.filters = FilterStage(self.chain, self.source, self.output, pix_fmt)
        return self.decoder, self.filters

    def frames(
        self, engine: Engine, packet: av.Packet[Any] | None
    ) -> Iterator[tuple[av.VideoFrame, FrameInfo]]:
        """Decode one source packet (None: the end) and filter what it gave: frames for the
        encoder with the FrameInfo (output pts and duration) of each, one at a time (the
        caller encodes each, and may stop, before the next is made)."""
        decoder, filters = self._open(engine)
        if packet is not None:
            packet.time_base = self.source.time_base
        now = time.monotonic()
        decoded: list[av.VideoFrame | None] = list(decoder.decode(packet))
        if packet is None:
            decoded.append(None)  # then the end of the stream for the filters
        for picture in decoded:
            if picture is not None:
                self._stamp(picture)
            for frame in filters.push(picture):
                yield self._for_encoder(frame, now)

    def _for_encoder(self, frame: av.VideoFrame, now: float) -> tuple[av.VideoFrame, FrameInfo]:
        pts = frame.pts if frame.pts is not None else 0
        if self._force_key(pts):
            frame.pict_type = av.video.frame.PictureType.I
        duration = frame.duration if frame.duration and frame.duration > 0 else 0
        # The session gives the encoder frame indices at 1/rate (engines/ffmpeg.py); a frame in
        # another time base would be rescaled by PyAV on the way in.
        frame.time_base = 1 / self.stream.rate
        return frame, FrameInfo(pts, duration, now)

    def _stamp(self, frame: av.VideoFrame) -> None:
        """Decoded frames without a pts (a source with no timestamps) get the previous
        pts plus one frame, so fps and the encoder see a time line."""
        if frame.pts is None:
            frame.pts = 0 if self._last_in_pts is None else self._last_in_pts + self._in_step
        elif self._last_in_pts is not None and frame.pts > self._last_in_pts:
            self._in_step = frame.pts - self._last_in_pts
        self._last_in_pts = frame.pts
        frame.time_base = self.source.time_base

    def _force_key(self, pts: int) -> bool:
        t = pts * self.output.time_base
        forced = False
        times = self.keys.times
        while self._next_key < len(times) and t >= times[self._next_key]:
            self._next_key += 1
            forced = True
        every = self.keys.every
        if every is not None and t >= self._next_every:
            forced = True
            while self._next_every <= t:
                self._next_every += every
        return forced

    def close(self) -> None:
        """Free the decoder and the filter graph now (on the engine thread, when it ends)."""
        if self.decoder is not None:
            self.decoder.close()
        if self.filters is not None:
            self.filters.close()

    def summary(self) -> str:
        d, f = self.decoder, self.filters
        return (
            f"input={self.input_codec}{' (hw)' if d is not None and d.hardware else ''} "
            f"frames_decoded={d.frames if d else 0} frames_filtered={f.frames_out if f else 0} "
            f"graph_rebuilds={f.rebuilds if f else 0}"
            + (f" discontinuities={f.discontinuities}" if f and f.discontinuities else "")
        )


__all__ = ["KeySchedule", "TranscodeJob", "offer"]
