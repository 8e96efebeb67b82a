"""A whole job: open inputs and the output, one handler per output stream, demux -> handlers -> mux.

One loop on the caller's thread drives everything; the remote codecs pipeline
on their own receiver threads (client/), PyAV's codecs and filters release the
GIL. Output streams are created up front, in ``-map`` order, and configured
when their first frame arrives (size after filters, time base); the
:class:`~vtremote.pipeline.output.Muxer` holds packets back until every stream
is configured, so the header is written once with the right extradata, as
ffmpeg does.

Timestamps: as in ffmpeg, output time 0 is the input's start time plus any
``-ss``; packets and frames are shifted by that offset, and ``-t`` / ``-frames:v``
end the run.

Use from Python::

    spec = JobSpec(inputs=[InputSpec("in.mkv")],
                   output=OutputSpec("out.mkv",
                                     codecs={"v": "h264_videotoolbox_remote", "a": "copy"},
                                     video={"bitrate": 4_000_000}, video_filter="scale=-2:720"))
    stats = Job(spec).run()
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from vtremote.client.encoder import EncoderSettings
from vtremote.client.stats import SessionReport
from vtremote.errors import ConfigError, JobError, UsageError
from vtremote.pipeline.handler import Handler, JobContext
from vtremote.pipeline.hls import HlsOutput, is_hls, open_hls, segment_key_frames
from vtremote.pipeline.inputs import Input, RunClock, lavfi_pixel_format, merged_demux
from vtremote.pipeline.output import Muxer, OutputFile
from vtremote.pipeline.select import drop_uncopyable_subtitles, select_streams
from vtremote.pipeline.spec import REMOTE_CODECS, JobSpec, RemoteOptions
from vtremote.pipeline.stats import JobStats
from vtremote.pipeline.streams import AudioHandler, CopyHandler
from vtremote.pipeline.video import make_video_handler

log = logging.getLogger(__name__)


class Job:
    """One run: ``spec`` in, the output file and :class:`JobStats` out.

    ``on_progress(force)`` is called after every demuxed packet (and once at the
    end with ``force=True``); the command line draws its status line from
    :attr:`stats` there.
    """

    def __init__(self, spec: JobSpec, *, on_progress: Callable[[bool], None] | None = None) -> None:
        self.spec = spec
        self.on_progress = on_progress
        self.stats = JobStats(output=spec.output.url)
        #: The remote sessions the handlers opened, in order (closed at the end of the run).
        self.sessions: list[SessionReport] = []
        self.handlers: list[Handler] = []
        self.inputs: list[Input] = []
        self.server: Any = None
        self.server_address: str | None = None
        self.file: OutputFile | HlsOutput | None = None
        self.muxer: Muxer
        #: Set by :meth:`stop` (another thread, a signal): end the run at the next packet,
        #: finishing the output as if the input had ended (ffmpeg's ``q``).
        self.stop_requested = False
        #: The run's clock: -re paces reads by it; :meth:`pause` stops it.
        self.clock = RunClock()

    @property
    def output(self) -> Any:
        """The output container (``av.container.OutputContainer``)."""
        assert self.file is not None
        return self.file.container

    # -- remote hosts ----------------------------------------------------------------------------

    def _needs_remote(self) -> bool:
        return bool(self.spec.output.remote_codec) or any(i.remote_codec for i in self.spec.inputs)

    def _named_host(self) -> RemoteOptions | None:
        for ro in [self.spec.output.remote, *(i.remote for i in self.spec.inputs)]:
            if ro.host:
                return ro
        return None

    def _resolve(self, ro: RemoteOptions) -> RemoteOptions:
        """A codec's remote options with the run's host: the one named anywhere, else the
        embedded server."""
        named = self._named_host()
        ro = ro.merged(named) if named else ro
        return ro if ro.host else dataclasses.replace(ro, host=self.server_address)

    def _context(self) -> JobContext:
        """What the handlers see of this job (remote hosts resolved: call after the server)."""
        return JobContext(
            output=self.spec.output,
            container=self.output,
            muxer=self.muxer,
            remote_output=self._resolve(self.spec.output.remote),
            remote_inputs=tuple(self._resolve(spec.remote) for spec in self.spec.inputs),
            add_session=self.sessions.append,
        )

    def _start_embedded_server(self) -> None:
        """No -vt_remote_host: serve this run from a vtremoted inside this process (loopback)."""
        try:
            from vtremote.server import Server, ServerConfig
        except ImportError as e:
            raise JobError(
                f"no -vt_remote_host given and the embedded server cannot start: {e}"
            ) from e
        self.server = Server(ServerConfig(listen="127.0.0.1:0", engine="auto"))
        self.server.start()
        host, port = self.server.address[:2]
        self.server_address = f"{host}:{port}"
        self.stats.embedded_server = self.server_address
        log.info(
            "no -vt_remote_host: this run is served by an embedded vtremoted on %s",
            self.server_address,
        )

    # -- output ----------------------------------------------------------------------------------

    @property
    def output_format(self) -> str:
        return str(self.output.format.name)

    def stop(self) -> None:
        """Ask the run to end early but cleanly: what was demuxed so far is finished and written."""
        self.stop_requested = True
        self.clock.resume()

    def pause(self) -> bool:
        """Hold the run between two packets (its remote sessions stay open, kept alive by
        PINGs); False when it was paused already."""
        return self.clock.pause()

    def resume(self) -> bool:
        """Go on from the packet where :meth:`pause` held it; False when it was running."""
        return self.clock.resume()

    def _open_output(self) -> None:
        out = self.spec.output
        if is_hls(out.format, out.url):
            out.format = "hls"
            if not out.force_key_frames and not out.copyts:
                # (With -copyts the clock starts wherever the source's does: a count from 0
                # would force every frame until it caught up, so the caller says where.)
                out.force_key_frames = segment_key_frames(out.format_options)
            self.file = open_hls(out.url, out.format_options, self.spec.overwrite, out.keep_partial)
        else:
            self.file = OutputFile(
                out.url,
                out.format,
                overwrite=self.spec.overwrite,
                keep_partial=out.keep_partial,
                options=out.format_options,
                in_place=out.in_place,
            )
        self.output.metadata.update(out.metadata)
        self.stats.format = self.output_format
        self.muxer = Muxer(self.output, self.stats)

    def _make_handler(self, ctx: JobContext, inp: Input, stream: Any) -> Handler:
        out = self.spec.output
        idx = self.muxer.add()
        kind = stream.type
        if kind == "video":
            codec = out.codecs.get("v") or self.output.default_video_codec
            if codec == "copy":
                return CopyHandler(ctx, inp, stream, idx)
            if codec in ("none", ""):
                raise UsageError("video codec 'none': use -vn")
            return make_video_handler(ctx, inp, stream, idx, codec)
        if kind == "audio":
            codec = out.codecs.get("a") or "copy"
            return (
                CopyHandler(ctx, inp, stream, idx)
                if codec == "copy"
                else AudioHandler(ctx, inp, stream, idx, codec)
            )
        codec = out.codecs.get("s" if kind == "subtitle" else "d") or "copy"
        if codec != "copy":
            raise UsageError(
                f"{kind} streams can only be copied (-c:{kind[0]} copy) or left out (-{kind[0]}n)"
            )
        return CopyHandler(ctx, inp, stream, idx)

    # -- run -------------------------------------------------------------------------------

    def run(self) -> JobStats:
        """Run the job to the end; raises a :class:`~vtremote.errors.VTRemoteError` on failure,
        in which case no file is left under the output's name."""
        ok = False
        try:
            self._run()
            ok = True
        finally:
            self._cleanup(ok)
        return self.stats

    def _progress(self, force: bool = False) -> None:
        if self.on_progress is not None:
            self.on_progress(force)

    def _run(self) -> None:
        check_spec(self.spec)
        self._open_output()
        self._open_handlers()
        self.stats.total_time = self._expected_duration()
        self._demux()
        for h in self.handlers:
            h.finish()
        self.muxer.close()
        assert self.file is not None
        self.file.commit()
        self._update_counts()
        self._progress(force=True)
        self._report()

    def _open_handlers(self) -> None:
        """The inputs, the streams chosen from them, and one handler per output stream."""
        out = self.spec.output
        self.inputs = [
            Input(i, spec, lavfi_pixel_format(spec, out)) for i, spec in enumerate(self.spec.inputs)
        ]
        selected = select_streams(self.inputs, out)
        if not out.maps:
            selected = drop_uncopyable_subtitles(selected, self.output, out)
        if not selected:
            raise UsageError("no stream selected for the output (check -map / -an / -vn / -sn)")
        if self._needs_remote() and self._named_host() is None:
            self._start_embedded_server()
        ctx = self._context()
        for inp, stream in selected:
            self.handlers.append(self._make_handler(ctx, inp, stream))
            if out.video_tag and stream.type == "video":
                self.handlers[-1].out_stream.codec_context.codec_tag = out.video_tag

    def _demux(self) -> None:
        """Feed every demuxed packet to its stream's handler until the inputs or the handlers
        are done, or :meth:`stop` was called."""
        by_stream = {(h.input.index, h.in_stream.index): h for h in self.handlers}
        demux_plan = [
            (inp, [s for s in inp.streams if (inp.index, s.index) in by_stream])
            for inp in self.inputs
        ]
        demux_plan = [(inp, streams) for inp, streams in demux_plan if streams]
        self.clock.restart()
        for inp, packet in merged_demux(demux_plan, self.clock):
            while not self.clock.wait_running(0.2) and not self.stop_requested:
                pass
            handler = by_stream.get((inp.index, packet.stream.index))
            if handler is None:
                continue
            handler.feed(packet)
            self._update_counts()
            self._progress()
            if all(h.done for h in self.handlers if not h.sparse) or self.stop_requested:
                break

    def _report(self) -> None:
        """The end of the run in :attr:`stats`: size, streams, remote sessions, failovers."""
        out = self.spec.output
        self.stats.finished = time.monotonic()
        if out.format not in ("null", "hls") and out.url != "-":
            with contextlib.suppress(OSError):
                self.stats.size_bytes = os.path.getsize(out.url)
        self.stats.streams = [h.describe() for h in self.handlers]
        self.stats.remote = [s.describe() for s in self.sessions]
        self.stats.failovers = sum(s.failovers for s in self.sessions)
        self.stats.fallbacks = sum(1 for s in self.sessions if s.fell_back)

    def _expected_duration(self) -> float | None:
        out = self.spec.output
        ends = [h.end for h in self.handlers if h.end is not None]
        if ends:
            return min(ends)
        durations = [inp.duration - inp.spec.seek - out.seek for inp in self.inputs if inp.duration]
        return max(durations) if durations else None

    def _update_counts(self) -> None:
        """Video frames the handlers made and wire bytes of the sessions, as of now."""
        self.stats.frames = sum(h.video_frames for h in self.handlers)
        sent = received = 0
        for s in self.sessions:
            st = s.stats
            sent += st.bytes_sent
            received += st.bytes_received
        self.stats.wire_sent, self.stats.wire_received = sent, received

    def _cleanup(self, ok: bool) -> None:
        for h in self.handlers:
            with contextlib.suppress(Exception):
                h.close()
        for s in self.sessions:
            s.close()
        if not ok and self.file is not None:
            self.file.abort()
        for inp in self.inputs:
            with contextlib.suppress(Exception):
                inp.close()
        if self.server is not None:
            self.server.shutdown()
            self.server = None


def check_spec(spec: JobSpec) -> None:
    """Checks that need no file or server, so that usage errors come before any work."""
    out = spec.output
    if out.remote_codec is None and out.video_codec and out.video_codec.endswith("_remote"):
        raise UsageError(
            f"unknown remote encoder {out.video_codec!r}: use {', '.join(REMOTE_CODECS)}"
        )
    for inp in spec.inputs:
        if inp.remote_codec is None and inp.video_codec and inp.video_codec.endswith("_remote"):
            raise UsageError(
                f"unknown remote decoder {inp.video_codec!r}: use {', '.join(REMOTE_CODECS)}"
            )
    if out.remote_codec == "hevc" and out.video.get("level") is not None:
        log.warning(
            "-level is ignored by hevc_videotoolbox_remote "
            "(the reference's HEVC encoder has no level option)"
        )
    try:
        EncoderSettings.from_kwargs(**out.video)
    except ConfigError as e:
        raise UsageError(str(e)) from e
