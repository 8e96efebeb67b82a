"""The encoder settings of an encode session and how each travels in CONFIGURE (sans-IO).

VTR1.md §3.2 lists the option keys the reference FFmpeg client sends (in that order,
on its conditions) and §3.3 how the reference server reads them. :data:`KEYS` is that
list, once: each key's name, its type, the value an :class:`EncoderSettings` holds
when nobody sets it, what the server assumes when CONFIGURE lacks it, and the rule
that writes it. The client writes settings with :meth:`EncoderSettings.configure_options`
and the server reads them with :func:`parse_configure`; both are driven by the table.

Defaults are the reference client's (an encoder built with no settings sends the
same CONFIGURE option list the FFmpeg client sends with no options), so ``gop`` is
libavcodec's 12 and ``realtime`` is 0: the reference client sends ``realtime=0``,
and the server treats 0 and a missing key alike (only 1 asks for low latency).
Two keys mean something else when they are missing: no ``gop`` leaves the GOP to
the encoder and no ``a53_cc`` asks for no captions.

Differences from the reference server on purpose: a value that does not parse is a
warning instead of a silent default, and booleans are ``0``/``1`` (the reference
treats any string but ``"0"`` as true, §13.21; we accept ``true`` and ``false`` too
and warn about anything else).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any, Final

from vtremote.errors import ConfigError
from vtremote.wire import colours
from vtremote.wire.constants import WireCompression
from vtremote.wire.extensions import OPT_CODEC, OPT_DECODE_PIPELINE, OPT_KEEPALIVE, OPT_WINDOW

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


def flag_names(flags: int) -> str:
    """``qscale+low_delay`` for a flags value (unknown bits in hex)."""
    names = [name for bit, name in FLAG_NAMES.items() if flags & bit]
    rest = flags & ~sum(FLAG_NAMES) & 0xFFFFFFFF
    if rest:
        names.append(f"{rest:#x}")
    return "+".join(names)


# H.264 / HEVC profile constants as the client sends them (FFmpeg AV_PROFILE_*).
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
AV1_MAIN: Final = 0
AV1_HIGH: Final = 1
AV1_PROFESSIONAL: Final = 2
PROFILE_UNKNOWN: Final = -99

#: ``-profile:v`` names -> the numbers the reference sends (VTR1.md §3.2).
PROFILES: dict[str, dict[str, int]] = {
    "h264": {
        "baseline": H264_BASELINE,
        "constrained_baseline": H264_CONSTRAINED_BASELINE,
        "main": H264_MAIN,
        "high": H264_HIGH,
        "constrained_high": H264_CONSTRAINED_HIGH,
        "extended": H264_EXTENDED,
    },
    "hevc": {"main": HEVC_MAIN, "main10": HEVC_MAIN10, "main42210": HEVC_REXT, "rext": HEVC_REXT},
    # AV1 (an extension codec, wire/extensions.py): AV_PROFILE_AV1_*.
    "av1": {"main": AV1_MAIN, "high": AV1_HIGH, "professional": AV1_PROFESSIONAL},
}
#: H.264 level_idc values (level x 10; 9 is FFmpeg's code for level 1b).
H264_LEVELS: Final = frozenset(
    {9, 10, 11, 12, 13, 20, 21, 22, 30, 31, 32, 40, 41, 42, 50, 51, 52, 60, 61, 62}
)
#: H.264 ``coder`` / ``entropy`` names (VTR1.md §3.2 row 13): 0 auto, 1 CAVLC, 2 CABAC.
ENTROPY = {"auto": 0, "default": 0, "cavlc": 1, "vlc": 1, "cabac": 2, "ac": 2}
#: FFmpeg's "unspecified" values of the colour enums: the reference omits these keys.
UNSPECIFIED_RANGE: Final = colours.RANGE.unspecified
UNSPECIFIED_COLOR: Final = colours.MATRIX.unspecified


def h264_level_name(level: int) -> str:
    """``41`` -> ``"4.1"``; ``9`` -> ``"1b"``."""
    return "1b" if level == 9 else f"{level // 10}.{level % 10}"


def parse_profile(codec: str, value: str | int | None) -> int | None:
    """``high`` -> 100, ``main10`` -> 2, numbers as they are; None/"" -> not sent."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    key = value.strip().lower().replace("-", "_")
    if key.lstrip("-").isdigit():
        return int(key)
    try:
        return PROFILES[codec][key]
    except KeyError:
        names = ", ".join(PROFILES[codec])
        raise ConfigError(
            f"{codec} profile {value!r} is not one of {names} (or a number)"
        ) from None


def parse_level(value: str | int | float | None) -> int:
    """H.264 level as the reference's ``level`` option counts it: ``4.1`` / ``41`` -> 41."""
    if value is None or value == "" or value == "auto":
        return 0
    text = str(value).strip()
    try:
        if "." in text:
            level = round(float(text) * 10)
        else:
            level = int(text)
            if 0 < level < 10:  # "-level 4" means 4.0
                level *= 10
    except ValueError:
        raise ConfigError(f"level {value!r} is not a number like 4.1 or 41") from None
    if not 0 <= level <= 62:
        raise ConfigError(f"level {value!r} is outside 1.0..6.2")
    return level


def parse_entropy(value: str | int) -> int:
    if isinstance(value, int):
        if value not in (0, 1, 2):
            raise ConfigError(f"entropy {value} is not 0 (auto), 1 (cavlc) or 2 (cabac)")
        return value
    try:
        return ENTROPY[value.strip().lower()]
    except KeyError:
        raise ConfigError(f"entropy {value!r} is not one of auto, cavlc, cabac") from None


def _sar(value: Fraction | tuple[int, int] | None) -> Fraction | None:
    if value is None:
        return None
    try:
        return Fraction(*value) if isinstance(value, tuple) else Fraction(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise ConfigError(f"sample aspect ratio {value!r} is not a fraction like 1/30") from None


@dataclass(frozen=True)
class EncoderSettings:
    """The codec options of an encode session: the reference client's AVOptions.

    Built by a caller (checked here) or read off a CONFIGURE by :func:`parse_configure`
    (taken as sent: the engines warn about what they cannot honour; ``present`` then
    names the keys the client sent). ``profile``, ``level`` and ``entropy`` take names
    or numbers; the ``*_number`` methods give the numbers the wire carries.
    """

    bitrate: int = 0
    maxrate: int = 0
    gop: int = 12
    max_b_frames: int = 0
    flags: int = 0  # AVCodecContext flags: 1<<22 global header, 1<<19 low delay, 1<<31 closed GOP
    global_quality: int = 0
    qmin: int = -1
    qmax: int = -1
    profile: str | int | None = PROFILE_UNKNOWN
    level: str | int | float | None = 0
    entropy: str | int = 0
    allow_sw: bool = False
    require_sw: bool = False
    realtime: int = 0
    frames_before: bool = False
    frames_after: bool = False
    prio_speed: int = -1
    power_efficient: int = -1
    spatial_aq: int = -1
    max_ref_frames: int = 0
    max_slice_bytes: int = -1
    constant_bit_rate: bool = False
    alpha_quality: float = 0.0
    color_range: int = UNSPECIFIED_RANGE
    colorspace: int = UNSPECIFIED_COLOR
    color_primaries: int = UNSPECIFIED_COLOR
    color_trc: int = UNSPECIFIED_COLOR
    sar: Fraction | tuple[int, int] | None = None
    a53_cc: bool = True
    #: Keys a CONFIGURE carried (None: built by a caller, not read off the wire).
    present: frozenset[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.present is not None:
            return
        for name in ("bitrate", "maxrate", "gop", "max_b_frames", "max_ref_frames"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} {getattr(self, name)} must not be negative")
        if self.realtime not in (-1, 0, 1):
            raise ConfigError(f"realtime {self.realtime} is not -1, 0 or 1")
        if not 0.0 <= self.alpha_quality <= 1.0:
            raise ConfigError(f"alpha_quality {self.alpha_quality} is outside 0..1")
        if not -(1 << 31) <= self.flags < (1 << 32):
            raise ConfigError(f"flags {self.flags} do not fit 32 bits")
        parse_entropy(self.entropy)
        parse_level(self.level)

    @classmethod
    def given(cls, settings: EncoderSettings | None, options: dict[str, Any]) -> EncoderSettings:
        """The settings a session constructor was given: ``settings=`` or keywords, not both."""
        if settings is not None and options:
            raise ConfigError("give encoder options either as settings= or as keywords, not both")
        return settings if settings is not None else cls.from_kwargs(**options)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EncoderSettings:
        unknown = sorted(set(kwargs) - set(FIELDS))
        if unknown:
            raise ConfigError(f"unknown encoder option(s): {', '.join(unknown)}")
        return cls(**kwargs)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}

    # -- the numbers the wire carries -----------------------------------------------------

    def profile_number(self, codec: str) -> int:
        """The profile constant for ``codec`` (PROFILE_UNKNOWN when none is set)."""
        number = parse_profile(codec, self.profile)
        return PROFILE_UNKNOWN if number is None else number

    def level_number(self) -> int:
        """level_idc as the wire counts it (0: the encoder picks)."""
        if self.present is not None and isinstance(self.level, int):
            return self.level  # as sent (an HEVC level x 30 too)
        return parse_level(self.level)

    def entropy_number(self) -> int:
        return self.entropy if isinstance(self.entropy, int) else parse_entropy(self.entropy)

    @property
    def sar_num(self) -> int:
        return self._sar_parts()[0]

    @property
    def sar_den(self) -> int:
        return self._sar_parts()[1]

    def _sar_parts(self) -> tuple[int, int]:
        if isinstance(self.sar, tuple):
            return self.sar
        return (self.sar.numerator, self.sar.denominator) if self.sar is not None else (0, 0)

    # -- what the server makes of them ----------------------------------------------------

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

    def sent(self, key: str) -> bool:
        """Whether the CONFIGURE these settings were read from carried ``key``."""
        return self.present is not None and key in self.present

    # -- to the wire ---------------------------------------------------------------------

    def configure_options(self, codec: str, compression: WireCompression) -> list[tuple[str, str]]:
        """CONFIGURE option pairs, keys in the reference's order and on its conditions
        (VTR1.md §3.2)."""
        o: list[tuple[str, str]] = [("mode", "encode")]
        if compression > 0:
            o.append(("wire_compression", str(int(compression))))
        h264 = codec == "h264"
        for key in KEYS:
            text = key.write(self, codec, h264)
            if text is not None:
                o.append((key.name, text))
        return o


#: The fields of :class:`EncoderSettings` a caller may set.
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EncoderSettings) if f.name != "present")

Writer = Callable[[EncoderSettings, str, bool], "str | None"]


def _positive(name: str) -> Writer:
    return lambda s, codec, h264: str(v) if (v := getattr(s, name)) > 0 else None


def _not_negative(name: str) -> Writer:
    """Sent when not negative (-1 means unset)."""
    return lambda s, codec, h264: str(v) if (v := getattr(s, name)) >= 0 else None


def _on(name: str) -> Writer:
    return lambda s, codec, h264: "1" if getattr(s, name) else None


def _colour(name: str) -> Writer:
    table = colours.TABLES[name]
    return lambda s, codec, h264: str(v) if (v := getattr(s, name)) != table.unspecified else None


def _flags(s: EncoderSettings, codec: str, h264: bool) -> str | None:
    # The client's flags are a C int: the reference prints them with %d.
    return str(s.flags - (1 << 32) if s.flags >= (1 << 31) else s.flags) if s.flags else None


def _profile(s: EncoderSettings, codec: str, h264: bool) -> str | None:
    number = s.profile_number(codec)
    return str(number) if number != PROFILE_UNKNOWN else None


def _level(s: EncoderSettings, codec: str, h264: bool) -> str | None:
    level = parse_level(s.level)
    # The reference's HEVC encoder has no level option; AV1 is ours (an extension codec).
    return str(level) if (h264 or codec == "av1") and level > 0 else None


def _max_slice_bytes(s: EncoderSettings, codec: str, h264: bool) -> str | None:
    if not h264:
        return "0"  # the HEVC field is 0, so the reference always sends it for HEVC
    return str(s.max_slice_bytes) if s.max_slice_bytes >= 0 else None


def _sar_part(index: int) -> Writer:
    def write(s: EncoderSettings, codec: str, h264: bool) -> str | None:
        sar = _sar(s.sar)
        if sar is None or sar.numerator <= 0:
            return None
        return str((sar.numerator, sar.denominator)[index])

    return write


# -- reading values off the wire (VTR1.md §3.3) ------------------------------------------------

Reader = Callable[[str, str, list[str]], object]


def _read_int(key: str, value: str, warnings: list[str]) -> int | None:
    try:
        return int(value.strip(), 10)
    except ValueError:
        warnings.append(f"{key}={value!r} is not an integer; ignored")
        return None


def _read_flags(key: str, value: str, warnings: list[str]) -> int | None:
    n = _read_int(key, value, warnings)
    # VTR1.md §3.2: a signed 32-bit int, so CLOSED_GOP (bit 31) arrives negative.
    return None if n is None else n & 0xFFFFFFFF


def _read_float(key: str, value: str, warnings: list[str]) -> float | None:
    try:
        return float(value)
    except ValueError:
        warnings.append(f"{key}={value!r} is not a number; ignored")
        return None


def _read_bool(key: str, value: str, warnings: list[str]) -> bool | None:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    n = _read_int(key, value, warnings)
    return None if n is None else n != 0


def _read_int_bool(key: str, value: str, warnings: list[str]) -> bool | None:
    """An on/off key the reference server reads as an int (any non-zero is on)."""
    n = _read_int(key, value, warnings)
    return None if n is None else n != 0


@dataclass(frozen=True, slots=True)
class Key:
    """One CONFIGURE option key of an encode session."""

    name: str
    #: How the server reads the text (None and a warning when it does not parse).
    read: Reader
    #: Writes the key for a codec (None: not sent), as the reference client does.
    write: Writer
    #: What the server assumes when CONFIGURE lacks the key, where that is not the
    #: field's default.
    absent: object = None
    #: The values a number may take (inclusive; floats for a float key): outside them the
    #: CONFIGURE is refused, naming the key and the range. None: not a number (on/off keys).
    limits: tuple[int, int] | tuple[float, float] | None = None


#: A C ``int``, and the part of it that is not negative (sizes, rates, counts).
INT32: Final = (-(1 << 31), (1 << 31) - 1)
NATURAL: Final = (0, (1 << 31) - 1)
#: "-1: unset" or a count.
UNSET_OR_NATURAL: Final = (-1, (1 << 31) - 1)
#: AVColor* enum values.
COLOUR_ENUM: Final = (0, 255)


#: Every encoder key of VTR1.md §3.2, in the order the reference client sends them.
KEYS: tuple[Key, ...] = (
    Key("bitrate", _read_int, _positive("bitrate"), limits=NATURAL),
    Key("maxrate", _read_int, _positive("maxrate"), limits=NATURAL),
    Key("gop", _read_int, _positive("gop"), absent=0, limits=NATURAL),
    Key("max_b_frames", _read_int, _positive("max_b_frames"), limits=NATURAL),
    # A signed 32-bit int on the wire; unsigned as the client's API takes it.
    Key("flags", _read_flags, _flags, limits=(-(1 << 31), (1 << 32) - 1)),
    Key("global_quality", _read_int, _positive("global_quality"), limits=NATURAL),
    Key("qmin", _read_int, _not_negative("qmin"), limits=UNSET_OR_NATURAL),
    Key("qmax", _read_int, _not_negative("qmax"), limits=UNSET_OR_NATURAL),
    Key("profile", _read_int, _profile, limits=INT32),
    Key("level", _read_int, _level, limits=INT32),
    # Always sent; 0 for HEVC.
    Key(
        "entropy",
        _read_int,
        lambda s, codec, h264: str(s.entropy_number() if h264 else 0),
        limits=INT32,
    ),
    Key("allow_sw", _read_bool, _on("allow_sw")),
    Key("require_sw", _read_bool, _on("require_sw")),
    Key("realtime", _read_int, _not_negative("realtime"), limits=INT32),
    Key("frames_before", _read_bool, _on("frames_before")),
    Key("frames_after", _read_bool, _on("frames_after")),
    Key("prio_speed", _read_int, _not_negative("prio_speed"), limits=UNSET_OR_NATURAL),
    Key("power_efficient", _read_int, _not_negative("power_efficient"), limits=UNSET_OR_NATURAL),
    Key("spatial_aq", _read_int, _not_negative("spatial_aq"), limits=UNSET_OR_NATURAL),
    Key("max_ref_frames", _read_int, _positive("max_ref_frames"), limits=NATURAL),
    Key("max_slice_bytes", _read_int, _max_slice_bytes, limits=UNSET_OR_NATURAL),
    Key("constant_bit_rate", _read_bool, _on("constant_bit_rate")),
    Key(
        "alpha_quality",
        _read_float,
        lambda s, c, h264: f"{s.alpha_quality:.6f}" if not h264 and s.alpha_quality > 0 else None,
        limits=(0.0, 1.0),
    ),
    Key("color_range", _read_int, _colour("color_range"), limits=COLOUR_ENUM),
    Key("colorspace", _read_int, _colour("colorspace"), limits=COLOUR_ENUM),
    Key("color_primaries", _read_int, _colour("color_primaries"), limits=COLOUR_ENUM),
    Key("color_trc", _read_int, _colour("color_trc"), limits=COLOUR_ENUM),
    Key("sar_num", _read_int, _sar_part(0), limits=NATURAL),
    Key("sar_den", _read_int, _sar_part(1), limits=NATURAL),
    # Always sent; captions exist in H.264 only.
    Key(
        "a53_cc", _read_int_bool, lambda s, c, h264: "1" if h264 and s.a53_cc else "0", absent=False
    ),
)
ENCODE_KEYS: Final = frozenset(k.name for k in KEYS)
_BY_NAME = {k.name: k for k in KEYS}

#: Keys the session itself consumes (not codec settings).
SESSION_KEYS: Final = frozenset(
    {"mode", "wire_compression", OPT_CODEC, OPT_DECODE_PIPELINE, OPT_KEEPALIVE, OPT_WINDOW}
)
#: Keys a decode session understands: the reference decoder client sends the
#: colour keys too; they describe the container's stream and need no action
#: because the FRAME message carries no colour metadata (VTR1.md §3.2).
DECODE_KEYS: Final = frozenset(colours.TABLES)


def check_limits(key: Key, value: str) -> None:
    """ConfigError (ERROR 4) naming the key and its range if ``value`` is a number outside
    ``key.limits``; text that is no number is left to the key's reader (a warning)."""
    if key.limits is None:
        return
    lo, hi = key.limits
    try:
        number: float = float(value) if isinstance(lo, float) else int(value.strip(), 10)
    except ValueError:
        return
    if not lo <= number <= hi:  # also NaN
        shown = value.strip() if len(value.strip()) <= 40 else value.strip()[:40] + "..."
        raise ConfigError(f"CONFIGURE {key.name}={shown} is outside the allowed range {lo}..{hi}")


def parse_configure(options: Mapping[str, str]) -> tuple[EncoderSettings, list[str]]:
    """Settings from an encode CONFIGURE's option map, plus warnings for keys that are
    unknown or whose value does not parse (the key then reads as missing)."""
    warnings: list[str] = []
    values: dict[str, Any] = {k.name: k.absent for k in KEYS if k.absent is not None}
    present: set[str] = set()
    for name, value in options.items():
        if name in SESSION_KEYS:
            continue
        key = _BY_NAME.get(name)
        if key is None:
            warnings.append(f"unknown option {name}={value!r} ignored")
            continue
        check_limits(key, value)
        parsed = key.read(name, value, warnings)
        if parsed is not None:
            values[name] = parsed
            present.add(name)
    num, den = values.pop("sar_num", 0), values.pop("sar_den", 0)
    if present & {"sar_num", "sar_den"}:
        values["sar"] = (num, den)
    return EncoderSettings(**values, present=frozenset(present)), warnings


def check_decode_options(options: Mapping[str, str]) -> list[str]:
    """Warnings for the keys of a decode CONFIGURE the server does not know."""
    return [
        f"unknown option {key}={value!r} ignored by a decode session"
        for key, value in options.items()
        if key not in SESSION_KEYS and key not in DECODE_KEYS
    ]
