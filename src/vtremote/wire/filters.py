"""Server-side filter chains of transcode sessions: parse, validate, serialize (sans-IO).

A transcode session (docs/protocol.md "Packet transcode") names the filters the
server runs between its decoder and its encoder with an ffmpeg ``-vf`` style
text. Both sides parse it here into a tuple of frozen :class:`FilterSpec`
values from an allowlist; the server builds its filter graph from those values
only, never from the text it received, and computes every size itself
(:func:`graph_steps`), so nothing the network sends reaches FFmpeg's option
parser unchecked.

Supported (numbers only; expressions such as ``iw/2`` are refused)::

    scale=W:H[:flags=F]  w=/width=, h=/height=, -1 / -N keep the aspect ratio
                         (rounded to a multiple of N), 0 = input size,
                         force_original_aspect_ratio=disable|decrease|increase,
                         force_divisible_by=N
    fps=R                R = 30, 30000/1001, 29.97, ntsc, pal, film, ntsc_film
    format=P[|P...]      pix_fmts from FORMATS
    crop=W:H[:X:Y]       rounded down to even values (4:2:0), centred by default
    yadif / bwdif        mode, parity, deint (numbers or FFmpeg's names)
    setparams            field_mode, range, color_primaries, color_trc, colorspace
    setsar=R             sample aspect ratio
    tonemap=A[:P[:D]]    HDR (PQ/HLG) -> SDR BT.709: algorithm= (alias tonemap=)
                         bt2390|hable|mobius|reinhard|clip, peak= 0 or 1..100 (units of
                         100 cd/m², 0 = the transfer's default), desat= 0..100 (0 = off);
                         vtremote's own filter, offered only inside ext:transcode
    null
    trim                 start=S, end=S, duration=S (seconds, 6 decimals at most), end_frame=N:
                         the frames a trimmed job keeps (-ss, -t, -to, -frames:v)

Errors: a chain that is well formed but asks for something outside the
allowlist raises :class:`UnsupportedConfigError` naming the filter or option
(the client then falls back to raw frames); malformed text raises
:class:`ConfigError`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from fractions import Fraction

from vtremote.errors import ConfigError, UnsupportedConfigError
from vtremote.wire import colours, rates
from vtremote.wire.filter_geometry import (
    Geometry,
    crop_box,
    graph_steps,
    output_geometry,
    scale_size,
)
from vtremote.wire.filter_specs import (
    FIELD_MODES,
    FORMATS,
    MAX_DIVISOR,
    MAX_TONEMAP_DESAT,
    MAX_TONEMAP_PEAK,
    MAX_TRIM_FRAMES,
    MAX_TRIM_SECONDS,
    SETPARAMS_COLOURS,
    SETPARAMS_KEYS,
    TONEMAP_ALGORITHMS,
    Chain,
    Crop,
    Deinterlace,
    FilterSpec,
    Format,
    Fps,
    Null,
    Scale,
    SetParams,
    SetSar,
    Tonemap,
    Trim,
    bit_depth,
    color_options,
    forced_color_options,
    names,
    serialize,
)
from vtremote.wire.framing import MAX_DIMENSION

#: Longest chain text accepted (CONFIGURE option ``ext_filters``).
MAX_CHAIN_TEXT = 1024
#: Most filters in one chain.
MAX_FILTERS = 16

ALLOWED = (
    "scale",
    "fps",
    "format",
    "crop",
    "yadif",
    "bwdif",
    "setparams",
    "setsar",
    "tonemap",
    "null",
    "trim",
)

SCALE_FLAGS = frozenset(
    {
        "fast_bilinear",
        "bilinear",
        "bicubic",
        "experimental",
        "neighbor",
        "area",
        "bicublin",
        "gauss",
        "sinc",
        "lanczos",
        "spline",
        "print_info",
        "accurate_rnd",
        "full_chroma_int",
        "full_chroma_inp",
        "bitexact",
        "error_diffusion",
    }
)
NAMED_RATES = rates.FILTER_NAMES
_ASPECT_MODES = {"disable": 0, "decrease": 1, "increase": 2}
_DEINT_MODES = {
    "send_frame": 0,
    "send_field": 1,
    "send_frame_nospatial": 2,
    "send_field_nospatial": 3,
}
_PARITIES = {"tff": 0, "bff": 1, "auto": -1}
_DEINTS = {"all": 0, "interlaced": 1}
#: setparams colour names -> the AVColor* numbers the encoder options use (wire/colours.py).
RANGES = colours.RANGE.names
PRIMARIES = colours.PRIMARIES.names
TRCS = colours.TRANSFER.names
SPACES = colours.MATRIX.names

_ITEM = re.compile(r"^[A-Za-z0-9_=:.+\-/|]*$")
_INT = re.compile(r"^[+-]?\d{1,6}$")
_DECIMAL = re.compile(r"^\d{1,6}(\.\d{1,6})?$")

# --- parsing -----------------------------------------------------------------------------------


def _unsupported_filter(name: str) -> UnsupportedConfigError:
    return UnsupportedConfigError(
        f"filter {name!r} is not supported on the server (supported: {', '.join(ALLOWED)})"
    )


def _expression(filter_name: str, key: str, text: str) -> UnsupportedConfigError | None:
    """The error for a value that looks like an FFmpeg expression (``iw/2``), else None."""
    if re.search(r"[a-z(*]", text):
        return UnsupportedConfigError(
            f"{filter_name} {key}={text!r}: expressions are not supported here, give a number"
        )
    return None


def _int(filter_name: str, key: str, text: str, lo: int, hi: int) -> int:
    if not _INT.match(text):
        raise _expression(filter_name, key, text) or ConfigError(
            f"{filter_name} {key}={text!r} is not an integer"
        )
    value = int(text)
    if not lo <= value <= hi:
        raise ConfigError(f"{filter_name} {key}={value} is outside {lo}..{hi}")
    return value


def _choice(filter_name: str, key: str, text: str, names: dict[str, int], lo: int, hi: int) -> int:
    if text in names:
        return names[text]
    if _INT.match(text):
        return _int(filter_name, key, text, lo, hi)
    raise ConfigError(
        f"{filter_name} {key}={text!r} is not one of {', '.join(names)} or {lo}..{hi}"
    )


def _rate(filter_name: str, key: str, text: str) -> Fraction:
    if text in NAMED_RATES:
        return NAMED_RATES[text]
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise _expression(filter_name, key, text) or ConfigError(
            f"{filter_name} {key}={text!r} is not a rate like 30 or 30000/1001"
        ) from None
    if not 0 < value <= 1000 or value.denominator > 1_000_000:
        raise ConfigError(f"{filter_name} {key}={text} is outside 0..1000 (denominator <= 1000000)")
    return value


def _split_args(
    filter_name: str, text: str, positional: Sequence[str], aliases: dict[str, str]
) -> dict[str, str]:
    """``a:b:key=value`` -> {canonical key: value}; positional values take the names in
    ``positional``."""
    out: dict[str, str] = {}
    if text == "":
        return out
    named_seen = False
    for i, part in enumerate(text.split(":")):
        if "=" in part:
            key, _, value = part.partition("=")
            named_seen = True
        else:
            if named_seen or i >= len(positional):
                raise ConfigError(f"{filter_name}: unexpected value {part!r} at position {i + 1}")
            key, value = positional[i], part
        key = aliases.get(key, key)
        if key not in aliases.values():
            supported = ", ".join(sorted(set(aliases.values())))
            raise UnsupportedConfigError(
                f"{filter_name} option {key!r} is not supported (supported: {supported})"
            )
        if key in out:
            raise ConfigError(f"{filter_name}: option {key} given twice")
        if value == "":
            raise ConfigError(f"{filter_name}: option {key} has no value")
        out[key] = value
    return out


def _parse_scale(args: str) -> Scale:
    a = _split_args(
        "scale",
        args,
        ("w", "h", "flags"),
        {
            "w": "w",
            "width": "w",
            "h": "h",
            "height": "h",
            "flags": "flags",
            "force_original_aspect_ratio": "force_original_aspect_ratio",
            "force_divisible_by": "force_divisible_by",
        },
    )
    if "w" not in a and "h" not in a:
        raise ConfigError("scale needs a width or a height")
    w = _int("scale", "w", a.get("w", "-1"), -MAX_DIVISOR, MAX_DIMENSION)
    h = _int("scale", "h", a.get("h", "-1"), -MAX_DIVISOR, MAX_DIMENSION)
    flags = a.get("flags", "")
    for flag in filter(None, flags.split("+")):
        if flag not in SCALE_FLAGS:
            supported = ", ".join(sorted(SCALE_FLAGS))
            raise UnsupportedConfigError(
                f"scale flags: {flag!r} is not supported (supported: {supported})"
            )
    flags = "+".join(f for f in flags.split("+") if f)
    foar = _choice(
        "scale",
        "force_original_aspect_ratio",
        a.get("force_original_aspect_ratio", "0"),
        _ASPECT_MODES,
        0,
        2,
    )
    div = _int("scale", "force_divisible_by", a.get("force_divisible_by", "1"), 1, MAX_DIVISOR)
    return Scale(w, h, flags, foar, div)


def _parse_fps(args: str) -> Fps:
    a = _split_args("fps", args, ("fps",), {"fps": "fps"})
    if "fps" not in a:
        raise ConfigError("fps needs a rate")
    return Fps(_rate("fps", "fps", a["fps"]))


def _parse_format(args: str) -> Format:
    a = _split_args("format", args, ("pix_fmts",), {"pix_fmts": "pix_fmts"})
    names = tuple(p for p in a.get("pix_fmts", "").split("|") if p)
    if not names:
        raise ConfigError("format needs at least one pixel format")
    for p in names:
        if p not in FORMATS:
            raise UnsupportedConfigError(
                f"format: pixel format {p!r} is not supported (supported: {', '.join(FORMATS)})"
            )
    return Format(names)


def _parse_crop(args: str) -> Crop:
    a = _split_args(
        "crop",
        args,
        ("w", "h", "x", "y"),
        {"w": "w", "out_w": "w", "h": "h", "out_h": "h", "x": "x", "y": "y"},
    )
    vals = {k: _int("crop", k, v, 0 if k in "xy" else 1, MAX_DIMENSION) for k, v in a.items()}
    return Crop(vals.get("w"), vals.get("h"), vals.get("x"), vals.get("y"))


def _parse_deinterlace(name: str, args: str) -> Deinterlace:
    a = _split_args(
        name,
        args,
        ("mode", "parity", "deint"),
        {"mode": "mode", "parity": "parity", "deint": "deint"},
    )
    top = 3 if name == "yadif" else 1
    modes = {k: v for k, v in _DEINT_MODES.items() if v <= top}
    mode = _choice(name, "mode", a.get("mode", "0" if name == "yadif" else "1"), modes, 0, top)
    parity = _choice(name, "parity", a.get("parity", "-1"), _PARITIES, -1, 1)
    deint = _choice(name, "deint", a.get("deint", "0"), _DEINTS, 0, 1)
    return Deinterlace(name, mode, parity, deint)


def _parse_setparams(args: str) -> SetParams:
    a = _split_args("setparams", args, SETPARAMS_KEYS, {k: k for k in SETPARAMS_KEYS})
    for key, value in a.items():
        accepted = SETPARAMS_COLOURS[key].names if key in SETPARAMS_COLOURS else FIELD_MODES
        if value not in accepted:
            raise ConfigError(f"setparams {key}={value!r} is not one of {', '.join(accepted)}")
    return SetParams(**a)


def _parse_setsar(args: str) -> SetSar:
    if re.match(r"^\d+:\d+$", args):  # setsar=16:11, FFmpeg's shorthand for a ratio
        args = args.replace(":", "/")
    a = _split_args("setsar", args, ("sar",), {"sar": "sar", "r": "sar", "ratio": "sar"})
    if "sar" not in a:
        raise ConfigError("setsar needs a ratio")
    try:
        sar = Fraction(a["sar"])
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"setsar sar={a['sar']!r} is not a ratio like 1 or 16/11") from None
    if not 0 < sar <= 255 or sar.denominator > 65535 or sar.numerator > 65535:
        raise ConfigError(f"setsar sar={a['sar']} is outside 1/65535..255")
    return SetSar(sar)


def _decimal(filter_name: str, key: str, text: str, hi: float) -> float:
    if not _DECIMAL.match(text):
        raise _expression(filter_name, key, text) or ConfigError(
            f"{filter_name} {key}={text!r} is not a decimal number like 100 or 0.5"
        )
    value = float(text)
    if value > hi:
        raise ConfigError(f"{filter_name} {key}={text} is outside 0..{hi:g}")
    return value


def _parse_tonemap(args: str) -> Tonemap:
    a = _split_args(
        "tonemap",
        args,
        ("algorithm", "peak", "desat"),
        {"algorithm": "algorithm", "tonemap": "algorithm", "peak": "peak", "desat": "desat"},
    )
    algorithm = a.get("algorithm", "bt2390")
    if algorithm not in TONEMAP_ALGORITHMS:
        raise UnsupportedConfigError(
            f"tonemap algorithm {algorithm!r} is not supported"
            f" (supported: {', '.join(TONEMAP_ALGORITHMS)})"
        )
    peak = _decimal("tonemap", "peak", a.get("peak", "0"), MAX_TONEMAP_PEAK)
    if 0 < peak < 1:
        raise ConfigError(
            f"tonemap peak={a['peak']} is below SDR white; give 0 (the source's default) or"
            f" 1..{MAX_TONEMAP_PEAK:g} (units of 100 cd/m²)"
        )
    desat = _decimal("tonemap", "desat", a.get("desat", "0"), MAX_TONEMAP_DESAT)
    return Tonemap(algorithm, peak, desat)


def _parse_null(args: str) -> Null:
    if args:
        raise ConfigError("null takes no options")
    return Null()


_SECONDS = re.compile(r"^[+-]?\d{1,8}(\.\d{1,6})?$")


def _microseconds(key: str, text: str) -> int:
    """``trim`` ``start`` / ``end``: decimal seconds -> microseconds, exactly."""
    if not _SECONDS.match(text):
        raise _expression("trim", key, text) or ConfigError(
            f"trim {key}={text!r} is not a time in seconds like 4 or -0.96 (6 decimals at most)"
        )
    us = round(Fraction(text) * 1_000_000)
    if abs(us) > MAX_TRIM_SECONDS * 1_000_000:
        raise ConfigError(f"trim {key}={text} is outside +-{MAX_TRIM_SECONDS} s")
    return us


def _parse_trim(args: str) -> Trim:
    a = _split_args(
        "trim",
        args,
        ("start", "end"),
        {"start": "start", "end": "end", "end_frame": "end_frame", "duration": "duration"},
    )
    if not a:
        raise ConfigError("trim needs start, end or end_frame")
    start = _microseconds("start", a["start"]) if "start" in a else None
    end = _microseconds("end", a["end"]) if "end" in a else None
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"trim end={a['end']} is not after start={a['start']}")
    frames = None
    if "end_frame" in a:
        text = a["end_frame"]
        if not re.match(r"^\d{1,13}$", text) or not 1 <= int(text) <= MAX_TRIM_FRAMES:
            raise _expression("trim", "end_frame", text) or ConfigError(
                f"trim end_frame={text!r} is not a frame count in 1..{MAX_TRIM_FRAMES}"
            )
        frames = int(text)
    duration = _microseconds("duration", a["duration"]) if "duration" in a else None
    if duration is not None and duration <= 0:
        raise ConfigError(f"trim duration={a['duration']} is not positive")
    return Trim(start, end, frames, duration)


#: Filter name -> its parser (of the text after ``name=``).
_PARSERS: dict[str, Callable[[str], FilterSpec]] = {
    "scale": _parse_scale,
    "fps": _parse_fps,
    "format": _parse_format,
    "crop": _parse_crop,
    "yadif": functools.partial(_parse_deinterlace, "yadif"),
    "bwdif": functools.partial(_parse_deinterlace, "bwdif"),
    "setparams": _parse_setparams,
    "setsar": _parse_setsar,
    "tonemap": _parse_tonemap,
    "null": _parse_null,
    "trim": _parse_trim,
}


def _parse_one(item: str) -> FilterSpec:
    name, _, args = item.partition("=")
    name = name.strip()
    if not re.match(r"^[a-z0-9_]+$", name):
        raise ConfigError(f"filter name {name!r} is not a filter name")
    if name not in ALLOWED:
        raise _unsupported_filter(name)
    return _PARSERS[name](args)


def parse(text: str) -> Chain:
    """Parse an ffmpeg-style ``-vf`` chain; ``""`` is the empty chain.

    Raises UnsupportedConfigError for filters, options or expressions outside the
    allowlist (naming them) and ConfigError for malformed text or values.
    """
    if len(text) > MAX_CHAIN_TEXT:
        raise ConfigError(f"filter chain of {len(text)} characters exceeds {MAX_CHAIN_TEXT}")
    text = text.strip()
    if not text:
        return ()
    for ch in ("[", ";"):
        if ch in text:
            raise UnsupportedConfigError(
                f"filter graphs with labels or several chains ({ch!r}) are not supported;"
                " give one chain"
            )
    items = [item.strip() for item in text.split(",")]
    if len(items) > MAX_FILTERS:
        raise ConfigError(
            f"filter chain has {len(items)} filters, at most {MAX_FILTERS} are allowed"
        )
    chain: list[FilterSpec] = []
    for item in items:
        if not item:
            raise ConfigError(f"empty filter in chain {text!r}")
        name = item.partition("=")[0].strip()
        for ch in ("'", '"', "\\"):
            if ch in item:
                if name not in ALLOWED:
                    raise _unsupported_filter(name)
                raise UnsupportedConfigError(
                    f"quoting and escapes ({ch!r}) are not supported in a server filter chain"
                )
        if not _ITEM.match(item):
            bad = sorted({c for c in item if not re.match(r"[A-Za-z0-9_=:.+\-/|]", c)})
            if name in ALLOWED and re.search(r"[()*]", item):
                raise UnsupportedConfigError(
                    f"{name}: expressions are not supported here ({item!r}), give numbers"
                )
            if name not in ALLOWED and re.match(r"^[a-z0-9_]+$", name):
                raise _unsupported_filter(name)
            raise ConfigError(
                f"filter {item!r} has characters a server chain does not allow: {''.join(bad)!r}"
            )
        chain.append(_parse_one(item))
    return tuple(chain)


def coerce(chain: str | Sequence[FilterSpec]) -> Chain:
    """A chain given as text or as specs, validated (specs are re-parsed from their text)."""
    if isinstance(chain, str):
        return parse(chain)
    specs = tuple(chain)
    return parse(serialize(specs)) if specs else ()


__all__ = [
    "ALLOWED",
    "FIELD_MODES",
    "FORMATS",
    "MAX_CHAIN_TEXT",
    "MAX_DIMENSION",
    "MAX_DIVISOR",
    "MAX_FILTERS",
    "PRIMARIES",
    "RANGES",
    "SPACES",
    "TRCS",
    "Chain",
    "Crop",
    "Deinterlace",
    "FilterSpec",
    "Format",
    "Fps",
    "Geometry",
    "Null",
    "Scale",
    "SetParams",
    "SetSar",
    "Trim",
    "TONEMAP_ALGORITHMS",
    "Tonemap",
    "bit_depth",
    "coerce",
    "color_options",
    "forced_color_options",
    "crop_box",
    "graph_steps",
    "names",
    "output_geometry",
    "parse",
    "scale_size",
    "serialize",
]
