"""Shared mapping of CONFIGURE keys onto FFmpeg's hardware encoders.

Hardware encoders (h264/hevc_nvenc, _qsv, _vaapi, _videotoolbox) read most
settings from the generic AVCodecContext fields (bit rate, VBV, GOP, B-frames,
QP limits, colours) and a few from private options whose names differ per
family. :class:`HardwareEngine` maps the generic part once; each engine declares
which private options it has in :class:`Features` and anything left over
becomes a CONFIGURE_ACK warning.

None of these engines ever falls back to software: if the device, driver or
FFmpeg build is missing, the probe (and the session) fails with
:class:`~vtremote.errors.EngineUnavailableError` naming what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from av.video.codeccontext import VideoCodecContext

from vtremote.engines.base import StreamConfig
from vtremote.engines.ffmpeg import FFmpegEngine
from vtremote.engines.levels import level_idc, level_text
from vtremote.engines.option_table import PRIVATE_OPTIONS
from vtremote.errors import UnsupportedConfigError
from vtremote.wire.constants import PixelFormat
from vtremote.wire.settings import (
    AV1_MAIN,
    FLAG_QSCALE,
    H264_BASELINE,
    H264_CONSTRAINED_BASELINE,
    H264_CONSTRAINED_HIGH,
    H264_EXTENDED,
    H264_HIGH,
    H264_MAIN,
    HEVC_MAIN,
    HEVC_MAIN10,
    HEVC_REXT,
    PROFILE_UNKNOWN,
    EncoderSettings,
    h264_level_name,
)

H264_PROFILE_NAMES = {
    H264_BASELINE: "baseline",
    H264_CONSTRAINED_BASELINE: "constrained_baseline",
    H264_MAIN: "main",
    H264_HIGH: "high",
    H264_CONSTRAINED_HIGH: "constrained_high",
    H264_EXTENDED: "extended",
}
#: NVENC's and QSV's H.264 profile names: their baseline is constrained baseline.
H264_BASELINE_MAIN_HIGH = {
    H264_BASELINE: "baseline",
    H264_CONSTRAINED_BASELINE: "baseline",
    H264_MAIN: "main",
    H264_HIGH: "high",
}
HEVC_PROFILE_NAMES = {HEVC_MAIN: "main", HEVC_MAIN10: "main10"}
#: AV_PROFILE_AV1_MAIN: 8/10-bit 4:2:0, what NV12/P010 frames make.
AV1_PROFILE_NAMES = {AV1_MAIN: "main"}
#: On/off keys only VideoToolbox's session has (VTR1.md §9.5), in the reference's order.
VIDEOTOOLBOX_SWITCHES = (
    "allow_sw",
    "require_sw",
    "frames_before",
    "frames_after",
    "power_efficient",
)


@dataclass(frozen=True, slots=True)
class Features:
    """Private options of one hardware encoder family (None: not available)."""

    forced_idr: tuple[str, str] | None = None  # option enabling IDR on pict_type I
    realtime: dict[str, str] = field(default_factory=dict)  # options for realtime/low delay
    speed: tuple[dict[str, str], dict[str, str]] | None = None  # (prio_speed=1, prio_speed=0)
    cbr: dict[str, str] | None = None  # options for constant_bit_rate
    quality: str | None = None  # "cq" / "global_quality" / "qscale": how quality is set
    entropy: str | None = None  # option taking "cavlc"/"cabac"
    spatial_aq: str | None = None
    strict_gop: dict[str, str] = field(default_factory=dict)
    #: codec -> profile constant -> the encoder's ``profile`` value ("": the only profile it
    #: makes, with no option to ask for it).
    profiles: Mapping[str, Mapping[int, str]] = field(
        default_factory=lambda: {
            "h264": H264_PROFILE_NAMES,
            "hevc": HEVC_PROFILE_NAMES,
            "av1": AV1_PROFILE_NAMES,
        }
    )
    #: How ``level`` is passed: "idc" the codec's level number (engines/levels.py), "name"
    #: ``4.1`` / ``4.0`` where it is one of the option's named values, None: no level option.
    levels: Literal["idc", "name"] | None = "idc"
    refs_option: str = "refs"  # how the reference-frame count is set
    #: Option holding the frames the encoder may delay output by (budgeted to MAX_FRAME_DELAY).
    delay_option: str | None = None
    vt_keys: bool = False  # the videotoolbox-only keys (allow_sw, frames_*, power, slices, alpha)
    max_bframes: int = 4
    #: The encoder's own caption option, turned off (the session inserts SEI).
    a53_option: str | None = None
    #: Largest value of the constant-quality option (``cq``: 51, 63 for AV1).
    quality_max: int = 51
    #: codec -> fields that differ for that codec's encoder.
    per_codec: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def for_codec(self, codec: str) -> Features:
        """These features as ``codec``'s encoder has them."""
        changes = self.per_codec.get(codec)
        return replace(self, **changes) if changes else self


class HardwareEngine(FFmpegEngine):
    """An FFmpeg hardware encoder family plus its hwaccel decoder."""

    hardware = True
    features: ClassVar[Features] = Features()

    @property
    def codec_features(self) -> Features:
        """:attr:`features` for the open session's codec."""
        return self.features.for_codec(self.config.codec if self.config else "h264")

    def encoder_pix_fmt(self, config: StreamConfig) -> str:
        return "nv12" if config.pix_fmt is PixelFormat.NV12 else "p010le"

    def configure_encoder(
        self, ctx: VideoCodecContext, config: StreamConfig, s: EncoderSettings
    ) -> dict[str, str]:
        f = self.codec_features
        opts: dict[str, str] = {}
        if config.codec not in self.encoders:
            raise UnsupportedConfigError(f"{self.name} has no {config.codec} encoder")
        if f.forced_idr:
            opts[f.forced_idr[0]] = f.forced_idr[1]
        if f.a53_option:
            opts[f.a53_option] = "0"

        if config.codec == "h264" and config.pix_fmt is PixelFormat.P010:
            raise UnsupportedConfigError("h264 encodes NV12 only; P010 needs hevc")
        self._rate_control(ctx, s, opts)
        bframes = self._reordering(ctx, config, s, opts)
        self._profile_and_level(config, s, opts)
        self._tools(config, s, opts, bframes)
        self._videotoolbox_keys(config, s, opts)
        if s.alpha_quality > 0:
            self.warn(f"alpha_quality={s.alpha_quality:g} ignored: NV12/P010 frames carry no alpha")
        return opts

    def _rate_control(
        self, ctx: VideoCodecContext, s: EncoderSettings, opts: dict[str, str]
    ) -> None:
        f = self.codec_features
        quality = s.quality
        if quality is not None:
            if f.quality == "cq":  # nvenc: constant quality 0..51 in VBR mode
                opts["rc"] = "vbr"
                opts["cq"] = f"{round(f.quality_max * (1 - quality))}"
            elif f.quality == "global_quality":  # qsv ICQ / vaapi: 1..51 QP-like
                ctx.global_quality = max(1, round(51 * (1 - quality)))
            elif f.quality == "qscale":  # videotoolbox: -q:v 1..100 maps to Quality
                ctx.flags = int(ctx.flags) | FLAG_QSCALE
                ctx.global_quality = max(1, round(quality * 100)) * 118
            else:
                self.warn("global_quality ignored: this encoder has no constant-quality mode")
            if s.bitrate > 0:
                self.warn(
                    f"bitrate={s.bitrate} ignored: global_quality selects constant-quality encoding"
                )
        elif s.bitrate > 0:
            ctx.bit_rate = s.bitrate
            if s.constant_bit_rate:
                opts.update(f.cbr or {})
                opts.setdefault("maxrate", str(s.bitrate))
                opts.setdefault("bufsize", str(s.bitrate))
        elif s.constant_bit_rate:
            self.warn("constant_bit_rate=1 needs a bitrate; ignored")
        if s.maxrate > 0 and not (s.constant_bit_rate and s.bitrate > 0):
            opts["maxrate"] = str(s.maxrate)
            opts["bufsize"] = str(s.maxrate)  # one second, like the reference's DataRateLimits
        if s.qmin >= 0:
            ctx.qmin = s.qmin
        if s.qmax >= 0:
            ctx.qmax = s.qmax

    def _reordering(
        self, ctx: VideoCodecContext, config: StreamConfig, s: EncoderSettings, opts: dict[str, str]
    ) -> int:
        """GOP, B-frames, latency and speed; returns the B-frames used."""
        f = self.codec_features
        if s.gop > 0:
            ctx.gop_size = s.gop
            opts.update(f.strict_gop)
        bframes = 0
        baseline = s.profile_number(config.codec) in (H264_BASELINE, H264_CONSTRAINED_BASELINE)
        if s.max_b_frames > 0:
            if s.low_latency:
                self.warn(
                    f"max_b_frames={s.max_b_frames} ignored:"
                    " realtime/low-delay encoding uses no B-frames"
                )
            elif config.codec == "h264" and baseline:
                self.warn(f"max_b_frames={s.max_b_frames} ignored: baseline has no B-frames")
            else:
                bframes = min(s.max_b_frames, f.max_bframes, config.max_delay // 2)
                if bframes < s.max_b_frames:
                    self.warn(
                        f"max_b_frames={s.max_b_frames} reduced to {bframes} for {self.codec_name}"
                    )
        ctx.max_b_frames = bframes
        if s.low_latency:
            opts.update(f.realtime)
        if f.speed is not None:
            if s.prio_speed == 0:
                opts.update(f.speed[1])
            elif s.prio_speed == 1 or not s.low_latency:
                opts.update(f.speed[0])
        elif s.prio_speed >= 0:
            self.warn(f"prio_speed={s.prio_speed} has no effect on {self.codec_name}")
        return bframes

    def _profile_and_level(
        self, config: StreamConfig, s: EncoderSettings, opts: dict[str, str]
    ) -> None:
        f = self.codec_features
        profile = s.profile_number(config.codec)
        ten_bit = config.pix_fmt is PixelFormat.P010
        if config.codec == "hevc" and profile == HEVC_REXT:
            # 4:2:2 needs 4:2:2 frames; NV12/P010 make Main or Main 10 (as x265 does).
            profile = HEVC_MAIN10 if ten_bit else HEVC_MAIN
            self.warn(
                "profile=4 (4:2:2 range extensions) needs 4:2:2 input;"
                f" encoding {HEVC_PROFILE_NAMES[profile]} from 4:2:0"
            )
        if profile != PROFILE_UNKNOWN:
            name = f.profiles.get(config.codec, {}).get(profile)
            if name is None:
                self.warn(
                    f"profile={profile} is not available on {self.codec_name}; the encoder picks it"
                )
            elif name:  # "": the encoder's only profile, which it has no option for
                opts["profile"] = name
        elif config.codec == "hevc" and ten_bit:
            opts["profile"] = HEVC_PROFILE_NAMES[HEVC_MAIN10]
        self._level(config.codec, s.level_number(), opts)

    def _level(self, codec: str, level: int, opts: dict[str, str]) -> None:
        """``level`` as this encoder takes it (engines/levels.py), or a warning."""
        if not level:
            return
        idc = level_idc(codec, level)
        if idc is None:
            self.warn(f"level={level} is not a {codec} level; the encoder picks the level")
            return
        style = self.codec_features.levels
        name = h264_level_name(idc) if codec == "h264" else level_text(codec, level)
        if style == "idc":
            opts["level"] = str(idc)
        elif style == "name" and name in self._level_names():
            opts["level"] = name
        else:
            self.warn(
                f"level={level_text(codec, level)} is not available on {self.codec_name};"
                " the encoder picks the level"
            )

    def _level_names(self) -> frozenset[str]:
        spec = PRIVATE_OPTIONS.get(self.codec_name, {}).get("level")
        return spec.consts if spec else frozenset()

    def _tools(
        self, config: StreamConfig, s: EncoderSettings, opts: dict[str, str], bframes: int
    ) -> None:
        """Entropy coder, adaptive quantisation, reference frames and the output delay."""
        f = self.codec_features
        entropy = s.entropy_number()
        if entropy in (1, 2):
            if config.codec != "h264":
                coder = "CABAC" if config.codec == "hevc" else "its own arithmetic coder"
                self.warn(f"entropy={entropy} ignored: {config.codec} always uses {coder}")
            elif f.entropy is None:
                self.warn(f"entropy={entropy} has no effect on {self.codec_name}")
            else:
                opts[f.entropy] = "cavlc" if entropy == 1 else "cabac"
        if s.spatial_aq >= 0:
            if f.spatial_aq is None:
                self.warn(f"spatial_aq={s.spatial_aq} has no effect on {self.codec_name}")
            else:
                opts[f.spatial_aq] = "1" if s.spatial_aq else "0"
        if s.max_ref_frames > 0:
            opts[f.refs_option] = str(s.max_ref_frames)
        if f.delay_option and not s.low_latency:
            # The reference client blocks with 16 frames in flight: keep the output delay,
            # B-frames included, within the session's budget (MAX_FRAME_DELAY at most,
            # VTR1.md §9.5 step 4, §10.1).
            extra = 0 if config.least_delay else max(0, config.max_delay - 1 - bframes)
            opts.setdefault(f.delay_option, str(extra))

    def _videotoolbox_keys(
        self, config: StreamConfig, s: EncoderSettings, opts: dict[str, str]
    ) -> None:
        """The keys only VideoToolbox has: passed on there, warned about elsewhere."""
        vt = self.features.vt_keys
        for key in VIDEOTOOLBOX_SWITCHES:
            on = getattr(s, key) == 1  # power_efficient is -1 when unset
            if not on:
                continue
            if vt:
                opts[key] = "1"
            elif key == "require_sw":
                self.warn(f"require_sw=1 ignored: {self.name} is a hardware-only engine")
            elif key != "allow_sw":
                self.warn(f"{key}=1 has no effect on {self.codec_name}")
        if s.max_slice_bytes > 0:
            if vt and config.codec == "h264":
                opts["max_slice_bytes"] = str(s.max_slice_bytes)
            else:
                self.warn(f"max_slice_bytes={s.max_slice_bytes} has no effect on {self.codec_name}")
