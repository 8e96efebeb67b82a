"""Live streaming benchmark: bandwidth at equal quality, latency, bottleneck, loss.

Runs :func:`vtremote.bench.live.run_live` (sender and receiver as separate
processes on loopback, 1080p30 camera-like content by default) and prints the
markdown tables that docs/benchmarks.md shows under "Live streaming".

    python benchmarks/live.py [--quick] [--size 1920x1080] [--json]
"""

from __future__ import annotations

import sys

from vtremote.bench.live import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
