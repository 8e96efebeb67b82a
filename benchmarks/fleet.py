"""Reproducible fleet benchmark: `python benchmarks/fleet.py [--json] [options]`.

The same as `vtremote bench fleet`; see `--help` and docs/benchmarks.md ("Several servers") for the
method.
"""

from __future__ import annotations

import sys

from vtremote.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(["fleet", *sys.argv[1:]]))
