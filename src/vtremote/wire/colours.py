"""The colour description of a picture: FFmpeg's names and AVColor* numbers, one table.

Four properties travel as numbers in CONFIGURE (``color_range``, ``color_primaries``,
``color_trc``, ``colorspace``, VTR1.md §3.2) and as names in two places: the command
line (``-color_trc bt709``, FFmpeg's encoder options) and ``setparams`` in a transcode
filter chain (FFmpeg's filter options). FFmpeg spells some values differently in the
two: the encoder options say ``gamma22`` where ``setparams`` says ``bt470m``. Every
layer reads :data:`TABLES`, so a name is accepted everywhere or nowhere; a filter
graph gets the ``setparams`` spelling of the value (:meth:`ColourTable.filter_name`).

Numbers are libavutil/pixfmt.h's ``AVColorRange``, ``AVColorPrimaries``,
``AVColorTransferCharacteristic`` and ``AVColorSpace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ColourTable:
    """One colour property: its option names and its values with their names.

    ``rows`` are ``(value, names setparams takes, other FFmpeg names)``; the first
    setparams name is the spelling a filter graph gets. ``unnamed`` are valid values
    that no name here stands for (a client may still send them as numbers).
    """

    option: str
    filter_option: str
    unspecified: int
    rows: tuple[tuple[int, tuple[str, ...], tuple[str, ...]], ...]
    unnamed: frozenset[int] = frozenset()
    names: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        names = {n: value for value, main, other in self.rows for n in (*main, *other)}
        object.__setattr__(self, "names", names)

    @property
    def values(self) -> frozenset[int]:
        """Every valid number of the property."""
        return frozenset(self.names.values()) | self.unnamed

    def filter_name(self, name: str) -> str:
        """The spelling of ``name``'s value that FFmpeg's setparams filter takes."""
        value = self.names[name]
        for row_value, main, _ in self.rows:
            if row_value == value and main:
                return name if name in main else main[0]
        raise KeyError(name)


RANGE = ColourTable(
    "color_range",
    "range",
    0,
    (
        (0, ("unknown", "unspecified"), ()),
        (1, ("tv", "limited", "mpeg"), ()),
        (2, ("pc", "full", "jpeg"), ()),
    ),
)
PRIMARIES = ColourTable(
    "color_primaries",
    "color_primaries",
    2,
    (
        (1, ("bt709",), ()),
        (2, ("unknown",), ("unspecified",)),
        (4, ("bt470m",), ()),
        (5, ("bt470bg",), ()),
        (6, ("smpte170m",), ()),
        (7, ("smpte240m",), ()),
        (8, ("film",), ()),
        (9, ("bt2020",), ()),
        (10, ("smpte428",), ()),
        (11, ("smpte431",), ()),
        (12, ("smpte432",), ()),
        (22, ("jedec-p22", "ebu3213"), ()),
    ),
)
TRANSFER = ColourTable(
    "color_trc",
    "color_trc",
    2,
    (
        (1, ("bt709",), ()),
        (2, ("unknown",), ("unspecified",)),
        (4, ("bt470m",), ("gamma22",)),
        (5, ("bt470bg",), ("gamma28",)),
        (6, ("smpte170m",), ()),
        (7, ("smpte240m",), ()),
        (8, ("linear",), ()),
        (9, ("log100",), ()),
        (10, ("log316",), ()),
        (11, ("iec61966-2-4",), ()),
        (12, ("bt1361e",), ()),
        # "srgb" is the colorspace filter's name (its trc option) for the same value.
        (13, ("iec61966-2-1",), ("srgb",)),
        (14, ("bt2020-10",), ()),
        (15, ("bt2020-12",), ()),
        (16, ("smpte2084",), ()),
        (17, ("smpte428",), ()),
        (18, ("arib-std-b67",), ()),
    ),
)
MATRIX = ColourTable(
    "colorspace",
    "colorspace",
    2,
    (
        (0, ("gbr",), ("rgb",)),
        (1, ("bt709",), ()),
        (2, ("unknown",), ("unspecified",)),
        (4, ("fcc",), ()),
        (5, ("bt470bg",), ()),
        (6, ("smpte170m",), ()),
        (7, ("smpte240m",), ()),
        (8, ("ycgco",), ("ycocg",)),
        (9, ("bt2020nc",), ("bt2020_ncl",)),
        (10, ("bt2020c",), ("bt2020_cl",)),
        (11, ("smpte2085",), ()),
        (12, ("chroma-derived-nc",), ()),
        (13, ("chroma-derived-c",), ()),
        (14, ("ictcp",), ()),
    ),
    # IPT-C2, YCgCo-R even / odd: newer FFmpeg builds name them, older ones do not.
    unnamed=frozenset({15, 16, 17}),
)

#: Every colour property, by its CONFIGURE key / encoder option, in CONFIGURE's order
#: (VTR1.md §3.2).
TABLES: dict[str, ColourTable] = {t.option: t for t in (RANGE, MATRIX, PRIMARIES, TRANSFER)}

__all__ = ["MATRIX", "PRIMARIES", "RANGE", "TABLES", "TRANSFER", "ColourTable"]
