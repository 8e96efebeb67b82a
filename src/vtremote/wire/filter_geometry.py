"""What a transcode filter chain does to a picture: sizes, timing, FFmpeg's filter steps.

The server builds its filter graph from :func:`graph_steps` only: every size is a
number worked out here by FFmpeg's own rules, so nothing the network sent reaches
FFmpeg's option parser unchecked (docs/protocol.md "Packet transcode").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from vtremote.errors import ConfigError
from vtremote.wire.filter_specs import (
    Crop,
    Deinterlace,
    FilterSpec,
    Fps,
    Null,
    Scale,
    SetParams,
    SetSar,
    fraction_text,
    option_text,
)
from vtremote.wire.framing import MAX_DIMENSION


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
            steps.append(("fps", f"fps={fraction_text(spec.rate)}"))
            g = replace(g, time_base=1 / spec.rate, frame_rate=spec.rate)
        elif isinstance(spec, Deinterlace):
            steps.append((spec.filter, option_text(spec)))
            rate = g.frame_rate * 2 if (g.frame_rate and spec.mode & 1) else g.frame_rate
            g = replace(g, time_base=g.time_base / 2, frame_rate=rate)
        elif isinstance(spec, Null):
            continue
        elif isinstance(spec, SetSar):
            steps.append((spec.name, option_text(spec)))
            g = replace(g, sar=spec.sar)
        elif isinstance(spec, SetParams):
            steps.append((spec.name, ":".join(f"{k}={v}" for k, v in spec.filter_args())))
        else:
            steps.append((spec.name, option_text(spec)))
    return steps, g


def output_geometry(chain: Sequence[FilterSpec], source: Geometry) -> Geometry:
    """What ``chain`` makes of ``source`` (see :func:`graph_steps`)."""
    return graph_steps(chain, source)[1]
