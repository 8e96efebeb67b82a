"""Reproducible bandwidth benchmark: `python benchmarks/bandwidth.py [--json] [options]`.

The same as `vtremote bench bandwidth`; see `--help` and docs/benchmarks.md for the method.
"""

from __future__ import annotations

import sys

from vtremote.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(["bandwidth", *sys.argv[1:]]))
