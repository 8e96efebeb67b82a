"""The tables ``vtremote bench`` prints (rich on a terminal, plain text or Markdown otherwise).

One function per benchmark turns its JSON result into :class:`Table` objects;
``benchmarks/make_docs.py`` renders the same tables into docs/benchmarks.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vtremote import bench as bm

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
        f"{p['width']}x{p['height']} NV12, {p['frames']} frames per run cycling "
        f"{p['distinct_frames']} distinct frames, "
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
        f"Goal: {g['name']} {g['goal']}: measured {g['value']} -> "
        f"{'holds' if g['met'] else 'does NOT hold'}."
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
        f"{p['width']}x{p['height']} NV12 {p['source']}, {p['frames']} frames cycling "
        f"{p['distinct_frames']} distinct frames, "
        f"-b:v {p['bitrate'] // 1_000_000}M -g {p['gop']}; CPU = user + system seconds of the "
        "client process "
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
                    f"Required bandwidth at real-time (MAX(In, Out)), {source}, wire compression "
                    f"{mode}",
                    ["Format", "FPS", *(f"{c} Mb/s" for c in p["codecs"])],
                    rows,
                    machine,
                    [
                        f"{p['seconds']:g} s clips (fps x {p['seconds']:g} frames), -b:v "
                        f"{p['bitrate'] // 1_000_000}M -g {p['gop']}; "
                        "Mb/s = max(bytes client->server, bytes server->client) x 8 / media "
                        "seconds, headers included."
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
                    "in = FRAMEs client -> server for each wire compression; out = PACKETs server "
                    "-> client "
                    "(the same for every compression); encode fps = speed of the real encode on "
                    "this machine "
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
                f"{p['frames']} frames, MP4 made with libx264 veryfast / libx265 ultrafast -b:v "
                f"{p['bitrate'] // 1_000_000}M -g {p['gop']}; "
                "local = PyAV with frame threads; remote = RemoteDecoder -> vtremoted (FFmpeg "
                "software decoder) -> NV12 frames."
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
                f"{p['frames']} frames of {p['source']} handed to RemoteEncoder at {p['rate']} "
                f"fps, compression {p['compression']}, "
                f"-b:v {p['bitrate'] // 1_000_000}M -g {p['gop']} -realtime 1."
            ],
            numeric={1, 2, 3, 4, 5},
        )
    ]


def fleet_tables(result: dict[str, Any]) -> list[Table]:
    machine = bm.machine_line(result["machine"])
    rows = [
        [
            str(a["servers"]),
            str(a["frames"]),
            f"{a['seconds']:.2f}",
            f"{a['fps']:.1f}",
            f"{a['vs_n_times_one']:.2f}" if a["vs_n_times_one"] is not None else "-",
        ]
        for a in result["aggregate"]
    ]
    tables = [
        Table(
            f"Fleet: one clip on N servers (null engine throttled to {result['throttle_fps']:g} "
            f"fps each, {result['size']})",
            ["servers", "frames", "seconds", "frames/s", "vs N x one"],
            rows,
            machine,
            [
                "1 server: one session; N >= 2: -vt_remote_parallel N, segments of whole GOPs (60 "
                "frames)"
            ],
            numeric={0, 1, 2, 3, 4},
        )
    ]
    kills = result.get("kills")
    if kills:
        rows = [
            [
                str(i + 1),
                r["signal"],
                str(r["at_frame"]),
                str(r["failovers"]),
                str(r["lost"]),
                str(r["doubled"]),
                "yes" if r["same_as_undisturbed"] else "NO",
                f"{r['recovery_ms']:.0f}" if r["recovery_ms"] is not None else "-",
            ]
            for i, r in enumerate(kills["runs"])
        ]
        tables.append(
            Table(
                f"Fleet: serving server killed at a random frame ({kills['frames']} frames, "
                f"timeout {kills['timeout_s']:g} s)",
                [
                    "run",
                    "signal",
                    "at frame",
                    "failovers",
                    "lost",
                    "doubled",
                    "pts/dts = undisturbed",
                    "recovery ms",
                ],
                rows,
                machine,
                [
                    f"lost {kills['lost_total']}, doubled {kills['doubled_total']} in all runs; "
                    "recovery = kill -> "
                    "packet of the first unanswered frame delivered"
                ],
                numeric={0, 2, 3, 4, 5, 7},
            )
        )
    if result.get("transcode_kills"):
        tables.append(transcode_kill_table(result["transcode_kills"], machine))
    hls = result.get("hls")
    if hls:
        tables.append(_fleet_hls_table(hls, result["throttle_fps"], machine))
    return tables


def transcode_kill_table(kills: dict[str, Any], machine: str) -> Table:
    """Packet transcode on a pool of 3, the serving server killed after a random source packet."""
    rows = [
        [
            str(i + 1),
            str(r["at_packet"]),
            str(r["failovers"]),
            str(r["lost"]),
            str(r["repeated"]),
            "yes" if r["same_pts_as_undisturbed"] else "NO",
            "yes" if r["dts_increasing"] else "NO",
            f"{r['wire_ratio']:.3f}",
        ]
        for i, r in enumerate(kills["runs"])
    ]
    return Table(
        f"Fleet: packet transcode, serving server killed at a random source packet "
        f"({kills['frames']} frames, x264 engine)",
        [
            "run",
            "at packet",
            "failovers",
            "lost",
            "repeated",
            "pts = undisturbed",
            "dts up",
            "wire / (source + output)",
        ],
        rows,
        machine,
        [
            f"lost {kills['lost_total']}, repeated {kills['repeated_total']} in all runs; "
            f"undisturbed wire / (source + output) = {kills['undisturbed_wire_ratio']:.3f}"
        ],
        numeric={0, 1, 2, 3, 4, 7},
    )


def _fleet_hls_table(hls: dict[str, Any], throttle: float, machine: str) -> Table:
    rows = [
        [
            str(r["servers"]) if r["parallel"] else f"{r['servers']} (one session)",
            str(r["frames"]),
            f"{r['seconds']:.2f}",
            f"{r['fps']:.1f}",
            f"{r['speed_vs_n_times_one']:.2f}",
            f"{r['first_segment_s']:.2f}" if r["first_segment_s"] is not None else "-",
            f"{r['first_segment_vs_one']:.2f}" if r["first_segment_vs_one"] is not None else "-",
        ]
        for r in [*hls["rows"], hls["one_session"]]
    ]
    return Table(
        f"Fleet: parallel HLS, packet transcode on N servers (x264 throttled to {throttle:g} fps "
        f"each, {hls['size']}, {hls['seconds']:g} s, hls_time {hls['hls_time']:g} s)",
        ["servers", "frames", "seconds", "frames/s", "vs N x one", "first segment s", "vs one"],
        rows,
        machine,
        [
            "-vt_remote_parallel N for every N; speed goal >= 0.90 x N, first segment goal <= "
            "1.00 x one server's, both against N = 1 of the same run; the last row is one plain "
            "packet-transcode session (no segments), for reference"
        ],
        numeric={1, 2, 3, 4, 5, 6},
    )


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
