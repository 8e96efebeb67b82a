"""``vtremote bench``: measure the wire path, the offload and the bandwidth on this machine.

Subcommands (each starts its own real ``vtremoted`` process on loopback)::

    vtremote bench wire       [--json] [--frames N] [--size 1920x1080]
    vtremote bench offload    [--json] [--frames N]
    vtremote bench bandwidth  [--json] [--quick]
    vtremote bench decode     [--json] [--frames N]
    vtremote bench latency    [--json] [--frames N]
    vtremote bench all        [--json] [--quick]
    vtremote bench transcode  [--json] [--seconds S]             (vtremote.bench.transcode)
    vtremote bench live       [--json] [--quick] [--size 1920x1080]   (vtremote.bench.live)

Tables go to stdout (rich when stdout is a terminal, plain text otherwise);
``--json`` prints the results as JSON instead. Progress goes to stderr. The
measuring code is in :mod:`vtremote.bench`; this module parses argv and
calls it; :mod:`vtremote.cli.bench_tables` draws the tables. ``docs/benchmarks.md`` is regenerated from the same
tables by ``benchmarks/make_docs.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from vtremote import bench as bm
from vtremote.cli.bench_tables import (  # the table names are re-exported for benchmarks/make_docs.py
    Table,
    bandwidth_tables,
    print_tables,
    render_markdown,
    render_plain,
    tables_for,
)
from vtremote.cli.memory import retain_freed_frames
from vtremote.errors import VTRemoteError

__all__ = [
    "Table",
    "bandwidth_tables",
    "build_parser",
    "main",
    "print_tables",
    "render_markdown",
    "render_plain",
    "run",
    "tables_for",
]


# --- argv ------------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        size = int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1920x1080, got {text!r}") from None
    if size[0] <= 0 or size[1] <= 0 or size[0] % 2 or size[1] % 2:
        raise argparse.ArgumentTypeError(f"size must be positive and even, got {text!r}")
    return size


def _csv(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}; got {text!r}")
        return items

    return parse


def _sizes(text: str) -> list[tuple[int, int]]:
    return [_size(x) for x in text.split(",") if x.strip()]


def _formats(text: str) -> list[tuple[str, int, int, int]]:
    """``720p30,4K60`` (rows of the reference table) or ``640x360@30``."""
    known = {
        f"{label.split(' ')[0]}{fps}": (label, w, h, fps)
        for label, w, h, fps in bm.BANDWIDTH_FORMATS
    }
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        if item in known:
            out.append(known[item])
            continue
        size, _, fps = item.partition("@")
        try:
            w, h = _size(size)
            rate = int(fps)
        except (argparse.ArgumentTypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"format {item!r} is neither one of {', '.join(known)} nor WIDTHxHEIGHT@FPS"
            ) from None
        out.append((f"{w}x{h}", w, h, rate))
    if not out:
        raise argparse.ArgumentTypeError("no formats given")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vtremote bench",
        description="Measure vtremote against a real vtremoted on loopback.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="BENCHMARK")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
        p.add_argument("--quiet", action="store_true", help="no progress on stderr")

    p = sub.add_parser(
        "wire",
        help="frames/s through client -> server (null engine) -> client vs a raw socket",
        allow_abbrev=False,
    )
    common(p)
    p.add_argument("--frames", type=int, default=600, help="frames per timed run (default 600)")
    p.add_argument(
        "--size", type=_size, default=(1920, 1080), help="picture size (default 1920x1080)"
    )
    p.add_argument(
        "--distinct",
        type=int,
        default=16,
        help="distinct source frames cycled through (default 16)",
    )
    p.add_argument(
        "--repeat", type=int, default=4, help="runs per mode; the best is reported (default 4)"
    )
    p.add_argument(
        "--window", type=int, default=None, help="in-flight frames (default: the client's default)"
    )
    p.add_argument(
        "--sources", type=_csv(bm.SOURCES), default=list(bm.SOURCES), help="testsrc2,noise"
    )
    p.add_argument("--modes", type=_csv(bm.MODES), default=list(bm.MODES), help="none,lz4,zstd")

    p = sub.add_parser(
        "offload",
        help="client CPU per 1000 frames: remote x264 encode vs local libx264",
        allow_abbrev=False,
    )
    common(p)
    p.add_argument(
        "--frames", type=int, default=1000, help="frames encoded each way (default 1000)"
    )
    p.add_argument(
        "--distinct",
        type=int,
        default=60,
        help="distinct source frames cycled through (default 60)",
    )
    p.add_argument(
        "--probe-frames",
        type=int,
        default=200,
        help="frames per compression mode when choosing one (default 200)",
    )
    p.add_argument("--source", choices=bm.SOURCES, default="testsrc2")
    p.add_argument(
        "--compression", choices=bm.MODES, default=None, help="skip the choice and use this mode"
    )
    p.add_argument(
        "--size", type=_size, default=(1920, 1080), help="picture size (default 1920x1080)"
    )

    p = sub.add_parser(
        "bandwidth",
        help="required Mb/s per format, codec and compression (reference README table)",
        allow_abbrev=False,
    )
    common(p)
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="media seconds per clip (default 1, 0.5 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="0.5 s clips")
    p.add_argument(
        "--formats",
        type=_formats,
        default=None,
        help="rows to measure: labels like 720p30,4K60 or sizes like 640x360@30 (default: the reference rows)",
    )
    p.add_argument(
        "--sources", type=_csv(bm.SOURCES), default=list(bm.SOURCES), help="testsrc2,noise"
    )
    p.add_argument("--modes", type=_csv(bm.MODES), default=list(bm.MODES), help="none,lz4,zstd")

    p = sub.add_parser(
        "decode", help="remote decode fps vs local PyAV decode of the same file", allow_abbrev=False
    )
    common(p)
    p.add_argument("--frames", type=int, default=300, help="frames in the clip (default 300)")
    p.add_argument(
        "--size", type=_size, default=(1920, 1080), help="picture size (default 1920x1080)"
    )
    p.add_argument(
        "--codecs", type=_csv(("h264", "hevc")), default=["h264", "hevc"], help="h264,hevc"
    )
    p.add_argument(
        "--modes",
        type=_csv(bm.MODES),
        default=["none"],
        help="wire compression of the returned frames",
    )

    p = sub.add_parser(
        "latency", help="realtime encode latency p50/p99 at 720p and 1080p", allow_abbrev=False
    )
    common(p)
    p.add_argument("--frames", type=int, default=300, help="frames per size (default 300)")
    p.add_argument(
        "--rate", type=int, default=30, help="frames per second handed to the encoder (default 30)"
    )
    p.add_argument(
        "--sizes",
        type=_sizes,
        default=[(1280, 720), (1920, 1080)],
        help="picture sizes (default 1280x720,1920x1080)",
    )

    p = sub.add_parser(
        "all", help="every benchmark (what benchmarks/make_docs.py runs)", allow_abbrev=False
    )
    common(p)
    p.add_argument(
        "--quick", action="store_true", help="fewer frames and shorter clips (about 3 minutes here)"
    )

    p = sub.add_parser(
        "fleet",
        help="one clip on 1..4 throttled servers; servers killed mid-stream",
        allow_abbrev=False,
    )
    common(p)
    p.add_argument(
        "--servers",
        type=lambda t: [int(x) for x in t.split(",")],
        default=[1, 2, 3, 4],
        help="server counts to run (default 1,2,3,4)",
    )
    p.add_argument("--frames", type=int, default=720, help="frames of the clip (default 720)")
    p.add_argument(
        "--throttle-fps", type=float, default=60.0, help="each server's test-only throttle (60)"
    )
    p.add_argument("--kills", type=int, default=20, help="runs with SIGKILL at a random frame (20)")
    p.add_argument(
        "--stops", type=int, default=5, help="runs with SIGSTOP (a stall) at a random frame (5)"
    )
    p.add_argument(
        "--timeout", type=float, default=1.0, help="client timeout in the kill runs, s (1)"
    )
    p.add_argument("--seed", type=int, default=1, help="random seed of the kill runs (1)")

    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    progress = bm.Progress(enabled=not args.quiet)
    if args.command == "wire":
        return bm.run_wire(
            width=args.size[0],
            height=args.size[1],
            frames=args.frames,
            distinct=args.distinct,
            repeat=args.repeat,
            window=args.window,
            sources=args.sources,
            modes=args.modes,
            progress=progress,
        )
    if args.command == "offload":
        return bm.run_offload(
            frames=args.frames,
            distinct=args.distinct,
            probe_frames=args.probe_frames,
            source=args.source,
            compression=args.compression,
            width=args.size[0],
            height=args.size[1],
            progress=progress,
        )
    if args.command == "bandwidth":
        seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 1.0)
        return bm.run_bandwidth(
            seconds=seconds,
            sources=args.sources,
            modes=args.modes,
            formats=args.formats or bm.BANDWIDTH_FORMATS,
            progress=progress,
        )
    if args.command == "decode":
        return bm.run_decode(
            frames=args.frames,
            width=args.size[0],
            height=args.size[1],
            codecs=args.codecs,
            modes=args.modes,
            progress=progress,
        )
    if args.command == "latency":
        return bm.run_latency(
            frames=args.frames, rate=args.rate, sizes=args.sizes, progress=progress
        )
    if args.command == "fleet":
        from vtremote.bench.fleet import run_fleet

        return run_fleet(
            counts=args.servers,
            frames=args.frames,
            throttle=args.throttle_fps,
            runs=args.kills,
            stops=args.stops,
            timeout=args.timeout,
            seed=args.seed,
            progress=progress,
        )
    if args.command == "all":
        return run_all(quick=args.quick, progress=progress)
    raise AssertionError(args.command)


#: Arguments of each benchmark under ``all`` (full, quick); benchmarks/make_docs.py
#: runs the same ones, each in its own process. Full: about 4-5 minutes here; quick: 2-3.
ALL_ARGS: dict[str, tuple[list[str], list[str]]] = {
    "wire": (["--frames", "600", "--repeat", "4"], ["--frames", "300", "--repeat", "2"]),
    "offload": (
        ["--frames", "1000", "--probe-frames", "200"],
        ["--frames", "300", "--probe-frames", "100"],
    ),
    "bandwidth": (["--seconds", "1"], ["--seconds", "0.5"]),
    "decode": (["--frames", "300"], ["--frames", "120"]),
    "latency": (["--frames", "300"], ["--frames", "90"]),
}


def run_all(
    *, quick: bool = False, progress: bm.Progress | None = None, only: Sequence[str] | None = None
) -> dict[str, Any]:
    """Every benchmark in turn, with the arguments of :data:`ALL_ARGS`."""
    parser = build_parser()
    results: dict[str, Any] = {}
    for name, (full, short) in ALL_ARGS.items():
        if only is not None and name not in only:
            continue
        args = parser.parse_args([name, *(short if quick else full)])
        args.quiet = progress is None or not progress.enabled
        results[name] = run(args)
    return {"benchmark": "all", "quick": quick, "machine": bm.machine_info(), "results": results}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vtremote bench``: 0 ok, 1 runtime error, 2 usage, 130 Ctrl-C."""
    if argv and argv[0] == "transcode":  # packet transcode has its own argument set
        from vtremote.bench.transcode import main as transcode_main

        return transcode_main(argv[1:])
    if argv and argv[0] == "live":  # live streaming has its own measuring code
        from vtremote.bench.live import main as live_main

        return live_main(list(argv[1:]))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    # The null engine's CONFIGURE_ACK warning ("packets are placeholders") would be
    # logged once per session; the benchmark knows, so keep the client quiet meanwhile.
    client_log = logging.getLogger("vtremote.client")
    level = client_log.level
    client_log.setLevel(logging.ERROR)
    retain_freed_frames()  # as the vtremote command does for its client side (cli/memory.py)
    try:
        result = run(args)
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, OSError, ValueError, VTRemoteError) as e:
        print(f"vtremote bench {args.command}: {e}", file=sys.stderr)
        return 1
    finally:
        client_log.setLevel(level)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        print_tables(tables_for(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
