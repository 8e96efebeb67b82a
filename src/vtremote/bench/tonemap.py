"""``vtremote bench tonemap``: the server's HDR -> SDR filter, its speed and its pictures.

The frames are HDR10 as a grade would carry them, made here: testsrc2 taken to
light (SDR white at 203 cd/m², the top third a 1000 cd/m² sky with a 4000 cd/m²
highlight), BT.2020 primaries, PQ, 10-bit limited-range BT.2020 YUV.

* Speed: the filter graph a transcode session builds for ``tonemap`` (swscale to
  RGB, ``lut3d``, swscale to yuv420p, tags) on those frames, with FFmpeg's graph
  threads 1 and 2: frames per second and CPU milliseconds per frame, and the time
  the first use of a parameter set spends on its LUT.
* Pictures: when a Debian-style ``ffmpeg`` with ``zscale`` is on the PATH, each
  curve it has (hable, mobius, reinhard, clip) is run there as
  ``zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=...,
  zscale=t=bt709:m=bt709:r=tv,format=yuv420p`` on the same frames: mean luma of
  both, their ratio and the SSIM of the luma planes. ``bt2390`` has no stock
  FFmpeg twin; its mean luma is reported alone.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vtremote.bench.common import machine_info, machine_line, make_frames
from vtremote.bench.live import _ssim as block_ssim
from vtremote.engines import tonemap as tm

#: Goals (docs/benchmarks.md): fps at the benchmark's size with 2 graph threads, and
#: agreement with zscale+tonemap.
GOAL_FPS = 60.0
GOAL_LUMA = 0.05
GOAL_SSIM = 0.90
#: Curves with a stock FFmpeg ``tonemap`` twin.
REFERENCE_CURVES = ("hable", "mobius", "reinhard", "clip")
_TO_2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])


def hdr10_frames(width: int, height: int, count: int) -> list[av.VideoFrame]:
    """``count`` HDR10 frames (yuv420p10le, BT.2020, PQ, limited range) from testsrc2."""
    out = []
    for src in make_frames("testsrc2", width, height, count, pix_fmt="rgb24", rate=24):
        light = np.power(src.to_ndarray() / 255.0, 2.4) * 2.03  # units of 100 cd/m²
        light[: height // 3] *= 1000.0 / 203.0
        light[height // 8 : height // 4, width // 8 : width // 4] = 40.0
        rgb = tm.pq_inverse_eotf(light @ _TO_2020.T)
        y = rgb @ np.array([0.2627, 0.6780, 0.0593])
        cb, cr = (rgb[..., 2] - y) / 1.8814, (rgb[..., 0] - y) / 1.4746

        def sub(c: np.ndarray) -> np.ndarray:
            quarter = c.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
            return np.asarray(quarter.reshape(height // 4, width))

        planes = [y * 876 + 64, sub(cb) * 896 + 512, sub(cr) * 896 + 512]
        data = np.round(np.concatenate(planes)).astype(np.uint16)
        frame = av.VideoFrame.from_ndarray(data, format="yuv420p10le")
        frame.color_primaries, frame.color_trc, frame.colorspace, frame.color_range = 9, 16, 9, 1
        out.append(frame)
    return out


def _graph(
    frame: av.VideoFrame, algorithm: str, peak: float, threads: int
) -> tuple[av.filter.Graph, Any, Any]:
    g = av.filter.Graph()
    g.threads = threads
    src = g.add_buffer(
        width=frame.width, height=frame.height, format=frame.format, time_base=Fraction(1, 24)
    )
    steps = tm.graph_steps(algorithm, peak, 0.0, transfer=16, matrix=9, full_range=False)
    sink = g.add("buffersink")
    g.link_nodes(src, *[g.add(n, a) for n, a in steps], g.add("format", "yuv420p"), sink)
    g.configure()
    return g, src, sink


def tone_map(frames: Sequence[av.VideoFrame], algorithm: str, peak: float) -> list[np.ndarray]:
    """Luma planes of ``frames`` through the server's graph."""
    g, _, _ = _graph(frames[0], algorithm, peak, 0)
    out = []
    for f in frames:
        g.vpush(f)
        out.append(g.vpull().to_ndarray()[: f.height])
    return out


def speed(frames: Sequence[av.VideoFrame], count: int, threads: int) -> dict[str, Any]:
    """Frames per second and CPU ms per frame of the bt2390 graph (LUT already cached)."""
    g, _, _ = _graph(frames[0], "bt2390", 100.0, threads)
    for f in frames[:2]:  # warm up: first buffers, first slices
        g.vpush(f)
        g.vpull()
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        g.vpush(frames[i % len(frames)])
        g.vpull()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"threads": threads, "frames": count, "fps": count / wall, "cpu_ms": cpu / count * 1e3}


def reference(
    ffmpeg: str, raw: Path, width: int, height: int, algorithm: str, peak: float
) -> tuple[list[np.ndarray], float]:
    """Luma planes of Debian ffmpeg's zscale+tonemap on the raw frames, and its wall time."""
    chain = (
        "zscale=t=linear:npl=100,format=gbrpf32le,"
        f"zscale=p=bt709,tonemap=tonemap={algorithm}:desat=0:peak={peak:g},"
        "zscale=t=bt709:m=bt709:r=tv,format=yuv420p"
    )
    cmd = [ffmpeg, "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p10le"]
    cmd += ["-s", f"{width}x{height}", "-color_primaries", "bt2020", "-color_trc", "smpte2084"]
    cmd += ["-colorspace", "bt2020nc", "-color_range", "tv", "-i", str(raw)]
    cmd += ["-vf", chain, "-f", "rawvideo", "-"]
    t0 = time.perf_counter()
    data = subprocess.run(cmd, capture_output=True, check=True, timeout=600).stdout
    seconds = time.perf_counter() - t0
    size = width * height * 3 // 2
    planes = np.frombuffer(data, np.uint8).reshape(-1, size)[:, : width * height]
    return list(planes.reshape(-1, height, width)), seconds


def _zscale_ffmpeg() -> str | None:
    path = shutil.which("ffmpeg")
    if path is None:
        return None
    try:
        listed = subprocess.run(
            [path, "-hide_banner", "-filters"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if " zscale " in listed and " tonemap " in listed else None


def run(width: int, height: int, frames: int, distinct: int, peak: float) -> dict[str, Any]:
    machine = machine_info()
    source = hdr10_frames(width, height, distinct)
    t0 = time.perf_counter()
    tm.cube_file(tm.ToneMap("bt2390", peak, 0.0, "smpte2084"))
    lut_seconds = time.perf_counter() - t0
    speeds = [speed(source, frames, threads) for threads in (1, 2)]
    raw_mean = float(np.mean([f.to_ndarray()[:height].mean() / 4 for f in source]))
    curves: list[dict[str, Any]] = []
    ffmpeg = _zscale_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="vtremote-bench-tonemap-") as folder:
        raw = Path(folder) / "hdr10.yuv"
        with raw.open("wb") as fh:
            for f in source:
                fh.write(f.to_ndarray().tobytes())
        for algorithm in tm.ALGORITHMS:
            ours = tone_map(source, algorithm, peak)
            row: dict[str, Any] = {"algorithm": algorithm, "mean": float(np.mean(ours))}
            if ffmpeg is not None and algorithm in REFERENCE_CURVES:
                ref, seconds = reference(ffmpeg, raw, width, height, algorithm, peak)
                row["reference_mean"] = float(np.mean(ref))
                row["luma_ratio"] = row["mean"] / row["reference_mean"]
                row["ssim"] = float(
                    np.mean([block_ssim(a, b) for a, b in zip(ours, ref, strict=True)])
                )
                row["reference_fps"] = len(ref) / seconds
            curves.append(row)
    return {
        "benchmark": "tonemap",
        "machine": machine,
        "size": f"{width}x{height}",
        "peak": peak,
        "untouched_mean": raw_mean,
        "lut_seconds": lut_seconds,
        "lut_size": tm.LUT_SIZE,
        "speed": speeds,
        "curves": curves,
        "reference": ffmpeg,
    }


def format_tables(result: dict[str, Any]) -> str:
    lines = [
        f"*{machine_line(result['machine'])}*",
        "",
        f"Tone mapping {result['size']} HDR10 (PQ, BT.2020) to SDR BT.709, peak "
        f"{result['peak']:g}; LUT {result['lut_size']}³ built in {result['lut_seconds']:.2f} s.",
        "",
        "| graph threads | fps | CPU ms / frame | goal >= 60 fps |",
        "|---:|---:|---:|---|",
    ]
    for s in result["speed"]:
        holds = "yes" if s["fps"] >= GOAL_FPS else "no"
        goal = holds if s["threads"] == 2 else ""
        lines.append(f"| {s['threads']} | {s['fps']:.1f} | {s['cpu_ms']:.1f} | {goal} |")
    lines += [
        "",
        f"Untouched HDR10 pictures: mean luma {result['untouched_mean']:.1f}.",
        "",
        "| curve | mean luma | zscale+tonemap | ratio | SSIM | holds (±5 %, >= 0.90) |"
        " ffmpeg fps |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for c in result["curves"]:
        if "reference_mean" in c:
            ok = abs(c["luma_ratio"] - 1) <= GOAL_LUMA and c["ssim"] >= GOAL_SSIM
            lines.append(
                f"| {c['algorithm']} | {c['mean']:.1f} | {c['reference_mean']:.1f} | "
                f"{c['luma_ratio']:.3f} | {c['ssim']:.4f} | {'yes' if ok else 'no'} | "
                f"{c['reference_fps']:.1f} |"
            )
        else:
            lines.append(f"| {c['algorithm']} | {c['mean']:.1f} | — | — | — | — | — |")
    if result["reference"] is None:
        lines += ["", "(no ffmpeg with zscale on the PATH: no reference column)"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``vtremote bench tonemap`` (and ``benchmarks/tonemap.py``): tables or JSON."""
    import argparse
    import json

    ap = argparse.ArgumentParser(
        prog="vtremote bench tonemap",
        description="Speed of the server's HDR -> SDR tone mapping and its agreement with "
        "ffmpeg's zscale+tonemap (docs/benchmarks.md).",
        allow_abbrev=False,
    )
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--frames", type=int, default=240, help="frames per timed run (240)")
    ap.add_argument("--distinct", type=int, default=8, help="distinct source frames (8)")
    ap.add_argument("--peak", type=float, default=100.0, help="source peak, x100 cd/m² (100)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.width % 4 or args.height % 4:
        ap.error("--width and --height must be multiples of 4")
    result = run(args.width, args.height, args.frames, args.distinct, args.peak)
    print(json.dumps(result, indent=2) if args.json else format_tables(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
