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
* ``ratelimit``: the same through a TCP bottleneck (the test relay
  :class:`~vtremote.testing.shim.LossyRelay`, e.g. 3 Mb/s) with adaptive bitrate.
* ``loss``: UDP with a share of datagrams dropped; shown frames, repairs,
  keyframe requests and the longest freeze.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from vtremote.live.codec import EncoderConfig, LiveDecoder, LiveEncoder, available
from vtremote.live.protocol import Codec
from vtremote.testing.shim import LossyRelay

#: Where a step is told (one line, no timestamp); None: nowhere.
Say = Callable[[str], None]


def _silent(_message: str) -> None:
    pass


def camera_source(width: int, height: int, fps: int, noise: int = 2) -> str:
    """The lavfi graph of the camera-like test picture (moving, with temporal sensor-like noise)."""
    graph = f"testsrc2=size={width}x{height}:rate={fps}"
    return f"{graph},noise=alls={noise}:allf=t" if noise else graph


def machine() -> str:
    """The machine line of the live tables (cores, load at start, Python and PyAV versions)."""
    cpus = os.cpu_count() or 0
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return (
        f"{platform.machine()}, {cpus} CPU cores (load {load:.1f} at start), "
        f"Python {platform.python_version()}, PyAV {av.__version__}"
    )


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
    seconds = len(frames) / fps
    return total / seconds / 1000, float(np.mean(scores)), encode_s / len(frames) * 1000


class _QualitySearch:
    """Encodes of one set of pictures, each setting measured once however often it is asked."""

    def __init__(self, pictures: list[av.VideoFrame], fps: int, say: Say) -> None:
        self.pictures, self.fps, self.say = pictures, fps, say
        self._tried: dict[tuple[Codec, int], dict[str, Any]] = {}

    def row(self, codec: Codec, value: int) -> dict[str, Any]:
        """``value``: the JPEG quantiser for MJPEG, the bitrate for H.264 and HEVC."""
        if (codec, value) not in self._tried:
            label = f"q={value}" if codec is Codec.MJPEG else f"{value / 1e6:g} Mb/s"
            self.say(f"bandwidth: {codec.name.lower()} {label}")
            kw = {"quality": value} if codec is Codec.MJPEG else {"bitrate": value}
            k, s, m = _encode_quality(codec, self.pictures, self.fps, **kw)
            self._tried[(codec, value)] = {
                "codec": codec.name.lower(),
                "setting": label,
                "kbytes_per_s": k,
                "ssim": s,
                "encode_ms": m,
            }
        return self._tried[(codec, value)]

    def cheapest(self, codec: Codec, values: list[int], target: float) -> dict[str, Any]:
        """Binary search over ``values`` ordered from cheapest to dearest."""
        lo, hi = 0, len(values) - 1
        if self.row(codec, values[hi])["ssim"] < target:
            return self.row(codec, values[hi])
        while lo < hi:
            mid = (lo + hi) // 2
            if self.row(codec, values[mid])["ssim"] >= target:
                hi = mid
            else:
                lo = mid + 1
        return self.row(codec, values[lo])


def run_codec_bandwidth(
    *,
    width: int = 1920,
    height: int = 1080,
    fps: int = 30,
    frames: int = 90,
    h264_rates: tuple[int, ...] = (2_000_000, 4_000_000),
    noise: int = 2,
    progress: Say | None = None,
) -> dict[str, Any]:
    """KB/s of each codec at the quality of H.264 at each of ``h264_rates``.

    H.264 at a rate sets the target SSIM; the JPEG quantiser (31 coarsest ..
    2 finest) and the HEVC rate (0.5 .. 8 Mb/s) are searched for the cheapest
    setting that reaches it (or the dearest one, marked, if none does).
    """
    say = progress or _silent
    rows: list[dict[str, Any]] = []
    say(f"bandwidth: making {frames} frames of {width}x{height}")
    search = _QualitySearch(_frames(width, height, fps, frames, noise), fps, say)
    for h264_bitrate in h264_rates:
        h264 = search.row(Codec.H264, h264_bitrate)
        target = h264["ssim"]
        group = [h264]
        if available(Codec.HEVC):
            hevc_rates = [int(r * 250_000) for r in range(2, 33)]  # 0.5 .. 8 Mb/s
            group.append(search.cheapest(Codec.HEVC, hevc_rates, target))
        jpeg = search.cheapest(Codec.MJPEG, list(range(31, 1, -1)), target)
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
    r"sent (\d+) frames \((\d+) keyframes, (\d+) bytes\), dropped (\d+), "
    r"(\d+) keyframe requests, bitrate now (\d+)"
)
_SENT_KEYS = ("frames_sent", "keyframes", "bytes", "dropped", "keyframe_requests", "bitrate_end")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@dataclass(frozen=True)
class StreamCase:
    """One stream run: what the sender sends and the path it goes through."""

    codec: str = "h264"
    transport: str = "tcp"
    width: int = 1920
    height: int = 1080
    fps: int = 30
    seconds: float = 10.0
    bitrate: int = 4_000_000
    loss: float = 0.0  # share of UDP datagrams the relay drops
    rate_bps: int = 0  # the relay's bottleneck (0: none)
    greedy: bool = False  # the bottleneck's buffer never pushes back

    def label(self) -> str:
        loss = f" loss {self.loss:.0%}" if self.loss else ""
        rate = f" at {self.rate_bps / 1e6:g} Mb/s" if self.rate_bps else ""
        return (
            f"stream: {self.codec} over {self.transport}{loss}{rate}, "
            f"{self.seconds:g} s of {self.width}x{self.height}@{self.fps}"
        )

    def sender_argv(self, to: str, key_file: Path) -> list[str]:
        return _live(
            "send",
            "--key-file",
            str(key_file),
            "-f",
            "lavfi",
            "-i",
            camera_source(self.width, self.height, self.fps),
            "--to",
            to,
            "--codec",
            self.codec,
            "--transport",
            self.transport,
            "-b:v",
            str(self.bitrate),
            "-t",
            str(self.seconds),
        )

    def relay(self, port: int) -> contextlib.AbstractContextManager[LossyRelay | None]:
        """The lossy or narrow path to the receiver at ``port``; None when it is direct."""
        if not (self.loss or self.rate_bps):
            return contextlib.nullcontext()
        target = ("127.0.0.1", port)
        return LossyRelay(target, loss=self.loss, rate_bps=self.rate_bps, greedy=self.greedy)

    def result(self) -> dict[str, Any]:
        """The first keys of a stream result: the case itself."""
        return {
            "benchmark": "stream",
            "codec": self.codec,
            "transport": self.transport,
            "size": f"{self.width}x{self.height}",
            "fps": self.fps,
            "seconds": self.seconds,
            "bitrate": self.bitrate,
            "loss": self.loss,
            "rate_bps": self.rate_bps,
            "greedy": self.greedy,
            "expected_frames": round(self.seconds * self.fps),
        }


class _ReceiverProcess:
    """``vtremote live recv --json`` as a child process, its output in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.out, self.err = folder / "recv.json", folder / "recv.err"
        self.key_file = folder / "live.key"  # made by the receiver, read by the sender

    def __enter__(self) -> _ReceiverProcess:
        with self.out.open("wb") as o, self.err.open("wb") as e:
            self.proc = subprocess.Popen(
                _live(
                    "recv", "--listen", "127.0.0.1:0", "--json", "--key-file", str(self.key_file)
                ),
                stdout=o,
                stderr=e,
            )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def port(self) -> int:
        """The port of its ``listening on`` line (up to 30 s)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = re.search(r"listening on [^\s:]+:(\d+)", self.err.read_text(errors="replace"))
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"receiver did not start: {self.err.read_text(errors='replace')}")

    def summary(self, send: subprocess.CompletedProcess[str]) -> dict[str, Any]:
        """Its JSON summary; RuntimeError with both sides' stderr when the stream failed."""
        if send.returncode != 0 or not self.out.read_text().strip():
            raise RuntimeError(
                f"live stream failed (sender {send.returncode}):\n{send.stderr}\n"
                f"{self.err.read_text()}"
            )
        result: dict[str, Any] = json.loads(self.out.read_text())
        return result


def run_stream(case: StreamCase, progress: Say | None = None) -> dict[str, Any]:
    """One sender process -> (relay) -> one receiver process; the receiver's summary and CPU."""
    say = progress or _silent
    with tempfile.TemporaryDirectory() as tmp, _ReceiverProcess(Path(tmp)) as receiver:
        port = receiver.port()
        with case.relay(port) as relay:
            say(case.label())
            cpu0 = _children_cpu()
            send = subprocess.run(
                case.sender_argv(relay.addr if relay else f"127.0.0.1:{port}", receiver.key_file),
                capture_output=True,
                text=True,
                timeout=case.seconds + 120,
                check=False,
            )
            sender_cpu = _children_cpu() - cpu0
            receiver.proc.wait(60)
            receiver_cpu = _children_cpu() - cpu0 - sender_cpu
            counters = dict(relay.counters.__dict__) if relay else {}
        summary = receiver.summary(send)
    m = _SENT.search(send.stderr)
    sender = dict(zip(_SENT_KEYS, map(int, m.groups()), strict=True)) if m else {}
    return {
        **case.result(),
        "summary": summary,
        "sender": sender,
        "sender_cpu_s": round(sender_cpu, 2),
        "receiver_cpu_s": round(receiver_cpu, 2),
        "relay": counters,
    }


def run_live(
    *, quick: bool = False, width: int = 1920, height: int = 1080, progress: Say | None = None
) -> dict[str, Any]:
    """Every live measurement (what ``vtremote bench live`` prints)."""
    seconds = 5.0 if quick else 10.0
    frames = 45 if quick else 90
    results: dict[str, Any] = {"machine": machine()}
    results["bandwidth"] = run_codec_bandwidth(
        width=width, height=height, frames=frames, progress=progress
    )
    cases = {
        "latency": [
            StreamCase(codec, width=width, height=height, seconds=seconds)
            for codec in ("h264", "hevc", "mjpeg")
            if codec != "hevc" or available(Codec.HEVC)
        ],
        "ratelimit": [
            StreamCase(
                width=width,
                height=height,
                seconds=seconds * 1.5,
                bitrate=6_000_000,
                rate_bps=3_000_000,
                greedy=greedy,
            )
            for greedy in (False, True)
        ],
        "loss": [
            StreamCase(transport="udp", width=width, height=height, seconds=seconds, loss=0.05)
        ],
    }
    for name, group in cases.items():
        results[name] = [run_stream(case, progress) for case in group]
    results["loss"] = results["loss"][0]
    return results


# --- tables ----------------------------------------------------------------------------------


def tables(results: dict[str, Any]) -> str:
    """Markdown tables of :func:`run_live` results (what docs/benchmarks.md shows)."""
    out: list[str] = [f"*Machine: {results['machine']}*", ""]
    out += _bandwidth_table(results["bandwidth"])
    out += ["", *_stream_table([*results["latency"], *results["ratelimit"], results["loss"]])]
    out += ["", *_stream_notes(results["ratelimit"], results["loss"])]
    return "\n".join(out) + "\n"


def _bandwidth_table(bw: dict[str, Any]) -> list[str]:
    out = [
        f"#### Bandwidth at equal quality ({bw['size']}@{bw['fps']}, {bw['frames']} frames; "
        "target: H.264's luma SSIM at the live default rate)",
        "",
        "| target | codec | setting | KB/s | SSIM (Y) | vs JPEG | encode ms/frame |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in bw["rows"]:
        mark = "" if r["reaches_target"] else " (below target)"
        out.append(
            f"| H.264 {r['anchor']}: {r['target_ssim']:.4f} | {r['codec']} | "
            f"{r['setting']}{mark} | {r['kbytes_per_s']:,.0f} | "
            f"{r['ssim']:.4f} | {r['vs_jpeg']:.2f} | {r['encode_ms']:.1f} |"
        )
    return out


def _stream_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "#### Capture-to-decoded latency on loopback, sender and receiver as separate processes",
        "",
        "| codec | transport | path | frames shown / captured | fps | KB/s "
        "| latency p50 / p99 / max ms | drops | keyframe requests | longest freeze ms "
        "| sender CPU s | receiver CPU s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
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
            f"| {r['codec']} | {r['transport']} | {path} | "
            f"{s['frames']} / {r['expected_frames']} | {s['fps']:.1f} | "
            f"{s['kbytes_per_s']:,.0f} | {lat['p50']} / {lat['p99']} / {lat['max']} | "
            f"{s['drops']} | {s['keyframe_requests']} | {s['max_gap_ms']} | "
            f"{r['sender_cpu_s']} | {r['receiver_cpu_s']} |"
        )
    return out


def _stream_notes(ratelimit: list[dict[str, Any]], lo: dict[str, Any]) -> list[str]:
    out = []
    for rl in ratelimit:
        buffer = "unbounded" if rl.get("greedy") else "small"
        end = rl["sender"].get("bitrate_end", 0) / 1e6
        out.append(
            f"- Bottleneck ({buffer} buffer): -b:v {rl['bitrate'] / 1e6:g}M "
            f"(start at half); adaptive bitrate ended at {end:.2f} Mb/s; "
            f"{rl['sender'].get('dropped', 'n/a')} frames dropped by the sender."
        )
    src = lo["summary"]["sources"][0] if lo["summary"]["sources"] else {}
    relay = lo["relay"]
    out.append(
        f"- Loss: {relay.get('dropped', 0)} of {relay.get('datagrams', 0)} datagrams dropped "
        f"by the relay; {src.get('retransmit_requests', 0)} asked again (NACK), "
        f"{src.get('recovered_datagrams', 0)} recovered; {src.get('lost', 0)} pictures not "
        f"shown; longest freeze {src.get('max_gap_ms', 0)} ms."
    )
    return out


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
    results = run_live(quick=args.quick, width=int(width), height=int(height), progress=progress)
    print(json.dumps(results, indent=2) if args.json else tables(results))
    return 0
