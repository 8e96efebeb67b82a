"""HDR (PQ / HLG, BT.2020) -> SDR BT.709 tone mapping as a 3D LUT run by FFmpeg's ``lut3d``.

PyAV's FFmpeg has no zscale, so FFmpeg's own ``tonemap`` filter (which wants
linear float RGB) cannot be fed. The whole per-pixel transform is instead
computed here once per parameter set with numpy, on a grid of the source's
non-linear R'G'B' values, and FFmpeg interpolates it (tetrahedral) for each
pixel:

    R'G'B' (BT.2020, PQ or HLG)
      -> linear light, 1.0 = 100 cd/m² (PQ: ST 2084 EOTF; HLG: inverse OETF + the
         BT.2100 OOTF of a 1000 cd/m² display)
      -> BT.709 primaries (linear 3x3 matrix)
      -> desaturation of what is brighter than ``desat`` (when > 0)
      -> tone curve on the brightest component, the same factor on all three
         (FFmpeg's tonemap: hable, mobius, reinhard, clip; BT.2390's EETF)
      -> BT.709 signal by BT.1886's inverse EOTF (gamma 2.4), clipped to 0..1.

The graph around the LUT (:func:`graph_steps`): YUV -> RGB with the source's
matrix and range (swscale), ``lut3d``, RGB -> YUV BT.709 limited range, and the
BT.709 tags. A LUT is written as a ``.cube`` file into a private temporary folder
on first use and reused by every later graph with the same parameters.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vtremote.wire import colours
from vtremote.wire.filter_specs import (
    TONEMAP_ALGORITHMS,
    TONEMAP_OUTPUT,
    FilterSpec,
    Null,
    SetParams,
    Tonemap,
)

log = logging.getLogger(__name__)

#: Points per side of the LUT. 65 keeps the steep low end of PQ within a code value or so.
LUT_SIZE = 65
#: Linear light of SDR white, cd/m² (FFmpeg's REFERENCE_WHITE, zscale's npl=100).
REFERENCE_WHITE = 100.0
#: Peak of the display HLG is rendered for (BT.2100 reference), cd/m².
HLG_DISPLAY_PEAK = 1000.0
#: The source's default peak, in units of REFERENCE_WHITE, when ``peak`` is 0 (FFmpeg's rule
#: for frames without light-level metadata).
DEFAULT_PEAK = {"smpte2084": 10000.0 / REFERENCE_WHITE, "arib-std-b67": 10.0}
#: Tone curves (FFmpeg's tonemap names, with BT.2390's EETF as Jellyfin uses it).
ALGORITHMS = TONEMAP_ALGORITHMS
#: Transfer characteristics the LUT linearizes (AVColorTransferCharacteristic names).
TRANSFERS = ("smpte2084", "arib-std-b67")

_PQ_M1, _PQ_M2 = 0.1593017578125, 78.84375
_PQ_C1, _PQ_C2, _PQ_C3 = 0.8359375, 18.8515625, 18.6875
_HLG_A, _HLG_B, _HLG_C = 0.17883277, 0.28466892, 0.55991073
#: BT.2020 -> BT.709 on linear RGB (both D65; BT.2087).
BT2020_TO_BT709 = np.array(
    [
        [1.660491, -0.587641, -0.072850],
        [-0.124550, 1.132900, -0.008349],
        [-0.018151, -0.100579, 1.118730],
    ]
)
#: Luma weights of linear RGB in BT.2020 and BT.709.
LUMA_2020 = np.array([0.2627, 0.6780, 0.0593])
LUMA_709 = np.array([0.2126, 0.7152, 0.0722])

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ToneMap:
    """One parameter set: the curve, the source's peak (units of 100 cd/m², 0 = the transfer's
    default), desaturation strength (0 = off) and the source's transfer."""

    algorithm: str = "bt2390"
    peak: float = 0.0
    desat: float = 0.0
    transfer: str = "smpte2084"

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"tone curve {self.algorithm!r} is not one of {ALGORITHMS}")
        if self.transfer not in TRANSFERS:
            raise ValueError(f"transfer {self.transfer!r} is not one of {TRANSFERS}")

    @property
    def source_peak(self) -> float:
        return self.peak if self.peak > 0 else DEFAULT_PEAK[self.transfer]


# --- transfer functions ---------------------------------------------------------------------


def pq_eotf(e: Array) -> Array:
    """ST 2084: signal 0..1 -> linear light in units of REFERENCE_WHITE (0..100)."""
    p = np.power(np.clip(e, 0.0, 1.0), 1.0 / _PQ_M2)
    num = np.maximum(p - _PQ_C1, 0.0)
    den = _PQ_C2 - _PQ_C3 * p
    return np.asarray(np.power(num / den, 1.0 / _PQ_M1) * (10000.0 / REFERENCE_WHITE))


def pq_inverse_eotf(y: Array) -> Array:
    """Linear light (units of REFERENCE_WHITE) -> ST 2084 signal."""
    x = np.power(np.clip(y * (REFERENCE_WHITE / 10000.0), 0.0, 1.0), _PQ_M1)
    return np.asarray(np.power((_PQ_C1 + _PQ_C2 * x) / (1.0 + _PQ_C3 * x), _PQ_M2))


def hlg_to_linear(rgb: Array) -> Array:
    """HLG signal R'G'B' (..., 3) -> display light in units of REFERENCE_WHITE (BT.2100:
    inverse OETF, then the OOTF of a 1000 cd/m² display, gamma 1.2)."""
    e = np.clip(rgb, 0.0, 1.0)
    scene = np.where(e <= 0.5, e * e / 3.0, (np.exp((e - _HLG_C) / _HLG_A) + _HLG_B) / 12.0)
    ys = np.maximum(scene @ LUMA_2020, 1e-12)[..., None]
    return np.asarray(scene * np.power(ys, 0.2) * (HLG_DISPLAY_PEAK / REFERENCE_WHITE))


def bt1886_inverse_eotf(linear: Array) -> Array:
    """Display light 0..1 (clipped) -> BT.709 signal by BT.1886's inverse (gamma 2.4), as
    zscale's display-referred ``t=bt709`` and Jellyfin's tonemapx write it."""
    return np.asarray(np.power(np.clip(linear, 0.0, 1.0), 1.0 / 2.4))


# --- tone curves (of the brightest component, in units of REFERENCE_WHITE) ---------------------


def _hable(x: Array | float) -> Array:
    a, b, c, d, e, f = 0.15, 0.50, 0.10, 0.20, 0.02, 0.30
    x = np.asarray(x, dtype=np.float64)
    return np.asarray((x * (x * a + b * c) + d * e) / (x * (x * a + b) + d * f) - e / f)


def _mobius(x: Array, peak: float, j: float = 0.3) -> Array:
    if peak <= 1.0:
        return np.minimum(x, 1.0)
    a = -j * j * (peak - 1.0) / (j * j - 2.0 * j + peak)
    b = (j * j - 2.0 * j * peak + peak) / max(peak - 1.0, 1e-6)
    high = (b * b + 2.0 * b * j + j * j) / (b - a) * (x + a) / (x + b)
    return np.asarray(np.where(x <= j, x, high))


def _bt2390(x: Array, peak: float) -> Array:
    """BT.2390's EETF in PQ space, from the source peak down to SDR white."""
    peak_pq = float(pq_inverse_eotf(np.array(peak)))
    s = pq_inverse_eotf(x) / peak_pq
    max_lum = float(pq_inverse_eotf(np.array(1.0))) / peak_pq
    ks = 1.5 * max_lum - 0.5
    t = (s - ks) / (1.0 - ks)
    t2, t3 = t * t, t * t * t
    p = (2 * t3 - 3 * t2 + 1) * ks + (t3 - 2 * t2 + t) * (1.0 - ks) + (-2 * t3 + 3 * t2) * max_lum
    return pq_eotf(np.where(s < ks, s, p) * peak_pq)


def tone_curve(x: Array, algorithm: str, peak: float) -> Array:
    """FFmpeg tonemap's curves (default parameters) and BT.2390: signal peak -> 1.0."""
    if algorithm == "hable":
        return np.asarray(_hable(x) / _hable(peak))
    if algorithm == "mobius":
        return _mobius(x, peak)
    if algorithm == "reinhard":
        param = 1.0  # FFmpeg's default contrast 0.5, as (1 - 0.5) / 0.5
        return np.asarray(x / (x + param) * (peak + param) / peak)
    if algorithm == "clip":
        return np.asarray(np.clip(x, 0.0, 1.0))
    if algorithm == "bt2390":
        return _bt2390(x, peak) if peak > 1.0 else np.asarray(np.minimum(x, 1.0))
    raise ValueError(f"unknown tone curve {algorithm!r}")


# --- the LUT ------------------------------------------------------------------------------------


def transform(rgb: Array, tm: ToneMap) -> Array:
    """R'G'B' of the source (..., 3, 0..1) -> R'G'B' BT.709 SDR (0..1)."""
    linear = pq_eotf(rgb) if tm.transfer == "smpte2084" else hlg_to_linear(rgb)
    linear = linear @ BT2020_TO_BT709.T
    if tm.desat > 0:
        luma = (linear @ LUMA_709)[..., None]
        over = np.maximum(luma - tm.desat, 1e-6) / np.maximum(luma, 1e-6)
        linear = linear * (1.0 - over) + luma * over
    sig = np.maximum(linear.max(axis=-1), 1e-6)
    mapped = tone_curve(sig, tm.algorithm, tm.source_peak)
    linear = linear * (mapped / sig)[..., None]
    return bt1886_inverse_eotf(linear)


def lut(tm: ToneMap, size: int | None = None) -> Array:
    """The LUT as an array [b][g][r] -> (r, g, b), the order a .cube file lists it."""
    axis = np.linspace(0.0, 1.0, size or LUT_SIZE)
    b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")
    return transform(np.stack([r, g, b], axis=-1), tm)


#: "0.00000" .. "1.00000": the text of every value a .cube file of ours holds (five places,
#: a 17-bit step), looked up instead of formatted 800,000 times per LUT.
_CUBE_DIGITS = 100_000
_cube_values: list[str] = []


def cube_text(table: Array, title: str) -> str:
    """``.cube`` text of a :func:`lut` table (red changes fastest)."""
    if not _cube_values:
        _cube_values.extend(f"{i / _CUBE_DIGITS:.5f}" for i in range(_CUBE_DIGITS + 1))
    size = table.shape[0]
    codes = np.rint(np.clip(table.reshape(-1, 3), 0.0, 1.0) * _CUBE_DIGITS).astype(np.int64)
    r, g, b = (map(_cube_values.__getitem__, codes[:, k].tolist()) for k in range(3))
    body = "\n".join(map(" ".join, zip(r, g, b, strict=True)))
    return f'TITLE "{title}"\nLUT_3D_SIZE {size}\n{body}\n'


_lock = threading.Lock()
_folder: Path | None = None


def _private_folder() -> Path:
    global _folder
    if _folder is None:
        _folder = Path(tempfile.mkdtemp(prefix="vtremote-tonemap-"))
        atexit.register(shutil.rmtree, _folder, True)
    return _folder


#: LUT files kept at most (each about 7 MB on disk, 0.5-1 s of CPU to make): a peer that asks
#: for ever new parameter sets costs at most this much disk (docs/security.md).
MAX_CACHED_LUTS = 16
#: A file not used for this long may be removed to make room (a graph reads its file while it
#: is built, right after cube_file returns it).
_EVICT_AFTER = 30.0
_cache: OrderedDict[ToneMap, tuple[Path, float]] = OrderedDict()


def cube_file(tm: ToneMap) -> Path:
    """The .cube file of ``tm``: computed and written on first use, then reused; the least
    recently used of more than MAX_CACHED_LUTS files are removed."""
    with _lock:
        now = time.monotonic()
        hit = _cache.get(tm)
        if hit is not None:
            _cache[tm] = (hit[0], now)
            _cache.move_to_end(tm)
            return hit[0]
        name = f"{tm.transfer}-{tm.algorithm}-{tm.peak:g}-{tm.desat:g}.cube"
        path = _private_folder() / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(cube_text(lut(tm), f"vtremote {name}"), encoding="ascii")
        os.replace(tmp, path)
        _cache[tm] = (path, now)
        for old, (old_path, used) in list(_cache.items())[: max(len(_cache) - MAX_CACHED_LUTS, 0)]:
            if now - used > _EVICT_AFTER:
                del _cache[old]
                old_path.unlink(missing_ok=True)
        log.info("tone mapping LUT %s made (%d cached)", name, len(_cache))
        return path


# --- the filter graph ---------------------------------------------------------------------------

#: AVColorSpace / AVColorRange numbers -> the names scale's in_color_matrix / in_range take.
_SCALE_MATRICES = {1: "bt709", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
#: The source transfers tone mapping takes, by AVColorTransferCharacteristic number (2:
#: unspecified is taken as PQ, as Jellyfin's tonemapx does).
SOURCE_TRANSFERS = {16: "smpte2084", 18: "arib-std-b67", 2: "smpte2084"}
#: Tags of what comes out (wire's table: BT.709 primaries, transfer, matrix, limited range).
OUTPUT_TAGS = ":".join(f"{k}={v}" for k, v in TONEMAP_OUTPUT.items())


def graph_steps(
    algorithm: str, peak: float, desat: float, *, transfer: int, matrix: int, full_range: bool
) -> list[tuple[str, str]]:
    """The FFmpeg filters (name, options) that tone-map frames with these tags; [] when the
    source's transfer is not HDR (an SDR source passes as it is)."""
    name = SOURCE_TRANSFERS.get(transfer)
    if name is None:
        return []
    path = cube_file(ToneMap(algorithm, peak, desat, name))
    in_matrix = _SCALE_MATRICES.get(matrix, "bt2020")
    rng = "pc" if full_range else "tv"
    return [
        # fast_bilinear: chroma is only upsampled here; the LUT is what costs (docs/benchmarks.md).
        ("scale", f"in_color_matrix={in_matrix}:in_range={rng}:flags=fast_bilinear"),
        ("format", "pix_fmts=gbrp16le"),
        ("lut3d", f"file={path}:interp=tetrahedral"),
        ("scale", "out_color_matrix=bt709:out_range=tv:flags=fast_bilinear"),
        ("setparams", OUTPUT_TAGS),
    ]


@dataclass(frozen=True, slots=True)
class SourceTags:
    """The colour tags of the pictures a chain starts with (AVColor* numbers)."""

    transfer: int = 2
    matrix: int = 2
    full_range: bool = False

    def after(self, spec: FilterSpec) -> SourceTags:
        """The tags after ``spec``: setparams retags, tonemap makes BT.709 limited range."""
        if isinstance(spec, Tonemap):
            out = TONEMAP_OUTPUT
            return SourceTags(
                colours.TRANSFER.names[out["color_trc"]],
                colours.MATRIX.names[out["colorspace"]],
                colours.RANGE.names[out["range"]] == 2,
            )
        if not isinstance(spec, SetParams):
            return self
        trc, matrix, full = self.transfer, self.matrix, self.full_range
        if spec.color_trc is not None:
            trc = colours.TRANSFER.names[spec.color_trc]
        if spec.colorspace is not None:
            matrix = colours.MATRIX.names[spec.colorspace]
        if spec.range is not None:
            full = colours.RANGE.names[spec.range] == 2
        return SourceTags(trc, matrix, full)


def _steps_for(spec: Tonemap, tags: SourceTags) -> list[tuple[str, str]]:
    return graph_steps(
        spec.algorithm,
        spec.peak,
        spec.desat,
        transfer=tags.transfer,
        matrix=tags.matrix,
        full_range=tags.full_range,
    )


def expand(
    chain: Sequence[FilterSpec], steps: list[tuple[str, str]], source: SourceTags
) -> list[tuple[str, str]]:
    """``steps`` (wire.filters.graph_steps of ``chain``: one per filter but ``null``) with each
    ``tonemap`` step replaced by the filters that run it for the tags it receives."""
    specs = [s for s in chain if not isinstance(s, Null)]
    out: list[tuple[str, str]] = []
    tags = source
    for spec, step in zip(specs, steps, strict=False):
        if isinstance(spec, Tonemap):
            run = _steps_for(spec, tags)
            if not run:
                log.info(
                    "tonemap: the source's transfer %d is not HDR; passed unchanged", tags.transfer
                )
            out += run
        else:
            out.append(step)
        tags = tags.after(spec)
    return out + steps[len(specs) :]


def local_chain(
    chain: Sequence[tuple[str, str | None]], transfer: int, matrix: int, full_range: bool
) -> list[tuple[str, str | None]]:
    """A ``-vf`` chain run on this machine (the frame path) with each of vtremote's ``tonemap``
    filters (named ``algorithm=``, as wire.filters writes it) replaced by its LUT filters for
    pictures with these tags; ``setparams`` before it retags them. Other filters are kept."""
    from vtremote.wire import filters as vf  # the parser, for these two filters only

    tags = SourceTags(transfer, matrix, full_range)
    out: list[tuple[str, str | None]] = []
    for name, args in chain:
        spec: FilterSpec | None = None
        if (
            name in ("tonemap", "setparams")
            and args
            and (name != "tonemap" or "algorithm=" in args)
        ):
            try:
                spec = vf.parse(f"{name}={args}")[0]
            except ValueError:  # ConfigError: FFmpeg's own filter, its options, runs as written
                spec = None
        if isinstance(spec, Tonemap):
            out += _steps_for(spec, tags)
        else:
            out.append((name, args))
        if spec is not None:
            tags = tags.after(spec)
    return out


__all__ = [
    "ALGORITHMS",
    "LUT_SIZE",
    "OUTPUT_TAGS",
    "SourceTags",
    "TRANSFERS",
    "ToneMap",
    "cube_file",
    "expand",
    "graph_steps",
    "local_chain",
    "lut",
    "transform",
]
