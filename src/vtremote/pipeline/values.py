"""Values of ffmpeg-style options: bitrates, times, rates, sizes, colour names, key frame lists.

Pure functions shared by the command line (which parses argv) and the pipeline
(which reads the same kinds of values out of filter chains); they raise
:class:`~vtremote.errors.UsageError` with the text that was wrong.
"""

from __future__ import annotations

import re
from fractions import Fraction

from vtremote.errors import UsageError
from vtremote.wire import colours, rates
from vtremote.wire.framing import MAX_DIMENSION

_SI = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_NUMBER_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKMGT]?)(i?)(B?)\s*$")


def parse_bitrate(text: str) -> int:
    """``6000k`` -> 6000000, ``1.5M`` -> 1500000, ``2Mi`` -> 2097152 (ffmpeg's number suffixes)."""
    match = _NUMBER_RE.match(text)
    if not match:
        raise UsageError(f"bitrate {text!r} is not a number like 6000k or 6M")
    value, prefix, binary, byte = match.groups()
    scale = (
        (1024 ** " kMGT".index(prefix.upper() if prefix != "k" else "K"))
        if binary and prefix
        else _SI[prefix]
    )
    result = float(value) * scale * (8 if byte else 1)
    return round(result)


def parse_int(text: str, what: str) -> int:
    try:
        return int(text, 0) if text.lower().startswith(("0x", "-0x")) else int(text)
    except ValueError:
        try:
            return parse_bitrate(text)
        except UsageError:
            raise UsageError(f"{what} {text!r} is not an integer") from None


_TIME_RE = re.compile(r"^(-)?(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?|\.\d+)$")


def parse_time(text: str, what: str = "time") -> float:
    """ffmpeg durations: ``[-][HH:]MM:SS[.m...]`` or ``[-]S+[.m...][s|ms|us]``."""
    raw = text.strip()
    scale = 1.0
    for suffix, factor in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if raw.endswith(suffix) and ":" not in raw:
            raw, scale = raw[: -len(suffix)], factor
            break
    match = _TIME_RE.match(raw)
    if not match:
        raise UsageError(f"{what} {text!r} is not a time like 10, 2.5, 01:23.5 or 00:01:23.5")
    neg, a, b, sec = match.groups()
    if a is not None and b is not None:
        hours, minutes = int(a), int(b)
    elif a is not None:
        hours, minutes = 0, int(a)
    else:
        hours = minutes = 0
    value = (hours * 3600 + minutes * 60 + float(sec)) * scale
    return -value if neg else value


def parse_rate(text: str) -> Fraction:
    """``30``, ``30000/1001``, ``29.97`` (-> 30000/1001), ``ntsc``."""
    key = text.strip().lower()
    if key in rates.OPTION_NAMES:
        return rates.OPTION_NAMES[key]
    try:
        rate = Fraction(key)
    except (ValueError, ZeroDivisionError):
        raise UsageError(
            f"frame rate {text!r} is not a number like 30, 30000/1001 or 29.97"
        ) from None
    if rate <= 0 or rate > 1000:
        raise UsageError(f"frame rate {text!r} is outside 0..1000")
    # 29.97 / 59.94 / 23.976 mean the NTSC rates, as in ffmpeg's av_d2q-based parsing.
    for ntsc in (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001)):
        if rate.denominator > 1 and abs(float(rate) - float(ntsc)) < 0.0015:
            return ntsc
    return rate.limit_denominator(100000)


_SIZE_ABBR = {
    "ntsc": (720, 480),
    "pal": (720, 576),
    "qvga": (320, 240),
    "vga": (640, 480),
    "svga": (800, 600),
    "xga": (1024, 768),
    "hd480": (852, 480),
    "hd720": (1280, 720),
    "hd1080": (1920, 1080),
    "2k": (2048, 1080),
    "4k": (4096, 2160),
    "uhd2160": (3840, 2160),
    "nhd": (640, 360),
}


def parse_size(text: str) -> tuple[int, int]:
    key = text.strip().lower()
    if key in _SIZE_ABBR:
        return _SIZE_ABBR[key]
    match = re.match(r"^(\d+)x(\d+)$", key)
    if not match:
        raise UsageError(f"frame size {text!r} is not WIDTHxHEIGHT like 1280x720")
    w, h = int(match.group(1)), int(match.group(2))
    if not (0 < w <= MAX_DIMENSION and 0 < h <= MAX_DIMENSION):
        raise UsageError(f"frame size {text!r} is outside 1x1..{MAX_DIMENSION}x{MAX_DIMENSION}")
    return w, h


# FFmpeg's names of the colour options -> their AVColor* numbers: the wire's table.
COLOR_RANGES = colours.RANGE.names
COLOR_SPACES = colours.MATRIX.names
COLOR_PRIMARIES = colours.PRIMARIES.names
COLOR_TRCS = colours.TRANSFER.names


def parse_enum(text: str, table: dict[str, int], what: str) -> int:
    key = text.strip().lower()
    if key.isdigit():
        return int(key)
    try:
        return table[key]
    except KeyError:
        raise UsageError(
            f"{what} {text!r} is not one of {', '.join(sorted(set(table)))} (or a number)"
        ) from None


def parse_bool(text: str, what: str) -> bool:
    key = text.strip().lower()
    if key in ("1", "true", "yes", "on"):
        return True
    if key in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{what} {text!r} is not 0 or 1")
