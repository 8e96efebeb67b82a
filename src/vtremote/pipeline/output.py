"""The output container: written unnamed (or under a hidden name), muxed, named only when complete.

A run that fails leaves no file under the target's name, so nothing truncated
passes for a good output, and a run that is killed leaves nothing at all
(pipeline/staging.py); ``keep_partial`` keeps what was written under a name
that says so. The :class:`Muxer` holds packets back until every output stream
is configured, so the header is written once with the right extradata.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from typing import Any, TypeAlias

import av
import av.error

from vtremote.errors import JobError, UsageError
from vtremote.pipeline.staging import Staged
from vtremote.pipeline.stats import JobStats
from vtremote.pipeline.timing import to_seconds

log = logging.getLogger(__name__)

Packet: TypeAlias = "av.Packet[Any]"
#: Packets held while waiting for every output stream to be configured.
MAX_PENDING_PACKETS = 20000


def open_output_stream_for_packets(output: av.container.OutputContainer, codec: str) -> Any:
    """An output stream that muxes packets made elsewhere (the remote encoder).

    ``add_stream`` would open a local encoder when the header is written and
    replace our extradata with its own. A stream created from a template is
    never opened, and its codec context still carries the parameters (size,
    extradata) the muxer copies into the header.
    """
    scratch = av.open(io.BytesIO(), "w", format="matroska")
    try:
        template = scratch.add_stream(codec)
        return output.add_stream_from_template(template)
    finally:
        scratch.close()


# --- muxing ---------------------------------------------------------------------------------------


class Muxer:
    """Writes packets once every output stream is configured; holds them until then."""

    def __init__(self, container: av.container.OutputContainer, stats: JobStats) -> None:
        self.container = container
        self.stats = stats
        self.ready: list[bool] = []
        self.pending: list[tuple[int, Packet]] = []
        self.started = False
        self.closed = False
        self.written = 0  # packets handed to the container

    def add(self) -> int:
        self.ready.append(False)
        return len(self.ready) - 1

    def set_ready(self, index: int) -> None:
        self.ready[index] = True
        if not self.started and all(self.ready):
            self.started = True
            pending, self.pending = self.pending, []
            for idx, pkt in pending:
                self._write(idx, pkt)

    def mux(self, index: int, packet: Packet) -> None:
        if self.started:
            self._write(index, packet)
            return
        self.pending.append((index, packet))
        if len(self.pending) > MAX_PENDING_PACKETS:
            waiting = [i for i, r in enumerate(self.ready) if not r]
            raise JobError(
                f"{len(self.pending)} packets are waiting for output stream(s) {waiting} to "
                "receive their first frame"
            )

    def _write(self, index: int, packet: Packet) -> None:
        end = to_seconds(
            (packet.pts if packet.pts is not None else packet.dts or 0) + (packet.duration or 0),
            packet.time_base,
        )
        self.stats.bytes_out += packet.size
        self.written += 1
        if end is not None and end > self.stats.out_time:
            self.stats.out_time = end
        try:
            self.container.mux(packet)
        except av.error.FFmpegError as e:
            raise JobError(f"writing {self.stats.output} failed on stream {index}: {e}") from e

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.started:
            waiting = [i for i, r in enumerate(self.ready) if not r]
            if waiting:
                raise JobError(
                    f"output stream(s) {waiting} received no frames: nothing was encoded (check "
                    "-ss / -t / -map)"
                )
        if not self.written:
            # Every stream was set up from the input (copy, packet transcode) but what -ss,
            # -t or -frames:v keep is nothing: FFmpeg never wrote a header, there is no file.
            raise JobError("no packet was written: nothing was kept (check -ss / -t / -map)")
        self.container.close()


# --- the output file -----------------------------------------------------------------------------


def _is_plain_path(url: str) -> bool:
    """A file name on this machine (not ``-``, a device, a pipe or a protocol URL)."""
    if url == "-" or "://" in url or url.startswith(("pipe:", "file:")):
        return False
    return not os.path.exists(url) or os.path.isfile(url)


def partial_name(url: str) -> str:
    """``NAME.partial.EXT``: where a failed run's output is kept on request."""
    stem, ext = os.path.splitext(url)
    return f"{stem}.partial{ext}"


def close_failed(container: av.container.OutputContainer) -> None:
    """Close the container of a failed run; its own errors no longer matter."""
    try:
        container.close()
    except (av.error.FFmpegError, OSError, ValueError) as e:
        log.debug("closing the failed output %s: %s", container.name, e)


def guess_format(url: str) -> str:
    """The muxer FFmpeg picks for ``url``'s name; ValueError when the name tells nothing.

    Needed where the file FFmpeg writes has another name (``/proc/self/fd/N``)."""
    named = io.BytesIO()
    named.name = url  # PyAV guesses the format from a file object's name
    container = av.open(named, "w")
    try:
        return str(container.format.name)
    finally:
        with contextlib.suppress(av.error.FFmpegError, ValueError):
            container.close()


class OutputFile:
    """The output container, written where no one mistakes it for a finished file.

    :class:`~vtremote.pipeline.staging.Staged` keeps it unnamed (or under a hidden
    name) until :meth:`commit` gives it the target's name once the run has
    succeeded; :meth:`abort` drops it, or with ``keep_partial`` names it
    ``NAME.partial.EXT`` and says so, so a failed run never leaves a finished,
    playable, truncated file under the name a script expects.
    """

    def __init__(
        self,
        url: str,
        fmt: str | None,
        *,
        overwrite: bool | None,
        keep_partial: bool = False,
        options: dict[str, str] | None = None,
        in_place: bool = False,
    ) -> None:
        self.url = url
        self.keep_partial = keep_partial
        null = fmt == "null"
        if not null and url != "-" and os.path.exists(url) and overwrite is not True:
            raise JobError(
                f"{url} already exists; use -y to overwrite it"
                + (" (-n given)" if overwrite is False else "")
            )
        if url == "-" and not null:
            raise UsageError("output '-' (stdout) is only supported with -f null")
        #: The target itself, when written in place (removed or marked on failure).
        self.temp: str | None = None
        self.staged: Staged | None = None
        target = os.devnull if null else url
        #: ``in_place``: the file being written is the target itself (removed or marked on failure).
        self.in_place = in_place and not null and _is_plain_path(url) and "%" not in url
        if self.in_place:
            self.temp = url
        elif (
            not null and _is_plain_path(url) and "%" not in url
        ):  # a pattern (segment, image2) names many files
            self.staged = Staged(url)
            target = self.staged.path
        try:
            if self.staged is not None and self.staged.anonymous and fmt is None:
                fmt = guess_format(url)  # the unnamed file's path has no extension
            self.container: av.container.OutputContainer = av.open(
                target, "w", format=fmt, options=options or None
            )
        except ValueError as e:
            self._drop()
            raise UsageError(
                f"cannot tell the output format of {url!r}: {e}; name it with -f (mp4, mov, "
                "matroska, mpegts, nut, null)"
            ) from e
        except av.error.FFmpegError as e:
            self._drop()
            raise JobError(f"cannot open output {url!r}: {e.strerror or e}") from e
        self.done = False

    @property
    def partial_name(self) -> str:
        return partial_name(self.url)

    def commit(self) -> None:
        """The run succeeded and the container is closed: give the file its name.

        If that fails, :meth:`abort` still drops (or keeps, marked) the written file."""
        if self.staged is not None:
            self.staged.commit()
            self.staged = None
        self.done = True

    def abort(self) -> None:
        """The run failed: close what is open and take the partial file away (or keep it,
        marked)."""
        if self.done:
            return
        self.done = True
        close_failed(self.container)
        kept = self.keep_partial and (
            self.staged is not None or (self.temp is not None and os.path.exists(self.temp))
        )
        if kept and self.staged is not None:
            self.staged.keep(self.partial_name)
            self.staged = None
        elif kept and self.temp is not None:
            os.replace(self.temp, self.partial_name)
        if kept:
            log.warning(
                "the run failed; what was written is kept as %s (incomplete)", self.partial_name
            )
        self._drop()

    def _drop(self) -> None:
        if self.staged is not None:
            self.staged.discard()
            self.staged = None
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)
            self.temp = None
