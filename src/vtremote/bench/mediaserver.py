"""Time to the first HLS segment of a media server's line: what a viewer waits for after play
or seek. ``vtremote bench mediaserver [--json] [--seconds S] [--seek S] [--runs N]``.

The line is Jellyfin's HLS transcode (H.264 + AAC, ``-copyts``, 3 s segments, the colour and
scale filters it writes), from the start and from ``-ss SEEK -noaccurate_seek`` (a seek or
a resume). Each run is a fresh process, as the media server starts one, timed from its start:

* ``vtremote-ffmpeg``: the line through ``python -m vtremote.cli.ffmpeg`` with a vtremoted
  (engine x264) on loopback: the source's packets travel, the server decodes and encodes;
* ``local``: the same front end with no server, encoding here with PyAV (decode + libx264),
  the baseline of the ratios;
* ``ffmpeg``: Debian's ``ffmpeg`` running the same line, when one is on the PATH (shown, not
  the baseline: it is another program).

For each: ``first segment`` is the time until the playlist lists the first segment (the
process started, the source probed, sessions opened, ``hls_time`` of content decoded and
encoded from the first keyframe, the segment flushed); ``startup`` the time the program takes
to answer ``-version`` (interpreter and imports), the part of it no encoder shares. The best
of ``--runs`` is kept; ratios are against ``local`` measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.video.frame import PictureType

from vtremote.bench.common import ServerProcess, machine_info, make_frames

SEGMENT = 3
RATE = 30
#: Jellyfin's video filter for a 1280-wide rendition (it writes the same with its sizes).
JELLYFIN_VF = (
    "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709,"
    r"scale=trunc(min(max(iw\,ih*a)\,min(1280\,720*a))/2)*2:"
    r"trunc(min(max(iw/a\,ih)\,min(1280/a\,720))/2)*2,"
    "format=yuv420p"
)
WAYS = ("vtremote-ffmpeg", "local", "ffmpeg")


def make_movie(path: Path, seconds: float, size: tuple[int, int], gop_seconds: float) -> Path:
    """A library file: H.264 (a keyframe every ``gop_seconds``, B-frames) and AAC, in MKV."""
    n = round(seconds * RATE)
    frames = make_frames("testsrc2", size[0], size[1], min(n, 60), pix_fmt="yuv420p")
    with av.open(str(path), "w", format="matroska") as out:
        video = out.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        gop = round(gop_seconds * RATE)
        video.codec_context.options = {
            "preset": "ultrafast",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2:log=-1",
        }
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        for i in range(n):
            frame = frames[i % len(frames)]
            frame.pict_type = PictureType.NONE  # lavfi marks every frame I: no forced keyframes
            frame.pts = i
            frame.time_base = Fraction(1, RATE)
            for pkt in video.encode(frame):
                out.mux(pkt)
        for pkt in video.encode(None):
            out.mux(pkt)
        silence = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for plane in silence.planes:
            plane.update(bytes(plane.buffer_size))
        silence.sample_rate = 48000
        for i in range(int(seconds * 48000 / 1024)):
            silence.pts = i * 1024
            for pkt in audio.encode(silence):
                out.mux(pkt)
        for pkt in audio.encode(None):
            out.mux(pkt)
    return path


def jellyfin_line(src: Path, out: Path, seek: float) -> list[str]:
    """Jellyfin's HLS line for ``src`` from ``seek`` seconds (0: from the start)."""
    start = ["-ss", f"{seek:.3f}", "-noaccurate_seek"] if seek else []
    first = round(seek / SEGMENT)
    return [
        *start,
        "-f",
        "matroska,webm",
        "-i",
        f"file:{src}",
        *("-map_metadata", "-1", "-map_chapters", "-1", "-threads", "0"),
        *("-map", "0:0", "-map", "0:1", "-map", "-0:s"),
        *("-codec:v:0", "libx264", "-preset", "veryfast", "-crf", "23"),
        *("-maxrate", "4000000", "-bufsize", "8000000", "-profile:v:0", "high"),
        *("-force_key_frames:0", f"expr:gte(t,{seek:g}+n_forced*{SEGMENT})"),
        *("-sc_threshold:v:0", "0", "-vf", JELLYFIN_VF),
        *("-codec:a:0", "aac", "-ac", "2", "-ab", "192000"),
        *("-copyts", "-avoid_negative_ts", "disabled", "-max_muxing_queue_size", "2048"),
        *("-f", "hls", "-max_delay", "5000000", "-hls_time", str(SEGMENT)),
        *("-hls_segment_type", "mpegts", "-start_number", str(first)),
        *("-hls_segment_filename", str(out / "s%d.ts"), "-hls_list_size", "0"),
        *("-y", str(out / "main.m3u8")),
    ]


def _environment(tmp: Path, host: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREMOTE_")}
    env.update(HOME=str(tmp / "home"), VTREMOTE_STATE_DIR=str(tmp / "state"))
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "vtremote.toml"
    servers = f'["{host}"]' if host else "[]"
    config.write_text(f'[ffmpeg]\nservers = {servers}\non_unavailable = "local"\n')
    env["VTREMOTE_CONFIG"] = str(config)
    env["XDG_CONFIG_HOME"] = str(tmp / "config")
    return env


def time_first_segment(
    command: list[str], out: Path, env: dict[str, str], timeout: float = 120.0
) -> float:
    """Start ``command`` and time it until the playlist lists the first segment (a media
    server serves a segment once it is listed); the process is then stopped."""
    out.mkdir(parents=True, exist_ok=True)
    playlist = out / "main.m3u8"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while not (playlist.exists() and ".ts" in playlist.read_text(errors="replace")):
            if proc.poll() is not None or time.monotonic() - t0 > timeout:
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"{command[:3]} made no segment: {err[-2000:]}")
            time.sleep(0.005)
        return time.monotonic() - t0
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def time_startup(prefix: list[str], env: dict[str, str]) -> float:
    """How long the program takes to answer ``-version``: interpreter, imports, exit."""
    t0 = time.monotonic()
    subprocess.run([*prefix, "-version"], env=env, capture_output=True, check=True, timeout=60)
    return time.monotonic() - t0


def run(
    *,
    seconds: float = 20.0,
    seek: float = 10.0,
    runs: int = 3,
    size: tuple[int, int] = (1920, 1080),
) -> dict[str, Any]:
    """Every way, from the start and after the seek, best of ``runs`` each."""
    ffmpeg = shutil.which("ffmpeg")
    ways = [w for w in WAYS if w != "ffmpeg" or ffmpeg]
    with tempfile.TemporaryDirectory(prefix="vtremote-bench-ms-") as tmp_dir:
        tmp = Path(tmp_dir)
        src = make_movie(tmp / "movie.mkv", seconds, size, gop_seconds=4.0)
        server = ServerProcess(engine="x264").start()
        try:
            commands = {
                "vtremote-ffmpeg": ([sys.executable, "-m", "vtremote.cli.ffmpeg"], server.address),
                "local": ([sys.executable, "-m", "vtremote.cli.ffmpeg"], None),
                "ffmpeg": ([ffmpeg or "ffmpeg", "-nostdin", "-v", "error"], None),
            }
            rows: list[dict[str, Any]] = []
            for case, at in (("from the start", 0.0), ("after a seek", seek)):
                for way in ways:
                    prefix, host = commands[way]
                    env = _environment(tmp / f"env-{way}", host)
                    times = []
                    for i in range(runs + 1):  # the first run warms the page cache: not kept
                        out = tmp / f"{way}-{at:g}-{i}"
                        times.append(
                            time_first_segment(prefix + jellyfin_line(src, out, at), out, env)
                        )
                    startup = min(time_startup(prefix, env) for _ in range(runs))
                    rows.append(
                        {
                            "case": case,
                            "way": way,
                            "startup_s": startup,
                            "first_segment_s": min(times[1:]),
                        }
                    )
        finally:
            server.stop()
    for row in rows:
        base = next(r for r in rows if r["case"] == row["case"] and r["way"] == "local")
        row["ratio"] = row["first_segment_s"] / base["first_segment_s"]
        row["after_startup_s"] = row["first_segment_s"] - row["startup_s"]
    return {
        "benchmark": "mediaserver",
        "machine": machine_info(),
        "source": {"seconds": seconds, "size": f"{size[0]}x{size[1]}", "gop_s": 4.0},
        "seek_s": seek,
        "segment_s": SEGMENT,
        "runs": runs,
        "ffmpeg": ffmpeg,
        "rows": rows,
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"time to first HLS segment, {result['source']['size']} H.264 source, "
        f"{result['segment_s']} s segments, seek to {result['seek_s']:g} s "
        f"(best of {result['runs']}; ratio against local)",
        f"{'case':16} {'way':16} {'first segment s':>16} {'ratio':>6} "
        f"{'startup s':>10} {'after startup s':>16}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['case']:16} {r['way']:16} {r['first_segment_s']:16.2f} {r['ratio']:5.2f}x "
            f"{r['startup_s']:10.2f} {r['after_startup_s']:16.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``vtremote bench mediaserver`` (and ``benchmarks/mediaserver.py``)."""
    ap = argparse.ArgumentParser(
        prog="vtremote bench mediaserver",
        description="Time to the first HLS segment of Jellyfin's line through vtremote-ffmpeg "
        "and locally, from the start and after a seek (docs/benchmarks.md).",
    )
    ap.add_argument("--seconds", type=float, default=20.0, help="source length (default 20)")
    ap.add_argument("--seek", type=float, default=10.0, help="where the seek goes (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per way (default 3)")
    ap.add_argument("--size", default="1920x1080", help="source size (default 1920x1080)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    w, _, h = args.size.partition("x")
    result = run(seconds=args.seconds, seek=args.seek, runs=args.runs, size=(int(w), int(h)))
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


__all__ = [
    "format_table",
    "jellyfin_line",
    "main",
    "make_movie",
    "run",
    "time_first_segment",
    "time_startup",
]
