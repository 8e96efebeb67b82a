"""Reproducible wire benchmark: `python benchmarks/wire.py [--json] [options]`.

The same as `vtremote bench wire`; see `--help` and docs/benchmarks.md for the method.
"""

from __future__ import annotations

import sys

from vtremote.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(["wire", *sys.argv[1:]]))
