"""Time to the first HLS segment:
``python benchmarks/mediaserver.py [--json] [--seconds S] [--seek S]``.

The same as ``vtremote bench mediaserver``; see vtremote.bench.mediaserver and docs/benchmarks.md.
"""

from __future__ import annotations

import sys

from vtremote.bench.mediaserver import main

if __name__ == "__main__":
    sys.exit(main())
