"""File descriptors: what the caps need and the process limit that must fit them.

Every connection holds one descriptor from accept until it closes, so the caps
of admission control (server/admission.py) and of the metrics endpoint
(server/metrics.py) bound them; :func:`needed` adds them up. At start-up
:func:`check` compares that with ``RLIMIT_NOFILE``: a soft limit below it is
raised to the hard limit, and if even that is short, one warning names both
numbers (the server still runs: the caps then cannot all be reached). The
service files (cli/service.py) ask for :data:`SERVICE_LIMIT`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vtremote.server.config import ServerConfig
from vtremote.server.metrics import MAX_METRICS_CONNECTIONS

log = logging.getLogger(__name__)

#: Descriptors the process holds besides connections: listener, wake pair, logs, the
#: Python runtime, mDNS sockets, engine libraries.
BASE = 64
#: Descriptors of one session past HELLO: its socket and what its engine opens.
PER_SESSION = 4
#: Sessions assumed when ``max_sessions`` is 0 (unlimited).
UNLIMITED_SESSIONS = 256
#: The file-descriptor limit the service files ask for (LimitNOFILE, NumberOfFiles).
SERVICE_LIMIT = 8192


def needed(config: ServerConfig) -> int:
    """Descriptors the server may hold with every cap reached."""
    sessions = config.max_sessions or UNLIMITED_SESSIONS
    metrics = MAX_METRICS_CONNECTIONS + 1 if config.metrics else 0
    return BASE + config.max_handshakes + PER_SESSION * sessions + metrics


@dataclass(frozen=True, slots=True)
class Outcome:
    needed: int
    soft: int  # the soft limit after the check (-1: unlimited or unknown)
    hard: int
    raised: bool  # the soft limit was raised


def check(config: ServerConfig) -> Outcome:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard one if the caps need more; warn if short."""
    want = needed(config)
    try:
        import resource
    except ImportError:  # not POSIX: nothing to check
        return Outcome(want, -1, -1, False)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return Outcome(want, soft, hard, False)
    raised = False
    for target in (hard, want):  # macOS refuses an unlimited soft limit: then what is needed
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            continue
        soft, raised = target, True
        break
    if soft != resource.RLIM_INFINITY and soft < want:
        log.warning(
            "file descriptor limit %d (hard %s) is below the %d the caps need "
            "(max_handshakes=%d, max_sessions=%s): raise it (ulimit -n, LimitNOFILE) "
            "or lower the caps",
            soft,
            "unlimited" if hard == resource.RLIM_INFINITY else hard,
            want,
            config.max_handshakes,
            config.max_sessions or "unlimited",
        )
    elif raised:
        log.info("file descriptor limit raised to %d (the caps need %d)", soft, want)
    return Outcome(want, soft, hard, raised)


__all__ = ["SERVICE_LIMIT", "Outcome", "check", "needed"]
