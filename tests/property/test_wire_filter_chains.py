"""Hypothesis: filter chains survive serialize -> parse; arbitrary text raises only ConfigError."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from vtremote.errors import ConfigError
from vtremote.wire import filters as f

scales = st.builds(
    f.Scale,
    st.integers(-8, 4096),
    st.integers(-8, 4096),
    st.sampled_from(["", "bicubic", "lanczos+accurate_rnd", "area"]),
    st.integers(0, 2),
    st.integers(1, 16),
)
rates = st.fractions(min_value=Fraction(1, 1001), max_value=240, max_denominator=1001).filter(
    lambda r: r > 0
)
specs = st.one_of(
    scales,
    st.builds(f.Fps, rates),
    st.builds(
        f.Format, st.lists(st.sampled_from(sorted(f.FORMATS)), min_size=1, max_size=3).map(tuple)
    ),
    st.builds(
        f.Crop,
        st.none() | st.integers(1, 4096),
        st.none() | st.integers(1, 4096),
        st.none() | st.integers(0, 4096),
        st.none() | st.integers(0, 4096),
    ),
    st.builds(
        f.Deinterlace, st.just("yadif"), st.integers(0, 3), st.integers(-1, 1), st.integers(0, 1)
    ),
    st.builds(
        f.Deinterlace, st.just("bwdif"), st.integers(0, 1), st.integers(-1, 1), st.integers(0, 1)
    ),
    st.builds(
        f.SetParams,
        st.none() | st.sampled_from(f.FIELD_MODES),
        st.none() | st.sampled_from(sorted(f.RANGES)),
        st.none() | st.sampled_from(sorted(f.PRIMARIES)),
        st.none() | st.sampled_from(sorted(f.TRCS)),
        st.none() | st.sampled_from(sorted(f.SPACES)),
    ),
    st.builds(
        f.SetSar,
        st.fractions(min_value=Fraction(1, 100), max_value=100, max_denominator=100).filter(
            lambda r: r > 0
        ),
    ),
    st.just(f.Null()),
)


@given(st.lists(specs, max_size=f.MAX_FILTERS))
def test_serialize_parse_roundtrip(chain: list[f.FilterSpec]) -> None:
    text = f.serialize(chain)
    if len(text) > f.MAX_CHAIN_TEXT:
        return
    assert f.parse(text) == tuple(chain)


@given(st.text(max_size=200))
def test_any_text_raises_only_config_errors(text: str) -> None:
    try:
        chain = f.parse(text)
    except ConfigError:
        return
    assert f.parse(f.serialize(chain)) == chain


@given(
    st.lists(
        st.sampled_from(
            [
                "scale=",
                "fps=",
                "crop=",
                ":",
                "=",
                ",",
                "-2",
                "720",
                "w",
                "h",
                "x=",
                "1/0",
                "format=",
                "nv12",
                "|",
                "yadif",
                "setsar=",
                "flags=",
                "null",
                "0",
                "99999",
            ]
        ),
        max_size=20,
    ).map("".join),
    st.integers(1, 4000),
    st.integers(1, 4000),
)
def test_fragments_parse_or_refuse_and_geometry_is_bounded(text: str, w: int, h: int) -> None:
    try:
        chain = f.parse(text)
        g = f.output_geometry(chain, f.Geometry(w, h, Fraction(1, 30)))
    except ConfigError:
        return
    assert 1 <= g.width <= f.MAX_DIMENSION and 1 <= g.height <= f.MAX_DIMENSION
