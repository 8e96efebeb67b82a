"""CONFIGURE option keys of an encode session, parsed once for every engine.

VTR1.md §3.2 lists the keys the reference FFmpeg client sends and §3.3 how the
reference server reads them (defaults, signedness, booleans). This module turns
the option map into a typed :class:`EncodeSettings` with the same defaults, so
each engine only maps settings to its codec; keys it cannot honour become
warnings in CONFIGURE_ACK, never silence.

Differences from the reference on purpose: a value that does not parse is a
warning instead of a silent default, and booleans are ``0``/``1`` (the
reference treats any string but ``"0"`` as true, §13.21; we accept ``true``
and ``false`` too and warn about anything else).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from vtremote.wire import colours
from vtremote.wire.extensions import OPT_DECODE_PIPELINE, OPT_KEEPALIVE, OPT_WINDOW

# AVCodecContext.flags bits (libavcodec/avcodec.h) that an encoder client may set.
FLAG_UNALIGNED: Final = 1 << 0
FLAG_QSCALE: Final = 1 << 1
FLAG_4MV: Final = 1 << 2
FLAG_OUTPUT_CORRUPT: Final = 1 << 3
FLAG_QPEL: Final = 1 << 4
FLAG_DROPCHANGED: Final = 1 << 5
FLAG_RECON_FRAME: Final = 1 << 6
FLAG_COPY_OPAQUE: Final = 1 << 7
FLAG_FRAME_DURATION: Final = 1 << 8
FLAG_PASS1: Final = 1 << 9
FLAG_PASS2: Final = 1 << 10
FLAG_LOOP_FILTER: Final = 1 << 11
FLAG_GRAY: Final = 1 << 13
FLAG_PSNR: Final = 1 << 15
FLAG_INTERLACED_DCT: Final = 1 << 18
FLAG_LOW_DELAY: Final = 1 << 19
FLAG_GLOBAL_HEADER: Final = 1 << 22
FLAG_BITEXACT: Final = 1 << 23
FLAG_AC_PRED: Final = 1 << 24
FLAG_INTERLACED_ME: Final = 1 << 29
FLAG_CLOSED_GOP: Final = 1 << 31

FLAG_NAMES: Final = {
    FLAG_UNALIGNED: "unaligned",
    FLAG_QSCALE: "qscale",
    FLAG_4MV: "mv4",
    FLAG_OUTPUT_CORRUPT: "output_corrupt",
    FLAG_QPEL: "qpel",
    FLAG_DROPCHANGED: "drop_changed",
    FLAG_RECON_FRAME: "recon_frame",
    FLAG_COPY_OPAQUE: "copy_opaque",
    FLAG_FRAME_DURATION: "frame_duration",
    FLAG_PASS1: "pass1",
    FLAG_PASS2: "pass2",
    FLAG_LOOP_FILTER: "loop",
    FLAG_GRAY: "gray",
    FLAG_PSNR: "psnr",
    FLAG_INTERLACED_DCT: "ildct",
    FLAG_LOW_DELAY: "low_delay",
    FLAG_GLOBAL_HEADER: "global_header",
    FLAG_BITEXACT: "bitexact",
    FLAG_AC_PRED: "aic",
    FLAG_INTERLACED_ME: "ilme",
    FLAG_CLOSED_GOP: "cgop",
}

#: Flags every engine honours through the session itself: QSCALE and LOW_DELAY
#: select rate control / latency, GLOBAL_HEADER is how every engine runs (the
#: parameter sets travel in CONFIGURE_ACK), CLOSED_GOP is how every engine runs,
#: FRAME_DURATION is honoured by filling PACKET durations, COPY_OPAQUE concerns
#: only the client's own AVFrame/AVPacket bookkeeping.
HONOURED_FLAGS: Final = (
    FLAG_QSCALE
    | FLAG_LOW_DELAY
    | FLAG_GLOBAL_HEADER
    | FLAG_CLOSED_GOP
    | FLAG_FRAME_DURATION
    | FLAG_COPY_OPAQUE
)

# FFmpeg's AVColor* enums (libavutil/pixfmt.h): the values a client may send.
COLOR_RANGES: Final = colours.RANGE.values
COLOR_PRIMARIES: Final = colours.PRIMARIES.values
COLOR_TRCS: Final = colours.TRANSFER.values
COLOR_SPACES: Final = colours.MATRIX.values

#: Keys the session itself consumes (not codec settings).
SESSION_KEYS: Final = frozenset(
    {"mode", "wire_compression", OPT_DECODE_PIPELINE, OPT_KEEPALIVE, OPT_WINDOW}
)

#: Every encoder key VTR1.md §3.2 defines.
ENCODE_KEYS: Final = frozenset(
    {
        "bitrate",
        "maxrate",
        "gop",
        "max_b_frames",
        "flags",
        "global_quality",
        "qmin",
        "qmax",
        "profile",
        "level",
        "entropy",
        "allow_sw",
        "require_sw",
        "realtime",
        "frames_before",
        "frames_after",
        "prio_speed",
        "power_efficient",
        "spatial_aq",
        "max_ref_frames",
        "max_slice_bytes",
        "constant_bit_rate",
        "alpha_quality",
        "color_range",
        "colorspace",
        "color_primaries",
        "color_trc",
        "sar_num",
        "sar_den",
        "a53_cc",
    }
)

#: Keys a decode session understands: the reference decoder client sends the
#: colour keys too; they describe the container's stream and need no action
#: because the FRAME message carries no colour metadata (VTR1.md §3.2).
DECODE_KEYS: Final = frozenset({"color_range", "colorspace", "color_primaries", "color_trc"})

# H.264 profile constants as the client sends them (FFmpeg AV_PROFILE_H264_*).
H264_BASELINE: Final = 66
H264_CONSTRAINED_BASELINE: Final = 66 | 512
H264_MAIN: Final = 77
H264_EXTENDED: Final = 88
H264_HIGH: Final = 100
H264_CONSTRAINED_HIGH: Final = 100 | 512
H264_HIGH10: Final = 110
H264_HIGH422: Final = 122
H264_HIGH444: Final = 244
HEVC_MAIN: Final = 1
HEVC_MAIN10: Final = 2
HEVC_MAIN_STILL: Final = 3
HEVC_REXT: Final = 4
PROFILE_UNKNOWN: Final = -99

#: H.264 level_idc values (level x 10; 9 is FFmpeg's code for level 1b).
H264_LEVELS: Final = frozenset(
    {9, 10, 11, 12, 13, 20, 21, 22, 30, 31, 32, 40, 41, 42, 50, 51, 52, 60, 61, 62}
)


def h264_level_name(level: int) -> str:
    """``41`` -> ``"4.1"``; ``9`` -> ``"1b"``."""
    return "1b" if level == 9 else f"{level // 10}.{level % 10}"


@dataclass(frozen=True, slots=True)
class EncodeSettings:
    """The encoder keys of one CONFIGURE with the reference server's defaults (§3.3)."""

    bitrate: int = 0
    maxrate: int = 0
    gop: int = 0
    max_b_frames: int = 0
    flags: int = 0  # unsigned 32-bit view of the client's signed int
    global_quality: int = 0
    qmin: int = -1
    qmax: int = -1
    profile: int = PROFILE_UNKNOWN
    level: int = 0
    entropy: int = 0  # 0 auto, 1 CAVLC, 2 CABAC
    allow_sw: bool = False
    require_sw: bool = False
    realtime: int = -1
    frames_before: bool = False
    frames_after: bool = False
    prio_speed: int = -1
    power_efficient: int = -1
    spatial_aq: int = -1
    max_ref_frames: int = 0
    max_slice_bytes: int = -1
    constant_bit_rate: bool = False
    alpha_quality: float = 0.0
    color_range: int = 0
    colorspace: int = 2
    color_primaries: int = 2
    color_trc: int = 2
    sar_num: int = 0
    sar_den: int = 0
    a53_cc: int = -1
    present: frozenset[str] = field(default_factory=frozenset)

    @property
    def quality(self) -> float | None:
        """Constant-quality target in 0..1 as the reference computes it (§9.5 step 2), or None.

        ``-q:v N`` arrives as ``global_quality = N * 118`` plus the QSCALE flag,
        hence the division by 118 x 100 in that case.
        """
        qscale = bool(self.flags & FLAG_QSCALE)
        if not qscale and self.global_quality <= 0:
            return None
        q = self.global_quality / (118 * 100 if qscale else 100)
        return max(0.0, min(1.0, q))

    @property
    def low_latency(self) -> bool:
        """``realtime=1`` or the LOW_DELAY flag: no lookahead, no frame reordering."""
        return self.realtime == 1 or bool(self.flags & FLAG_LOW_DELAY)

    @property
    def unhonoured_flags(self) -> int:
        return self.flags & ~HONOURED_FLAGS & 0xFFFFFFFF

    def sent(self, key: str) -> bool:
        return key in self.present


def flag_names(flags: int) -> str:
    names = [name for bit, name in FLAG_NAMES.items() if flags & bit]
    rest = flags & ~sum(FLAG_NAMES) & 0xFFFFFFFF
    if rest:
        names.append(f"{rest:#x}")
    return "+".join(names)


_BOOL_FIELDS = {f.name for f in dataclasses.fields(EncodeSettings) if f.type in ("bool", bool)}


def _parse_int(key: str, value: str, warnings: list[str]) -> int | None:
    try:
        return int(value.strip(), 10)
    except ValueError:
        warnings.append(f"{key}={value!r} is not an integer; ignored")
        return None


def _parse_bool(key: str, value: str, warnings: list[str]) -> bool | None:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    parsed = _parse_int(key, value, warnings)
    return None if parsed is None else parsed != 0


def parse_encode_options(options: Mapping[str, str]) -> tuple[EncodeSettings, list[str]]:
    """Typed settings from a CONFIGURE option map, plus warnings for keys that
    are unknown or whose value does not parse (the key keeps its default)."""
    warnings: list[str] = []
    values: dict[str, object] = {}
    present: set[str] = set()
    for key, value in options.items():
        if key in SESSION_KEYS:
            continue
        if key not in ENCODE_KEYS:
            warnings.append(f"unknown option {key}={value!r} ignored")
            continue
        parsed: object
        if key == "flags":
            n = _parse_int(key, value, warnings)
            # VTR1.md §3.2: a signed 32-bit int, so CLOSED_GOP (bit 31) arrives negative.
            parsed = None if n is None else n & 0xFFFFFFFF
        elif key == "alpha_quality":
            try:
                parsed = float(value)
            except ValueError:
                warnings.append(f"{key}={value!r} is not a number; ignored")
                parsed = None
        elif key in _BOOL_FIELDS:
            parsed = _parse_bool(key, value, warnings)
        else:
            parsed = _parse_int(key, value, warnings)
        if parsed is not None:
            values[key] = parsed
            present.add(key)
    settings = EncodeSettings(**values, present=frozenset(present))  # type: ignore[arg-type]
    return settings, warnings


def check_decode_options(options: Mapping[str, str]) -> list[str]:
    """Warnings for the keys of a decode CONFIGURE the server does not know."""
    return [
        f"unknown option {key}={value!r} ignored by a decode session"
        for key, value in options.items()
        if key not in SESSION_KEYS and key not in DECODE_KEYS
    ]
