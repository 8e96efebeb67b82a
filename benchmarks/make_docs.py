"""Run every benchmark and regenerate the tables in docs/benchmarks.md.

    python benchmarks/make_docs.py            # full set, about 4-5 minutes on the 2-core box
    python benchmarks/make_docs.py --quick    # fewer frames / shorter clips, about 2-3 minutes
    python benchmarks/make_docs.py --only wire,offload

Each benchmark runs in its own process (``python -m vtremote.cli.bench NAME
--json ...`` with the arguments of ``vtremote.cli.bench.ALL_ARGS``), so one
benchmark's memory and threads never disturb the next. Only the blocks between
``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` markers are
rewritten; the prose around them (method, analysis) is kept as it is.
``--save-json DIR`` keeps each benchmark's raw JSON result as well.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vtremote import bench as bm
from vtremote.cli import bench

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
NAMES = list(bench.ALL_ARGS)


def run_one(name: str, quick: bool) -> tuple[dict[str, Any], float]:
    """One benchmark in a fresh process; its progress goes to our stderr."""
    args = bench.ALL_ARGS[name][1 if quick else 0]
    cmd = [sys.executable, "-m", "vtremote.cli.bench", name, "--json", *args]
    print(f"== {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark {name} failed with exit status {proc.returncode}")
    return json.loads(proc.stdout), elapsed


def block(name: str, result: dict[str, Any], elapsed: float, quick: bool) -> str:
    """The markdown of one generated block: how it was run, then its tables."""
    args = " ".join(bench.ALL_ARGS[name][1 if quick else 0])
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"*Generated {stamp} by `benchmarks/make_docs.py{' --quick' if quick else ''}`: "
        f"`vtremote bench {name} {args}` ({elapsed:.0f} s).*",
        "",
    ]
    for table in bench.tables_for(result):
        lines.append(bench.render_markdown(table))
    return "\n".join(lines).rstrip() + "\n"


def goals_block(results: dict[str, dict[str, Any]]) -> str:
    rows = ["| benchmark | goal | measured | holds |", "|---|---|---:|---|"]
    for name, result in results.items():
        for g in result.get("goals", []):
            rows.append(
                f"| {name} | {g['name']} {g['goal']} | {g['value']} | "
                f"{'yes' if g['met'] else '**no**'} |"
            )
    machine = bm.machine_line(next(iter(results.values()))["machine"]) if results else ""
    return f"*Machine: {machine}*\n\n" + "\n".join(rows) + "\n"


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(
            f"{DOC} has no <!-- generated:{name} --> ... <!-- /generated:{name} --> block"
        )
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="the quick parameter set (about 3 minutes)"
    )
    parser.add_argument(
        "--only", default=",".join(NAMES), help=f"comma-separated subset of {','.join(NAMES)}"
    )
    parser.add_argument(
        "--doc", type=Path, default=DOC, help="markdown file to update (default docs/benchmarks.md)"
    )
    parser.add_argument(
        "--save-json", type=Path, default=None, help="also write NAME.json files into this folder"
    )
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in only if n not in NAMES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")

    text = args.doc.read_text(encoding="utf-8")
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for name in only:
        result, elapsed = run_one(name, args.quick)
        results[name] = result
        text = replace_block(text, name, block(name, result, elapsed, args.quick))
        if args.save_json is not None:
            args.save_json.mkdir(parents=True, exist_ok=True)
            (args.save_json / f"{name}.json").write_text(
                json.dumps(result, indent=2) + "\n", encoding="utf-8"
            )
        # Written after every benchmark, so an interrupted run keeps what it measured.
        args.doc.write_text(text, encoding="utf-8")
    if set(only) == set(NAMES):
        text = replace_block(text, "goals", goals_block(results))
        args.doc.write_text(text, encoding="utf-8")
    print(
        f"updated {os.path.relpath(args.doc)} in {time.perf_counter() - t0:.0f} s", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
