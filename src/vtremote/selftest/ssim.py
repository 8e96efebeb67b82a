"""SSIM of two pictures' luma, in numpy: how much of the source an engine kept.

SSIM (Wang, Bovik, Sheikh, Simoncelli 2004) on the luma plane only, with a 7x7
uniform window (as scikit-image's default) and the paper's constants K1=0.01,
K2=0.03 on samples scaled to 0..1, so 8-bit and 10-bit pictures compare on one
scale. The window sums come from integral images: a 1280x720 picture costs a few
tens of milliseconds.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np
import numpy.typing as npt

Plane = npt.NDArray[np.float64]

#: Window side in samples.
WINDOW = 7
_C1 = 0.01**2
_C2 = 0.03**2

#: Luma layout of the pixel formats the engines and the reference decoders give:
#: (numpy sample type, right shift to the significant bits, largest value after it).
_LUMA: dict[str, tuple[Any, int, int]] = {
    "nv12": (np.uint8, 0, 255),
    "yuv420p": (np.uint8, 0, 255),
    "yuvj420p": (np.uint8, 0, 255),
    "gray": (np.uint8, 0, 255),
    "p010le": (np.uint16, 6, 1023),  # 10 bits in the high bits of 16 (P010)
    "yuv420p10le": (np.uint16, 0, 1023),  # 10 bits in the low bits of 16
}


def luma(frame: av.VideoFrame) -> Plane:
    """The frame's luma plane as float64 in 0..1 (other formats are converted first)."""
    name = frame.format.name
    if name not in _LUMA:
        frame = frame.reformat(format="yuv420p")
        name = "yuv420p"
    dtype, shift, top = _LUMA[name]
    plane = frame.planes[0]
    size = np.dtype(dtype).itemsize
    samples = np.frombuffer(memoryview(plane), dtype=dtype)
    rows = samples[: plane.line_size // size * frame.height].reshape(frame.height, -1)
    values = rows[:, : frame.width].astype(np.float64)
    if shift:
        values = np.floor(values / (1 << shift))
    return values / top


def _window_mean(x: Plane) -> Plane:
    """Mean of every WINDOW x WINDOW block that fits inside ``x`` (valid positions only)."""
    c = np.zeros((x.shape[0] + 1, x.shape[1] + 1))
    c[1:, 1:] = x.cumsum(0).cumsum(1)
    k = WINDOW
    total = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    return total / (k * k)


def ssim(a: Plane, b: Plane) -> float:
    """Mean SSIM of two equally sized planes with samples in 0..1 (1.0: identical)."""
    if a.shape != b.shape:
        raise ValueError(f"SSIM of a {a.shape} and a {b.shape} plane")
    if min(a.shape) < WINDOW:
        raise ValueError(f"SSIM needs pictures of at least {WINDOW}x{WINDOW}, got {a.shape}")
    mu_a, mu_b = _window_mean(a), _window_mean(b)
    # Sample (co)variances, as the paper and scikit-image: n/(n-1) times the biased ones.
    n = WINDOW * WINDOW
    unbias = n / (n - 1)
    var_a = (_window_mean(a * a) - mu_a * mu_a) * unbias
    var_b = (_window_mean(b * b) - mu_b * mu_b) * unbias
    cov = (_window_mean(a * b) - mu_a * mu_b) * unbias
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a * mu_a + mu_b * mu_b + _C1) * (var_a + var_b + _C2)
    return float(np.mean(num / den))


def frame_ssim(a: av.VideoFrame, b: av.VideoFrame) -> float:
    """SSIM of two frames' luma (any mix of 8- and 10-bit formats)."""
    return ssim(luma(a), luma(b))
