"""The filters of a transcode chain as values: frozen specs, their canonical text (sans-IO).

:mod:`vtremote.wire.filters` parses chain text into these specs and
:mod:`vtremote.wire.filter_geometry` works out what they do to a picture; the specs
themselves only know their options. See :mod:`vtremote.wire.filters` for the syntax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeAlias

from vtremote.wire import colours

# The largest picture side a filter may produce is the wire's (and the engines').

#: Largest ``-N`` of scale and of force_divisible_by.
MAX_DIVISOR = 64

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
#: setparams ``field_mode`` values.
FIELD_MODES = ("auto", "bff", "tff", "prog")


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
        return [("fps", fraction_text(self.rate))]


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


#: setparams options in the order they are written.
SETPARAMS_KEYS = ("field_mode", "range", "color_primaries", "color_trc", "colorspace")
#: setparams options that name a colour property -> its table (wire/colours.py).
SETPARAMS_COLOURS = {t.filter_option: t for t in colours.TABLES.values()}


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
        return [(k, v) for k in SETPARAMS_KEYS if (v := getattr(self, k)) is not None]

    def filter_args(self) -> list[tuple[str, str]]:
        """:meth:`args` in the spellings FFmpeg's setparams filter takes."""
        return [
            (k, SETPARAMS_COLOURS[k].filter_name(v) if k in SETPARAMS_COLOURS else v)
            for k, v in self.args()
        ]


#: Tone curves of ``tonemap`` (FFmpeg tonemap's names, and BT.2390's EETF).
TONEMAP_ALGORITHMS = ("bt2390", "hable", "mobius", "reinhard", "clip")
#: Largest ``tonemap`` peak: 10000 cd/m² (PQ's ceiling) in units of SDR white (100 cd/m²).
MAX_TONEMAP_PEAK = 100.0
#: Largest ``tonemap`` desat (FFmpeg's default is 2; 0 turns it off).
MAX_TONEMAP_DESAT = 100.0
#: The colour tags ``tonemap`` gives its output: BT.709 SDR, limited range.
TONEMAP_OUTPUT = {
    "range": "tv",
    "color_primaries": "bt709",
    "color_trc": "bt709",
    "colorspace": "bt709",
}


@dataclass(frozen=True, slots=True)
class Tonemap:
    """HDR (PQ or HLG, BT.2020) -> SDR BT.709: vtremote's own filter, run by the server as a
    3D LUT (engines/tonemap.py); not FFmpeg's ``tonemap``, which needs linear light.

    ``peak``: the source's peak in units of 100 cd/m² (0: 100 for PQ, 10 for HLG);
    ``desat``: desaturation of highlights above that level (0: off). Output tagged BT.709.
    """

    algorithm: str = "bt2390"
    peak: float = 0.0
    desat: float = 0.0

    name = "tonemap"

    def args(self) -> list[tuple[str, str]]:
        return [
            ("algorithm", self.algorithm),
            ("peak", decimal_text(self.peak)),
            ("desat", decimal_text(self.desat)),
        ]


@dataclass(frozen=True, slots=True)
class SetSar:
    sar: Fraction

    name = "setsar"

    def args(self) -> list[tuple[str, str]]:
        return [("sar", fraction_text(self.sar))]


@dataclass(frozen=True, slots=True)
class Null:
    name = "null"

    def args(self) -> list[tuple[str, str]]:
        return []


#: Largest time a ``trim`` may name, in seconds (either sign): about 115 days.
MAX_TRIM_SECONDS = 10_000_000
#: Largest ``end_frame`` of a ``trim``.
MAX_TRIM_FRAMES = 1 << 40


def microseconds_text(us: int) -> str:
    """``-0.960000``: a time in microseconds as decimal seconds (exact, as ffmpeg's trim reads
    it)."""
    sign = "-" if us < 0 else ""
    return f"{sign}{abs(us) // 1_000_000}.{abs(us) % 1_000_000:06d}"


@dataclass(frozen=True, slots=True)
class Trim:
    """Keep the frames with ``start <= pts < end`` (microseconds on the decoded stream's clock),
    at most ``end_frame`` of them, those within ``duration`` of the first one; timestamps are
    left as they are (FFmpeg's trim, as ffmpeg inserts it for ``-ss``, ``-t`` and ``-frames:v``)."""

    start_us: int | None = None
    end_us: int | None = None
    end_frame: int | None = None
    #: Keep frames less than this after the first frame kept (ffmpeg's -t after a seek that
    #: starts at a keyframe).
    duration_us: int | None = None

    name = "trim"

    def args(self) -> list[tuple[str, str]]:
        out = []
        if self.start_us is not None:
            out.append(("start", microseconds_text(self.start_us)))
        if self.end_us is not None:
            out.append(("end", microseconds_text(self.end_us)))
        if self.duration_us is not None:
            out.append(("duration", microseconds_text(self.duration_us)))
        if self.end_frame is not None:
            out.append(("end_frame", str(self.end_frame)))
        return out


FilterSpec: TypeAlias = (
    Scale | Fps | Format | Crop | Deinterlace | SetParams | SetSar | Tonemap | Null | Trim
)
Chain: TypeAlias = tuple[FilterSpec, ...]


def fraction_text(value: Fraction) -> str:
    """``30000/1001``: how a chain writes a rate or a ratio."""
    return f"{value.numerator}/{value.denominator}"


def decimal_text(value: float) -> str:
    """``100``, ``0.5``: how a chain writes a decimal (six places at most, exact for what
    the parser takes)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def option_text(spec: FilterSpec) -> str:
    """``key=value:key=value`` of a spec's options (empty when it has none)."""
    return ":".join(f"{k}={v}" for k, v in spec.args())


def serialize(chain: Sequence[FilterSpec]) -> str:
    """The canonical text of a chain (what travels in CONFIGURE ``ext_filters``)."""
    parts = []
    for spec in chain:
        args = option_text(spec)
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
        if isinstance(spec, Tonemap):
            out.update(_tonemap_options())
        elif isinstance(spec, SetParams):
            for key, table in SETPARAMS_COLOURS.items():
                value = getattr(spec, key)
                if value is not None:
                    out[table.option] = str(table.names[value])
        elif isinstance(spec, SetSar):
            out["sar_num"], out["sar_den"] = str(spec.sar.numerator), str(spec.sar.denominator)
    return out


def _tonemap_options() -> dict[str, str]:
    return {
        SETPARAMS_COLOURS[k].option: str(SETPARAMS_COLOURS[k].names[v])
        for k, v in TONEMAP_OUTPUT.items()
    }


def forced_color_options(chain: Sequence[FilterSpec]) -> dict[str, str]:
    """Colour options the chain's pictures have whatever the source said: those of its last
    ``tonemap`` and of the ``setparams`` after it ({} without a tonemap). They replace the
    source's tags that a client sends with a transcode, as the pictures are no longer HDR."""
    last = max((i for i, s in enumerate(chain) if isinstance(s, Tonemap)), default=None)
    return {} if last is None else color_options(chain[last:])
