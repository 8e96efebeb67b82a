"""Frame rates FFmpeg knows by name (``ntsc``, ``pal``, ``film``...), in both spellings.

The ``-r`` option (``av_parse_video_rate``) and a chain's ``fps`` filter name the same
rates differently: ``-r ntsc-film`` but ``fps=ntsc_film`` (in the fps filter
``ntsc-film`` is an expression, ntsc minus film). The command line reads
:data:`OPTION_NAMES`, the transcode chain parser :data:`FILTER_NAMES`.
"""

from __future__ import annotations

from fractions import Fraction

#: (rate, its names as ``-r`` takes them, its names in a transcode chain's ``fps``).
RATES: tuple[tuple[Fraction, tuple[str, ...], tuple[str, ...]], ...] = (
    (Fraction(30000, 1001), ("ntsc", "qntsc", "sntsc"), ("ntsc", "qntsc")),
    (Fraction(25), ("pal", "qpal", "spal"), ("pal", "qpal")),
    (Fraction(24), ("film",), ("film",)),
    (Fraction(24000, 1001), ("ntsc-film",), ("ntsc_film",)),
)
OPTION_NAMES: dict[str, Fraction] = {n: rate for rate, names, _ in RATES for n in names}
FILTER_NAMES: dict[str, Fraction] = {n: rate for rate, _, names in RATES for n in names}

__all__ = ["FILTER_NAMES", "OPTION_NAMES", "RATES"]
