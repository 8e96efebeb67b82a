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
    vtremote bench mediaserver [--json] [--seconds S] [--seek S]   (vtremote.bench.mediaserver)
    vtremote bench tonemap    [--json] [--frames N] [--width W --height H]  (vtremote.bench.tonemap)

Tables go to stdout (rich when stdout is a terminal, plain text otherwise);
``--json`` prints the results as JSON instead. Progress goes to stderr. The
measuring code is in :mod:`vtremote.bench`; this module parses argv (from
the tables :data:`BENCHMARKS` and :data:`RUNNERS`) and calls it;
:mod:`vtremote.cli.bench_tables` draws the tables. ``docs/benchmarks.md`` is
regenerated from the same tables by ``benchmarks/make_docs.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from vtremote import bench as bm

# The table names are re-exported for benchmarks/make_docs.py.
from vtremote.cli.bench_tables import (
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


Option = tuple[tuple[str, ...], dict[str, Any]]

_SIZE: Option = (
    ("--size",),
    {"type": _size, "default": (1920, 1080), "help": "picture size (default 1920x1080)"},
)
_SOURCES: Option = (
    ("--sources",),
    {"type": _csv(bm.SOURCES), "default": list(bm.SOURCES), "help": "testsrc2,noise"},
)
_MODES: Option = (
    ("--modes",),
    {"type": _csv(bm.MODES), "default": list(bm.MODES), "help": "none,lz4,zstd"},
)


def _frames(default: int, what: str) -> Option:
    return (("--frames",), {"type": int, "default": default, "help": f"{what} (default {default})"})


def _int(flag: str, default: int, help_text: str) -> Option:
    return ((flag,), {"type": int, "default": default, "help": help_text})


def _flag(flag: str, help_text: str) -> Option:
    return ((flag,), {"action": "store_true", "help": help_text})


#: Every benchmark of the parser: (help, options after --json and --quiet), in help order.
BENCHMARKS: dict[str, tuple[str, tuple[Option, ...]]] = {
    "wire": (
        "frames/s through client -> server (null engine) -> client vs a raw socket",
        (
            _frames(600, "frames per timed run"),
            _SIZE,
            _int("--distinct", 16, "distinct source frames cycled through (default 16)"),
            _int("--repeat", 4, "runs per mode; the best is reported (default 4)"),
            (
                ("--window",),
                {
                    "type": int,
                    "default": None,
                    "help": "in-flight frames (default: the client's default)",
                },
            ),
            _SOURCES,
            _MODES,
        ),
    ),
    "offload": (
        "client CPU per 1000 frames: remote x264 encode vs local libx264",
        (
            _frames(1000, "frames encoded each way"),
            _int("--distinct", 60, "distinct source frames cycled through (default 60)"),
            _int(
                "--probe-frames", 200, "frames per compression mode when choosing one (default 200)"
            ),
            (("--source",), {"choices": bm.SOURCES, "default": "testsrc2"}),
            (
                ("--compression",),
                {"choices": bm.MODES, "default": None, "help": "skip the choice and use this mode"},
            ),
            _SIZE,
        ),
    ),
    "bandwidth": (
        "required Mb/s per format, codec and compression (reference README table)",
        (
            (
                ("--seconds",),
                {
                    "type": float,
                    "default": None,
                    "help": "media seconds per clip (default 1, 0.5 with --quick)",
                },
            ),
            _flag("--quick", "0.5 s clips"),
            (
                ("--formats",),
                {
                    "type": _formats,
                    "default": None,
                    "help": "rows to measure: labels like 720p30,4K60 or sizes like 640x360@30 "
                    "(default: the reference rows)",
                },
            ),
            _SOURCES,
            _MODES,
        ),
    ),
    "decode": (
        "remote decode fps vs local PyAV decode of the same file",
        (
            _frames(300, "frames in the clip"),
            _SIZE,
            (
                ("--codecs",),
                {"type": _csv(("h264", "hevc")), "default": ["h264", "hevc"], "help": "h264,hevc"},
            ),
            (
                ("--modes",),
                {
                    "type": _csv(bm.MODES),
                    "default": ["none"],
                    "help": "wire compression of the returned frames",
                },
            ),
        ),
    ),
    "latency": (
        "realtime encode latency p50/p99 at 720p and 1080p",
        (
            _frames(300, "frames per size"),
            _int("--rate", 30, "frames per second handed to the encoder (default 30)"),
            (
                ("--sizes",),
                {
                    "type": _sizes,
                    "default": [(1280, 720), (1920, 1080)],
                    "help": "picture sizes (default 1280x720,1920x1080)",
                },
            ),
        ),
    ),
    "all": (
        "every benchmark (what benchmarks/make_docs.py runs)",
        (_flag("--quick", "fewer frames and shorter clips (about 3 minutes here)"),),
    ),
    "fleet": (
        "one clip on 1..4 throttled servers; servers killed mid-stream",
        (
            (
                ("--servers",),
                {
                    "type": lambda t: [int(x) for x in t.split(",")],
                    "default": [1, 2, 3, 4],
                    "help": "server counts to run (default 1,2,3,4)",
                },
            ),
            _frames(720, "frames of the clip"),
            (
                ("--throttle-fps",),
                {"type": float, "default": 60.0, "help": "each server's test-only throttle (60)"},
            ),
            _int("--kills", 20, "runs with SIGKILL at a random frame (20)"),
            _int("--stops", 5, "runs with SIGSTOP (a stall) at a random frame (5)"),
            (
                ("--timeout",),
                {"type": float, "default": 1.0, "help": "client timeout in the kill runs, s (1)"},
            ),
            _int("--seed", 1, "random seed of the kill runs (1)"),
            (
                ("--hls-servers",),
                {
                    "type": lambda t: [int(x) for x in t.split(",") if x],
                    "default": [1, 2, 3, 4],
                    "help": "server counts of the parallel HLS part (default 1,2,3,4; '' skips)",
                },
            ),
            (
                ("--hls-seconds",),
                {"type": float, "default": 24.0, "help": "seconds of the HLS source (24)"},
            ),
        ),
    ),
}

#: The options of every benchmark, before its own.
COMMON: tuple[Option, ...] = (
    _flag("--json", "print the results as JSON on stdout"),
    _flag("--quiet", "no progress on stderr"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vtremote bench",
        description="Measure vtremote against a real vtremoted on loopback.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="BENCHMARK")
    for name, (help_text, options) in BENCHMARKS.items():
        command = sub.add_parser(name, help=help_text, allow_abbrev=False)
        for flags, keywords in (*COMMON, *options):
            command.add_argument(*flags, **keywords)
    return parser


# --- running ---------------------------------------------------------------------------------


def _wire(args: argparse.Namespace, progress: bm.Progress) -> dict[str, Any]:
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


def _offload(args: argparse.Namespace, progress: bm.Progress) -> dict[str, Any]:
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


def _bandwidth(args: argparse.Namespace, progress: bm.Progress) -> dict[str, Any]:
    seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 1.0)
    return bm.run_bandwidth(
        seconds=seconds,
        sources=args.sources,
        modes=args.modes,
        formats=args.formats or bm.BANDWIDTH_FORMATS,
        progress=progress,
    )


def _decode(args: argparse.Namespace, progress: bm.Progress) -> dict[str, Any]:
    return bm.run_decode(
        frames=args.frames,
        width=args.size[0],
        height=args.size[1],
        codecs=args.codecs,
        modes=args.modes,
        progress=progress,
    )


def _latency(args: argparse.Namespace, progress: bm.Progress) -> dict[str, Any]:
    return bm.run_latency(frames=args.frames, rate=args.rate, sizes=args.sizes, progress=progress)


def _fleet(args: argparse.Namespace, progress: bm.Progress) -> dict[str, Any]:
    from vtremote.bench.fleet import run_fleet

    return run_fleet(
        counts=args.servers,
        frames=args.frames,
        throttle=args.throttle_fps,
        runs=args.kills,
        stops=args.stops,
        timeout=args.timeout,
        seed=args.seed,
        hls_counts=args.hls_servers,
        hls_seconds=args.hls_seconds,
        progress=progress,
    )


def _all(args: argparse.Namespace, progress: bm.Progress) -> dict[str, Any]:
    return run_all(quick=args.quick, progress=progress)


#: What runs each benchmark of :data:`BENCHMARKS` from its parsed arguments.
RUNNERS: dict[str, Callable[[argparse.Namespace, bm.Progress], dict[str, Any]]] = {
    "wire": _wire,
    "offload": _offload,
    "bandwidth": _bandwidth,
    "decode": _decode,
    "latency": _latency,
    "fleet": _fleet,
    "all": _all,
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    runner = RUNNERS.get(args.command)
    if runner is None:
        raise AssertionError(args.command)
    return runner(args, bm.Progress(enabled=not args.quiet))


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
    if argv and argv[0] == "mediaserver":  # whole vtremote-ffmpeg processes, timed from outside
        from vtremote.bench.mediaserver import main as mediaserver_main

        return mediaserver_main(list(argv[1:]))

    if argv and argv[0] == "tonemap":  # the tone-mapping filter, no server involved
        from vtremote.bench.tonemap import main as tonemap_main

        return tonemap_main(list(argv[1:]))
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
