"""Software engine: libx264 / libx265 encoders and FFmpeg's native H.264/HEVC decoders.

Registered as ``x264``. It runs wherever PyAV's FFmpeg has libx264/libx265, so it
is the last entry of the ``auto`` order and what the test suite uses.

How the CONFIGURE keys (VTR1.md §3.2) map onto x264/x265, and why:

* ``gop`` is exact: ``keyint=gop``, scene cuts off, closed GOP; a forced IDR
  (FRAME flag bit 0) restarts the count, as it does with VideoToolbox.
* Delay budget: lookahead + B-frames + frame threads stay within
  ``StreamConfig.max_delay`` frames: at most
  :data:`~vtremote.engines.base.MAX_FRAME_DELAY` (8), because the reference
  client blocks with 16 frames in flight (§10.1) and the reference server capped
  VideoToolbox at MaxFrameDelayCount=8 (§9.5); less when the client's window is
  smaller (the session decides). x264's delay is ``max(bframes, lookahead) +
  threads - 1`` with ``force-cfr`` and no sync lookahead; x265's is
  ``lookahead + bframes + frame-threads + 2`` (so 4 at least, with a lookahead)
  or 0 with ``tune=zerolatency``. A budget of 0 encodes as ``realtime=1`` does.
  ``StreamConfig.least_delay`` (a client whose window may be 1 frame): without
  B-frames as ``realtime=1``; with them, x264 uses slice threads and a lookahead
  of exactly the B-frames (delay = B-frames), x265 its smallest B-frame budget.
* ``max_b_frames`` absent or 0 means no reordering, as the reference sets
  AllowFrameReordering=false then (§9.5 step 10).
* ``prio_speed``: the reference prioritises speed unless ``prio_speed=0``
  (§9.5 step 3), hence preset ``veryfast`` by default and ``medium`` for 0.
* ``realtime=1`` / the LOW_DELAY flag: ``tune=zerolatency`` (no lookahead, no
  B-frames, sliced threads).
* ``global_quality`` (or QSCALE) is VideoToolbox's 0..1 quality; it becomes
  ``crf = 51 x (1 - quality)``.
* ``maxrate`` sets the VBV with a one-second buffer, like the reference's
  DataRateLimits ``[maxrate/8 bytes, 1 s]`` (§9.5 step 5); ``constant_bit_rate``
  is CBR with HRD signalling and filler.
"""

from __future__ import annotations

import os
from typing import ClassVar

from av.video.codeccontext import VideoCodecContext

from vtremote.engines.base import MAX_FRAME_DELAY, StreamConfig
from vtremote.engines.ffmpeg import FFmpegEngine
from vtremote.engines.svtav1 import svtav1_options
from vtremote.errors import UnsupportedConfigError
from vtremote.wire.constants import PixelFormat
from vtremote.wire.settings import (
    H264_BASELINE,
    H264_CONSTRAINED_BASELINE,
    H264_CONSTRAINED_HIGH,
    H264_EXTENDED,
    H264_HIGH,
    H264_HIGH10,
    H264_HIGH422,
    H264_HIGH444,
    H264_LEVELS,
    H264_MAIN,
    HEVC_MAIN,
    HEVC_MAIN10,
    HEVC_MAIN_STILL,
    HEVC_REXT,
    PROFILE_UNKNOWN,
    EncoderSettings,
    h264_level_name,
)

#: Frame threads used by x264 outside realtime mode (each adds one frame of delay).
X264_MAX_FRAME_THREADS = 4
#: B-frames x265 can have within the delay budget (its lookahead must exceed them).
X265_MAX_BFRAMES = 2
#: x265's smallest delay outside zerolatency: lookahead 1 + frame-threads 1 + 2.
X265_MIN_DELAY = 4

#: H.264 profile constant -> libx264's ``profile`` option.
_H264_PROFILES = {
    H264_BASELINE: "baseline",
    H264_CONSTRAINED_BASELINE: "baseline",  # x264's baseline is constrained baseline
    H264_MAIN: "main",
    H264_HIGH: "high",
    H264_CONSTRAINED_HIGH: "high",
}
#: Profiles libx264 cannot encode from NV12 -> the nearest it can (with a warning).
_H264_FALLBACK_PROFILES = {
    H264_EXTENDED: "main",
    H264_HIGH10: "high",
    H264_HIGH422: "high",
    H264_HIGH444: "high",
}


def _delay_reason(budget: int) -> str:
    if budget >= MAX_FRAME_DELAY:
        return f"the encoder delay must stay within {MAX_FRAME_DELAY} frames"
    return f"the client waits for a packet once {budget + 1} frame(s) are unanswered"


def _params(values: dict[str, object]) -> str:
    return ":".join(f"{k}={v}" for k, v in values.items())


def _kbit(bits: int) -> int:
    return max(1, round(bits / 1000))


def crf_for_quality(quality: float) -> float:
    """VideoToolbox quality 0..1 -> x264/x265 CRF 51..0 (one decimal)."""
    return round(51.0 * (1.0 - quality), 1)


class SoftwareEngine(FFmpegEngine):
    """libx264 / libx265 encoders, FFmpeg native decoders."""

    name = "x264"
    hardware = False
    description = "software: libx264 / libx265 / libsvtav1 encode, FFmpeg native / libdav1d decode"
    encoders = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}
    decoders = {"h264": "h264", "hevc": "hevc", "av1": "libdav1d"}
    requirement = (
        "needs an FFmpeg build with libx264/libx265 (and libsvtav1/libdav1d for av1;"
        " PyAV wheels have them)"
    )

    cpu_count: ClassVar[int] = os.cpu_count() or 1

    def encoder_pix_fmt(self, config: StreamConfig) -> str:
        if config.codec == "h264":
            if config.pix_fmt is not PixelFormat.NV12:
                raise UnsupportedConfigError(
                    f"h264 encodes NV12 only; pix_fmt={int(config.pix_fmt)}"
                    f" ({config.pix_fmt.name}) needs hevc"
                )
            return "nv12"  # libx264 takes NV12 as is: no conversion
        if config.codec == "av1":
            return "yuv420p10le" if config.pix_fmt is PixelFormat.P010 else "yuv420p"
        return "yuv420p10le" if self._hevc_ten_bit(config) else "yuv420p"

    def _hevc_ten_bit(self, config: StreamConfig) -> bool:
        profile = self.settings.profile_number("hevc")
        if profile == HEVC_MAIN10:
            return True
        if profile in (HEVC_MAIN, HEVC_MAIN_STILL):
            return False
        return config.pix_fmt is PixelFormat.P010

    def configure_encoder(
        self, ctx: VideoCodecContext, config: StreamConfig, s: EncoderSettings
    ) -> dict[str, str]:
        if config.width % 2 or config.height % 2:
            raise UnsupportedConfigError(
                f"{self.codec_name} needs an even width and height for 4:2:0,"
                f" got {config.width}x{config.height}"
            )
        self._common_warnings(s, config)
        if config.codec == "h264":
            return self._x264(ctx, s, config.max_delay, config.least_delay)
        if config.codec == "av1":
            return svtav1_options(self, ctx, s)
        return self._x265(ctx, config, s)

    def _common_warnings(self, s: EncoderSettings, config: StreamConfig) -> None:
        if s.power_efficient == 1:
            self.warn("power_efficient=1 has no effect on the software encoder")
        if s.frames_before:
            self.warn("frames_before=1 has no effect on the software encoder")
        if s.frames_after:
            self.warn("frames_after=1 has no effect on the software encoder")
        if s.alpha_quality > 0:
            self.warn(f"alpha_quality={s.alpha_quality:g} ignored: NV12/P010 frames carry no alpha")
        # allow_sw / require_sw are satisfied by definition here.

    # -- rate control shared by both codecs ---------------------------------------------------

    def _rate_control(
        self, ctx: VideoCodecContext, s: EncoderSettings, params: dict[str, object]
    ) -> dict[str, str]:
        opts: dict[str, str] = {}
        quality = s.quality
        if quality is not None:
            opts["crf"] = f"{crf_for_quality(quality):g}"
            if s.bitrate > 0:
                self.warn(
                    f"bitrate={s.bitrate} ignored: global_quality selects constant-quality encoding"
                )
            if s.constant_bit_rate:
                self.warn(
                    "constant_bit_rate ignored: global_quality selects constant-quality encoding"
                )
        elif s.bitrate > 0:
            ctx.bit_rate = s.bitrate
            if s.constant_bit_rate:
                if s.maxrate > 0 and s.maxrate != s.bitrate:
                    self.warn(
                        f"maxrate={s.maxrate} ignored: constant_bit_rate uses maxrate = bitrate"
                    )
                params["vbv-maxrate"] = params["vbv-bufsize"] = _kbit(s.bitrate)
                if self.config is not None and self.config.codec == "h264":
                    params["nal-hrd"] = "cbr"
                else:
                    params["strict-cbr"] = 1
                return opts
            if 0 < s.maxrate < s.bitrate:
                self.warn(
                    f"maxrate={s.maxrate} is below bitrate={s.bitrate};"
                    " the encoder runs CBR at maxrate"
                )
        elif s.constant_bit_rate:
            self.warn(
                "constant_bit_rate=1 needs a bitrate; encoding at the default constant quality"
            )
        if s.maxrate > 0:  # the VBV, with a one-second buffer
            params["vbv-maxrate"] = params["vbv-bufsize"] = _kbit(s.maxrate)
        return opts

    def _qp_limits(self, s: EncoderSettings, params: dict[str, object], top: int) -> None:
        if s.qmin >= 0:
            if s.qmin > top:
                self.warn(f"qmin={s.qmin} exceeds {top}; clamped")
            params["qpmin"] = min(s.qmin, top)
        if s.qmax >= 0:
            if s.qmax > top:
                self.warn(f"qmax={s.qmax} exceeds {top}; clamped")
            params["qpmax"] = min(s.qmax, top)
        if 0 <= s.qmax < s.qmin:
            self.warn(f"qmax={s.qmax} is below qmin={s.qmin}; the encoder uses qmin")
            params["qpmax"] = params["qpmin"]

    def _quality_params(self, s: EncoderSettings, params: dict[str, object], qp_top: int) -> None:
        """QP limits, adaptive quantisation and reference count: the same keys in x264 and x265."""
        self._qp_limits(s, params, qp_top)
        if s.spatial_aq == 0:
            params["aq-mode"] = 0
        elif s.spatial_aq == 1:
            params["aq-mode"] = 1
        if s.max_ref_frames > 0:
            if s.max_ref_frames > 16:
                self.warn(f"max_ref_frames={s.max_ref_frames} exceeds 16; clamped")
            params["ref"] = min(s.max_ref_frames, 16)

    def _b_frames(self, s: EncoderSettings, allowed: int, why: str) -> int:
        """B-frames to use: the client's max_b_frames within ``allowed``, with a warning if cut."""
        if s.max_b_frames <= 0:
            return 0
        if s.low_latency:
            self.warn(
                f"max_b_frames={s.max_b_frames} ignored:"
                " realtime/low-delay encoding uses no B-frames"
            )
            return 0
        if allowed <= 0:
            self.warn(f"max_b_frames={s.max_b_frames} ignored: {why}")
            return 0
        if s.max_b_frames > allowed:
            self.warn(f"max_b_frames={s.max_b_frames} reduced to {allowed}: {why}")
            return allowed
        return s.max_b_frames

    def _base_options(self, s: EncoderSettings) -> dict[str, str]:
        """The preset (VTR1.md §9.5 step 3: speed first unless prio_speed=0) and forced IDRs."""
        return {"preset": "medium" if s.prio_speed == 0 else "veryfast", "forced-idr": "1"}

    def _gop(
        self, ctx: VideoCodecContext, s: EncoderSettings, params: dict[str, object], min_keyint: int
    ) -> None:
        """An exact GOP (no scene cuts) and closed GOPs: every IDR starts a decodable segment."""
        if s.gop > 0:
            ctx.gop_size = s.gop
            params["keyint"] = s.gop
            params["min-keyint"] = min_keyint
            params["scenecut"] = 0
        params["open-gop"] = 0

    # -- x264 ------------------------------------------------------------------------------------

    def _x264(
        self, ctx: VideoCodecContext, s: EncoderSettings, budget: int, least: bool
    ) -> dict[str, str]:
        params: dict[str, object] = {}
        opts = self._base_options(s)
        # Captions are inserted by the session (server/sei.py); the wrapper's own
        # a53cc path needs AVFrame side data PyAV cannot attach.
        opts["a53cc"] = "0"
        profile = s.profile_number("h264")
        baseline = self._x264_profile(s, opts) == "baseline"
        self._x264_entropy(s, opts, baseline)

        lookahead = self._x264_threads(ctx, s, opts, budget, least)
        if baseline or profile == H264_CONSTRAINED_HIGH:
            if s.max_b_frames > 0:
                self.warn(
                    f"max_b_frames={s.max_b_frames} ignored: the requested profile has no B-frames"
                )
            bframes = 0
        else:
            bframes = self._b_frames(s, min(16, lookahead), _delay_reason(budget))
        ctx.max_b_frames = bframes
        params["bframes"] = bframes
        params["rc-lookahead"] = max(lookahead, bframes)
        params["sync-lookahead"] = 0
        params["force-cfr"] = 1  # the encoder is fed frame indices: constant frame rate
        self._gop(ctx, s, params, min(s.gop, s.gop // 2 + 1))

        opts.update(self._rate_control(ctx, s, params))
        self._quality_params(s, params, 69)
        if s.max_slice_bytes > 0:
            params["slice-max-size"] = s.max_slice_bytes
        opts["x264-params"] = _params(params)
        return opts

    def _x264_profile(self, s: EncoderSettings, opts: dict[str, str]) -> str | None:
        """Profile and level options; returns the x264 profile name used."""
        number = s.profile_number("h264")
        profile = _H264_PROFILES.get(number)
        if number != PROFILE_UNKNOWN and profile is None:
            fallback = _H264_FALLBACK_PROFILES.get(number)
            self.warn(
                f"profile={number} is not available from NV12 with libx264; "
                + (f"encoding {fallback} instead" if fallback else "the encoder picks the profile")
            )
            profile = fallback
        if profile:
            opts["profile"] = profile
        if number == H264_CONSTRAINED_HIGH:
            self.warn(
                "profile=612 (constrained high) is encoded as High without B-frames;"
                " the SPS does not signal the constraint"
            )
        level = s.level_number()
        if level:
            if level in H264_LEVELS:
                opts["level"] = h264_level_name(level)
            else:
                self.warn(f"level={level} is not an H.264 level; the encoder picks the level")
        return profile

    def _x264_entropy(self, s: EncoderSettings, opts: dict[str, str], baseline: bool) -> None:
        entropy = s.entropy_number()
        if entropy == 1:
            opts["coder"] = "cavlc"
        elif entropy == 2:
            if baseline:
                self.warn("entropy=2 (CABAC) ignored: the baseline profile allows CAVLC only")
            else:
                opts["coder"] = "cabac"
        elif entropy != 0:
            self.warn(f"entropy={entropy} is neither 0 (auto), 1 (CAVLC) nor 2 (CABAC); ignored")

    def _x264_threads(
        self,
        ctx: VideoCodecContext,
        s: EncoderSettings,
        opts: dict[str, str],
        budget: int,
        least: bool,
    ) -> int:
        """Threads within the delay budget (module docstring); returns the lookahead left."""
        if s.low_latency or budget == 0 or (least and s.max_b_frames <= 0):
            opts["tune"] = "zerolatency"
            ctx.thread_type = "SLICE"
            ctx.thread_count = min(self.cpu_count, 8)
            return 0
        if least:  # only the B-frames' delay: slice threads, lookahead = B-frames
            ctx.thread_type = "SLICE"
            ctx.thread_count = min(self.cpu_count, 8)
            return min(budget, s.max_b_frames)
        threads = max(1, min(self.cpu_count, X264_MAX_FRAME_THREADS, budget))
        ctx.thread_type = "FRAME"
        ctx.thread_count = threads
        return budget - (threads - 1)

    # -- x265 ------------------------------------------------------------------------------------

    def _x265(
        self, ctx: VideoCodecContext, config: StreamConfig, s: EncoderSettings
    ) -> dict[str, str]:
        params: dict[str, object] = {
            "log-level": "error",
            "info": 0,
            "repeat-headers": 0,
            "annexb": 1,
        }
        opts = self._base_options(s)
        self._x265_profile(config, s, opts)
        self._x265_level(s, params)
        if s.entropy_number() != 0:
            self.warn(f"entropy={s.entropy_number()} ignored: HEVC always uses CABAC")
        if s.max_slice_bytes > 0:
            self.warn(
                f"max_slice_bytes={s.max_slice_bytes} ignored: libx265 cannot cap slice sizes"
            )

        ctx.thread_type = "FRAME"
        ctx.thread_count = 1
        params["frame-threads"] = 1
        budget = config.max_delay
        if s.low_latency or budget < X265_MIN_DELAY or (config.least_delay and s.max_b_frames <= 0):
            opts["tune"] = "zerolatency"
            if not s.low_latency:
                self._b_frames(s, 0, _delay_reason(budget))  # warns about B-frames asked for
            bframes, lookahead = 0, 0
        else:
            # delay = lookahead + bframes + frame-threads + 2 <= budget, and lookahead > bframes
            allowed = min(X265_MAX_BFRAMES, (budget - X265_MIN_DELAY) // 2)
            bframes = self._b_frames(s, allowed, _delay_reason(budget))
            lookahead = budget - 2 - 1 - bframes
            if config.least_delay:
                lookahead = bframes + 1  # the least x265 accepts with these B-frames
        ctx.max_b_frames = bframes
        params["bframes"] = bframes
        params["rc-lookahead"] = lookahead
        self._gop(ctx, s, params, s.gop)
        opts.update(self._rate_control(ctx, s, params))
        self._quality_params(s, params, 51)
        opts["x265-params"] = _params(params)
        return opts

    def _x265_profile(self, config: StreamConfig, s: EncoderSettings, opts: dict[str, str]) -> None:
        profile = s.profile_number("hevc")
        ten_bit = self._hevc_ten_bit(config)
        if profile in (HEVC_MAIN, HEVC_MAIN_STILL):
            opts["profile"] = "main" if profile == HEVC_MAIN else "mainstillpicture"
            if config.pix_fmt is PixelFormat.P010:
                self.warn(f"profile={profile} is 8-bit: P010 frames are reduced to 8 bits")
        elif profile == HEVC_MAIN10 or (profile == PROFILE_UNKNOWN and ten_bit):
            opts["profile"] = "main10"
        elif profile == HEVC_REXT:
            self.warn(
                "profile=4 (4:2:2 range extensions) needs 4:2:2 input;"
                " encoding main/main10 from 4:2:0"
            )
            opts["profile"] = "main10" if ten_bit else "main"
        elif profile != PROFILE_UNKNOWN:
            self.warn(f"profile={profile} is not an HEVC profile; the encoder picks the profile")

    def _x265_level(self, s: EncoderSettings, params: dict[str, object]) -> None:
        # The reference client sends a level for H.264 only; accept level x 10 or FFmpeg's
        # level x 30.
        level = s.level_number()
        if not level:
            return
        if level in H264_LEVELS and level != 9:
            params["level-idc"] = h264_level_name(level)
        elif level % 3 == 0 and 30 <= level <= 186:
            params["level-idc"] = f"{level / 30:g}"
        else:
            self.warn(f"level={level} is not an HEVC level; the encoder picks the level")
