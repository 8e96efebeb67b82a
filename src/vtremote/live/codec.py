"""Low-latency encoders and decoders for live streams, through PyAV.

H.264 (libx264) and HEVC (libx265) are set up for realtime: ``tune=zerolatency``
(no lookahead, no B-frames, sliced threads: a frame comes out of ``encode`` for
the frame that went in), a short VBV (a quarter second at the maximum rate),
parameter sets repeated on every keyframe, Annex B output, and keyframes that
are IDR when asked for (a receiver can join or recover on any of them). MJPEG is
the baseline the live path replaces: every picture a JPEG at a fixed quality.

When the machine has a hardware encoder that really works (VideoToolbox, NVENC,
QSV: probed once per process by encoding a frame), H.264 and HEVC use it, with
its low-delay options and no B-frames; otherwise libx264/libx265. The choice is
logged; ``EncoderConfig(hardware=False)`` keeps to software.

The bitrate can change while the encoder runs (x264, NVENC and QSV reconfigure
at the next frame; x265, VideoToolbox and MJPEG keep theirs).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from fractions import Fraction

import av
from av.video.frame import PictureType

from vtremote.engines.option_check import check_options
from vtremote.errors import ConfigError, EngineError, EngineUnavailableError
from vtremote.live.protocol import Codec

log = logging.getLogger(__name__)

CODEC_NAMES = {"h264": Codec.H264, "hevc": Codec.HEVC, "mjpeg": Codec.MJPEG}
_ENCODERS = {Codec.H264: "libx264", Codec.HEVC: "libx265", Codec.MJPEG: "mjpeg"}
_DECODERS = {Codec.H264: "h264", Codec.HEVC: "hevc", Codec.MJPEG: "mjpeg"}
_PIX_FMT = {Codec.H264: "yuv420p", Codec.HEVC: "yuv420p", Codec.MJPEG: "yuvj420p"}

#: Hardware encoders tried before the software one: (name, low-delay options).
_HARDWARE: dict[Codec, list[tuple[str, dict[str, str]]]] = {
    codec: [
        (f"{prefix}_videotoolbox", {"realtime": "1", "allow_sw": "0", "prio_speed": "1"}),
        (
            f"{prefix}_nvenc",
            {
                "preset": "p1",
                "tune": "ull",
                "zerolatency": "1",
                "delay": "0",
                "forced-idr": "1",
                "rc": "cbr",
            },
        ),
        (
            f"{prefix}_qsv",
            # look_ahead is h264_qsv's only (and off by default): not passed.
            {"preset": "veryfast", "async_depth": "1", "forced_idr": "1"},
        ),
    ]
    for codec, prefix in ((Codec.H264, "h264"), (Codec.HEVC, "hevc"))
}
#: Encoders that take a new bit rate between frames.
_DYNAMIC_RATE_SUFFIXES = ("_nvenc", "_qsv")
_probed: dict[Codec, tuple[str, dict[str, str]] | None] = {}


def hardware_encoder(codec: Codec) -> tuple[str, dict[str, str]] | None:
    """The first hardware encoder of ``codec`` that encodes a frame here (cached), or None."""
    if codec in _probed:
        return _probed[codec]
    found = None
    for name, opts in _HARDWARE.get(codec, []):
        if name not in av.codecs_available:
            continue
        try:
            ctx = av.CodecContext.create(name, "w")
            assert isinstance(ctx, av.VideoCodecContext)
            ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "nv12"
            ctx.time_base = Fraction(1, 30)
            ctx.bit_rate = 500_000
            ctx.max_b_frames = 0
            check_options(name, ctx, opts)
            ctx.options = dict(opts)
            ctx.open()
            frame = av.VideoFrame(320, 240, "nv12")
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.pts = 0
            got = list(ctx.encode(frame)) + list(ctx.encode(None))
            if got:
                found = (name, opts)
                break
        except EngineError:
            raise  # an option this module passes wrongly is a bug, never "no hardware"
        except (av.FFmpegError, ValueError, OSError) as e:
            log.debug("live: %s does not work here: %s", name, e)
    _probed[codec] = found
    return found


def available(codec: Codec) -> bool:
    """Whether this PyAV build can encode ``codec``."""
    return _ENCODERS[codec] in av.codecs_available


@dataclass(frozen=True)
class EncoderConfig:
    codec: Codec
    width: int
    height: int
    fps: Fraction
    bitrate: int = 4_000_000  # starting target, bits/s
    max_bitrate: int = 0  # VBV ceiling; 0 = ``bitrate``
    keyint_s: float = 2.0
    preset: str = "ultrafast"
    mjpeg_quality: int = 5  # MJPEG qscale, 2 (best) .. 31
    threads: int = 0  # 0 = codec default
    hardware: bool = True  # a hardware encoder when one works here

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ConfigError(f"picture size {self.width}x{self.height} must be positive and even")
        if self.fps <= 0:
            raise ConfigError(f"frame rate {self.fps} must be positive")
        if self.bitrate <= 0:
            raise ConfigError(f"bitrate {self.bitrate} must be positive")
        if self.keyint_s <= 0:
            raise ConfigError(f"keyframe interval {self.keyint_s} s must be positive")
        if not 2 <= self.mjpeg_quality <= 31:
            raise ConfigError(f"MJPEG quality {self.mjpeg_quality} outside 2..31")


@dataclass(frozen=True, slots=True)
class Encoded:
    data: bytes
    keyframe: bool
    index: int  # the frame index it was encoded as


class LiveEncoder:
    """One encoder; driven by exactly one thread."""

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
        if not available(config.codec):
            raise EngineUnavailableError(f"{_ENCODERS[config.codec]} is not in this PyAV build")
        self.bitrate = config.bitrate
        hw = hardware_encoder(config.codec) if config.hardware else None
        self.name = hw[0] if hw is not None else _ENCODERS[config.codec]
        self._pix_fmt = "nv12" if hw is not None else _PIX_FMT[config.codec]
        self._ctx = self._open(hw[1] if hw is not None else None)
        log.info("live: encoding %s with %s", config.codec.name, self.name)

    def _open(self, hw_options: dict[str, str] | None) -> av.VideoCodecContext:
        cfg = self.config
        ctx = av.CodecContext.create(self.name, "w")
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.width = cfg.width
        ctx.height = cfg.height
        ctx.pix_fmt = self._pix_fmt
        ctx.time_base = 1 / cfg.fps
        ctx.framerate = cfg.fps
        if cfg.threads:
            ctx.thread_count = cfg.threads
        gop = max(1, round(cfg.keyint_s * cfg.fps))
        ceiling = max(cfg.max_bitrate, cfg.bitrate)
        opts: dict[str, str] = {}
        if cfg.codec is Codec.MJPEG:
            # A fixed quantiser (what -q:v gives JPEG): the rate control is pinned to it.
            ctx.qmin = ctx.qmax = cfg.mjpeg_quality
        elif hw_options is not None:
            ctx.bit_rate = cfg.bitrate
            ctx.gop_size = gop
            ctx.max_b_frames = 0
            opts.update(hw_options, maxrate=str(ceiling), bufsize=str(ceiling // 4))
        else:
            ctx.bit_rate = cfg.bitrate
            ctx.gop_size = gop
            ctx.max_b_frames = 0
            # Through the AVCodecContext (not x264-params) so a bitrate change keeps the VBV.
            opts.update(
                maxrate=str(ceiling),
                bufsize=str(ceiling // 4),
                preset=cfg.preset,
                tune="zerolatency",
            )
            opts["forced-idr"] = "1"
            if cfg.codec is Codec.H264:
                opts["x264-params"] = (
                    f"repeat-headers=1:annexb=1:scenecut=0:keyint={gop}:min-keyint={gop}"
                )
            else:
                opts["x265-params"] = (
                    "repeat-headers=1:annexb=1:scenecut=0:"
                    f"keyint={gop}:min-keyint={gop}:log-level=error"
                )
        # PyAV would leave an option the codec does not take unused, silently.
        check_options(self.name, ctx, opts)
        ctx.options = opts
        try:
            ctx.open()
        except av.FFmpegError as e:
            raise EngineError(f"cannot open {self.name} at {cfg.width}x{cfg.height}: {e}") from e
        return ctx

    def set_bitrate(self, bps: int) -> bool:
        """Ask for a new target rate; True when the encoder takes it (x264, NVENC, QSV)."""
        if not (self.name == "libx264" or self.name.endswith(_DYNAMIC_RATE_SUFFIXES)):
            return False
        bps = max(50_000, min(int(bps), max(self.config.max_bitrate, self.config.bitrate)))
        if bps != self.bitrate:
            self._ctx.bit_rate = bps  # the encoder reconfigures on the next frame
            self.bitrate = bps
        return True

    def encode(self, frame: av.VideoFrame, index: int, *, keyframe: bool = False) -> list[Encoded]:
        """Encode ``frame`` as frame number ``index``; zero-latency: its packet comes back now."""
        if (
            frame.width != self.config.width
            or frame.height != self.config.height
            or frame.format.name != self._pix_fmt
        ):
            frame = frame.reformat(
                width=self.config.width, height=self.config.height, format=self._pix_fmt
            )
        frame.pts = index
        frame.time_base = self._ctx.time_base
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        try:
            packets = self._ctx.encode(frame)
        except av.FFmpegError as e:
            raise EngineError(f"{self.name} failed on frame {index}: {e}") from e
        return [
            Encoded(bytes(p), bool(p.is_keyframe), int(p.pts if p.pts is not None else index))
            for p in packets
        ]

    def close(self) -> None:
        with contextlib.suppress(av.FFmpegError):
            self._ctx.encode(None)


class LiveDecoder:
    """One decoder for one source; driven by exactly one thread (PyAV releases the GIL)."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._ctx = self._open()

    def _open(self) -> av.VideoCodecContext:
        ctx = av.CodecContext.create(_DECODERS[self.codec], "r")
        assert isinstance(ctx, av.VideoCodecContext)
        # Slice threads add no delay (frame threads would hold one frame per thread).
        ctx.thread_type = "SLICE"
        ctx.options = {"flags": "low_delay"}
        return ctx

    def reset(self) -> None:
        """Forget the reference pictures (after a loss: wait for the next keyframe)."""
        self._ctx = self._open()

    def decode(self, data: bytes) -> list[av.VideoFrame]:
        """Frames of one access unit; :class:`EngineError` when it does not decode."""
        packet = av.Packet(data)
        try:
            return list(self._ctx.decode(packet))
        except av.FFmpegError as e:
            raise EngineError(f"{_DECODERS[self.codec]} decode failed: {e}") from e


def parameter_sets(codec: Codec, data: bytes) -> bytes:
    """The Annex B parameter-set NAL units (SPS/PPS, VPS/SPS/PPS) at the start of a keyframe."""
    if codec is Codec.MJPEG:
        return b""
    out = bytearray()
    for start, end in _nal_spans(data):
        nal = data[start:end]
        if not nal:
            continue
        kind = (nal[0] & 0x1F) if codec is Codec.H264 else (nal[0] >> 1) & 0x3F
        wanted = (7, 8) if codec is Codec.H264 else (32, 33, 34)
        if kind in wanted:
            out += b"\x00\x00\x00\x01" + nal
    return bytes(out)


def _nal_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each NAL unit payload in an Annex B buffer."""
    spans: list[tuple[int, int]] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        j = data.find(b"\x00\x00\x01", start)
        end = len(data) if j < 0 else j
        # A 4-byte start code leaves one zero at the end of the previous unit.
        while end > start and j >= 0 and data[end - 1] == 0:
            end -= 1
        spans.append((start, end))
        i = j
    return spans
