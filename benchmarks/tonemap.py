"""Reproducible tone-mapping benchmark: `python benchmarks/tonemap.py [--json] [options]`.

The same as `vtremote bench tonemap`; see `--help` and docs/benchmarks.md for the method.
"""

from __future__ import annotations

import sys

from vtremote.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(["tonemap", *sys.argv[1:]]))
