"""Measuring code behind ``vtremote bench`` and the scripts in ``benchmarks/``.

Every benchmark here runs the real parts: a real ``vtremoted`` process on
loopback (its CPU is not charged to the measuring process) driven by the real
client library. The pieces that do not need a server live here too: the machine
description printed on every table, the synthetic sources, the raw-socket
ceiling, CPU and latency statistics.

Like ``vtremote.cli`` this package may import every layer; the library layers
never import it. One module per benchmark (:mod:`.wire`, :mod:`.offload`,
:mod:`.bandwidth`, :mod:`.decode`, :mod:`.latency`), what they share in
:mod:`.common`. Functions return plain ``dict`` results (JSON-ready); turning
them into tables is :mod:`vtremote.cli.bench`'s job.

Method rules shared by all benchmarks:

* Source frames are generated **before** timing starts and the timed loops
  cycle through a small set of distinct frames, so generation is never timed.
* Wall time is ``time.perf_counter``; CPU time of this process is
  ``time.process_time`` (user + system, all threads); CPU time of the server
  process is read from ``/proc/PID/stat`` (Linux; ``None`` elsewhere).
"""

from __future__ import annotations

from vtremote.bench.bandwidth import (
    BANDWIDTH_CODECS,
    BANDWIDTH_FORMATS,
    run_bandwidth,
)
from vtremote.bench.common import (
    BITRATE,
    FRAME_1080P_PAYLOAD,
    GOP,
    LISTENING,
    MODES,
    NOISE_STRENGTH,
    SOURCES,
    Progress,
    ServerProcess,
    Stopwatch,
    cycle_frames,
    dump_json,
    encode_session,
    machine_info,
    machine_line,
    make_frames,
    percentile,
    process_cpu_seconds,
    process_minor_faults,
    quiet_libav,
    summarize_ms,
)
from vtremote.bench.decode import (
    local_decode,
    make_clip,
    remote_decode,
    run_decode,
)
from vtremote.bench.latency import (
    run_latency,
)
from vtremote.bench.offload import (
    local_encode,
    run_offload,
)
from vtremote.bench.wire import (
    frame_message_parts,
    raw_ceiling,
    run_wire,
    wire_goals,
)

__all__ = [
    "BANDWIDTH_CODECS",
    "BANDWIDTH_FORMATS",
    "BITRATE",
    "FRAME_1080P_PAYLOAD",
    "GOP",
    "LISTENING",
    "MODES",
    "NOISE_STRENGTH",
    "Progress",
    "SOURCES",
    "ServerProcess",
    "Stopwatch",
    "cycle_frames",
    "dump_json",
    "encode_session",
    "frame_message_parts",
    "local_decode",
    "local_encode",
    "machine_info",
    "machine_line",
    "make_clip",
    "make_frames",
    "percentile",
    "process_cpu_seconds",
    "process_minor_faults",
    "quiet_libav",
    "raw_ceiling",
    "remote_decode",
    "run_bandwidth",
    "run_decode",
    "run_latency",
    "run_offload",
    "run_wire",
    "summarize_ms",
    "wire_goals",
]
