"""Inputs: open, seek (``-ss`` before ``-i``), demux several inputs in decode-time order."""

from __future__ import annotations

import heapq
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

import av
import av.error

from vtremote.errors import JobError, UsageError
from vtremote.pipeline.spec import InputSpec, OutputSpec, asked_wire_format
from vtremote.pipeline.timing import to_seconds

log = logging.getLogger(__name__)

Packet: TypeAlias = "av.Packet[Any]"


def lavfi_pixel_format(spec: InputSpec, out: OutputSpec) -> str | None:
    """The pixel format a lavfi source should end in so that its frames go on the wire as they are.

    A remote encoder takes NV12 or P010: a filter source (``testsrc2``, ``color``...)
    that ends in that format itself spares this process a conversion per frame, as
    FFmpeg's format negotiation does. Only for a single chain (no labels, no ``;``) whose
    frames nothing changes here (no ``-vf``, no ``-s``), and only where the wire format
    does not depend on the source's depth (H.264 is always NV12; HEVC when ``-pix_fmt``
    names it). None: open the graph as given.
    """
    if spec.format != "lavfi" or out.no_video or out.video_filter or out.size:
        return None
    if any(c in spec.url for c in ";[]") or out.remote_codec is None:
        return None
    if out.remote_codec == "h264":
        return "nv12"
    return asked_wire_format(out.pix_fmt, out.remote_codec)


class Input:
    def __init__(self, index: int, spec: InputSpec, pixel_format: str | None = None) -> None:
        """Open ``spec``; ``pixel_format`` (see :func:`lavfi_pixel_format`) ends a lavfi chain
        in that format when the graph takes it (else the graph is opened as given)."""
        self.index = index
        self.spec = spec
        self.container = self._open(pixel_format)
        start = self.container.start_time
        self.start = start / 1_000_000 if start is not None else 0.0
        if spec.seek > 0:
            try:
                self.container.seek(
                    round((self.start + spec.seek) * 1_000_000), backward=True, any_frame=False
                )
            except (av.error.FFmpegError, ValueError) as e:
                log.info(
                    "input %d cannot seek (%s); decoding from the start and dropping until %.3f s",
                    index,
                    e,
                    spec.seek,
                )
        self.streams: list[Any] = list(self.container.streams)

    def _open(self, pixel_format: str | None) -> Any:
        spec = self.spec
        options = {k: v for k, v in spec.options.items() if k != "threads"} or None
        if pixel_format is not None:
            try:
                container = av.open(
                    f"{spec.url},format={pixel_format}", format=spec.format, options=options
                )
            except (av.error.FFmpegError, ValueError):  # an audio source, say: the graph as given
                pass
            else:
                if container.streams.video:
                    return container
                container.close()
        try:
            return av.open(spec.url, format=spec.format, options=options)
        except av.error.FFmpegError as e:
            raise JobError(f"cannot open input {spec.url!r}: {e.strerror or e}") from e
        except ValueError as e:  # unknown format name
            raise UsageError(f"cannot open input {spec.url!r}: {e}") from e

    @property
    def duration(self) -> float | None:
        d = self.container.duration
        return d / 1_000_000 if d else None

    def close(self) -> None:
        self.container.close()


#: Packets a single input's demuxer thread may read ahead of the job.
READ_AHEAD = 8

_END = object()


def read_ahead(packets: Iterator[Packet], depth: int = READ_AHEAD) -> Iterator[Packet]:
    """``packets``, read on a thread of their own up to ``depth`` ahead of the consumer.

    Reading (a file, a lavfi graph drawing its frames) runs in FFmpeg without the GIL,
    so it overlaps with the job's own work on the packet before, as FFmpeg's demuxer
    threads do. The reader's exception is raised here, in order; closing this generator
    (the job ends early, Ctrl-C) stops the reader before it returns.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for packet in packets:
                if not put(packet):
                    return
            put(_END)
        except BaseException as e:  # raised in the consumer, where the packet would have been
            put(e)

    thread = threading.Thread(target=reader, name="vtremote-demux", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class RunClock:
    """Seconds a job has run, not counting its pauses: the clock ``-re`` paces reads by, and
    the switch ``p``/``u`` on a media server's stdin turn (jellyfin-ffmpeg's throttling)."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._origin = now()
        self._paused_at: float | None = None
        self._running = threading.Event()
        self._running.set()
        self._lock = threading.Lock()  # pause/resume come from another thread (stdin)

    def restart(self) -> None:
        """Count from now (the first read), keeping a pause that is on."""
        with self._lock:
            self._origin = self._now()
            if self._paused_at is not None:
                self._paused_at = self._origin

    def elapsed(self) -> float:
        with self._lock:
            end = self._paused_at if self._paused_at is not None else self._now()
            return end - self._origin

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> bool:
        """Stop the clock; False when it was already stopped."""
        with self._lock:
            if self._paused_at is not None:
                return False
            self._paused_at = self._now()
            self._running.clear()
            return True

    def resume(self) -> bool:
        """Start it again where it stopped; False when it was running."""
        with self._lock:
            if self._paused_at is None:
                return False
            self._origin += self._now() - self._paused_at
            self._paused_at = None
            self._running.set()
            return True

    def wait_running(self, timeout: float) -> bool:
        return self._running.wait(timeout)


def paced(
    packets: Iterator[Packet],
    spec: InputSpec,
    clock: RunClock,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Packet]:
    """``packets`` no faster than ``spec.read_rate`` x real time after the initial burst, as
    ffmpeg's ``-re`` / ``-readrate`` (each stream timed from its own first packet)."""
    rate = spec.read_rate
    if not rate:
        yield from packets
        return
    first: dict[int, float] = {}
    for packet in packets:
        t = to_seconds(packet.dts if packet.dts is not None else packet.pts, packet.time_base)
        if t is not None:
            start = first.setdefault(packet.stream.index, t)
            due = max(t - start - spec.read_burst, 0.0) / rate
            while (wait := due - clock.elapsed()) > 0.0005:  # finer than a sleep can keep
                sleep(min(wait, 0.05))
        yield packet


def merged_demux(
    inputs: list[tuple[Input, list[Any]]], clock: RunClock | None = None
) -> Iterator[tuple[Input, Packet]]:
    """Packets of several inputs, interleaved by decode time (one input: its own order, read
    ahead), each paced by its ``-re`` / ``-readrate`` on ``clock``."""
    clock = clock or RunClock()
    if len(inputs) == 1:
        inp, streams = inputs[0]
        for packet in read_ahead(paced(inp.container.demux(streams), inp.spec, clock)):
            yield inp, packet
        return
    iters = [(inp, paced(inp.container.demux(streams), inp.spec, clock)) for inp, streams in inputs]
    heap: list[tuple[float, int, int, Packet]] = []
    seq = 0

    def push(k: int) -> None:
        nonlocal seq
        inp, it = iters[k]
        for packet in it:
            t = to_seconds(packet.dts if packet.dts is not None else packet.pts, packet.time_base)
            heapq.heappush(heap, (t if t is not None else -math.inf, seq, k, packet))
            seq += 1
            return

    for k in range(len(iters)):
        push(k)
    while heap:
        _t, _s, k, packet = heapq.heappop(heap)
        yield iters[k][0], packet
        push(k)
