"""Reproducible latency benchmark: `python benchmarks/latency.py [--json] [options]`.

The same as `vtremote bench latency`; see `--help` and docs/benchmarks.md for the method.
"""

from __future__ import annotations

import sys

from vtremote.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(["latency", *sys.argv[1:]]))
