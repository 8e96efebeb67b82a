"""``vtremote bench fleet``: several servers for one file, and servers killed mid-stream.

Every server is a real ``vtremoted --engine null --throttle-fps R`` process on
loopback: the null engine costs almost nothing and the test-only throttle
(vtremote/testing/faults.py) makes each session take at most R frames per second, so
N servers behave like N boxes of a known speed and this machine's cores are
not what is measured. Two parts:

* **aggregate**: one clip through a job (:class:`vtremote.pipeline.Job`) with
  1, 2, 3, 4 servers of one session each: one server is a plain session,
  N >= 2 is ``-vt_remote_parallel N`` (segments of whole GOPs). Reported:
  frames/s and the ratio to N x one server's.
* **kills**: a :class:`~vtremote.client.failover.FailoverEncoder` on a pool of
  3 servers; in each run the serving server gets SIGKILL (or SIGSTOP, a
  stall) after a random frame. Reported per run: frames lost or doubled
  (packets vs frames, by pts), whether the packets' pts and dts, in order,
  equal an undisturbed run's, and
  the recovery time: from the kill to the delivery of the packet of the
  first frame the dead server had not answered.
* **transcode kills**: the same for a packet transcode
  (:mod:`vtremote.bench.fleet_transcode`): lost/repeated output frames, pts against an
  undisturbed run, wire bytes over source plus output bytes.
* **hls**: a packet transcode of an H.264 file to HLS (``hls_time`` 2 s) on
  1..4 servers of one session each (``--engine x264`` throttled, so the output
  is real), every count with ``-vt_remote_parallel N``. Reported against N = 1
  measured in the same run: the aggregate speed ratio (goal >= 0.9 x N) and
  the time to the first segment file (goal <= 1); one plain session (no
  segments) on one server is measured too, for reference.
"""

from __future__ import annotations

import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av

from vtremote.bench.common import Progress, ServerProcess, machine_info, make_frames
from vtremote.bench.fleet_transcode import KillPlan, transcode_kill_runs
from vtremote.client.config import PoolMember
from vtremote.client.failover import FailoverEncoder
from vtremote.client.pool import Pool
from vtremote.pipeline.job import Job
from vtremote.pipeline.spec import InputSpec, JobSpec, OutputSpec, RemoteOptions

#: The test-only throttle of each server in the aggregate part (frames/s per session).
THROTTLE_FPS = 60.0
#: Frames of the aggregate clip: 12 segments of 60, so 1..4 servers divide it evenly.
AGGREGATE_FRAMES = 720
GOP = 60


def _servers(
    n: int, throttle: float, max_sessions: int, engine: str = "null"
) -> list[ServerProcess]:
    args = ["--throttle-fps", f"{throttle:g}", "--max-sessions", str(max_sessions)]
    servers: list[ServerProcess] = []
    try:
        for _ in range(n):
            servers.append(ServerProcess(engine, args).start())
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


def aggregate_run(n: int, *, frames: int, size: tuple[int, int], throttle: float) -> dict[str, Any]:
    """One clip with ``n`` servers (one session each); frames/s of the whole job."""
    servers = _servers(n, throttle, 1)
    try:
        w, h = size
        spec = JobSpec(
            inputs=[InputSpec(f"testsrc2=size={w}x{h}:rate=30", format="lavfi")],
            output=OutputSpec(
                os.devnull,
                format="null",
                codecs={"v": "h264_videotoolbox_remote"},
                max_frames=frames,
                video={"gop": GOP},
                remote=RemoteOptions(
                    host=",".join(s.address for s in servers), parallel=n if n > 1 else 0
                ),
            ),
            overwrite=True,
        )
        return timed_run(n, spec)
    finally:
        for s in servers:
            s.stop()


def timed_run(
    n: int, spec: JobSpec, on_start: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """Run a job (``on_start`` gets its start time): seconds, frames/s, segments by server."""
    t0 = time.perf_counter()
    if on_start is not None:
        on_start(t0)
    stats = Job(spec).run()
    elapsed = time.perf_counter() - t0
    return {
        "servers": n,
        "frames": stats.frames,
        "seconds": round(elapsed, 3),
        "fps": round(stats.frames / elapsed, 1),
        "segments": (stats.remote[0].get("segments_by_server") if stats.remote else None),
    }


#: HLS part: segment length (s) and the source's keyframe interval (frames at 30 fps).
HLS_TIME = 2.0
HLS_GOP = 60


def make_h264_source(path: str, seconds: float, size: tuple[int, int]) -> str:
    """An MKV with H.264 video, a keyframe every :data:`HLS_GOP` frames (the HLS source)."""
    frames = make_frames("testsrc2", size[0], size[1], round(seconds * 30), pix_fmt="yuv420p")
    with av.open(path, "w", format="matroska") as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.codec_context.options = {
            "preset": "ultrafast",
            "x264-params": f"keyint={HLS_GOP}:min-keyint={HLS_GOP}:scenecut=0:log=-1",
        }
        for frame in frames:
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def _first_file(path: str, stop: threading.Event, t0: float, found: list[float]) -> None:
    while not stop.is_set() and not found:
        if os.path.exists(path):
            found.append(time.perf_counter() - t0)
        else:
            time.sleep(0.002)


def hls_run(
    n: int, source: str, folder: str, throttle: float, parallel: bool = True
) -> dict[str, Any]:
    """The source to HLS on ``n`` throttled x264 servers at once (``parallel`` False: one plain
    session): seconds, frames/s and the time to the first segment file."""
    servers = _servers(n, throttle, 1, engine="x264")
    out = os.path.join(folder, f"n{n}{'' if parallel else '-plain'}")
    os.mkdir(out)
    first: list[float] = []
    stop = threading.Event()

    def watch(t0: float) -> None:
        args = (os.path.join(out, "s0.ts"), stop, t0, first)
        threading.Thread(target=_first_file, args=args, daemon=True).start()

    try:
        spec = JobSpec(
            inputs=[InputSpec(source)],
            output=OutputSpec(
                os.path.join(out, "s.m3u8"),
                format="hls",
                codecs={"v": "h264_videotoolbox_remote"},
                video={"gop": HLS_GOP},
                format_options={"hls_time": f"{HLS_TIME:g}", "hls_playlist_type": "vod"},
                remote=RemoteOptions(
                    host=",".join(s.address for s in servers), parallel=n if parallel else 0
                ),
            ),
            overwrite=True,
        )
        row = timed_run(n, spec, watch)
    finally:
        stop.set()
        for s in servers:
            s.stop()
    row["first_segment_s"] = round(first[0], 3) if first else None
    row["parallel"] = parallel
    return row


def hls_runs(
    counts: list[int],
    *,
    seconds: float,
    size: tuple[int, int],
    throttle: float,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """:func:`hls_run` for each count, with ratios against N = 1 of the same run."""
    with tempfile.TemporaryDirectory(prefix="vtremote-fleet-hls-") as folder:
        source = make_h264_source(os.path.join(folder, "src.mkv"), seconds, size)
        rows = []
        for n in sorted(set(counts) | {1}):
            rows.append(hls_run(n, source, folder, throttle))
            if progress is not None:
                progress(
                    f"fleet hls: {n} server(s): {rows[-1]['fps']} frames/s, first segment "
                    f"{rows[-1]['first_segment_s']} s"
                )
        # For reference: one plain packet-transcode session (no segments).
        plain = hls_run(1, source, folder, throttle, parallel=False)
    one = rows[0]
    for r in [*rows, plain]:
        r["speed_vs_n_times_one"] = round(r["fps"] / (r["servers"] * one["fps"]), 3)
        r["first_segment_vs_one"] = (
            round(r["first_segment_s"] / one["first_segment_s"], 3)
            if r["first_segment_s"] and one["first_segment_s"]
            else None
        )
    return {
        "seconds": seconds,
        "size": f"{size[0]}x{size[1]}",
        "hls_time": HLS_TIME,
        "rows": rows,
        "one_session": plain,
    }


def _encode(
    pool: Pool,
    frames: list[av.VideoFrame],
    timeout: float,
    kill: tuple[int, int] | None,
    servers: dict[str, ServerProcess],
) -> dict[str, Any]:
    """One FailoverEncoder run; ``kill`` = (frame index, signal) for the serving server."""
    w, h = frames[0].width, frames[0].height
    packets: list[av.Packet[Any]] = []
    t_kill: float | None = None
    victim = ""
    recovered: float | None = None
    with FailoverEncoder(
        pool,
        "h264",
        width=w,
        height=h,
        time_base=Fraction(1, 30),
        framerate=30,
        gop=30,
        timeout=timeout,
        inflight=16,
    ) as enc:
        seam: int | None = None
        for i, frame in enumerate(frames):
            got = enc.encode(frame)
            packets += got
            if seam is None and enc.switches:
                seam = enc.switches[0].at_pts
            if seam is not None and recovered is None and any(p.pts == seam for p in got):
                recovered = time.perf_counter()
            if kill is not None and i == kill[0]:
                victim = enc.server
                proc = servers[victim].proc
                assert proc is not None
                os.kill(proc.pid, kill[1])
                t_kill = time.perf_counter()
        got = enc.flush()
        packets += got
        if seam is None and enc.switches:
            seam = enc.switches[0].at_pts
        if seam is not None and recovered is None and any(p.pts == seam for p in got):
            recovered = time.perf_counter()
        failovers = enc.failovers
    pts = [p.pts for p in packets]
    return {
        "victim": victim,
        "packets": len(packets),
        "lost": len(set(range(len(frames))) - set(pts)),
        "doubled": len(pts) - len(set(pts)),
        "pts": pts,
        "dts": [p.dts for p in packets],
        "failovers": failovers,
        "recovery_ms": round((recovered - t_kill) * 1000, 1) if recovered and t_kill else None,
    }


def kill_runs(
    *,
    runs: int,
    stops: int,
    frames: int,
    size: tuple[int, int],
    throttle: float,
    timeout: float,
    seed: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``runs`` SIGKILL runs and ``stops`` SIGSTOP runs against a pool of 3 servers."""
    rng = random.Random(seed)
    clip = make_frames("testsrc2", size[0], size[1], frames)  # pts 0.. in 1/30
    servers = {s.address: s for s in _servers(3, throttle, 4)}
    try:

        def pool() -> Pool:
            return Pool("bench", tuple(PoolMember(a) for a in servers))

        reference = _encode(pool(), clip, timeout, None, servers)
        results = []
        for r in range(runs + stops):
            sig = signal.SIGKILL if r < runs else signal.SIGSTOP
            at = rng.randrange(frames)
            res = _encode(pool(), clip, timeout, (at, sig), servers)
            res["signal"] = signal.Signals(sig).name
            res["at_frame"] = at
            res["same_as_undisturbed"] = (
                res["pts"] == reference["pts"] and res["dts"] == reference["dts"]
            )
            res["dts_increasing"] = all(
                b > a for a, b in zip(res["dts"], res["dts"][1:], strict=False)
            )
            del res["pts"], res["dts"]
            results.append(res)
            if progress is not None:
                progress(
                    f"fleet kill run {r + 1}/{runs + stops}: {res['signal']} at frame {at}, "
                    f"lost {res['lost']}, doubled {res['doubled']}, recovery {res['recovery_ms']} "
                    "ms"
                )
            # bring the victim back as a fresh process on a new port
            old = servers.pop(res["victim"])
            proc = old.proc
            if proc is not None and sig == signal.SIGSTOP:
                os.kill(proc.pid, signal.SIGCONT)
            old.stop()
            fresh = _servers(1, throttle, 4)[0]
            servers[fresh.address] = fresh
    finally:
        for s in servers.values():
            s.stop()
    recoveries = [r["recovery_ms"] for r in results if r["recovery_ms"] is not None]
    kills = [r for r in results if r["signal"] == "SIGKILL"]
    stops_ = [r for r in results if r["signal"] == "SIGSTOP"]
    return {
        "runs": results,
        "frames": frames,
        "timeout_s": timeout,
        "lost_total": sum(r["lost"] for r in results),
        "doubled_total": sum(r["doubled"] for r in results),
        "all_same_as_undisturbed": all(r["same_as_undisturbed"] for r in results),
        "kill_recovery_ms_max": max((r["recovery_ms"] or 0 for r in kills), default=None),
        "stop_recovery_ms_max": max((r["recovery_ms"] or 0 for r in stops_), default=None),
        "recovery_ms_median": sorted(recoveries)[len(recoveries) // 2] if recoveries else None,
    }


def run_fleet(
    *,
    counts: list[int],
    frames: int = AGGREGATE_FRAMES,
    size: tuple[int, int] = (320, 180),
    throttle: float = THROTTLE_FPS,
    runs: int = 20,
    stops: int = 5,
    kill_frames: int = 180,
    kill_throttle: float = 120.0,
    timeout: float = 1.0,
    seed: int = 1,
    transcode_runs: int | None = None,
    hls_counts: list[int] | None = None,
    hls_seconds: float = 24.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The parts (``transcode_runs``: packet transcode kills, default ``runs``; ``hls_counts``:
    parallel HLS server counts); a JSON-ready dict."""
    aggregate = []
    for n in counts:
        res = aggregate_run(n, frames=frames, size=size, throttle=throttle)
        aggregate.append(res)
        if progress is not None:
            progress(f"fleet aggregate: {n} server(s): {res['fps']} frames/s")
    one = next((a["fps"] for a in aggregate if a["servers"] == 1), None)
    for a in aggregate:
        a["vs_n_times_one"] = round(a["fps"] / (a["servers"] * one), 3) if one else None
    plan = KillPlan(kill_frames, (160, 96), kill_throttle, timeout, seed)
    kills = (
        kill_runs(
            runs=runs,
            stops=stops,
            frames=plan.frames,
            size=plan.size,
            throttle=plan.throttle,
            timeout=plan.timeout,
            seed=plan.seed,
            progress=progress,
        )
        if runs + stops
        else None
    )
    t_runs = runs if transcode_runs is None else transcode_runs
    transcode = transcode_kill_runs(t_runs, plan, progress) if t_runs else None
    hls = (
        hls_runs(hls_counts, seconds=hls_seconds, size=size, throttle=throttle, progress=progress)
        if hls_counts
        else None
    )
    return {
        "benchmark": "fleet",
        "machine": machine_info(),
        "throttle_fps": throttle,
        "size": f"{size[0]}x{size[1]}",
        "aggregate": aggregate,
        "kills": kills,
        "transcode_kills": transcode,
        "hls": hls,
    }
