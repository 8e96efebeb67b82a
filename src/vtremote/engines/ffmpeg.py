"""What every PyAV-backed engine shares: opening, encoding, decoding, probing.

Concrete engines (software.py, nvenc.py, qsv.py, vaapi.py, videotoolbox.py)
name their FFmpeg codecs and map :class:`~vtremote.wire.settings.EncoderSettings`
onto them in :meth:`FFmpegEngine.configure_encoder`; everything else is here:

* encoders are opened with ``AV_CODEC_FLAG_GLOBAL_HEADER`` so the parameter sets
  exist at open time; CONFIGURE_ACK carries them as avcC/hvcC (VTR1.md §3.4,
  §8.3) and no warm-up frame is ever encoded (§7.4, §13.15);
* the encoder is fed frame indices as pts with a time base of 1/rate, so its
  rate control sees a constant frame rate whatever the client's timestamps are
  (the session maps them back);
* decoders get Annex B parameter sets as extradata (converted from avcC/hvcC),
  because the packets arrive in Annex B (§5.2, §8.3);
* hardware decoding uses ``av.codec.hwaccel.HWAccel`` without software
  fallback: if the device does not take the stream the session fails loudly.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, ClassVar

import av
from av.codec.context import Flags
from av.codec.hwaccel import HWAccel
from av.video.codeccontext import VideoCodecContext

from vtremote.engines.base import (
    Engine,
    Mode,
    StreamConfig,
    av_error_text,
    capture_ffmpeg_errors,
    ffmpeg_reason,
)
from vtremote.engines.limits import check_parameter_sets, decoder_options
from vtremote.engines.option_check import check_options
from vtremote.engines.options import flag_names, parse_encode_options, unhonoured_flags
from vtremote.errors import (
    BitstreamError,
    EngineError,
    EngineUnavailableError,
    UnsupportedConfigError,
)
from vtremote.wire import annexb, av1, colours
from vtremote.wire.constants import PixelFormat
from vtremote.wire.settings import EncoderSettings

#: Size of the frames probes encode (hardware encoders have minimum sizes near 128).
PROBE_SIZE = 256


class FFmpegEngine(Engine):
    """An engine made of one PyAV codec context."""

    #: codec ("h264"/"hevc") -> FFmpeg encoder name.
    encoders: ClassVar[Mapping[str, str]] = {}
    #: codec -> FFmpeg decoder name.
    decoders: ClassVar[Mapping[str, str]] = {"h264": "h264", "hevc": "hevc"}
    #: Device type for hwaccel decoding ("cuda", "vaapi", "videotoolbox"), None for none.
    hwaccel_device: ClassVar[str | None] = None
    #: Device type the encoder needs frames uploaded to (vaapi), None if it takes system memory.
    encode_device: ClassVar[str | None] = None
    #: What to install or have when the engine is missing (appended to probe errors).
    requirement: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self._ctx: VideoCodecContext | None = None
        self._ctx_pix_fmt: str | None = None
        self.settings = parse_encode_options({})[0]

    # -- opening ---------------------------------------------------------------------------

    def open(self, config: StreamConfig) -> bytes:
        self.config = config
        if config.mode == "encode":
            return self._open_encoder(config)
        self._open_decoder(config)
        return b""

    def encoder_name(self, config: StreamConfig) -> str:
        return self._codec_name(self.encoders, config.codec, "encoder")

    def _codec_name(self, names: Mapping[str, str], codec: str, kind: str) -> str:
        try:
            return names[codec]
        except KeyError:
            raise EngineUnavailableError(f"engine {self.name} has no {codec} {kind}") from None

    def encoder_pix_fmt(self, config: StreamConfig) -> str:
        """The software pixel format handed to the encoder (PyAV converts to it)."""
        return "nv12" if config.pix_fmt is PixelFormat.NV12 else "p010le"

    def create_encoder(self, name: str) -> VideoCodecContext:
        hw = (
            HWAccel(self.encode_device, allow_software_fallback=False)
            if self.encode_device
            else None
        )
        ctx = av.CodecContext.create(name, "w", hwaccel=hw)
        assert isinstance(ctx, VideoCodecContext)
        return ctx

    def configure_encoder(
        self, ctx: VideoCodecContext, config: StreamConfig, s: EncoderSettings
    ) -> dict[str, str]:
        """Map the settings onto ``ctx``; return the codec's private options. Engines override."""
        raise NotImplementedError

    def _open_encoder(self, config: StreamConfig) -> bytes:
        settings, warnings = parse_encode_options(config.options)
        self.settings = settings
        self.warnings.extend(warnings)
        name = self.encoder_name(config)
        self.codec_name = name
        try:
            ctx = self.create_encoder(name)
        except av.FFmpegError as e:
            raise EngineUnavailableError(f"{name} cannot be created: {av_error_text(e)}") from e
        ctx.width = config.width
        ctx.height = config.height
        ctx.pix_fmt = self._ctx_pix_fmt = self.encoder_pix_fmt(config)
        # The encoder sees pts 0, 1, 2, ... (frame indices) at the session's rate.
        rate = config.rate
        ctx.time_base = 1 / rate
        ctx.framerate = rate
        ctx.flags = int(ctx.flags) | int(Flags.global_header) | int(Flags.closed_gop)
        self._apply_common(ctx, settings)
        options = self.configure_encoder(ctx, config, settings)
        unhonoured = unhonoured_flags(settings)
        if unhonoured:
            self.warn(f"flags {flag_names(unhonoured)} have no effect on the {self.name} engine")
        # PyAV leaves options the codec does not take unused, silently: check them first.
        check_options(name, ctx, options)
        ctx.options = options
        try:
            ctx.open()
        except av.FFmpegError as e:
            raise EngineError(
                f"{name} refused the configuration {config.describe()}: {av_error_text(e)}"
            ) from e
        extradata = ctx.extradata or b""
        if not extradata:
            raise EngineError(f"{name} produced no parameter sets with global headers")
        try:
            record = self._config_record(config, extradata)
        except BitstreamError as e:
            raise EngineError(
                f"{name} parameter sets do not form an {config.codec} record: {e}"
            ) from e
        self._ctx = ctx
        return record

    def _config_record(self, config: StreamConfig, extradata: bytes) -> bytes:
        """avcC / hvcC from Annex B parameter sets, av1C from AV1 OBUs."""
        if config.codec == "av1":
            ten_bit = self._ctx_pix_fmt in ("p010le", "yuv420p10le")
            return av1.build_av1c(extradata, ten_bit=ten_bit)
        return annexb.build_config_record(config.codec, extradata)

    def _apply_common(self, ctx: VideoCodecContext, s: EncoderSettings) -> None:
        """Colour description and sample aspect ratio go to the VUI of every encoder."""
        for key, table in colours.TABLES.items():
            value = getattr(s, key)
            if not s.sent(key) or value == table.unspecified:
                continue
            if value in table.values:
                setattr(ctx, key, value)
            elif key == "color_range":
                self.warn(f"color_range={value} is not a valid AVColorRange; ignored")
            else:
                self.warn(f"{key}={value} is not a valid value; ignored")
        if s.sent("sar_num") or s.sent("sar_den"):
            if s.sar_num > 0 and s.sar_den > 0:
                ctx.sample_aspect_ratio = Fraction(s.sar_num, s.sar_den)
            else:
                self.warn(f"sar {s.sar_num}:{s.sar_den} needs both parts > 0; ignored")

    def encode(self, frame: av.VideoFrame | None) -> list[av.Packet[Any]]:
        ctx = self._ctx
        if ctx is None:
            raise EngineError(f"engine {self.name} encoder is not open")
        try:
            return ctx.encode(frame)
        except av.FFmpegError as e:
            what = "drain" if frame is None else f"frame {frame.pts}"
            raise EngineError(
                f"{self.codec_name} failed to encode {what}: {av_error_text(e)}"
            ) from e

    # -- decoding --------------------------------------------------------------------------

    def decoder_name(self, config: StreamConfig) -> str:
        return self._codec_name(self.decoders, config.codec, "decoder")

    def create_decoder(self, name: str) -> VideoCodecContext:
        hw = None
        if self.hwaccel_device:
            hw = HWAccel(self.hwaccel_device, allow_software_fallback=False)
        try:
            ctx = av.CodecContext.create(name, "r", hwaccel=hw)
        except av.FFmpegError as e:
            raise EngineUnavailableError(
                f"{name} with {self.hwaccel_device or 'no'} hwaccel: {av_error_text(e)}"
            ) from e
        assert isinstance(ctx, VideoCodecContext)
        if self.hwaccel_device and not ctx.is_hwaccel:
            raise EngineUnavailableError(
                f"this FFmpeg build has no {self.hwaccel_device} hwaccel for the {name} decoder"
            )
        return ctx

    def _open_decoder(self, config: StreamConfig) -> None:
        name = self.decoder_name(config)
        self.codec_name = name
        depth = 8
        decoder_extradata: bytes | None = None
        if config.codec == "av1":
            # av1C (wire/av1.py) goes to the decoder as it is.
            decoder_extradata = config.extradata or None
            depth = av1.av1c_bit_depth(config.extradata)
        elif config.extradata:
            # VTR1.md §8.3: avcC/hvcC (atom header stripped) or Annex B parameter sets.
            ps = annexb.parse_extradata(config.codec, config.extradata)
            decoder_extradata = ps.annexb()
            check_parameter_sets(
                config.codec, decoder_extradata, config.width, config.height, "the extradata"
            )
            depth = _bit_depth(config.codec, ps)
        # CONFIGURE_ACK states what really comes back: more than 8 bits -> P010 (issue 3).
        self.output_pix_fmt = PixelFormat.P010 if depth > 8 else config.pix_fmt
        ctx = self.create_decoder(name)
        if decoder_extradata:
            ctx.extradata = decoder_extradata
        self.configure_decoder(ctx, config)
        # Pictures larger than the session may decode are refused before allocation.
        ctx.options = {**ctx.options, **decoder_options(config.width, config.height)}
        try:
            ctx.open()
        except av.FFmpegError as e:
            raise EngineError(
                f"{name} cannot open for {config.describe()}: {av_error_text(e)}"
            ) from e
        self._ctx = ctx

    def configure_decoder(self, ctx: VideoCodecContext, config: StreamConfig) -> None:
        """Threading: frame threads add one frame of delay each, which a lock-step
        client pays as a timeout per frame (VTR1.md §10.3), so they are used only
        when the client pipelines."""
        if config.pipelined:
            ctx.thread_type = "FRAME"
            ctx.thread_count = 0
        else:
            ctx.thread_type = "SLICE"
            ctx.thread_count = 0

    def decode(self, packet: av.Packet[Any] | None) -> list[av.VideoFrame]:
        ctx = self._ctx
        if ctx is None:
            raise EngineError(f"engine {self.name} decoder is not open")
        config = self.config
        if packet is not None and config is not None:
            check_parameter_sets(
                config.codec,
                memoryview(packet),
                config.width,
                config.height,
                f"PACKET pts={packet.pts}",
            )
        try:
            return ctx.decode(packet)
        except av.error.InvalidDataError as e:
            what = "drain" if packet is None else f"PACKET pts={packet.pts}"
            raise BitstreamError(
                f"{what} is not valid {self.config.codec if self.config else ''}: "
                f"{av_error_text(e)}"
            ) from e
        except av.FFmpegError as e:
            what = "drain" if packet is None else f"PACKET pts={packet.pts}"
            raise EngineError(
                f"{self.codec_name} failed to decode {what}: {av_error_text(e)}"
            ) from e

    def close(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            del ctx  # PyAV frees the AVCodecContext when the last reference goes

    # -- probing ---------------------------------------------------------------------------

    @classmethod
    def _probe(cls, codec: str, mode: Mode) -> None:
        with capture_ffmpeg_errors() as logs:
            try:
                if mode == "encode":
                    cls._probe_encode(codec)
                else:
                    cls._probe_decode(codec)
            except EngineUnavailableError as e:
                raise EngineUnavailableError(cls._with_requirement(ffmpeg_reason(e, logs))) from e
            except av.FFmpegError as e:
                raise EngineUnavailableError(
                    cls._with_requirement(ffmpeg_reason(av_error_text(e), logs))
                ) from e
            except (EngineError, UnsupportedConfigError, NotImplementedError) as e:
                raise EngineUnavailableError(cls._with_requirement(ffmpeg_reason(e, logs))) from e

    @classmethod
    def _with_requirement(cls, reason: str) -> str:
        return f"{reason}; {cls.requirement}" if cls.requirement else reason

    @classmethod
    def _require_codec(cls, names: Mapping[str, str], codec: str, kind: str) -> str:
        """The FFmpeg codec serving ``codec`` in this engine; EngineUnavailableError if the
        engine or this FFmpeg build lacks it."""
        if codec not in names:
            raise EngineUnavailableError(f"no {codec} {kind} in engine {cls.name}")
        try:
            av.codec.Codec(names[codec], "w" if kind == "encoder" else "r")
        except av.codec.codec.UnknownCodecError:
            raise EngineUnavailableError(
                f"this FFmpeg build has no {names[codec]} {kind}"
            ) from None
        return names[codec]

    @classmethod
    def _probe_encode(cls, codec: str) -> None:
        name = cls._require_codec(cls.encoders, codec, "encoder")
        engine = cls()
        engine.open(_probe_config("encode", codec, framerate=Fraction(30), options={"gop": "2"}))
        try:
            frame = av.VideoFrame(PROBE_SIZE, PROBE_SIZE, "nv12")
            for plane in frame.planes:
                memoryview(plane)[:] = b"\x80" * plane.buffer_size
            frame.pts = 0
            packets = engine.encode(frame) + engine.encode(None)
            if not packets:
                raise EngineError(f"{name} returned no packet for a probe frame")
        finally:
            engine.close()

    @classmethod
    def _probe_decode(cls, codec: str) -> None:
        name = cls._require_codec(cls.decoders, codec, "decoder")
        record, packets = probe_stream(codec)
        engine = cls()
        engine.open(_probe_config("decode", codec, extradata=record))
        try:
            frames: list[av.VideoFrame] = []
            for i, data in enumerate(packets):
                pkt = av.Packet(data)
                pkt.pts = pkt.dts = i
                frames += engine.decode(pkt)
            frames += engine.decode(None)
            if not frames:
                raise EngineError(f"{name} decoded no frame from the probe stream")
        finally:
            engine.close()


def _probe_config(mode: Mode, codec: str, **extra: Any) -> StreamConfig:
    """A PROBE_SIZE NV12 session at 1/30 s (the StreamConfig default time base)."""
    return StreamConfig(
        mode=mode,
        codec=codec,
        width=PROBE_SIZE,
        height=PROBE_SIZE,
        pix_fmt=PixelFormat.NV12,
        **extra,
    )


_probe_streams: dict[str, tuple[bytes, list[bytes]]] = {}
_probe_streams_lock = threading.Lock()


def probe_stream(codec: str) -> tuple[bytes, list[bytes]]:
    """A tiny stream (config record, Annex B packets) made with the software
    encoder, to probe decoders with real data; cached."""
    with _probe_streams_lock:
        if codec in _probe_streams:
            return _probe_streams[codec]
        name = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}[codec]
        try:
            ctx = av.CodecContext.create(name, "w")
        except av.FFmpegError as e:
            raise EngineUnavailableError(f"cannot build a probe stream without {name}: {e}") from e
        assert isinstance(ctx, VideoCodecContext)
        ctx.width = ctx.height = PROBE_SIZE
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 30)
        ctx.flags = int(ctx.flags) | int(Flags.global_header)
        ctx.max_b_frames = 0
        if codec == "h264":
            options = {"preset": "ultrafast"}
        elif codec == "av1":
            options = {"preset": "12", "svtav1-params": "pred-struct=1:lookahead=0"}
        else:
            options = {
                "preset": "ultrafast",
                "x265-params": "log-level=error:info=0:frame-threads=1",
            }
        check_options(name, ctx, options)
        ctx.options = options
        ctx.open()
        out: list[bytes] = []
        for i in range(2):
            frame = av.VideoFrame(PROBE_SIZE, PROBE_SIZE, "yuv420p")
            for plane in frame.planes:
                memoryview(plane)[:] = bytes([16 + 8 * i]) * plane.buffer_size
            frame.pts = i
            out += [bytes(p) for p in ctx.encode(frame)]
        out += [bytes(p) for p in ctx.encode(None)]
        if codec == "av1":
            record = av1.build_av1c(ctx.extradata or b"", ten_bit=False)
        else:
            record = annexb.build_config_record(codec, ctx.extradata or b"")
        _probe_streams[codec] = (record, out)
        return record, out


def _bit_depth(codec: str, ps: annexb.ParameterSets) -> int:
    """Luma bit depth from the first SPS of a parameter-set list (8 if unreadable)."""
    sps_type = annexb.H264_SPS if codec == "h264" else annexb.HEVC_SPS
    for nal in ps.nals:
        if annexb.nal_type(codec, nal) != sps_type:
            continue
        try:
            if codec == "h264":
                return annexb.parse_h264_sps(nal).bit_depth_luma
            return annexb.parse_hevc_sps(nal).bit_depth_luma
        except BitstreamError:
            return 8
    return 8
