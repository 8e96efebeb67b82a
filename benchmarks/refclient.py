"""The reference FFmpeg client against vtremoted:
`python benchmarks/refclient.py [--rounds N] [--json]`.

Needs ``../shared/refclient/ffmpeg`` (the reference build, beside the repository).
Starts its own ``vtremoted`` processes on loopback and times, best of ``--rounds``:

* lock-step decode of H.264 without B-frames (300 frames 1920x1080, 120 frames
  320x240), on ``--engine x264`` and ``--engine null``;
* lock-step decode of H.264 with ``-bf 3`` (60 frames 640x360) at the client's
  default 5 s receive timeout, with the number of frames FFmpeg wrote;
* encode of 60 frames 640x360 with ``-vt_remote_inflight`` 1, 2, 8, 16, 128, and with
  ``-bf 2`` (H.264 and HEVC) at windows 1, 2, 3 and 16;
* the same encode job (900 frames of 1080p ``testsrc2`` to ``--engine null``,
  uncompressed) with the reference client and with ``vtremote``, wall and CPU.

Results go to docs/benchmarks.md ("Reference client") by hand; the machine is
shared, so take the best of several rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]
REFCLIENT = REPO.parent / "shared" / "refclient" / "ffmpeg"
LISTENING = re.compile(r"listening on (\S+):(\d+)")


def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vtremote.cli.serve",
            "--listen",
            "127.0.0.1:0",
            "--max-sessions",
            "0",
            "--log-level",
            "warning",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    m = LISTENING.search(proc.stdout.readline())
    if not m:
        proc.kill()
        raise SystemExit("vtremoted did not start")
    return proc, f"{m.group(1)}:{m.group(2)}"


def timed(cmd: list[str]) -> tuple[float, float, int, str]:
    """(wall s, child CPU s, return code, stderr) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode, proc.stderr


def best(rounds: int, cmd: list[str]) -> dict[str, float]:
    runs = [timed(cmd) for _ in range(rounds)]
    for _, _, rc, err in runs:
        if rc != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({rc}):\n{err}")
    wall, cpu = min((w, c) for w, c, _, _ in runs)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def h264_file(path: Path, frames: int, width: int, height: int, bframes: int) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.max_b_frames = bframes
        stream.codec_context.options = {
            "preset": "veryfast",
            "x264-params": f"keyint=30:bframes={bframes}:log=-1",
        }
        src = av.open(f"testsrc2=size={width}x{height}:rate=30", format="lavfi")
        for i, frame in enumerate(src.decode(video=0)):
            if i == frames:
                break
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        src.close()
    return path


def ff(*args: str) -> list[str]:
    return [str(REFCLIENT), "-hide_banner", "-nostdin", "-v", "error", *args]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if not REFCLIENT.is_file():
        print(f"reference client not found: {REFCLIENT}", file=sys.stderr)
        return 2
    results: dict[str, object] = {"load_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        big = h264_file(d / "1080.mp4", 300, 1920, 1080, 0)
        small = h264_file(d / "240.mp4", 120, 320, 240, 0)
        bf = h264_file(d / "bf.mp4", 60, 640, 360, 3)
        for engine in ("x264", "null"):
            proc, addr = start_server("--engine", engine)
            try:
                for name, src in (("1080p_300", big), ("320x240_120", small)):
                    results[f"lockstep_decode_{name}_{engine}"] = best(
                        a.rounds,
                        ff(
                            "-c:v",
                            "h264_videotoolbox_remote",
                            "-vt_remote_host",
                            addr,
                            "-i",
                            str(src),
                            "-f",
                            "null",
                            "-",
                        ),
                    )
                if engine == "x264":
                    md5 = d / "bf.md5"
                    wall, _, _, _ = timed(
                        ff(
                            "-c:v",
                            "h264_videotoolbox_remote",
                            "-vt_remote_host",
                            addr,
                            "-i",
                            str(bf),
                            "-f",
                            "framemd5",
                            "-y",
                            str(md5),
                        )
                    )
                    written = sum(
                        1 for line in md5.read_text().splitlines() if line.startswith("0,")
                    )
                    results["bframe_decode_640x360_60"] = {
                        "wall_s": round(wall, 3),
                        "frames_written": written,
                    }
                    for window in (1, 2, 8, 16, 128):
                        results[f"encode_640x360_60_inflight_{window}"] = best(
                            a.rounds,
                            ff(
                                "-f",
                                "lavfi",
                                "-i",
                                "testsrc2=size=640x360:rate=30",
                                "-frames:v",
                                "60",
                                "-pix_fmt",
                                "nv12",
                                "-c:v",
                                "h264_videotoolbox_remote",
                                "-vt_remote_host",
                                addr,
                                "-vt_remote_inflight",
                                str(window),
                                "-b:v",
                                "2M",
                                "-g",
                                "30",
                                "-f",
                                "null",
                                "-",
                            ),
                        )
                    for codec in ("h264", "hevc"):
                        for window in (1, 2, 3, 16):
                            results[f"encode_640x360_60_{codec}_bf2_inflight_{window}"] = best(
                                a.rounds,
                                ff(
                                    "-f",
                                    "lavfi",
                                    "-i",
                                    "testsrc2=size=640x360:rate=30",
                                    "-frames:v",
                                    "60",
                                    "-pix_fmt",
                                    "nv12",
                                    "-c:v",
                                    f"{codec}_videotoolbox_remote",
                                    "-vt_remote_host",
                                    addr,
                                    "-vt_remote_inflight",
                                    str(window),
                                    "-vt_remote_timeout_ms",
                                    "1000",
                                    "-bf",
                                    "2",
                                    "-b:v",
                                    "2M",
                                    "-g",
                                    "30",
                                    "-f",
                                    "null",
                                    "-",
                                ),
                            )
                else:
                    src = [
                        "-f",
                        "lavfi",
                        "-i",
                        "testsrc2=size=1920x1080:rate=30",
                        "-frames:v",
                        "900",
                    ]
                    remote = [
                        "-c:v",
                        "h264_videotoolbox_remote",
                        "-vt_remote_host",
                        addr,
                        "-vt_remote_wire_compression",
                        "none",
                        "-f",
                        "null",
                        "-",
                    ]
                    ours = [
                        sys.executable,
                        "-m",
                        "vtremote.cli.main",
                        "-hide_banner",
                        "-v",
                        "error",
                        *src,
                        *remote,
                    ]
                    for _ in range(a.rounds):  # interleaved: the machine's load hits both alike
                        for key, cmd in (
                            (
                                "encode_1080p_900_null_reference",
                                ff(*src, "-pix_fmt", "nv12", *remote),
                            ),
                            ("encode_1080p_900_null_vtremote", ours),
                        ):
                            r = best(1, cmd)
                            prev = results.get(key)
                            if not isinstance(prev, dict) or r["wall_s"] < prev["wall_s"]:
                                results[key] = r
            finally:
                proc.terminate()
                proc.wait(30)
    if a.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
