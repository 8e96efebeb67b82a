"""Reproducible decode benchmark: `python benchmarks/decode.py [--json] [options]`.

The same as `vtremote bench decode`; see `--help` and docs/benchmarks.md for the method.
"""

from __future__ import annotations

import sys

from vtremote.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(["decode", *sys.argv[1:]]))
