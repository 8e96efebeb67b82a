"""The private options of the encoders vtremote drives, as FFmpeg's sources declare them.

PyAV's wheels lack most hardware encoders (no ``*_vaapi``, no ``*_videotoolbox`` off
macOS), and PyAV before 18.1 lists no codec's options at all, so the options the
engines pass cannot always be checked against the running FFmpeg's own table. This
is that table, checked in: for each encoder, the private options vtremote passes and
their neighbours, with FFmpeg's type, range and named constants (the ``AVOption``
arrays of the file cited above each entry). :mod:`vtremote.engines.option_check`
checks options against the running codec's table when PyAV has the encoder and lists
its options, and against this one otherwise; a unit test checks that both agree
wherever the wheel has the encoder.

Generic options (``b``, ``maxrate``, ``bufsize``, ``g``, ``bf``, ``level``, ...) are
AVCodecContext's, the same in every build: they are read from PyAV at run time (PyAV 18.1+),
else from :data:`GENERIC_OPTIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

OptionKind = Literal["int", "bool", "float", "string", "flags"]

IMAX: Final = 2**31 - 1
IMIN: Final = -(2**31)
FLT_MAX: Final = 3.4028234663852886e38


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One AVOption: its kind, range and named constants (AV_OPT_TYPE_CONST of its unit)."""

    kind: OptionKind
    min: float = 0
    max: float = 0
    consts: frozenset[str] = frozenset()


def _int(low: float, high: float, *consts: str) -> OptionSpec:
    return OptionSpec("int", low, high, frozenset(consts))


def _bool(low: float) -> OptionSpec:
    """AV_OPT_TYPE_BOOL: 0..1, or -1..1 where -1 means ``auto``."""
    return OptionSpec("bool", low, 1)


def _float(low: float, high: float) -> OptionSpec:
    return OptionSpec("float", low, high)


def _flags(*consts: str) -> OptionSpec:
    return OptionSpec("flags", 0, IMAX, frozenset(consts))


_H264_LEVEL_NAMES: tuple[str, ...] = ("1", "1.1", "1.2", "1.3", "2", "2.1", "2.2", "3", "3.1")
_H264_LEVEL_NAMES += ("3.2", "4", "4.1", "4.2", "5", "5.1", "5.2", "6", "6.1", "6.2")
_HEVC_LEVEL_NAMES = ("1", "2", "2.1", "3", "3.1", "4", "4.1", "5", "5.1", "5.2", "6", "6.1", "6.2")
_AV1_LEVEL_NAMES: tuple[str, ...] = ("2.0", "2.1", "3.0", "3.1", "4.0", "4.1", "5.0", "5.1")
_AV1_LEVEL_NAMES += ("5.2", "5.3", "6.0", "6.1", "6.2", "6.3")

#: libavcodec/vaapi_encode.h VAAPI_ENCODE_COMMON_OPTIONS / VAAPI_ENCODE_RC_OPTIONS and
#: hw_base_encode.h HW_BASE_ENCODE_COMMON_OPTIONS (FFmpeg 7.1+; async_depth since 5.0).
_VAAPI_COMMON: Final = {
    "low_power": _bool(0),
    "max_frame_size": _int(0, IMAX),
    "idr_interval": _int(0, IMAX),
    "b_depth": _int(1, IMAX),
    "async_depth": _int(1, 64),
    "rc_mode": _int(0, 7, "auto", "CQP", "CBR", "VBR", "ICQ", "QVBR", "AVBR"),
    "blbrc": _bool(0),
}
#: libavcodec/videotoolboxenc.c COMMON_OPTIONS.
_VIDEOTOOLBOX_COMMON: Final = {
    "allow_sw": _bool(0),
    "require_sw": _bool(0),
    "realtime": _bool(-1),
    "frames_before": _bool(0),
    "frames_after": _bool(0),
    "prio_speed": _bool(-1),
    "power_efficient": _int(-1, 1),
    "spatial_aq": _int(-1, 1),
    "max_ref_frames": _int(0, IMAX),
    "constant_bit_rate": _bool(0),
}

_NVENC_PRESETS = ("default", "slow", "medium", "fast", "p1", "p2", "p3", "p4", "p5", "p6", "p7")
_NVENC_OLD_PRESETS = ("hp", "hq", "bd", "ll", "llhq", "llhp", "lossless", "losslesshp")
_NVENC_RC = ("constqp", "vbr", "cbr")
_NVENC_OLD_RC: tuple[str, ...] = (
    "vbr_minqp",
    "ll_2pass_quality",
    "ll_2pass_size",
    "vbr_2pass",
    "cbr_ld_hq",
)
_NVENC_OLD_RC += ("cbr_hq", "vbr_hq")
#: libavcodec/nvenc_h264.c, nvenc_hevc.c, nvenc_av1.c: the options all three declare alike.
_NVENC_COMMON: Final = {
    "delay": _int(0, IMAX),
    "rc-lookahead": _int(0, IMAX),
    "no-scenecut": _bool(0),
    "forced-idr": _bool(-1),
    "spatial-aq": _bool(0),
    "temporal-aq": _bool(0),
    "zerolatency": _bool(0),
    "strict_gop": _bool(0),
    "b_ref_mode": _int(-1, 2, "disabled", "each", "middle"),
    "a53cc": _bool(0),
}
#: libavcodec/nvenc_h264.c and nvenc_hevc.c beyond the common options.
_NVENC_H26X: Final = {
    **_NVENC_COMMON,
    "preset": _int(0, 18, *_NVENC_PRESETS, *_NVENC_OLD_PRESETS),
    "rc": _int(-1, IMAX, *_NVENC_RC, *_NVENC_OLD_RC),
    "spatial_aq": _bool(0),
    "cq": _float(0, 51),
    "qp": _int(-1, 51),
    "aud": _bool(0),
    "max_slice_size": _int(0, IMAX),
}
_NVENC_LEVELS: tuple[str, ...] = (
    "auto",
    "1",
    "1.0",
    "2",
    "2.0",
    "2.1",
    "3",
    "3.0",
    "3.1",
    "4",
    "4.0",
    "4.1",
    "5",
)
_NVENC_LEVELS += ("5.0", "5.1", "5.2", "6.0", "6.1", "6.2")
_NVENC_H264_LEVELS = ("1b", "1.0b", "1.1", "1.2", "1.3", "2.2", "3.2", "4.2")
_NVENC_AV1_LEVELS = tuple(f"{major}{minor}" for major in "234567" for minor in ("", ".0"))
_NVENC_AV1_LEVELS += tuple(f"{major}.{minor}" for major in "234567" for minor in "123")
_QSV_PRESETS = ("veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
#: libavcodec/qsvenc.h QSV_COMMON_OPTS and the options every qsvenc_*.c adds.
_QSV_COMMON: Final = {
    "async_depth": _int(1, IMAX),
    "preset": _int(0, 7, *_QSV_PRESETS),
    "forced_idr": _bool(0),
    "low_power": _bool(-1),
    "b_strategy": _int(-1, 1),
    "low_delay_brc": _bool(-1),
    "look_ahead_depth": _int(0, 100),
}

#: AVCodecContext's generic options that engines pass as options (libavcodec/options_table.h),
#: for PyAV before 18.1, which does not expose the generic table.
GENERIC_OPTIONS: Final[dict[str, OptionSpec]] = {
    "b": OptionSpec("int", 0, 2.0**63),  # INT64_MAX as FFmpeg reports it (a double)
    "maxrate": _int(0, IMAX),
    "bufsize": _int(IMIN, IMAX),
    "g": _int(IMIN, IMAX),
    "bf": _int(-1, IMAX),
    "qmin": _int(-1, 69),
    "qmax": _int(-1, 1024),
    "global_quality": _int(IMIN, IMAX),
    "refs": _int(IMIN, IMAX),
    "level": _int(IMIN, IMAX, "unknown"),
    "threads": _int(0, IMAX, "auto"),
}

#: FFmpeg encoder name -> private option name -> its declaration.
PRIVATE_OPTIONS: Final[dict[str, dict[str, OptionSpec]]] = {
    # libavcodec/nvenc_h264.c
    "h264_nvenc": {
        **_NVENC_H26X,
        "tune": _int(1, 4, "hq", "ll", "ull", "lossless"),
        "profile": _int(0, 5, "baseline", "main", "high", "high10", "high422", "high444p"),
        "level": _int(0, 62, *(n for n in _NVENC_LEVELS if n != "6"), *_NVENC_H264_LEVELS),
        "coder": _int(-1, 2, "default", "auto", "cabac", "cavlc", "ac", "vlc"),
    },
    # libavcodec/nvenc_hevc.c
    "hevc_nvenc": {
        **_NVENC_H26X,
        "tune": _int(1, 5, "hq", "uhq", "ll", "ull", "lossless"),
        "profile": _int(0, 3, "main", "main10", "rext", "mv"),
        "level": _int(0, 186, *_NVENC_LEVELS, "6"),
        "tier": _int(0, 1, "main", "high"),
    },
    # libavcodec/nvenc_av1.c (no profile option: it encodes Main from 4:2:0)
    "av1_nvenc": {
        **_NVENC_COMMON,
        "preset": _int(0, 18, *_NVENC_PRESETS),
        "tune": _int(1, 5, "hq", "uhq", "ll", "ull", "lossless"),
        "level": _int(0, 24, "auto", *_NVENC_AV1_LEVELS),
        "tier": _int(0, 1, "0", "1"),
        "rc": _int(-1, IMAX, *_NVENC_RC),
        "cq": _float(0, 63),
        "qp": _int(-1, 255),
    },
    # libavcodec/qsvenc_h264.c (no private level: qsvenc reads AVCodecContext.level)
    "h264_qsv": {
        **_QSV_COMMON,
        "max_slice_size": _int(-1, IMAX),
        "cavlc": _bool(0),
        "idr_interval": _int(0, IMAX),
        "look_ahead": _bool(0),
        "profile": _int(0, IMAX, "unknown", "baseline", "main", "high"),
        "a53cc": _bool(0),
        "aud": _bool(0),
    },
    # libavcodec/qsvenc_hevc.c
    "hevc_qsv": {
        **_QSV_COMMON,
        "max_slice_size": _int(-1, IMAX),
        "idr_interval": _int(-1, IMAX, "begin_only"),
        "profile": _int(0, IMAX, "unknown", "main", "main10", "mainsp", "rext", "scc"),
        "tier": _int(0, 256, "main", "high"),
        "aud": _bool(0),
    },
    # libavcodec/qsvenc_av1.c
    "av1_qsv": {**_QSV_COMMON, "profile": _int(0, IMAX, "unknown", "main")},
    # libavcodec/libx264.c (the software engine's; PyAV before 18.1 cannot list them)
    "libx264": {
        "preset": OptionSpec("string"),
        "tune": OptionSpec("string"),
        "profile": OptionSpec("string"),
        "level": OptionSpec("string"),
        "a53cc": _bool(0),
        "crf": _float(-1, FLT_MAX),
        "forced-idr": _bool(-1),
        "coder": _int(-1, 1, "default", "cavlc", "cabac", "vlc", "ac"),
        "x264-params": OptionSpec("string"),
    },
    # libavcodec/libx265.c
    "libx265": {
        "crf": _float(-1, FLT_MAX),
        "forced-idr": _bool(0),
        "preset": OptionSpec("string"),
        "tune": OptionSpec("string"),
        "profile": OptionSpec("string"),
        "x265-params": OptionSpec("string"),
    },
    # libavcodec/libsvtav1.c
    "libsvtav1": {
        "preset": _int(-2, 13),
        "crf": _int(0, 63),
        "svtav1-params": OptionSpec("string"),
    },
    # libavcodec/vaapi_encode_h264.c
    "h264_vaapi": {
        **_VAAPI_COMMON,
        "qp": _int(0, 52),
        "quality": _int(-1, IMAX),
        "coder": _int(0, 1, "cavlc", "cabac", "vlc", "ac"),
        "aud": _bool(0),
        "sei": _flags("identifier", "timing", "recovery_point", "a53_cc"),
        "profile": _int(-99, 0xFFFF, "constrained_baseline", "main", "high", "high10"),
        "level": _int(-99, 0xFF, *_H264_LEVEL_NAMES),
    },
    # libavcodec/vaapi_encode_h265.c
    "hevc_vaapi": {
        **_VAAPI_COMMON,
        "qp": _int(0, 52),
        "aud": _bool(0),
        "profile": _int(-99, 0xFF, "main", "main10", "rext"),
        "tier": _int(0, 1, "main", "high"),
        "level": _int(-99, 0xFF, *_HEVC_LEVEL_NAMES),
        "sei": _flags("hdr", "a53_cc"),
    },
    # libavcodec/vaapi_encode_av1.c
    "av1_vaapi": {
        **_VAAPI_COMMON,
        "profile": _int(-99, 0xFF, "main", "high", "professional"),
        "tier": _int(0, 1, "main", "high"),
        "level": _int(-99, 0x1F, *_AV1_LEVEL_NAMES),
    },
    # libavcodec/videotoolboxenc.c h264_options
    "h264_videotoolbox": {
        **_VIDEOTOOLBOX_COMMON,
        "profile": _int(
            -99,
            IMAX,
            "baseline",
            "constrained_baseline",
            "main",
            "high",
            "constrained_high",
            "extended",
        ),
        "level": _int(0, 52, "1.3", "3.0", "3.1", "3.2", "4.0", "4.1", "4.2", "5.0", "5.1", "5.2"),
        "coder": _int(-1, 2, "cavlc", "vlc", "cabac", "ac"),
        "a53cc": _bool(0),
        "max_slice_bytes": _int(-1, IMAX),
    },
    # libavcodec/videotoolboxenc.c hevc_options
    "hevc_videotoolbox": {
        **_VIDEOTOOLBOX_COMMON,
        "profile": _int(-99, IMAX, "main", "main10", "main42210", "rext"),
        "alpha_quality": _float(0, 1),
    },
}
