"""``vtremote bench``: measure the wire path, the offload and the bandwidth on this machine.

Subcommands (each starts its own real ``vtremoted`` process on loopback)::

    vtremote bench wire       [--json] [--frames N] [--size 1920x1080]
    vtremote bench offload    [--json] [--frames N]
    vtremote bench bandwidth  [--json] [--quick]
    vtremote bench decode     [--json] [--frames N]
    vtremote bench latency    [--json] [--frames N]
    vtremote bench all        [--json] [--quick]
    vtremote bench transcode  [--json] [--seconds S]             (vtremote.bench.transcode)
    vtremote bench live       [--json] [--quick] [--size 1920x1080]   (vtremote.live.bench)

Tables go to stdout (rich when stdout is a terminal, plain text otherwise);
``--json`` prints the results as JSON instead. Progress goes to stderr. The
measuring code is in :mod:`vtremote.bench`; this module parses argv,
calls it and draws tables. ``docs/benchmarks.md`` is regenerated from the same
tables by ``benchmarks/make_docs.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vtremote import bench as bm
from vtremote.cli.memory import retain_freed_frames
from vtremote.errors import VTRemoteError

# --- tables ----------------------------------------------------------------------------------


@dataclass
class Table:
    """One result table: what the terminal, the plain text and the docs show."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    machine: str
    notes: list[str] = field(default_factory=list)
    #: Columns aligned right (numbers); by index.
    numeric: set[int] = field(default_factory=set)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_markdown(table: Table) -> str:
    """GitHub markdown: title, machine line, table, notes."""
    out = [f"#### {table.title}", "", f"*Machine: {table.machine}*", ""]
    out.append("| " + " | ".join(table.columns) + " |")
    out.append(
        "|"
        + "|".join("---:" if i in table.numeric else "---" for i in range(len(table.columns)))
        + "|"
    )
    for row in table.rows:
        out.append("| " + " | ".join(row) + " |")
    if table.notes:
        out.append("")
        out.extend(f"{n}" if n.startswith("- ") else f"- {n}" for n in table.notes)
    return "\n".join(out) + "\n"


def render_plain(table: Table) -> str:
    """Fixed-width text for pipes and logs."""
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(w) if i in table.numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [
        table.title,
        f"machine: {table.machine}",
        line(table.columns),
        line(["-" * w for w in widths]),
    ]
    out.extend(line(r) for r in table.rows)
    out.extend(f"  {n}" for n in table.notes)
    return "\n".join(out) + "\n"


def print_tables(tables: Sequence[Table], *, rich_output: bool | None = None) -> None:
    """Tables to stdout: rich on a terminal, plain text otherwise."""
    use_rich = sys.stdout.isatty() if rich_output is None else rich_output
    if use_rich:
        try:
            from rich.console import Console
            from rich.table import Table as RichTable
        except ImportError:
            use_rich = False
    if not use_rich:
        for t in tables:
            sys.stdout.write(render_plain(t) + "\n")
        return
    console = Console()
    for t in tables:
        rt = RichTable(title=t.title, caption=f"{t.machine}", caption_justify="left")
        for i, c in enumerate(t.columns):
            rt.add_column(c, justify="right" if i in t.numeric else "left")
        for r in t.rows:
            rt.add_row(*r)
        console.print(rt)
        for n in t.notes:
            console.print(f"  {n}", style="dim")
        console.print()


# --- per-benchmark tables ------------------------------------------------------------------


def wire_tables(result: dict[str, Any]) -> list[Table]:
    machine = bm.machine_line(result["machine"])
    p = result["params"]
    rows = []
    for source, modes in result["sources"].items():
        rows.append(
            [
                source,
                "raw socket",
                _fmt(modes["raw"]["fps"]),
                _fmt(modes["raw"]["gbps"], 2),
                "-",
                _fmt(modes["raw"]["message_bytes"]),
                "1.000",
                "-",
                "-",
            ]
        )
        for mode in p["modes"]:
            m = modes[mode]
            rows.append(
                [
                    source,
                    mode,
                    _fmt(m["fps"]),
                    _fmt(m["gbps"], 2),
                    _fmt(m["wire_gbps"], 2),
                    _fmt(m["wire_bytes_per_frame"]),
                    f"{m['ratio_to_raw']:.3f}",
                    _fmt(m["client_cpu_ms_per_frame"], 3),
                    _fmt(m["server_cpu_ms_per_frame"], 3),
                ]
            )
    notes = [
        f"{p['width']}x{p['height']} NV12, {p['frames']} frames per run cycling {p['distinct_frames']} distinct frames, "
        f"best of {p['repeat']} runs, in-flight window {p['window']}, engine `null`.",
        "GB/s = uncompressed picture bytes per second (same bytes as the raw socket row); "
        "wire GB/s = bytes really sent client -> server per second.",
        "ratio = fps / raw-socket fps of the same source (measured in the same run).",
    ]
    notes += _goal_notes(result)
    return [
        Table(
            "Wire ceiling: client -> vtremoted (null engine) -> client",
            [
                "source",
                "compression",
                "frames/s",
                "GB/s",
                "wire GB/s",
                "wire bytes/frame",
                "ratio to raw",
                "client CPU ms/frame",
                "server CPU ms/frame",
            ],
            rows,
            machine,
            notes,
            numeric={2, 3, 4, 5, 6, 7, 8},
        )
    ]


def _goal_notes(result: dict[str, Any]) -> list[str]:
    return [
        f"Goal: {g['name']} {g['goal']}: measured {g['value']} -> {'holds' if g['met'] else 'does NOT hold'}."
        for g in result.get("goals", [])
    ]


def offload_tables(result: dict[str, Any]) -> list[Table]:
    machine = bm.machine_line(result["machine"])
    p = result["params"]
    rows = [
        [
            f"remote (vtremoted x264 engine, compression {result['compression']})",
            _fmt(result["client_cpu_remote_s"], 2),
            _fmt(result["remote_fps"]),
            _fmt(result["server_cpu_remote_s"], 2),
            _fmt(result["remote_bitrate_mbps"], 2),
        ],
        [
            "local (PyAV libx264 preset veryfast)",
            _fmt(result["client_cpu_local_s"], 2),
            _fmt(result["local_fps"]),
            "-",
            _fmt(result["local_bitrate_mbps"], 2),
        ],
    ]
    notes = [
        f"{p['width']}x{p['height']} NV12 {p['source']}, {p['frames']} frames cycling {p['distinct_frames']} distinct frames, "
        f"-b:v {p['bitrate'] // 1_000_000}M -g {p['gop']}; CPU = user + system seconds of the client process "
        "(all threads), scaled to 1000 frames; the server is a separate process.",
        f"ratio remote / local = {result['ratio']:.4f}.",
    ]
    by_mode = result.get("client_cpu_ms_per_frame_by_mode") or {}
    if by_mode:
        notes.append(
            "Client CPU per frame by wire compression (null engine, "
            f"{p['probe_frames']} frames): "
            + ", ".join(f"{m} {v:.3f} ms" for m, v in by_mode.items())
            + f"; the cheapest, {result['compression']}, is used for the remote run."
        )
    notes += _goal_notes(result)
    return [
        Table(
            "Offload: client CPU seconds per 1000 1080p frames",
            [
                "encode",
                "client CPU s / 1000 frames",
                "frames/s",
                "server CPU s / 1000 frames",
                "bitrate Mb/s",
            ],
            rows,
            machine,
            notes,
            numeric={1, 2, 3, 4},
        )
    ]


def bandwidth_tables(result: dict[str, Any]) -> list[Table]:
    """One table per source and compression mode, in the reference README's layout."""
    machine = bm.machine_line(result["machine"])
    p = result["params"]
    tables = []
    for source in p["sources"]:
        for mode in p["modes"]:
            grid: dict[tuple[str, int], dict[str, str]] = {}
            for row in result["rows"]:
                if row["source"] != source:
                    continue
                grid.setdefault((row["format"], row["fps"]), {})[row["codec"]] = _fmt(
                    row["modes"][mode]["required_mbps"]
                )
            rows = [
                [fmt, str(fps), *(cells.get(c, "n/a") for c in p["codecs"])]
                for (fmt, fps), cells in grid.items()
            ]
            tables.append(
                Table(
                    f"Required bandwidth at real-time (MAX(In, Out)), {source}, wire compression {mode}",
                    ["Format", "FPS", *(f"{c} Mb/s" for c in p["codecs"])],
                    rows,
                    machine,
                    [
                        f"{p['seconds']:g} s clips (fps x {p['seconds']:g} frames), -b:v {p['bitrate'] // 1_000_000}M -g {p['gop']}; "
                        "Mb/s = max(bytes client->server, bytes server->client) x 8 / media seconds, headers included."
                    ],
                    numeric={1, 2, 3},
                )
            )
    for source in p["sources"]:
        rows = [
            [
                row["format"],
                str(row["fps"]),
                row["codec"],
                *(_fmt(row["modes"][m]["in_mbps"]) for m in p["modes"]),
                _fmt(row["out_mbps"]),
                _fmt(row["encode_fps"]),
            ]
            for row in result["rows"]
            if row["source"] == source
        ]
        tables.append(
            Table(
                f"Bandwidth detail, {source}: each direction in Mb/s",
                [
                    "Format",
                    "FPS",
                    "codec",
                    *(f"in ({m})" for m in p["modes"]),
                    "out (PACKETs)",
                    "encode fps",
                ],
                rows,
                machine,
                [
                    "in = FRAMEs client -> server for each wire compression; out = PACKETs server -> client "
                    "(the same for every compression); encode fps = speed of the real encode on this machine "
                    "(bytes per media second do not depend on it)."
                ],
                numeric={1, *range(3, 5 + len(p["modes"]))},
            )
        )
    return tables


def decode_tables(result: dict[str, Any]) -> list[Table]:
    machine = bm.machine_line(result["machine"])
    p = result["params"]
    rows = []
    for codec, e in result["codecs"].items():
        rows.append(
            [
                codec,
                "local PyAV",
                _fmt(e["local_fps"]),
                "-",
                _fmt(e["local_cpu_ms_per_frame"], 2),
                "-",
            ]
        )
        for mode, r in e["remote"].items():
            rows.append(
                [
                    codec,
                    f"remote ({'pipelined' if r['pipelined'] else 'lock-step'}, {mode})",
                    _fmt(r["fps"]),
                    f"{r['ratio_to_local']:.2f}",
                    _fmt(r["client_cpu_ms_per_frame"], 2),
                    _fmt(r["server_cpu_ms_per_frame"], 2),
                ]
            )
    return [
        Table(
            f"Decode: remote vs local, {p['width']}x{p['height']} {p['source']}",
            [
                "codec",
                "decoder",
                "frames/s",
                "remote / local",
                "client CPU ms/frame",
                "server CPU ms/frame",
            ],
            rows,
            machine,
            [
                f"{p['frames']} frames, MP4 made with libx264 veryfast / libx265 ultrafast -b:v {p['bitrate'] // 1_000_000}M -g {p['gop']}; "
                "local = PyAV with frame threads; remote = RemoteDecoder -> vtremoted (FFmpeg software decoder) -> NV12 frames."
            ],
            numeric={2, 3, 4, 5},
        )
    ]


def latency_tables(result: dict[str, Any]) -> list[Table]:
    machine = bm.machine_line(result["machine"])
    p = result["params"]
    rows = [
        [
            key,
            _fmt(e["p50_ms"], 2),
            _fmt(e["p90_ms"], 2),
            _fmt(e["p99_ms"], 2),
            _fmt(e["max_ms"], 2),
            _fmt(e["mean_ms"], 2),
        ]
        for key, e in result["sizes"].items()
    ]
    return [
        Table(
            "Latency: FRAME sent -> its PACKET received, realtime=1 (x264 engine)",
            ["size", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"],
            rows,
            machine,
            [
                f"{p['frames']} frames of {p['source']} handed to RemoteEncoder at {p['rate']} fps, compression {p['compression']}, "
                f"-b:v {p['bitrate'] // 1_000_000}M -g {p['gop']} -realtime 1."
            ],
            numeric={1, 2, 3, 4, 5},
        )
    ]


def fleet_tables(result: dict[str, Any]) -> list[Table]:
    machine = bm.machine_line(result["machine"])
    rows = [[str(a["servers"]), str(a["frames"]), f"{a['seconds']:.2f}", f"{a['fps']:.1f}",
             f"{a['vs_n_times_one']:.2f}" if a["vs_n_times_one"] is not None else "-"] for a in result["aggregate"]]
    tables = [Table(
        f"Fleet: one clip on N servers (null engine throttled to {result['throttle_fps']:g} fps each, {result['size']})",
        ["servers", "frames", "seconds", "frames/s", "vs N x one"], rows, machine,
        ["1 server: one session; N >= 2: -vt_remote_parallel N, segments of whole GOPs (60 frames)"],
        numeric={0, 1, 2, 3, 4},
    )]
    kills = result.get("kills")
    if kills:
        rows = [[str(i + 1), r["signal"], str(r["at_frame"]), str(r["failovers"]), str(r["lost"]), str(r["doubled"]),
                 "yes" if r["same_as_undisturbed"] else "NO",
                 f"{r['recovery_ms']:.0f}" if r["recovery_ms"] is not None else "-"] for i, r in enumerate(kills["runs"])]
        tables.append(Table(
            f"Fleet: serving server killed at a random frame ({kills['frames']} frames, timeout {kills['timeout_s']:g} s)",
            ["run", "signal", "at frame", "failovers", "lost", "doubled", "pts/dts = undisturbed", "recovery ms"],
            rows, machine,
            [f"lost {kills['lost_total']}, doubled {kills['doubled_total']} in all runs; recovery = kill -> "
             "packet of the first unanswered frame delivered"],
            numeric={0, 2, 3, 4, 5, 7},
        ))
    return tables


TABLES: dict[str, Callable[[dict[str, Any]], list[Table]]] = {
    "fleet": fleet_tables,
    "wire": wire_tables,
    "offload": offload_tables,
    "bandwidth": bandwidth_tables,
    "decode": decode_tables,
    "latency": latency_tables,
}


def tables_for(result: dict[str, Any]) -> list[Table]:
    """Tables of one benchmark result, or of every result of ``all``."""
    if result.get("benchmark") == "all":
        out: list[Table] = []
        for sub in result["results"].values():
            out.extend(tables_for(sub))
        return out
    return TABLES[result["benchmark"]](result)


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

    p = sub.add_parser("fleet", help="one clip on 1..4 throttled servers; servers killed mid-stream",
                       allow_abbrev=False)
    common(p)
    p.add_argument("--servers", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2, 3, 4],
                   help="server counts to run (default 1,2,3,4)")
    p.add_argument("--frames", type=int, default=720, help="frames of the clip (default 720)")
    p.add_argument("--throttle-fps", type=float, default=60.0, help="each server's test-only throttle (60)")
    p.add_argument("--kills", type=int, default=20, help="runs with SIGKILL at a random frame (20)")
    p.add_argument("--stops", type=int, default=5, help="runs with SIGSTOP (a stall) at a random frame (5)")
    p.add_argument("--timeout", type=float, default=1.0, help="client timeout in the kill runs, s (1)")
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

        return run_fleet(counts=args.servers, frames=args.frames, throttle=args.throttle_fps, runs=args.kills,
                         stops=args.stops, timeout=args.timeout, seed=args.seed, progress=progress)
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
        from vtremote.live.bench import main as live_main

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
