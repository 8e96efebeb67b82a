"""The server's memory budget (``vtremoted --max-memory``): what sessions may cost together.

Every session's share is estimated at CONFIGURE, before anything is opened, from
what it asked for (:func:`estimate_session`): its pictures (the configured size,
or for a decoder the largest picture it may decode, engines/limits.py), the
pictures its codecs hold (an encoder's lookahead and references, a decoder's
references and frame threads), the filter stage, the work queue between the
connection and the engine, and the largest message it may have in flight. A
session that does not fit what is left is refused with ERROR 2 (busy) naming
its share and what is left; one that would not fit even an idle server with
ERROR 3. The share is returned when the session's engine thread has ended, not
before: an engine thread that does not stop keeps its share reserved (and is
counted in :attr:`MemoryBudget.stuck_engines`) until it does.

The stages keep to the shares: decoders are bounded by their picture limit
(``max_pixels``), the filter stage yields one frame at a time with a bound per
input frame (engines/transcode.py), queues are bounded (server/worker.py) and
a session's largest PACKET follows its geometry (:func:`packet_limit`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from vtremote.engines.limits import decode_pixel_limit
from vtremote.errors import CapacityError, UnsupportedConfigError
from vtremote.server.config import MIN_MAX_MEMORY, MiB
from vtremote.server.configure import ConfigurePlan
from vtremote.wire.constants import PixelFormat
from vtremote.wire.framing import Limits, frame_limit

log = logging.getLogger(__name__)

#: What the process itself takes with no session (interpreter, PyAV, FFmpeg, thread pool).
BASE_BYTES = 160 * MiB
#: A session's fixed cost beyond its pictures: thread stacks, codec contexts, tables.
SESSION_BYTES = 24 * MiB
#: Pictures an encoder holds: lookahead, references, B-frames, frame threads (x264, x265).
ENCODER_PICTURES = 40
#: Pictures a decoder holds: up to 16 references, the picture being decoded, output.
DECODER_PICTURES = 20
#: Pictures the filter stage holds (the graph's buffers, a scale's and a format's output).
FILTER_PICTURES = 4
#: Pictures on the way out of a decode session (converted, compacted, compressed).
OUTPUT_PICTURES = 3
#: A PACKET may be this many times the raw picture it stands for (intra, near lossless).
PACKET_PICTURE_RATIO = 2
#: The smallest PACKET limit a session gets.
MIN_PACKET_LIMIT = 4 * MiB


def picture_bytes(width: int, height: int, pix_fmt: PixelFormat) -> int:
    """Bytes of one 4:2:0 picture: NV12 1.5 bytes a pixel, P010 3."""
    per_sample = 2 if pix_fmt is PixelFormat.P010 else 1
    return width * height * 3 // 2 * per_sample


def packet_limit(plan: ConfigurePlan, limits: Limits) -> int:
    """The largest PACKET this session accepts: twice the largest raw picture it may decode."""
    stream = plan.stream
    if plan.transcode is not None:
        width, height = plan.transcode.source.width, plan.transcode.source.height
    else:
        width, height = stream.width, stream.height
    raw = picture_bytes(decode_pixel_limit(width, height), 1, stream.pix_fmt)
    return min(limits.packet, max(MIN_PACKET_LIMIT, PACKET_PICTURE_RATIO * raw))


@dataclass(frozen=True, slots=True)
class Estimate:
    """A session's share of the budget, and what it is made of (for the refusal)."""

    total: int
    detail: str


def estimate_session(plan: ConfigurePlan, queue_depth: int, limits: Limits) -> Estimate:
    """The memory one session may use, from its CONFIGURE (module docstring)."""
    stream = plan.stream
    parts: list[tuple[str, int]] = [("session", SESSION_BYTES)]
    packets = packet_limit(plan, limits)
    if plan.mode == "encode":
        picture = picture_bytes(stream.width, stream.height, stream.pix_fmt)
        wire = frame_limit(stream.width, stream.height, stream.pix_fmt, plan.compression)
        # The FRAME being read, its planes decompressed, the picture and the queued ones.
        parts.append(("frames in flight", wire + (queue_depth + 2) * picture))
        parts.append(("encoder", (ENCODER_PICTURES + stream.max_delay) * picture))
    elif plan.mode == "decode":
        area = decode_pixel_limit(stream.width, stream.height)
        threads = (os.cpu_count() or 1) + 1 if stream.pipelined else 0
        parts.append(("packets in flight", (queue_depth + 1) * packets))
        parts.append(
            ("decoder", (DECODER_PICTURES + threads) * picture_bytes(area, 1, stream.pix_fmt))
        )
        output = picture_bytes(stream.width, stream.height, stream.pix_fmt)
        parts.append(("output", OUTPUT_PICTURES * output))
    else:
        job = plan.transcode
        assert job is not None
        area = decode_pixel_limit(job.source.width, job.source.height)
        decoded = picture_bytes(area, 1, stream.pix_fmt)
        picture = picture_bytes(stream.width, stream.height, stream.pix_fmt)
        parts.append(("packets in flight", (queue_depth + 1) * packets))
        parts.append(("decoder", DECODER_PICTURES * decoded))
        parts.append(("filters", FILTER_PICTURES * max(decoded, picture)))
        parts.append(("encoder", (ENCODER_PICTURES + stream.max_delay) * picture))
    total = sum(n for _, n in parts)
    detail = ", ".join(f"{name} {_mib(n)}" for name, n in parts)
    what = f"{plan.mode} {stream.codec} {stream.width}x{stream.height} {stream.pix_fmt.name}"
    return Estimate(total, f"{what}: {detail}")


def _mib(n: int) -> str:
    return f"{(n + MiB - 1) // MiB} MiB"


#: glibc's mallopt parameter for the number of malloc arenas.
_M_ARENA_MAX = -8
#: Arenas the server's threads share (glibc makes up to 8 per core otherwise).
ARENAS = 2


def _libc(name: str) -> Callable[..., int] | None:
    try:  # the symbols of the process itself: the C library's among them
        function: Callable[..., int] | None = getattr(ctypes.CDLL(None), name, None)
    except OSError:
        return None
    return function  # glibc only; None elsewhere


_malloc_trim = _libc("malloc_trim")
_mallopt = _libc("mallopt")


def tune_allocator() -> None:
    """Let the server's threads share :data:`ARENAS` malloc arenas (glibc; elsewhere a no-op).

    Each session brings threads (its connection, its engine, the codecs' own) and
    glibc gives a thread that meets contention an arena of its own, up to 8 per core;
    memory freed in one arena is reused only there, so after a busy spell the server
    kept tens of MiB per arena that no session used. Two arenas keep it within
    50 MiB of idle (docs/security.md); codec threads allocate little once open.
    """
    if _mallopt is not None:
        _mallopt(_M_ARENA_MAX, ARENAS)


def give_back_memory() -> None:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim``; elsewhere a
    no-op). A session's pictures are freed when its codecs close, but glibc keeps freed
    blocks of a few MiB in its arenas for reuse: without this, the server's RSS would
    stay at its busiest session's."""
    if _malloc_trim is not None:
        _malloc_trim(0)


class Reservation:
    """One session's share; :meth:`release` returns it (once, from any thread)."""

    def __init__(self, budget: MemoryBudget, size: int) -> None:
        self._budget = budget
        self.size = size
        self._released = False

    def release(self) -> None:
        if self._budget._release(self):
            give_back_memory()


class MemoryBudget:
    """The shares of the running sessions against ``--max-memory``; thread-safe."""

    def __init__(self, total: int) -> None:
        self.total = total
        tune_allocator()  # before the first session's threads allocate
        self._lock = threading.Lock()
        self._reserved = 0
        #: Engine threads that did not stop when their session ended (their share stays).
        self.stuck_engines = 0

    @property
    def available(self) -> int:
        """Bytes sessions may still reserve."""
        with self._lock:
            return max(0, self.total - BASE_BYTES - self._reserved)

    @property
    def reserved(self) -> int:
        with self._lock:
            return self._reserved

    def reserve(self, estimate: Estimate) -> Reservation:
        """Take ``estimate``'s share; raises CapacityError (busy) or UnsupportedConfigError."""
        size = estimate.total
        with self._lock:
            room = self.total - BASE_BYTES - self._reserved
            if size <= room:
                self._reserved += size
                return Reservation(self, size)
        whole = self.total - BASE_BYTES
        if size > whole:
            raise UnsupportedConfigError(
                f"this session needs about {_mib(size)} ({estimate.detail}), more than the "
                f"{_mib(whole)} sessions may use of this server's memory budget "
                f"(--max-memory {_mib(self.total)})"
            )
        raise CapacityError(
            f"server busy: this session needs about {_mib(size)} ({estimate.detail}); "
            f"{_mib(max(0, room))} of the memory budget (--max-memory {_mib(self.total)}) is left"
        )

    def _release(self, reservation: Reservation) -> bool:
        with self._lock:
            if reservation._released:
                return False
            reservation._released = True
            self._reserved -= reservation.size
            return True

    def session_ended(
        self,
        reservation: Reservation | None,
        worker: Stoppable | None,
        *,
        stopped: bool,
        log: logging.LoggerAdapter[logging.Logger],
        waited: float,
    ) -> None:
        """A session ended: its share comes back once its engine thread has closed its
        codecs. One that did not stop within ``waited`` s is logged and counted."""
        if worker is not None and not stopped:
            with self._lock:
                self.stuck_engines += 1
                stuck = self.stuck_engines
            log.error(
                "engine thread did not stop within %g s (%d such thread(s) since start); its "
                "memory stays reserved until it does",
                waited,
                stuck,
            )
            ended = time.monotonic()
            worker.when_stopped(
                lambda: log.warning(
                    "engine thread stopped %.0f s after its session ended",
                    time.monotonic() - ended,
                )
            )
        if reservation is None:
            return
        if worker is None:
            reservation.release()
        else:
            worker.when_stopped(reservation.release)


class Stoppable(Protocol):
    """An engine worker, as far as the budget is concerned (server/worker.py)."""

    def when_stopped(self, callback: Callable[[], None]) -> None: ...


__all__ = [
    "BASE_BYTES",
    "MIN_MAX_MEMORY",
    "Estimate",
    "MemoryBudget",
    "Reservation",
    "Stoppable",
    "estimate_session",
    "give_back_memory",
    "packet_limit",
    "picture_bytes",
]
