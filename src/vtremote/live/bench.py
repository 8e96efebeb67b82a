"""Measurements behind ``vtremote bench live`` and ``benchmarks/live.py``.

Four measurements on camera-like content (``testsrc2`` moving picture with
temporal sensor-like noise, made by PyAV's lavfi), by default 1080p30:

* ``bandwidth``: KB/s of MJPEG, H.264 and HEVC at equal quality. The H.264
  live encoder at its default rate sets the quality (mean luma SSIM against the
  source); JPEG quality and HEVC bitrate are stepped until they reach it.
  Encoding only, in this process: the same encoders and settings the sender uses.
* ``latency``: ``vtremote live recv`` and ``vtremote live send`` as separate
  processes on loopback, capture-to-decoded latency p50/p99/max, fps, drops,
  CPU seconds of each process.
* ``ratelimit``: the same through a TCP bottleneck (:class:`LossyRelay`, e.g.
  3 Mb/s) with adaptive bitrate.
* ``loss``: UDP with a share of datagrams dropped; shown frames, repairs,
  keyframe requests and the longest freeze.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vtremote.live.codec import EncoderConfig, LiveDecoder, LiveEncoder, available
from vtremote.live.protocol import Codec
from vtremote.live.shim import LossyRelay

Progress = Callable[[str], None]


def camera_source(width: int, height: int, fps: int, noise: int = 2) -> str:
    """The lavfi graph of the camera-like test picture (moving, with temporal sensor-like noise)."""
    graph = f"testsrc2=size={width}x{height}:rate={fps}"
    return f"{graph},noise=alls={noise}:allf=t" if noise else graph


def machine() -> str:
    cpus = os.cpu_count() or 0
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return f"{platform.machine()}, {cpus} CPU cores (load {load:.1f} at start), Python {platform.python_version()}, PyAV {av.__version__}"


# --- bandwidth at equal quality -----------------------------------------------------------


def _ssim(a: np.ndarray, b: np.ndarray, win: int = 8) -> float:
    """Mean SSIM of two luma planes over non-overlapping ``win`` x ``win`` blocks."""
    h, w = (a.shape[0] // win) * win, (a.shape[1] // win) * win
    x = a[:h, :w].astype(np.float64).reshape(h // win, win, w // win, win)
    y = b[:h, :w].astype(np.float64).reshape(h // win, win, w // win, win)
    mx, my = x.mean(axis=(1, 3)), y.mean(axis=(1, 3))
    vx, vy = x.var(axis=(1, 3)), y.var(axis=(1, 3))
    cov = ((x - mx[:, None, :, None]) * (y - my[:, None, :, None])).mean(axis=(1, 3))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def _frames(width: int, height: int, fps: int, count: int, noise: int = 2) -> list[av.VideoFrame]:
    out = []
    with av.open(camera_source(width, height, fps, noise), format="lavfi") as c:
        for frame in c.decode(video=0):
            out.append(frame)
            if len(out) == count:
                break
    return out


def _encode_quality(
    codec: Codec,
    frames: list[av.VideoFrame],
    fps: int,
    *,
    bitrate: int = 4_000_000,
    quality: int = 5,
    every: int = 6,
) -> tuple[float, float, float]:
    """(KB/s, mean SSIM, encode ms per frame) of one setting."""
    h, w = frames[0].height, frames[0].width
    enc = LiveEncoder(
        EncoderConfig(codec, w, h, Fraction(fps), bitrate=bitrate, mjpeg_quality=quality)
    )
    dec = LiveDecoder(codec)
    total = 0
    scores = []
    t0 = time.perf_counter()
    encode_s = 0.0
    for i, frame in enumerate(frames):
        t = time.perf_counter()
        units = enc.encode(frame, i, keyframe=i == 0)
        encode_s += time.perf_counter() - t
        for unit in units:
            total += len(unit.data)
            decoded = dec.decode(unit.data)
            if i % every == every - 1 and decoded:
                ref = frame.to_ndarray(format="gray")
                got = decoded[-1].reformat(format="gray").to_ndarray()
                scores.append(_ssim(ref, got))
    del t0
    seconds = len(frames) / fps
    return total / seconds / 1000, float(np.mean(scores)), encode_s / len(frames) * 1000


def run_bandwidth(
    *,
    width: int = 1920,
    height: int = 1080,
    fps: int = 30,
    frames: int = 90,
    h264_rates: tuple[int, ...] = (2_000_000, 4_000_000),
    noise: int = 2,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """KB/s of each codec at the quality of H.264 at each of ``h264_rates``.

    H.264 at a rate sets the target SSIM; the JPEG quantiser (31 coarsest ..
    2 finest) and the HEVC rate (0.5 .. 8 Mb/s) are searched for the cheapest
    setting that reaches it (or the dearest one, marked, if none does).
    """
    say = progress or (lambda _m: None)
    rows: list[dict[str, Any]] = []
    say(f"bandwidth: making {frames} frames of {width}x{height}")
    pictures = _frames(width, height, fps, frames, noise)
    tried: dict[tuple[Codec, int], dict[str, Any]] = {}
    for h264_bitrate in h264_rates:

        def row(codec: Codec, value: int) -> dict[str, Any]:
            if (codec, value) not in tried:
                label = f"q={value}" if codec is Codec.MJPEG else f"{value / 1e6:g} Mb/s"
                say(f"bandwidth: {codec.name.lower()} {label}")
                kw = {"quality": value} if codec is Codec.MJPEG else {"bitrate": value}
                k, s, m = _encode_quality(codec, pictures, fps, **kw)
                tried[(codec, value)] = {
                    "codec": codec.name.lower(),
                    "setting": label,
                    "kbytes_per_s": k,
                    "ssim": s,
                    "encode_ms": m,
                }
            return tried[(codec, value)]

        h264 = row(Codec.H264, h264_bitrate)
        target = h264["ssim"]

        def cheapest(codec: Codec, values: list[int], target: float = target) -> dict[str, Any]:
            """Binary search over ``values`` ordered from cheapest to dearest."""
            lo, hi = 0, len(values) - 1
            if row(codec, values[hi])["ssim"] < target:
                return row(codec, values[hi])
            while lo < hi:
                mid = (lo + hi) // 2
                if row(codec, values[mid])["ssim"] >= target:
                    hi = mid
                else:
                    lo = mid + 1
            return row(codec, values[lo])

        group = [h264]
        if available(Codec.HEVC):
            group.append(
                cheapest(Codec.HEVC, [int(r * 250_000) for r in range(2, 33)])
            )  # 0.5 .. 8 Mb/s
        jpeg = cheapest(Codec.MJPEG, list(range(31, 1, -1)))
        group.append(jpeg)
        for r in group:
            r = dict(r)
            r["target_ssim"] = target
            r["anchor"] = f"{h264_bitrate / 1e6:g} Mb/s"
            r["vs_jpeg"] = r["kbytes_per_s"] / jpeg["kbytes_per_s"]
            r["reaches_target"] = r["ssim"] >= target - 1e-9
            rows.append(r)
    return {
        "benchmark": "bandwidth",
        "size": f"{width}x{height}",
        "fps": fps,
        "frames": frames,
        "noise": noise,
        "rows": rows,
    }


# --- processes on loopback ----------------------------------------------------------------


def _live(*args: str) -> list[str]:
    return [sys.executable, "-m", "vtremote.cli.main", "live", *args]


_SENT = re.compile(
    r"sent (\d+) frames \((\d+) keyframes, (\d+) bytes\), dropped (\d+), (\d+) keyframe requests, bitrate now (\d+)"
)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_stream(
    *,
    codec: str = "h264",
    transport: str = "tcp",
    width: int = 1920,
    height: int = 1080,
    fps: int = 30,
    seconds: float = 10.0,
    bitrate: int = 4_000_000,
    loss: float = 0.0,
    rate_bps: int = 0,
    greedy: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """One sender process -> (relay) -> one receiver process; the receiver's summary and CPU."""
    say = progress or (lambda _m: None)
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp, "recv.json"), Path(tmp, "recv.err")
        with out.open("wb") as o, err.open("wb") as e:
            recv = subprocess.Popen(
                _live("recv", "--listen", "127.0.0.1:0", "--json"), stdout=o, stderr=e
            )
        try:
            port = _wait_port(err, recv)
            relay = (
                LossyRelay(("127.0.0.1", port), loss=loss, rate_bps=rate_bps, greedy=greedy).start()
                if (loss or rate_bps)
                else None
            )
            to = relay.addr if relay else f"127.0.0.1:{port}"
            say(
                f"stream: {codec} over {transport}{f' loss {loss:.0%}' if loss else ''}"
                f"{f' at {rate_bps / 1e6:g} Mb/s' if rate_bps else ''}, {seconds:g} s of {width}x{height}@{fps}"
            )
            cpu0 = _children_cpu()
            send = subprocess.run(
                _live(
                    "send",
                    "-f",
                    "lavfi",
                    "-i",
                    camera_source(width, height, fps),
                    "--to",
                    to,
                    "--codec",
                    codec,
                    "--transport",
                    transport,
                    "-b:v",
                    str(bitrate),
                    "-t",
                    str(seconds),
                ),
                capture_output=True,
                text=True,
                timeout=seconds + 120,
                check=False,
            )
            sender_cpu = _children_cpu() - cpu0
            recv.wait(60)
            receiver_cpu = _children_cpu() - cpu0 - sender_cpu
            counters = dict(relay.counters.__dict__) if relay else {}
            if relay:
                relay.close()
        finally:
            if recv.poll() is None:
                recv.kill()
                recv.wait(5)
        if send.returncode != 0 or not out.read_text().strip():
            raise RuntimeError(
                f"live stream failed (sender {send.returncode}):\n{send.stderr}\n{err.read_text()}"
            )
        summary = json.loads(out.read_text())
    m = _SENT.search(send.stderr)
    sender = {}
    if m:
        keys = ("frames_sent", "keyframes", "bytes", "dropped", "keyframe_requests", "bitrate_end")
        sender = dict(zip(keys, map(int, m.groups()), strict=True))
    return {
        "benchmark": "stream",
        "codec": codec,
        "transport": transport,
        "size": f"{width}x{height}",
        "fps": fps,
        "seconds": seconds,
        "bitrate": bitrate,
        "loss": loss,
        "rate_bps": rate_bps,
        "greedy": greedy,
        "expected_frames": round(seconds * fps),
        "summary": summary,
        "sender": sender,
        "sender_cpu_s": round(sender_cpu, 2),
        "receiver_cpu_s": round(receiver_cpu, 2),
        "relay": counters,
    }


def _wait_port(err: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"listening on [^\s:]+:(\d+)", err.read_text(errors="replace"))
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"receiver did not start: {err.read_text(errors='replace')}")


def run_all(
    *, quick: bool = False, width: int = 1920, height: int = 1080, progress: Progress | None = None
) -> dict[str, Any]:
    seconds = 5.0 if quick else 10.0
    results: dict[str, Any] = {"machine": machine()}
    bw = run_bandwidth(width=width, height=height, frames=45 if quick else 90, progress=progress)
    results["bandwidth"] = bw
    results["latency"] = []
    for codec in ("h264", "hevc", "mjpeg"):
        if codec == "hevc" and not available(Codec.HEVC):
            continue
        r = run_stream(codec=codec, width=width, height=height, seconds=seconds, progress=progress)
        results["latency"].append(r)
    results["ratelimit"] = [
        run_stream(
            codec="h264",
            width=width,
            height=height,
            seconds=seconds * 1.5,
            bitrate=6_000_000,
            rate_bps=3_000_000,
            greedy=greedy,
            progress=progress,
        )
        for greedy in (False, True)
    ]
    results["loss"] = run_stream(
        codec="h264",
        transport="udp",
        width=width,
        height=height,
        seconds=seconds,
        loss=0.05,
        progress=progress,
    )
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- tables ----------------------------------------------------------------------------------


def tables(results: dict[str, Any]) -> str:
    """Markdown tables of :func:`run_all` results (what docs/benchmarks.md shows)."""
    out: list[str] = [f"*Machine: {results['machine']}*", ""]
    bw = results["bandwidth"]
    out += [
        f"#### Bandwidth at equal quality ({bw['size']}@{bw['fps']}, {bw['frames']} frames; "
        "target: H.264's luma SSIM at the live default rate)",
        "",
        "| target | codec | setting | KB/s | SSIM (Y) | vs JPEG | encode ms/frame |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in bw["rows"]:
        mark = "" if r["reaches_target"] else " (below target)"
        out.append(
            f"| H.264 {r['anchor']}: {r['target_ssim']:.4f} | {r['codec']} | {r['setting']}{mark} | {r['kbytes_per_s']:,.0f} | "
            f"{r['ssim']:.4f} | {r['vs_jpeg']:.2f} | {r['encode_ms']:.1f} |"
        )
    out += [
        "",
        "#### Capture-to-decoded latency on loopback, sender and receiver as separate processes",
        "",
        "| codec | transport | path | frames shown / captured | fps | KB/s | latency p50 / p99 / max ms | drops | keyframe requests | longest freeze ms | sender CPU s | receiver CPU s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [*results["latency"], *results["ratelimit"], results["loss"]]
    for r in rows:
        s = r["summary"]
        lat = s["latency_ms"]
        path = "direct"
        if r["rate_bps"]:
            buffer = "unbounded buffer" if r.get("greedy") else "small buffer"
            path = f"{r['rate_bps'] / 1e6:g} Mb/s bottleneck, {buffer}"
        if r["loss"]:
            path = f"{r['loss']:.0%} datagrams lost"
        out.append(
            f"| {r['codec']} | {r['transport']} | {path} | {s['frames']} / {r['expected_frames']} | {s['fps']:.1f} | "
            f"{s['kbytes_per_s']:,.0f} | {lat['p50']} / {lat['p99']} / {lat['max']} | {s['drops']} | "
            f"{s['keyframe_requests']} | {s['max_gap_ms']} | {r['sender_cpu_s']} | {r['receiver_cpu_s']} |"
        )
    lo = results["loss"]
    src = lo["summary"]["sources"][0] if lo["summary"]["sources"] else {}
    out.append("")
    for rl in results["ratelimit"]:
        out.append(
            f"- Bottleneck ({'unbounded' if rl.get('greedy') else 'small'} buffer): -b:v {rl['bitrate'] / 1e6:g}M "
            f"(start at half); adaptive bitrate ended at {rl['sender'].get('bitrate_end', 0) / 1e6:.2f} Mb/s; "
            f"{rl['sender'].get('dropped', 'n/a')} frames dropped by the sender."
        )
    out += [
        f"- Loss: {lo['relay'].get('dropped', 0)} of {lo['relay'].get('datagrams', 0)} datagrams dropped by the relay; "
        f"{src.get('retransmit_requests', 0)} asked again (NACK), {src.get('recovered_datagrams', 0)} recovered; "
        f"{src.get('lost', 0)} pictures not shown; longest freeze {src.get('max_gap_ms', 0)} ms.",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``vtremote bench live [--quick] [--json] [--size WxH]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="vtremote bench live",
        allow_abbrev=False,
        description="Live streaming: bandwidth at equal quality, latency, bottleneck, loss.",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--quick", action="store_true", help="5 s streams and 45 frames for the bandwidth"
    )
    parser.add_argument("--size", default="1920x1080", help="picture size (default 1920x1080)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    width, _, height = args.size.partition("x")
    progress = (
        None if args.quiet else (lambda m: print(f"bench live: {m}", file=sys.stderr, flush=True))
    )
    results = run_all(quick=args.quick, width=int(width), height=int(height), progress=progress)
    print(json.dumps(results, indent=2) if args.json else tables(results))
    return 0
