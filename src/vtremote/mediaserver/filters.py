"""Media-server filter chains made runnable here: hardware filters -> software ones,
``scale=`` expressions -> numbers.

Media servers write chains for the hardware they think ffmpeg drives
(``hwupload,scale_vaapi=w=1280:h=720:format=nv12``, ``scale_cuda``, ``vpp_qsv``,
``tonemap_opencl``...). Here the pictures are software frames on the way to a
remote encoder, so the upload/download steps go away and the scalers,
deinterlacers and transposers become their software twins; every tone mapper
(``tonemapx``, ``zscale``+``tonemap``, ``tonemap_opencl``/``_cuda``/``_vaapi``,
``libplacebo``) becomes vtremote's ``tonemap`` filter, which the server runs in a
packet transcode (wire/filters.py, engines/tonemap.py). ``scale`` sizes
written as expressions of the input (Jellyfin's
``trunc(min(max(iw\\,ih*a)\\,min(1920\\,1080*a))/2)*2``) are computed from the
input's geometry, so the chain sent on (possibly to the server, which accepts
only plain sizes) carries numbers.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import av

from vtremote.pipeline.filters import split_filter_chain
from vtremote.wire.filter_specs import (
    MAX_TONEMAP_DESAT,
    MAX_TONEMAP_PEAK,
    TONEMAP_ALGORITHMS,
    decimal_text,
)

log = logging.getLogger(__name__)


class Unsupported(Exception):
    """A chain (or a part of a command line) vtremote cannot run; the text says why."""


class NeedsGeometry(Unsupported):
    """The chain computes sizes from the input's, which is not known (yet)."""


# --- expressions ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|([A-Za-z_][A-Za-z_0-9]*)|(.))")

_FUNCS: dict[str, Callable[..., float]] = {
    "min": lambda *a: min(a),
    "max": lambda *a: max(a),
    "trunc": lambda x: float(math.trunc(x)),
    "floor": lambda x: float(math.floor(x)),
    "ceil": lambda x: float(math.ceil(x)),
    "round": lambda x: float(math.floor(x + 0.5)),
    "abs": abs,
    "sqrt": math.sqrt,
    "gte": lambda a, b: float(a >= b),
    "gt": lambda a, b: float(a > b),
    "lte": lambda a, b: float(a <= b),
    "lt": lambda a, b: float(a < b),
    "eq": lambda a, b: float(a == b),
    "not": lambda a: float(not a),
    "if": lambda c, a, b=0.0: a if c else b,
    "ifnot": lambda c, a, b=0.0: b if c else a,
    "mod": lambda a, b: math.fmod(a, b),
}


def evaluate(text: str, names: Mapping[str, float]) -> float:
    """Evaluate an FFmpeg expression (numbers, + - * / ^, parentheses, the usual functions,
    variables from ``names``). ``\\,`` escapes are accepted. Raises :class:`Unsupported`."""
    return _Expression(text, names).value()


def _tokens(src: str) -> list[tuple[str, str]]:
    """``min(iw,2)`` -> [("i", "min"), ("o", "("), ("i", "iw"), ("o", ","), ("n", "2"), ...]."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        num, ident, op = m.groups()
        if num is not None:
            tokens.append(("n", num))
        elif ident is not None:
            tokens.append(("i", ident))
        elif op is not None and op.strip():
            tokens.append(("o", op))
    return tokens


class _Expression:
    """A recursive-descent reading of one expression: expr = term {+|- term},
    term = factor {*|/ factor}, factor = primary [^ factor]."""

    def __init__(self, text: str, names: Mapping[str, float]) -> None:
        self.text, self.names = text, names
        self.tokens = _tokens(text.replace("\\,", ",").replace("\\", ""))
        self.k = 0

    def value(self) -> float:
        result = self.expr()
        if self.k != len(self.tokens):
            raise Unsupported(f"expression {self.text!r}: unexpected text after position {self.k}")
        return result

    def take(self, op: str) -> bool:
        if self.k < len(self.tokens) and self.tokens[self.k] == ("o", op):
            self.k += 1
            return True
        return False

    def primary(self) -> float:
        if self.k >= len(self.tokens):
            raise Unsupported(f"expression {self.text!r} ends early")
        kind, val = self.tokens[self.k]
        self.k += 1
        if kind == "n":
            return float(val)
        if kind == "o" and val == "(":
            v = self.expr()
            if not self.take(")"):
                raise Unsupported(f"expression {self.text!r}: missing ')'")
            return v
        if kind == "o" and val in "+-":
            v = self.factor()
            return -v if val == "-" else v
        if kind == "i":
            return self.call(val) if self.take("(") else self.variable(val)
        raise Unsupported(f"expression {self.text!r}: unexpected {val!r}")

    def call(self, name: str) -> float:
        args = [self.expr()]
        while self.take(","):
            args.append(self.expr())
        if not self.take(")"):
            raise Unsupported(f"expression {self.text!r}: missing ')' after {name}(")
        fn = _FUNCS.get(name)
        if fn is None:
            raise Unsupported(f"expression {self.text!r}: function {name}() is not known")
        return float(fn(*args))

    def variable(self, name: str) -> float:
        if name in self.names:
            return float(self.names[name])
        if name in ("PI", "E"):
            return math.pi if name == "PI" else math.e
        raise Unsupported(f"expression {self.text!r}: variable {name!r} is not known here")

    def factor(self) -> float:
        v = self.primary()
        if self.take("^"):
            v = v ** self.factor()
        return v

    def term(self) -> float:
        v = self.factor()
        while True:
            if self.take("*"):
                v *= self.factor()
            elif self.take("/"):
                d = self.factor()
                v = v / d if d else math.copysign(math.inf, v)
            else:
                return v

    def expr(self) -> float:
        v = self.term()
        while True:
            if self.take("+"):
                v += self.term()
            elif self.take("-"):
                v -= self.term()
            else:
                return v


# --- chains ---------------------------------------------------------------------------------------


@dataclass
class Geometry:
    """Picture size and sample aspect ratio where a filter stands in the chain."""

    width: int
    height: int
    sar: float = 1.0

    def names(self) -> dict[str, float]:
        w, h = float(self.width), float(self.height)
        a = w / h if h else 1.0
        return {
            "iw": w,
            "ih": h,
            "in_w": w,
            "in_h": h,
            "a": a,
            "sar": self.sar,
            "dar": a * self.sar,
            "hsub": 2.0,
            "vsub": 2.0,
            "ohsub": 2.0,
            "ovsub": 2.0,
        }


@dataclass
class ChainResult:
    """The translated chain and what changed on the way."""

    chain: str | None
    notes: list[str] = field(default_factory=list)
    #: The chain tone-maps HDR to SDR (vtremote's ``tonemap`` filter).
    tone_mapped: bool = False
    geometry: Geometry | None = None


HW_FORMATS = frozenset(
    {
        "vaapi",
        "qsv",
        "cuda",
        "opencl",
        "vulkan",
        "videotoolbox",
        "videotoolbox_vld",
        "drm_prime",
        "d3d11",
        "dxva2_vld",
        "mediacodec",
        "rkmpp",
    }
)
_DROP = re.compile(r"^(hwupload(_cuda|_vaapi)?|hwdownload|hwmap|procamp_vaapi|setparams_vaapi)$")
_SCALERS = re.compile(r"^(scale_(vaapi|cuda|qsv|npp|vt|opencl|vulkan|rkrga)|vpp_(qsv|rkrga))$")
_DEINTERLACERS = {
    "deinterlace_vaapi": "bwdif",
    "deinterlace_qsv": "bwdif",
    "yadif_cuda": "yadif",
    "yadif_videotoolbox": "yadif",
    "bwdif_cuda": "bwdif",
    "bwdif_vulkan": "bwdif",
}
_TRANSPOSERS = re.compile(r"^transpose_(vaapi|cuda|opencl|vt|vulkan|npp|rkrga)$")
_TONEMAPPERS = re.compile(
    r"^(tonemap(_(vaapi|cuda|opencl|videotoolbox))?|tonemapx|libplacebo|zscale)$"
)
_PIX_ALIASES = {"p010": "p010le", "p016": "p016le", "yuv420p10": "yuv420p10le"}
#: Filters that take subtitles or a second picture: only ffmpeg itself runs them.
_NEEDS_FFMPEG = re.compile(
    r"^(overlay(_\w+)?|subtitles|ass|alphasrc|hwupload=derive_device|paletteuse|amovie|movie)$"
)


def _parse_args(args: str | None) -> tuple[list[str], dict[str, str], list[str]]:
    """``1280:720:flags=bicubic`` -> (["1280", "720"], {"flags": "bicubic"}, order of named
    keys)."""
    positional: list[str] = []
    named: dict[str, str] = {}
    order: list[str] = []
    if not args:
        return positional, named, order
    parts = re.split(r"(?<!\\):", args)
    for part in parts:
        key, sep, value = part.partition("=")
        if sep and re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", key):
            named[key] = value
            order.append(key)
        else:
            positional.append(part)
    return positional, named, order


def _software_format(value: str) -> str | None:
    """``nv12|vaapi`` -> nv12; ``vaapi`` -> None; ``p010`` -> p010le."""
    for name in value.split("|"):
        name = name.strip()
        if name and name not in HW_FORMATS:
            return _PIX_ALIASES.get(name, name)
    return None


def _dimension(text: str | None, names: Mapping[str, float]) -> float:
    if text is None or text == "":
        return 0.0
    return evaluate(text, names)


def scale_size(w_text: str | None, h_text: str | None, geo: Geometry) -> tuple[int, int]:
    """The size a ``scale`` with these w/h texts gives for ``geo`` (FFmpeg's rules for 0 and -n)."""
    names = geo.names()
    try:
        w = _dimension(
            w_text, names | {"ow": math.nan, "oh": math.nan, "out_w": math.nan, "out_h": math.nan}
        )
        h = _dimension(h_text, names | {"ow": w, "out_w": w, "oh": math.nan, "out_h": math.nan})
        if math.isnan(w):
            w = _dimension(w_text, names | {"oh": h, "out_h": h})
    except (OverflowError, ValueError, ZeroDivisionError) as e:
        raise Unsupported(f"scale={w_text}:{h_text}: {e}") from e
    if math.isnan(w) or math.isnan(h):
        raise Unsupported(f"scale={w_text}:{h_text} refers to itself")
    iw, ih = geo.width, geo.height
    wi, hi = int(w), int(h)
    if wi < 0 and hi < 0:
        wi, hi = iw, ih
    if wi == 0:
        wi = iw if hi <= 0 else wi
    if hi == 0:
        hi = ih if wi <= 0 else hi
    if wi == 0 and hi > 0:
        wi = iw
    if hi == 0 and wi > 0:
        hi = ih
    if wi < 0:
        n = -wi
        wi = max(round(hi * iw / ih / n) * n, n)
    if hi < 0:
        n = -hi
        hi = max(round(wi * ih / iw / n) * n, n)
    if wi <= 0 or hi <= 0 or wi > 16384 or hi > 16384:
        raise Unsupported(f"scale={w_text}:{h_text} gives {wi}x{hi} for a {iw}x{ih} input")
    return wi, hi


def _scale_filter(args: str | None, geo: Geometry, hardware: bool) -> tuple[list[str], Geometry]:
    positional, named, order = _parse_args(args)
    w_text = named.pop("w", named.pop("width", positional[0] if positional else None))
    h_text = named.pop("h", named.pop("height", positional[1] if len(positional) > 1 else None))
    fmt = named.pop("format", None)
    if hardware:
        # Hardware scalers' own options (mode, extra_hw_frames, interp_algo...) mean nothing here.
        keep: dict[str, str] = {
            k: named[k] for k in ("out_color_matrix", "out_range") if k in named
        }
        pre = ["bwdif"] if named.get("deinterlace", "0") not in ("0", "") else []
    else:
        keep = {k: named[k] for k in order if k in named}
        pre = []
    out: list[str] = list(pre)
    new = geo
    if w_text is not None or h_text is not None:
        wi, hi = scale_size(w_text, h_text, geo)
        new = Geometry(wi, hi, geo.sar)
        extra = "".join(f":{k}={v}" for k, v in keep.items())
        out.append(f"scale={wi}:{hi}{extra}")
    if fmt:
        sw = _software_format(fmt)
        if sw:
            out.append(f"format={sw}")
    return out, new


def translate_chain(
    text: str | None, geo: Geometry | None, available: frozenset[str] | None = None
) -> ChainResult:
    """Rewrite a ``-vf`` chain for software frames; raises :class:`Unsupported` when it cannot
    run here."""
    if not text:
        return ChainResult(None, geometry=geo)
    have = available if available is not None else frozenset(av.filter.filters_available)
    try:
        chain = split_filter_chain(text)
    except Exception as e:  # UsageError for labels / ';'
        raise Unsupported(f"-vf {text!r}: {e}") from e
    out: list[str] = []
    result = ChainResult(None, geometry=geo)
    for name, args in chain:
        geo = _translate_filter(name, args, geo, have, out, result)
    deduped = [f for i, f in enumerate(out) if i == 0 or f != out[i - 1]]
    result.chain = ",".join(deduped) if deduped else None
    result.geometry = geo
    return result


def _translate_filter(
    name: str,
    args: str | None,
    geo: Geometry | None,
    have: frozenset[str],
    out: list[str],
    result: ChainResult,
) -> Geometry | None:
    """Append the software form of one filter to ``out``; returns the geometry after it."""
    if _NEEDS_FFMPEG.match(name):
        raise Unsupported(f"filter {name} (subtitles/overlays) runs only in ffmpeg")
    if _DROP.match(name):
        return geo
    if name == "format":
        sw = _software_format(args or "")
        if sw and sw.startswith(_LINEAR_RGB):
            return geo  # zscale's linear-light float RGB: nothing to convert to here
        if sw:
            out.append(f"format={sw}")
        return geo
    if name == "scale" or _SCALERS.match(name):
        if geo is None:
            raise NeedsGeometry(f"{name}: the input's size is unknown")
        parts, geo = _scale_filter(args, geo, hardware=name != "scale")
        out += parts
        return geo
    positional, named, _ = _parse_args(args)
    if name in _DEINTERLACERS:
        mode = named.get("mode", positional[0] if positional else None)
        rate_doubling = mode in ("1", "send_field", "2", "bob") or named.get("rate") == "field"
        out.append(_DEINTERLACERS[name] + ("=1" if rate_doubling else ""))
        return geo
    if _TRANSPOSERS.match(name):
        direction = named.get("dir", positional[0] if positional else "clock")
        out.append(
            f"transpose=dir={direction}"
            if direction in ("cclock_flip", "clock", "cclock", "clock_flip")
            else f"transpose={direction}"
        )
        turned = geo is not None and direction not in ("reversal", "hflip", "vflip")
        return Geometry(geo.height, geo.width, geo.sar) if geo is not None and turned else geo
    if name == "zscale":
        # Jellyfin's zscale only linearizes and converts around FFmpeg's tonemap: the LUT of
        # vtremote's tonemap does all of that from the coded pictures.
        return geo
    if _TONEMAPPERS.match(name):
        return _tone_mapping(name, named, geo, out, result)
    if name not in have:
        raise Unsupported(f"filter {name} is not available in PyAV's FFmpeg")
    if name == "crop" and geo is not None:
        geo = _cropped(positional, named, geo)
    if name in ("transpose",) and geo is not None:
        geo = Geometry(geo.height, geo.width, geo.sar)
    out.append(name if args is None else f"{name}={args}")
    return geo


#: libplacebo's tone curves -> vtremote's (the rest: BT.2390).
_PLACEBO_CURVES = {
    "bt.2390": "bt2390",
    "hable": "hable",
    "mobius": "mobius",
    "reinhard": "reinhard",
}
#: Pixel formats of linear light (zscale t=linear output): dropped before a tone mapper.
_LINEAR_RGB = ("gbrpf32", "gbrapf32")


def _tone_mapping(
    name: str, named: dict[str, str], geo: Geometry | None, out: list[str], result: ChainResult
) -> Geometry | None:
    """A tone mapper -> ``tonemap=algorithm=A:peak=P:desat=D`` (the server's, BT.709 out),
    then the software format it was asked for. Curves the server lacks become BT.2390;
    libplacebo's ``w``/``h`` become a scale before it."""
    if name == "libplacebo":
        if geo is not None and ("w" in named or "h" in named):
            wi, hi = scale_size(named.get("w"), named.get("h"), geo)
            geo = Geometry(wi, hi, geo.sar)
            out.append(f"scale={wi}:{hi}")
        curve = named.get("tonemapping", "bt.2390")
        curve = _PLACEBO_CURVES.get(curve, curve)
    else:
        curve = named.get("tonemap", "bt2390")
    if curve not in TONEMAP_ALGORITHMS:
        result.notes.append(f"{name}: tone curve {curve} is not available here; bt2390 is used")
        curve = "bt2390"
    peak = _bounded(named.get("peak"), 0.0, MAX_TONEMAP_PEAK)
    if 0 < peak < 1:
        peak = 0.0
    desat = _bounded(named.get("desat"), 0.0, MAX_TONEMAP_DESAT)
    out.append(f"tonemap=algorithm={curve}:peak={decimal_text(peak)}:desat={decimal_text(desat)}")
    fmt = _software_format(named["format"]) if "format" in named else None
    if fmt and not fmt.startswith(_LINEAR_RGB):
        out.append(f"format={fmt}")
    result.tone_mapped = True
    return geo


def _bounded(text: str | None, default: float, hi: float) -> float:
    """A decimal option of a tone mapper, clamped to 0..hi (default when absent or not a
    number), rounded to what a server chain carries."""
    try:
        value = float(text) if text is not None else default
    except ValueError:
        return default
    if not math.isfinite(value):
        return default
    return round(min(max(value, 0.0), hi), 6)


def _cropped(positional: list[str], named: dict[str, str], geo: Geometry) -> Geometry | None:
    """The size after ``crop`` (None when its expressions cannot be computed here)."""
    try:
        cw = evaluate(
            named.get("w", named.get("out_w", positional[0] if positional else "iw")), geo.names()
        )
        ch = evaluate(
            named.get("h", named.get("out_h", positional[1] if len(positional) > 1 else "ih")),
            geo.names() | {"ow": cw, "out_w": cw},
        )
    except Unsupported:
        return None
    return Geometry(int(cw), int(ch), geo.sar)


def translate_audio_chain(text: str | None, available: frozenset[str] | None = None) -> str | None:
    """``-af``: software audio filters run as they are; anything PyAV lacks cannot run here."""
    if not text:
        return None
    have = available if available is not None else frozenset(av.filter.filters_available)
    try:
        chain = split_filter_chain(text)
    except Exception as e:
        raise Unsupported(f"-af {text!r}: {e}") from e
    for name, _args in chain:
        if name not in have:
            raise Unsupported(f"audio filter {name} is not available in PyAV's FFmpeg")
    return text
