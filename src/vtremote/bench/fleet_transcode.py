"""``vtremote bench fleet``, packet transcode part: a server killed mid-stream under a
:class:`~vtremote.client.failover_transcoder.FailoverTranscoder`.

A clip is encoded here once (libx264, GOP 30, 2 B-frames) into source packets; each run
sends them through a FailoverTranscoder on a pool of 3 real ``vtremoted --engine x264``
processes and SIGKILLs the serving one after a random source packet. Reported per run:
output frames lost or repeated against an undisturbed run (by pts; must be 0), whether the
pts, in decode order, equal the undisturbed run's, whether dts strictly increase, and the
wire bytes (both ways, the replay included) over the source plus output bytes.
"""

from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from vtremote.bench.common import Progress, ServerProcess, make_frames
from vtremote.client.config import PoolMember
from vtremote.client.failover_transcoder import FailoverTranscoder
from vtremote.client.pool import Pool

#: Source GOP and frame rate of the clip.
SOURCE_GOP = 30
RATE = 30


def source_packets(frames: list[av.VideoFrame]) -> tuple[list[av.Packet[Any]], bytes]:
    """The clip as H.264 packets (pts/dts in 1/RATE) and its extradata (Annex B)."""
    ctx: Any = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height = frames[0].width, frames[0].height
    ctx.pix_fmt, ctx.time_base, ctx.framerate = "yuv420p", Fraction(1, RATE), RATE
    ctx.flags |= 1 << 22  # global header: the parameter sets as extradata
    ctx.options = {"preset": "veryfast", "x264-params": f"keyint={SOURCE_GOP}:bframes=2:log=-1"}
    ctx.open()
    packets: list[av.Packet[Any]] = []
    for i, frame in enumerate(frames):
        frame.pts = i
        packets += ctx.encode(frame.reformat(format="yuv420p"))
    packets += ctx.encode(None)
    return packets, bytes(ctx.extradata or b"")


def _transcode(
    pool: Pool,
    source: tuple[list[av.Packet[Any]], bytes],
    size: tuple[int, int],
    timeout: float,
    kill_at: int | None,
    servers: dict[str, ServerProcess],
) -> dict[str, Any]:
    """One run; ``kill_at`` = the source packet after which the serving server is killed."""
    packets, extradata = source
    out: list[av.Packet[Any]] = []
    victim = ""
    with FailoverTranscoder(
        pool,
        input_codec="h264",
        input_extradata=extradata,
        input_time_base=Fraction(1, RATE),
        input_width=size[0],
        input_height=size[1],
        framerate=RATE,
        codec="h264",
        filters=f"scale={size[0] // 2}:{size[1] // 2}",
        bitrate=200_000,
        gop=SOURCE_GOP,
        timeout=timeout,
        inflight=8,
    ) as tc:
        for i, pkt in enumerate(packets):
            copy: av.Packet[Any] = av.Packet(bytes(pkt))
            copy.pts, copy.dts, copy.is_keyframe = pkt.pts, pkt.dts, pkt.is_keyframe
            copy.time_base = Fraction(1, RATE)
            out += tc.transcode(copy)
            if kill_at is not None and i == kill_at:
                victim = tc.server
                proc = servers[victim].proc
                assert proc is not None
                os.kill(proc.pid, signal.SIGKILL)
        out += tc.flush()
        st = tc.stats
        failovers = tc.failovers
    source_bytes = sum(p.size for p in packets)
    output_bytes = sum(p.size for p in out)
    return {
        "victim": victim,
        "packets": len(out),
        "pts": [p.pts for p in out],
        "dts": [p.dts for p in out],
        "failovers": failovers,
        "wire_ratio": round((st.bytes_sent + st.bytes_received) / (source_bytes + output_bytes), 3),
    }


@dataclass(frozen=True, slots=True)
class KillPlan:
    """What every kill run of the fleet benchmark uses: clip length and size, the servers'
    throttle (frames/s per session), the failover timeout (s), the random seed."""

    frames: int
    size: tuple[int, int]
    throttle: float
    timeout: float
    seed: int


def transcode_kill_runs(
    runs: int, plan: KillPlan, progress: Progress | None = None
) -> dict[str, Any]:
    """``runs`` SIGKILL runs of a packet transcode against a pool of 3 servers."""
    rng = random.Random(plan.seed)
    size, timeout, frames = plan.size, plan.timeout, plan.frames
    source = source_packets(make_frames("testsrc2", size[0], size[1], frames))
    args = ["--throttle-fps", f"{plan.throttle:g}", "--max-sessions", "4"]
    servers: dict[str, ServerProcess] = {}
    try:
        for _ in range(3):
            s = ServerProcess("x264", args).start()
            servers[s.address] = s

        def pool() -> Pool:
            return Pool("bench", tuple(PoolMember(a) for a in servers))

        reference = _transcode(pool(), source, size, timeout, None, servers)
        results = []
        for r in range(runs):
            at = rng.randrange(len(source[0]))
            res = _transcode(pool(), source, size, timeout, at, servers)
            pts, dts = res.pop("pts"), res.pop("dts")
            res.update(
                at_packet=at,
                lost=len(set(reference["pts"]) - set(pts)),
                repeated=len(pts) - len(set(pts)),
                same_pts_as_undisturbed=pts == reference["pts"],
                dts_increasing=all(b > a for a, b in zip(dts, dts[1:], strict=False)),
            )
            results.append(res)
            if progress is not None:
                progress(
                    f"fleet transcode kill run {r + 1}/{runs}: at packet {at}, lost "
                    f"{res['lost']}, repeated {res['repeated']}, wire ratio {res['wire_ratio']}"
                )
            servers.pop(res["victim"]).stop()
            fresh = ServerProcess("x264", args).start()
            servers[fresh.address] = fresh
    finally:
        for s in servers.values():
            s.stop()
    return {
        "runs": results,
        "frames": frames,
        "undisturbed_wire_ratio": reference["wire_ratio"],
        "lost_total": sum(r["lost"] for r in results),
        "repeated_total": sum(r["repeated"] for r in results),
        "all_same_pts_as_undisturbed": all(r["same_pts_as_undisturbed"] for r in results),
        "all_dts_increasing": all(r["dts_increasing"] for r in results),
        "wire_ratio_max": max((r["wire_ratio"] for r in results), default=None),
    }
