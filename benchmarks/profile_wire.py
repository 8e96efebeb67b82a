"""Profile the wire path: where client and server spend their time per frame.

    python benchmarks/profile_wire.py [--mode none|lz4|zstd] [--source testsrc2|noise] [--seconds 8]

Streams 1920x1080 NV12 frames through the real client to a real
``vtremoted --engine null`` (as ``vtremote bench wire`` does) for a few
seconds and reports, per frame: throughput, client and server CPU, server page
faults; then the hottest functions of both sides:

* server: sampled with py-spy (``pip install py-spy``; skipped when it is not
  installed), self time per Python function (``--native`` adds C frames);
* client: ``cProfile`` of the streaming thread (time blocked in ``sendmsg``
  while the server catches up shows up as ``sendmsg``).

docs/benchmarks.md summarises what this showed and what was changed.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import logging
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time

from vtremote import bench as bm
from vtremote.cli.memory import retain_freed_frames


def top_spy(path: str, limit: int) -> list[tuple[float, str]]:
    """Self-time share per function from py-spy's raw (collapsed stack) output."""
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frame = stack.split(";")[-1]
            leaf[
                frame.split(" (")[0]
                + (
                    " (" + frame.split(" (")[1].split(")")[0].rsplit("/", 1)[-1] + ")"
                    if " (" in frame
                    else ""
                )
            ] += n
    return [(n * 100.0 / total, name) for name, n in leaf.most_common(limit)] if total else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=bm.MODES, default="none")
    parser.add_argument("--source", choices=bm.SOURCES, default="testsrc2")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long to stream (default 8)")
    parser.add_argument("--native", action="store_true", help="py-spy also samples C frames")
    parser.add_argument(
        "--top", type=int, default=15, help="functions listed per side (default 15)"
    )
    args = parser.parse_args(argv)

    logging.getLogger("vtremote.client").setLevel(logging.ERROR)
    retain_freed_frames()
    pics = bm.make_frames(args.source, 1920, 1080, 16)
    spy_bin = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    have_spy = os.path.exists(spy_bin)
    out_dir = tempfile.mkdtemp(prefix="vtremote-profile-")
    spy_out = os.path.join(out_dir, "server.txt")
    with bm.ServerProcess("null") as server:
        assert server.pid is not None
        bm.encode_session(
            server.address, pics, 64, compression=args.mode, window=None, server_pid=None
        )  # warm-up
        spy = None
        if have_spy:
            cmd = [
                spy_bin,
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(int(args.seconds) + 1),
                "--rate",
                "250",
                "--format",
                "raw",
                "--threads",
                "-o",
                spy_out,
            ]
            if args.native:
                cmd.append("--native")
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        profile = cProfile.Profile()
        faults0 = bm.process_minor_faults(server.pid)
        frames = 0
        client_cpu = server_cpu = wall = 0.0
        end = time.monotonic() + args.seconds
        profile.enable()
        while time.monotonic() < end:
            r = bm.encode_session(
                server.address, pics, 300, compression=args.mode, window=None, server_pid=server.pid
            )
            frames += r["frames"]
            wall += r["seconds"]
            client_cpu += r["client_cpu_s"]
            server_cpu += r["server_cpu_s"] or 0.0
        profile.disable()
        faults1 = bm.process_minor_faults(server.pid)
        if spy is not None:
            spy.wait()
    print(f"{args.source} {args.mode}: {frames / wall:.0f} frames/s over {frames} frames")
    print(
        f"client CPU {client_cpu * 1000 / frames:.3f} ms/frame, server CPU "
        f"{server_cpu * 1000 / frames:.3f} ms/frame",
        end="",
    )
    if faults0 is not None and faults1 is not None:
        print(f", server page faults {(faults1 - faults0) / frames:.0f}/frame")
    else:
        print()
    if have_spy and os.path.exists(spy_out):
        print("\nserver (py-spy, self time of all threads; idle waits included):")
        for share, name in top_spy(spy_out, args.top):
            print(f"  {share:5.1f}%  {name}")
    else:
        print("\nserver: py-spy not installed (pip install py-spy); no server profile")
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(args.top)
    print("\nclient (cProfile of the streaming thread, by own time):")
    print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:6000])
    shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
