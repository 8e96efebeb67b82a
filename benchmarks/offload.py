"""Reproducible offload benchmark: `python benchmarks/offload.py [--json] [options]`.

The same as `vtremote bench offload`; see `--help` and docs/benchmarks.md for the method.
"""

from __future__ import annotations

import sys

from vtremote.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(["offload", *sys.argv[1:]]))
