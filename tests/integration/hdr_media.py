"""HDR10 and HLG test clips made in-process, and the checks of tone-mapped output.

testsrc2's SDR pictures are taken to light (BT.1886, SDR white at 203 cd/m² as
BT.2408 places it; the top third, a sky, graded to 1000 cd/m², with a 4000 cd/m²
highlight), to BT.2020 primaries, encoded with
the PQ (or HLG) curve into 10-bit BT.2020 limited-range YUV, and written with
libx265 main10 and the HDR10 tags. No tone mapper is involved in making them.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from media import testsrc_frames
from transcode_media import luma, ssim

BT709_TO_BT2020 = np.array(
    [[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]]
)
#: AVColor* numbers of the tags.
PQ, HLG, BT2020, BT2020NC, BT709 = 16, 18, 9, 9, 1


def _pq(nits: np.ndarray) -> np.ndarray:
    m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
    y = np.power(np.clip(nits / 10000.0, 0, 1), m1)
    return np.power((c1 + c2 * y) / (1 + c3 * y), m2)


def _hlg(nits: np.ndarray) -> np.ndarray:
    scene = np.clip(nits / 1000.0, 0, 1) ** (1 / 1.2)  # the OOTF undone, roughly
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    safe = np.maximum(12 * scene - b, 1e-6)
    return np.where(scene <= 1 / 12, np.sqrt(3 * scene), a * np.log(safe) + c)


def hdr_frame(rgb: np.ndarray, transfer: int) -> av.VideoFrame:
    """An 8-bit sRGB-ish picture as a 10-bit BT.2020 PQ/HLG frame (tags set)."""
    h, w, _ = rgb.shape
    nits = np.power(rgb / 255.0, 2.4) * 203.0
    nits[: h // 3] *= 1000.0 / 203.0  # a sky graded to 1000 cd/m²
    nits[h // 8 : h // 4, w // 8 : w // 4] = 4000.0  # a specular highlight
    signal = (_pq if transfer == PQ else _hlg)(nits @ BT709_TO_BT2020.T)
    r, g, b = signal[..., 0], signal[..., 1], signal[..., 2]
    y = 0.2627 * r + 0.6780 * g + 0.0593 * b
    cb, cr = (b - y) / 1.8814, (r - y) / 1.4746

    def sub(c: np.ndarray) -> np.ndarray:
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [
        np.round(y * 876 + 64),
        np.round(sub(cb) * 896 + 512).reshape(h // 4, w),
        np.round(sub(cr) * 896 + 512).reshape(h // 4, w),
    ]
    frame = av.VideoFrame.from_ndarray(
        np.concatenate(planes).astype(np.uint16), format="yuv420p10le"
    )
    frame.color_primaries, frame.color_trc, frame.colorspace = BT2020, transfer, BT2020NC
    frame.color_range = 1
    return frame


def make_hdr_mkv(path: Path, n: int, width: int, height: int, transfer: int = PQ) -> Path:
    """``n`` frames of HDR10 (or HLG) HEVC main10 at 24 fps in Matroska, tagged BT.2020."""
    trc = "smpte2084" if transfer == PQ else "arib-std-b67"
    sources = testsrc_frames(n, width, height, pix_fmt="rgb24", rate=24)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx265", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p10le"
        ctx = stream.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = (
            BT2020,
            transfer,
            BT2020NC,
            1,
        )
        ctx.options = {
            "preset": "ultrafast",
            "crf": "16",
            "x265-params": f"log-level=error:colorprim=bt2020:transfer={trc}"
            ":colormatrix=bt2020nc:range=limited",
        }
        for i, src in enumerate(sources):
            frame = hdr_frame(src.to_ndarray(), transfer)
            frame.pts, frame.time_base = i, Fraction(1, 24)
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)
    return path


def mean_luma(frames: list[av.VideoFrame]) -> float:
    """Mean 8-bit luma code of the frames (their own Y plane, scaled from 10 bits if needed)."""
    values = []
    for f in frames:
        y = f.to_ndarray()[: f.height] if f.format.name in ("yuv420p", "yuv420p10le") else None
        if y is None:
            y = f.reformat(format="yuv420p").to_ndarray()[: f.height]
        values.append(float(y.mean()) / (4.0 if y.dtype == np.uint16 else 1.0))
    return float(np.mean(values))


def expected_luma(frame: av.VideoFrame, algorithm: str, peak: float) -> np.ndarray:
    """8-bit luma the tone mapper's model (engines/tonemap.py, in numpy, no LUT and no
    FFmpeg) gives a decoded HDR frame: what the server's pictures must look like."""
    from vtremote.engines import tonemap

    h, w = frame.height, frame.width
    yuv = frame.to_ndarray().astype(np.float64)
    y = (yuv[:h] - 64) / 876

    def chroma(rows: np.ndarray) -> np.ndarray:
        c = ((rows - 512) / 896).reshape(h // 2, w // 2)
        return np.asarray(c.repeat(2, axis=0).repeat(2, axis=1))

    cb, cr = chroma(yuv[h : h + h // 4]), chroma(yuv[h + h // 4 :])
    r, b = y + 1.4746 * cr, y + 1.8814 * cb
    g = (y - 0.2627 * r - 0.0593 * b) / 0.6780
    transfer = "smpte2084" if int(frame.color_trc) == PQ else "arib-std-b67"
    out = tonemap.transform(
        np.stack([r, g, b], axis=-1), tonemap.ToneMap(algorithm, peak, 0.0, transfer)
    )
    return np.asarray(16 + 219 * (out @ np.array([0.2126, 0.7152, 0.0722])))


def check_tone_mapped(
    decoded: list[av.VideoFrame],
    source: list[av.VideoFrame],
    algorithm: str,
    peak: float,
    darker: bool,
) -> float:
    """BT.709 limited-range tags; pictures like the tone mapper's numpy model of the source
    (mean within 3 %, SSIM >= 0.9) and unlike the untouched source; luma in SDR range,
    well below the untouched pictures' for the darkening curves, not flat."""
    for f in decoded:
        assert (int(f.color_primaries), int(f.color_trc), int(f.colorspace)) == (1, 1, 1)
        assert int(f.color_range) == 1
    mean, raw_mean = mean_luma(decoded), mean_luma(source)
    assert 30 < mean < 170, mean
    if darker:
        assert mean < 0.92 * raw_mean, (mean, raw_mean)
    for i in (0, len(decoded) // 2, len(decoded) - 1):
        got = luma(decoded[i]).astype(np.float64)
        model = expected_luma(source[i], algorithm, peak)
        raw = source[i].to_ndarray()[: source[i].height] / 4.0
        assert abs(got.mean() - model.mean()) < 0.03 * model.mean(), (got.mean(), model.mean())
        to_model, to_raw = ssim(got, model), ssim(got, raw)
        assert to_model >= 0.9 and to_model > to_raw + 0.01, (to_model, to_raw)
        assert got.std() > 20 and got.max() > 150 and got.min() < 60  # not clipped flat
    return mean
