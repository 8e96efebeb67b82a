"""Packet transcode benchmark:
``python benchmarks/transcode.py [--json] [--seconds S] [--compression C]``.

The same as ``vtremote bench transcode``; see vtremote.bench.transcode and docs/benchmarks.md.
"""

from __future__ import annotations

import sys

from vtremote.bench.transcode import main

if __name__ == "__main__":
    sys.exit(main())
