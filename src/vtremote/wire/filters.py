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
    null

Errors: a chain that is well formed but asks for something outside the
allowlist raises :class:`UnsupportedConfigError` naming the filter or option
(the client then falls back to raw frames); malformed text raises
:class:`ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TypeAlias

from vtremote.errors import ConfigError, UnsupportedConfigError

#: Longest chain text accepted (CONFIGURE option ``ext_filters``).
MAX_CHAIN_TEXT = 1024
#: Most filters in one chain.
MAX_FILTERS = 16
#: Largest picture side a filter may produce (same bound as the engines).
MAX_DIMENSION = 16384
#: Largest ``-N`` of scale and of force_divisible_by.
MAX_DIVISOR = 64

ALLOWED = ("scale", "fps", "format", "crop", "yadif", "bwdif", "setparams", "setsar", "null")

#: Pixel formats ``format`` may name, with their bit depth.
FORMATS: dict[str, int] = {
    "yuv420p": 8,
    "yuvj420p": 8,
    "nv12": 8,
    "nv21": 8,
    "yuv422p": 8,
    "yuv444p": 8,
    "gray": 8,
    "yuv420p10le": 10,
    "p010le": 10,
    "yuv422p10le": 10,
    "yuv444p10le": 10,
    "gray10le": 10,
}

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
NAMED_RATES = {
    "ntsc": Fraction(30000, 1001),
    "pal": Fraction(25),
    "qntsc": Fraction(30000, 1001),
    "qpal": Fraction(25),
    "film": Fraction(24),
    "ntsc_film": Fraction(24000, 1001),
}
_ASPECT_MODES = {"disable": 0, "decrease": 1, "increase": 2}
_DEINT_MODES = {
    "send_frame": 0,
    "send_field": 1,
    "send_frame_nospatial": 2,
    "send_field_nospatial": 3,
}
_PARITIES = {"tff": 0, "bff": 1, "auto": -1}
_DEINTS = {"all": 0, "interlaced": 1}

#: setparams values: FFmpeg's names -> the AVColor* numbers the encoder options use.
RANGES = {
    "unknown": 0,
    "unspecified": 0,
    "tv": 1,
    "limited": 1,
    "mpeg": 1,
    "pc": 2,
    "full": 2,
    "jpeg": 2,
}
PRIMARIES = {
    "bt709": 1,
    "unknown": 2,
    "bt470m": 4,
    "bt470bg": 5,
    "smpte170m": 6,
    "smpte240m": 7,
    "film": 8,
    "bt2020": 9,
    "smpte428": 10,
    "smpte431": 11,
    "smpte432": 12,
    "jedec-p22": 22,
    "ebu3213": 22,
}
TRCS = {
    "bt709": 1,
    "unknown": 2,
    "bt470m": 4,
    "bt470bg": 5,
    "smpte170m": 6,
    "smpte240m": 7,
    "linear": 8,
    "log100": 9,
    "log316": 10,
    "iec61966-2-4": 11,
    "bt1361e": 12,
    "iec61966-2-1": 13,
    "bt2020-10": 14,
    "bt2020-12": 15,
    "smpte2084": 16,
    "smpte428": 17,
    "arib-std-b67": 18,
}
SPACES = {
    "gbr": 0,
    "bt709": 1,
    "unknown": 2,
    "fcc": 4,
    "bt470bg": 5,
    "smpte170m": 6,
    "smpte240m": 7,
    "ycgco": 8,
    "bt2020nc": 9,
    "bt2020c": 10,
    "smpte2085": 11,
    "chroma-derived-nc": 12,
    "chroma-derived-c": 13,
    "ictcp": 14,
}
FIELD_MODES = ("auto", "bff", "tff", "prog")

_ITEM = re.compile(r"^[A-Za-z0-9_=:.+\-/|]*$")
_INT = re.compile(r"^[+-]?\d{1,6}$")


# --- the specs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scale:
    """Resize. ``width``/``height``: > 0 pixels, 0 the input's, -1 keep the aspect ratio,
    -N keep it and round to a multiple of N."""

    width: int
    height: int
    flags: str = ""
    force_original_aspect_ratio: int = 0
    force_divisible_by: int = 1

    name = "scale"

    def args(self) -> list[tuple[str, str]]:
        out = [("w", str(self.width)), ("h", str(self.height))]
        if self.flags:
            out.append(("flags", self.flags))
        if self.force_original_aspect_ratio:
            out.append(("force_original_aspect_ratio", str(self.force_original_aspect_ratio)))
        if self.force_divisible_by != 1:
            out.append(("force_divisible_by", str(self.force_divisible_by)))
        return out


@dataclass(frozen=True, slots=True)
class Fps:
    """Constant output frame rate (frames are dropped or repeated)."""

    rate: Fraction

    name = "fps"

    def args(self) -> list[tuple[str, str]]:
        return [("fps", _fraction_text(self.rate))]


@dataclass(frozen=True, slots=True)
class Format:
    """Convert to the first of ``pix_fmts`` the next filter takes."""

    pix_fmts: tuple[str, ...]

    name = "format"

    @property
    def bit_depth(self) -> int:
        return max(FORMATS[p] for p in self.pix_fmts)

    def args(self) -> list[tuple[str, str]]:
        return [("pix_fmts", "|".join(self.pix_fmts))]


@dataclass(frozen=True, slots=True)
class Crop:
    """Cut a ``width`` x ``height`` window at ``x``, ``y`` (None: the input size / centred)."""

    width: int | None = None
    height: int | None = None
    x: int | None = None
    y: int | None = None

    name = "crop"

    def args(self) -> list[tuple[str, str]]:
        out = []
        for key, value in (("w", self.width), ("h", self.height), ("x", self.x), ("y", self.y)):
            if value is not None:
                out.append((key, str(value)))
        return out


@dataclass(frozen=True, slots=True)
class Deinterlace:
    """yadif or bwdif. mode 0 one frame per frame, 1 one frame per field (double rate)."""

    filter: str = "yadif"
    mode: int = 0
    parity: int = -1
    deint: int = 0

    @property
    def name(self) -> str:
        return self.filter

    def args(self) -> list[tuple[str, str]]:
        return [("mode", str(self.mode)), ("parity", str(self.parity)), ("deint", str(self.deint))]


@dataclass(frozen=True, slots=True)
class SetParams:
    """Colour tags (FFmpeg names); None leaves a property as it is."""

    field_mode: str | None = None
    range: str | None = None
    color_primaries: str | None = None
    color_trc: str | None = None
    colorspace: str | None = None

    name = "setparams"

    def args(self) -> list[tuple[str, str]]:
        out = []
        for key in ("field_mode", "range", "color_primaries", "color_trc", "colorspace"):
            value = getattr(self, key)
            if value is not None:
                out.append((key, value))
        return out


@dataclass(frozen=True, slots=True)
class SetSar:
    sar: Fraction

    name = "setsar"

    def args(self) -> list[tuple[str, str]]:
        return [("sar", _fraction_text(self.sar))]


@dataclass(frozen=True, slots=True)
class Null:
    name = "null"

    def args(self) -> list[tuple[str, str]]:
        return []


FilterSpec: TypeAlias = Scale | Fps | Format | Crop | Deinterlace | SetParams | SetSar | Null
Chain: TypeAlias = tuple[FilterSpec, ...]


# --- parsing -----------------------------------------------------------------------------------


def _fraction_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def _int(filter_name: str, key: str, text: str, lo: int, hi: int) -> int:
    if not _INT.match(text):
        if re.search(r"[a-z(*]", text):
            raise UnsupportedConfigError(
                f"{filter_name} {key}={text!r}: expressions are not supported here, give a number"
            )
        raise ConfigError(f"{filter_name} {key}={text!r} is not an integer")
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


def _rate(filter_name: str, key: str, text: str, *, allow_colon: bool = False) -> Fraction:
    if text in NAMED_RATES:
        return NAMED_RATES[text]
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        if re.search(r"[a-z(*]", text):
            raise UnsupportedConfigError(
                f"{filter_name} {key}={text!r}: expressions are not supported here, give a number"
            ) from None
        raise ConfigError(
            f"{filter_name} {key}={text!r} is not a rate like 30 or 30000/1001"
        ) from None
    if not 0 < value <= 1000 or value.denominator > 1_000_000:
        raise ConfigError(f"{filter_name} {key}={text} is outside 0..1000 (denominator <= 1000000)")
    return value


def _split_args(
    filter_name: str, text: str, positional: Sequence[str], aliases: dict[str, str]
) -> dict[str, str]:
    """``a:b:key=value`` -> {canonical key: value}; positional values take ``positional``'s names."""
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
            raise UnsupportedConfigError(
                f"{filter_name} option {key!r} is not supported (supported: {', '.join(sorted(set(aliases.values())))})"
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
            raise UnsupportedConfigError(
                f"scale flags: {flag!r} is not supported (supported: {', '.join(sorted(SCALE_FLAGS))})"
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
    keys = ("field_mode", "range", "color_primaries", "color_trc", "colorspace")
    a = _split_args("setparams", args, keys, {k: k for k in keys})
    tables: dict[str, Sequence[str]] = {
        "field_mode": FIELD_MODES,
        "range": tuple(RANGES),
        "color_primaries": tuple(PRIMARIES),
        "color_trc": tuple(TRCS),
        "colorspace": tuple(SPACES),
    }
    for key, value in a.items():
        if value not in tables[key]:
            raise ConfigError(f"setparams {key}={value!r} is not one of {', '.join(tables[key])}")
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


def _parse_one(item: str) -> FilterSpec:
    name, _, args = item.partition("=")
    name = name.strip()
    if not re.match(r"^[a-z0-9_]+$", name):
        raise ConfigError(f"filter name {name!r} is not a filter name")
    if name not in ALLOWED:
        raise UnsupportedConfigError(
            f"filter {name!r} is not supported on the server (supported: {', '.join(ALLOWED)})"
        )
    if name == "scale":
        return _parse_scale(args)
    if name == "fps":
        return _parse_fps(args)
    if name == "format":
        return _parse_format(args)
    if name == "crop":
        return _parse_crop(args)
    if name in ("yadif", "bwdif"):
        return _parse_deinterlace(name, args)
    if name == "setparams":
        return _parse_setparams(args)
    if name == "setsar":
        return _parse_setsar(args)
    if args:
        raise ConfigError("null takes no options")
    return Null()


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
                f"filter graphs with labels or several chains ({ch!r}) are not supported; give one chain"
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
        name = item.partition("=")[0]
        for ch in ("'", '"', "\\"):
            if ch in item:
                if name.strip() not in ALLOWED:
                    raise UnsupportedConfigError(
                        f"filter {name.strip()!r} is not supported on the server (supported: {', '.join(ALLOWED)})"
                    )
                raise UnsupportedConfigError(
                    f"quoting and escapes ({ch!r}) are not supported in a server filter chain"
                )
        if not _ITEM.match(item):
            bad = sorted({c for c in item if not re.match(r"[A-Za-z0-9_=:.+\-/|]", c)})
            if name.strip() in ALLOWED and re.search(r"[()*]", item):
                raise UnsupportedConfigError(
                    f"{name.strip()}: expressions are not supported here ({item!r}), give numbers"
                )
            if name.strip() not in ALLOWED and re.match(r"^[a-z0-9_]+$", name.strip()):
                raise UnsupportedConfigError(
                    f"filter {name.strip()!r} is not supported on the server (supported: {', '.join(ALLOWED)})"
                )
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


def serialize(chain: Sequence[FilterSpec]) -> str:
    """The canonical text of a chain (what travels in CONFIGURE ``ext_filters``)."""
    parts = []
    for spec in chain:
        args = ":".join(f"{k}={v}" for k, v in spec.args())
        parts.append(f"{spec.name}={args}" if args else spec.name)
    return ",".join(parts)


def names(chain: Sequence[FilterSpec]) -> tuple[str, ...]:
    return tuple(spec.name for spec in chain)


def bit_depth(chain: Sequence[FilterSpec]) -> int | None:
    """Bit depth of the last ``format`` of the chain, None if it has none."""
    depth = None
    for spec in chain:
        if isinstance(spec, Format):
            depth = spec.bit_depth
    return depth


def color_options(chain: Sequence[FilterSpec]) -> dict[str, str]:
    """Encoder option keys (color_range, color_primaries, color_trc, colorspace, sar_num,
    sar_den) the chain's setparams / setsar imply: the encoder writes them into the VUI."""
    out: dict[str, str] = {}
    for spec in chain:
        if isinstance(spec, SetParams):
            if spec.range is not None:
                out["color_range"] = str(RANGES[spec.range])
            if spec.color_primaries is not None:
                out["color_primaries"] = str(PRIMARIES[spec.color_primaries])
            if spec.color_trc is not None:
                out["color_trc"] = str(TRCS[spec.color_trc])
            if spec.colorspace is not None:
                out["colorspace"] = str(SPACES[spec.colorspace])
        elif isinstance(spec, SetSar):
            out["sar_num"], out["sar_den"] = str(spec.sar.numerator), str(spec.sar.denominator)
    return out


# --- geometry ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Geometry:
    """Picture size and timing at one point of a chain."""

    width: int
    height: int
    time_base: Fraction
    frame_rate: Fraction | None = None
    #: Sample (pixel) aspect ratio; scale keeps the display aspect by changing it, as FFmpeg does.
    sar: Fraction = Fraction(1)


def _rescale(a: int, b: int, c: int) -> int:
    """FFmpeg's av_rescale(a, b, c): a * b / c rounded to nearest, halves away from zero."""
    n = a * b
    q, r = divmod(abs(n), c)
    q += 1 if 2 * r >= c else 0
    return q if n >= 0 else -q


def scale_size(spec: Scale, in_w: int, in_h: int) -> tuple[int, int]:
    """The output size of ``scale`` for an input size, by FFmpeg's rules (scale_eval.c)."""
    w = in_w if spec.width == 0 else spec.width
    h = in_h if spec.height == 0 else spec.height
    factor_w = -w if w < -1 else 1
    factor_h = -h if h < -1 else 1
    if w < 0 and h < 0:
        w, h = in_w, in_h
    if w < 0:
        w = _rescale(h, in_w, in_h * factor_w) * factor_w
    if h < 0:
        h = _rescale(w, in_h, in_w * factor_h) * factor_h
    div = spec.force_divisible_by
    if spec.force_original_aspect_ratio:
        tmp_w = _rescale(h, in_w, in_h)
        tmp_h = _rescale(w, in_h, in_w)
        if spec.force_original_aspect_ratio == 1:
            w, h = min(tmp_w, w), min(tmp_h, h)
            if div > 1:
                w, h = w // div * div, h // div * div
        else:
            w, h = max(tmp_w, w), max(tmp_h, h)
            if div > 1:
                w, h = (w + div - 1) // div * div, (h + div - 1) // div * div
    if not (1 <= w <= MAX_DIMENSION and 1 <= h <= MAX_DIMENSION):
        raise ConfigError(
            f"scale {in_w}x{in_h} -> {w}x{h} is outside 1x1..{MAX_DIMENSION}x{MAX_DIMENSION}"
        )
    return w, h


def crop_box(spec: Crop, in_w: int, in_h: int) -> tuple[int, int, int, int]:
    """(w, h, x, y) of ``crop`` for an input size, rounded down to even values."""
    w = (in_w if spec.width is None else spec.width) & ~1
    h = (in_h if spec.height is None else spec.height) & ~1
    if w < 2 or h < 2 or w > in_w or h > in_h:
        raise ConfigError(f"crop {spec.width}x{spec.height} does not fit a {in_w}x{in_h} picture")
    x = ((in_w - w) // 2 if spec.x is None else spec.x) & ~1
    y = ((in_h - h) // 2 if spec.y is None else spec.y) & ~1
    if x + w > in_w or y + h > in_h:
        raise ConfigError(f"crop {w}x{h} at {x},{y} runs past the {in_w}x{in_h} picture")
    return w, h, x, y


def graph_steps(
    chain: Sequence[FilterSpec], source: Geometry
) -> tuple[list[tuple[str, str]], Geometry]:
    """The FFmpeg filters (name, option text) that run ``chain`` on ``source``, with every
    size computed here, and the geometry that comes out. Raises ConfigError when a step
    does not fit (a crop larger than its input, a scale outside the limits)."""
    steps: list[tuple[str, str]] = []
    g = source
    for spec in chain:
        if isinstance(spec, Scale):
            w, h = scale_size(spec, g.width, g.height)
            text = f"{w}:{h}" + (f":flags={spec.flags}" if spec.flags else "")
            steps.append(("scale", text))
            sar = g.sar * Fraction(h * g.width, w * g.height)
            g = replace(g, width=w, height=h, sar=sar.limit_denominator(65535))
        elif isinstance(spec, Crop):
            w, h, x, y = crop_box(spec, g.width, g.height)
            steps.append(("crop", f"{w}:{h}:{x}:{y}:exact=1"))
            g = replace(g, width=w, height=h)
        elif isinstance(spec, Fps):
            steps.append(("fps", f"fps={_fraction_text(spec.rate)}"))
            g = replace(g, time_base=1 / spec.rate, frame_rate=spec.rate)
        elif isinstance(spec, Deinterlace):
            steps.append((spec.filter, ":".join(f"{k}={v}" for k, v in spec.args())))
            rate = g.frame_rate * 2 if (g.frame_rate and spec.mode & 1) else g.frame_rate
            g = replace(g, time_base=g.time_base / 2, frame_rate=rate)
        elif isinstance(spec, Null):
            continue
        elif isinstance(spec, SetSar):
            steps.append((spec.name, ":".join(f"{k}={v}" for k, v in spec.args())))
            g = replace(g, sar=spec.sar)
        else:
            steps.append((spec.name, ":".join(f"{k}={v}" for k, v in spec.args())))
    return steps, g


def output_geometry(chain: Sequence[FilterSpec], source: Geometry) -> Geometry:
    """What ``chain`` makes of ``source`` (see :func:`graph_steps`)."""
    return graph_steps(chain, source)[1]


__all__ = [
    "ALLOWED",
    "FORMATS",
    "MAX_CHAIN_TEXT",
    "MAX_FILTERS",
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
    "bit_depth",
    "coerce",
    "color_options",
    "crop_box",
    "graph_steps",
    "names",
    "output_geometry",
    "parse",
    "scale_size",
    "serialize",
]
