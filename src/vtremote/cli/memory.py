"""Allocator settings for the processes the vtremote commands run (never set by the library).

Sessions allocate and free picture-sized blocks for every frame: the
``av.VideoFrame`` a FRAME is copied into (3 MB at 1080p NV12, 26 MB at 4K
P010), decompressed planes, decoded frames on the client. glibc's malloc hands
blocks above ``M_MMAP_THRESHOLD`` out as fresh maps and gives the top of a heap
back to the OS once more than ``M_TRIM_THRESHOLD`` is free there; both are
adaptive, and with frames allocated on one thread and freed on another they
keep ending up returned. The next frame then faults its pages back in one by
one, each zeroed by the kernel: about 0.4 ms per 1080p frame on the benchmark
machine, more than the copy into that memory costs (docs/benchmarks.md).

:func:`retain_freed_frames` raises both thresholds once, at start-up: freed frame
blocks stay in the process and the next frame reuses them. The price is that
the process keeps its high-water mark of frame memory (a few frames per
session) instead of returning it between frames. Only the commands call this;
a program embedding the library keeps its own allocator settings.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

#: glibc ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Largest mmap threshold glibc accepts on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX):
#: picture blocks up to 32 MiB (a 4096x2160 P010 frame is 26.5 MB) come from the heap.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory a heap may keep at its top before giving it back to the OS.
TRIM_THRESHOLD = 512 * 1024 * 1024

_done = False


def retain_freed_frames() -> bool:
    """Keep freed picture-sized blocks for reuse (glibc only); True if applied.

    Idempotent. Elsewhere (macOS, musl, Windows) it does nothing and says so.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 if the allocator refused (or, musl, ignores it).
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    log.debug("allocator keeps freed frame memory: %s", "yes" if ok else "not supported here")
    _done = ok
    return ok
