"""How the software engine maps an encode session onto SVT-AV1 (``libsvtav1``).

Options as libavcodec/libsvtav1.c declares them: ``preset`` (-2..13), ``crf``
(0..63) and ``svtav1-params`` (SVT-AV1's own ``key=value`` list); bit rate, GOP,
QP limits and colours travel in the AVCodecContext fields it reads.

* Delay: SVT-AV1 reorders in mini-GOPs of 16 frames with a lookahead in its
  random-access structure, far beyond the session's budget (MAX_FRAME_DELAY), so
  it always runs its low-delay structure (``pred-struct=1``, no lookahead): one
  packet per frame, no B-frames (max_b_frames is refused with a warning).
* GOP: ``gop`` is exact (scene detection off), every key frame closes the GOP
  (``irefresh-type=2``), and a forced key frame (pict_type I) restarts the count.
* Speed: preset 10 by default, 8 for ``prio_speed=0`` (VTR1.md §9.5 step 3).
* ``global_quality`` -> ``crf = 63 x (1 - quality)``; ``bitrate`` is CBR (maxrate =
  bitrate, which libsvtav1 takes as CBR): its low-delay structure has no VBR, so a
  bitrate without ``constant_bit_rate`` gets a warning saying so.
* Level: SVT-AV1 picks it from the picture size and rate; a requested level is
  left to the encoder with a warning.
"""

from __future__ import annotations

from typing import Protocol

from av.video.codeccontext import VideoCodecContext

from vtremote.wire.settings import AV1_MAIN, PROFILE_UNKNOWN, EncoderSettings

#: SVT-AV1's QP range (libsvtav1.c clamps qmin/qmax to it).
SVT_QP_MAX = 63


class _Warner(Protocol):
    def warn(self, text: str) -> None: ...


def svtav1_options(engine: _Warner, ctx: VideoCodecContext, s: EncoderSettings) -> dict[str, str]:
    """Map ``s`` onto ``ctx`` and return libsvtav1's options (module docstring)."""
    params = {"pred-struct": "1", "lookahead": "0", "scd": "0", "irefresh-type": "2"}
    opts = {"preset": "8" if s.prio_speed == 0 else "10"}
    ctx.max_b_frames = 0
    if s.max_b_frames > 0 and not s.low_latency:
        engine.warn(
            f"max_b_frames={s.max_b_frames} ignored: libsvtav1 reorders in mini-GOPs beyond"
            " the session's delay budget; it encodes low-delay"
        )
    if s.gop > 0:
        ctx.gop_size = s.gop
    if s.quality is not None:
        opts["crf"] = str(max(1, round(SVT_QP_MAX * (1 - s.quality))))
        if s.bitrate > 0:
            engine.warn(
                f"bitrate={s.bitrate} ignored: global_quality selects constant-quality encoding"
            )
    elif s.bitrate > 0:
        # SVT-AV1's low-delay structure has no VBR: libsvtav1 picks CBR for maxrate = bitrate.
        ctx.bit_rate = s.bitrate
        opts["maxrate"] = str(s.bitrate)
        if not s.constant_bit_rate:
            engine.warn(
                f"bitrate={s.bitrate} encodes as CBR: libsvtav1's low-delay mode has no VBR"
            )
    elif s.constant_bit_rate:
        engine.warn("constant_bit_rate=1 needs a bitrate; encoding at the default quality")
    _qp_limits(engine, ctx, s)
    _unmapped(engine, s)
    opts["svtav1-params"] = ":".join(f"{k}={v}" for k, v in params.items())
    return opts


def _qp_limits(engine: _Warner, ctx: VideoCodecContext, s: EncoderSettings) -> None:
    for name in ("qmin", "qmax"):
        value = getattr(s, name)
        if value < 0:
            continue
        if value > SVT_QP_MAX:
            engine.warn(f"{name}={value} exceeds {SVT_QP_MAX}; clamped")
        setattr(ctx, name, max(1, min(value, SVT_QP_MAX)))


def _unmapped(engine: _Warner, s: EncoderSettings) -> None:
    """Settings libsvtav1 has no option for: each one a warning."""
    profile = s.profile_number("av1")
    if profile not in (PROFILE_UNKNOWN, AV1_MAIN):
        engine.warn(f"profile={profile} ignored: 4:2:0 frames make the AV1 Main profile")
    if s.level_number():
        engine.warn(f"level={s.level_number()} ignored: libsvtav1 picks the level")
    if s.entropy_number() != 0:
        engine.warn(f"entropy={s.entropy_number()} ignored: av1 has one entropy coder")
    if s.max_ref_frames > 0:
        engine.warn(f"max_ref_frames={s.max_ref_frames} has no effect on libsvtav1")
    if s.max_slice_bytes > 0:
        engine.warn(f"max_slice_bytes={s.max_slice_bytes} has no effect on libsvtav1")
    if s.spatial_aq >= 0:
        engine.warn(f"spatial_aq={s.spatial_aq} has no effect on libsvtav1")
