"""``vtremoted --self-test``: a conformance run of this host's engines.

It starts an embedded vtremoted on loopback for each engine that loads (or the
one named), drives it with the real client, and checks what comes back: frame
and packet counts, pts/dts order, keyframes at the GOP, the bitrate, SSIM
against the source, decode exactness, packet transcode with a scale. Speed and
latency are reported, never asserted. One line per check, a summary, a JSON
report to paste into a bug report (docs/engines.md).
"""

from __future__ import annotations

from vtremote.selftest.report import Check, Report
from vtremote.selftest.run import FULL, QUICK, Settings, run_self_test

__all__ = ["FULL", "QUICK", "Check", "Report", "Settings", "run_self_test"]
