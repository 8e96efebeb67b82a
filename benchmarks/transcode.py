"""Packet transcode benchmark: `python benchmarks/transcode.py [--json] [--seconds S] [--compression C]`.

Local PyAV transcode, raw-frame remote encode and packet transcode of 1080p30 H.264 and HEVC
Main10 sources into 720p H.264; see vtremote.bench.transcode and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from vtremote.bench.transcode import CODECS, MODES, SOURCES, format_tables, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0, help="clip length (default 5)")
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--codecs", default=",".join(CODECS))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--compression", default="zstd", help="raw-frame wire compression (default zstd)")
    ap.add_argument("--address", help="use this vtremoted instead of starting one (server CPU is then not read)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.seconds, args.sources.split(","), args.codecs.split(","), args.modes.split(","),
                 args.compression, args.address)
    print(json.dumps(result, indent=2) if args.json else format_tables(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
