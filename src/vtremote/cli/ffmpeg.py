"""``vtremote-ffmpeg``: an ``ffmpeg`` for media servers whose video encodes run on a vtremoted.

Point Jellyfin's or Emby's "FFmpeg path" at this command (docs/mediaservers.md).
For each command line it:

1. answers information options (``-version``, ``-encoders``...) in ffmpeg's format;
2. translates the line into a job (:mod:`vtremote.mediaserver.translate`): the
   configured encoder names become remote encoders, hardware filters software ones;
3. runs it on the configured servers in order; when none can take it (down,
   busy, refused) it encodes here with PyAV (``on_unavailable = "local"``);
4. hands a line it cannot run, unchanged, to the configured real ffmpeg
   (``ffmpeg_path``), with one log line saying why.

Every outcome is logged on stderr (media servers keep it in their transcode
logs) and counted (:mod:`vtremote.mediaserver.counters`). Progress goes to
stderr in ffmpeg's ``frame= fps= q= size= time= bitrate= speed=`` form; ``q`` on
stdin (how media servers stop ffmpeg) and SIGTERM/SIGINT finish the output
cleanly; ``p`` / ``u`` pause and resume the run (jellyfin-ffmpeg's throttling: remote
sessions stay open, kept alive by PINGs) and ``?`` lists the keys. Exit codes are
ffmpeg's: 0 done, 1 failed, 255 stopped by a signal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any, TextIO

import av
import av.error

from vtremote.cli.null_run import counting_only, run_counting
from vtremote.errors import (
    AuthenticationError,
    CapacityError,
    ConfigError,
    ConnectionLostError,
    RemoteError,
    TimeoutExpiredError,
    UsageError,
    VTRemoteError,
)
from vtremote.mediaserver import counters, info
from vtremote.mediaserver.argv import Command, parse_argv
from vtremote.mediaserver.config import MediaServerConfig, load_config
from vtremote.mediaserver.filters import NeedsGeometry, Unsupported
from vtremote.mediaserver.line import read_command
from vtremote.mediaserver.translate import MediaInfo, Plan, probe_media, translate
from vtremote.pipeline import Job, check_spec
from vtremote.pipeline.ffmpeg_options.levels import LOGGING_LEVELS, loglevel_name
from vtremote.pipeline.inputs import RunClock
from vtremote.pipeline.stats import JobStats

log = logging.getLogger("vtremote.ffmpeg")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SIGNAL = 255
#: Failures that mean "this server cannot take the job now": the next server, then the fallback.
UNAVAILABLE = (
    ConnectionLostError,
    RemoteError,
    TimeoutExpiredError,
    AuthenticationError,
    CapacityError,
)

#: ffmpeg's answer to '?' on stdin, with jellyfin-ffmpeg's throttling keys (Jellyfin looks for
#: the 'p' line to decide whether it may throttle), listing the keys this command honours.
KEY_HELP = (
    "key    function\n"
    "?      show this help\n"
    "p      pause transcoding\n"
    "u      unpause transcoding\n"
    "q      quit\n"
)

# --- progress -------------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    cs = max(int(round(seconds * 100)), 0)
    h, rem = divmod(cs, 360000)
    m, rem = divmod(rem, 6000)
    s, c = divmod(rem, 100)
    return f"{h:02d}:{m:02d}:{s:02d}.{c:02d}"


def progress_line(stats: JobStats) -> str:
    """One status line laid out as ffmpeg's (media servers parse ``fps=``, ``time=``, ``size=``)."""
    fps = stats.fps
    size_kb = (stats.size_bytes if stats.size_bytes is not None else stats.bytes_out) / 1024
    bitrate = f"{stats.bitrate / 1000:6.1f}kbits/s" if stats.out_time > 0 else "N/A"
    speed = f"{stats.speed:4.3g}x" if stats.elapsed > 0 and stats.out_time > 0 else "N/A"
    return (
        f"frame={stats.frames:5d} fps={fps:3.{1 if fps < 9.95 else 0}f} q=-1.0 "
        f"size={size_kb:8.0f}kB "
        f"time={_clock(stats.out_time)} bitrate={bitrate} speed={speed}"
    )


class Progress:
    """Prints :func:`progress_line` every half second, ``\\r``-terminated as ffmpeg does."""

    def __init__(self, stats: JobStats, stream: TextIO, enabled: bool) -> None:
        self.stats, self.stream, self.enabled = stats, stream, enabled
        self.last = 0.0

    def update(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        self.stream.write(progress_line(self.stats) + ("\n" if force else "\r"))
        self.stream.flush()


# --- the run --------------------------------------------------------------------------------------


class Runner:
    """One command line: the targets in order, the stop requests, the outcome."""

    def __init__(self, cmd: Command, config: MediaServerConfig, *, stats_enabled: bool) -> None:
        self.cmd = cmd
        self.config = config
        self.stats_enabled = stats_enabled
        self.job: Any = None
        self.stopped_by_signal = False
        self.stop_requested = False
        #: What 'p' / 'u' on stdin hold and release: the running job, or the clock of a
        #: counting run; a pause asked for before the run starts applies when it does.
        self.pausable: Job | RunClock | None = None
        self.pause_wanted = False

    # Stop requests: 'q' on stdin (media servers), SIGTERM/SIGINT (the first finishes cleanly).
    def request_stop(self) -> None:
        self.stop_requested = True
        if self.job is not None:
            self.job.stop()

    def set_paused(self, paused: bool) -> None:
        """jellyfin-ffmpeg's throttling: 'p' holds the run, 'u' (or 'p' again) releases it."""
        self.pause_wanted = paused
        target = self.pausable
        if target is None:
            return
        if target.pause() if paused else target.resume():
            log.info("%s on stdin", "paused" if paused else "resumed")

    def on_key(self, key: bytes) -> bool:
        """One key read on stdin (ffmpeg's keyboard interaction); False ends the watch."""
        if key in (b"q", b"Q"):
            log.info("q on stdin: finishing the output")
            self.request_stop()
            return False
        if key == b"?":
            sys.stderr.write(KEY_HELP)
            sys.stderr.flush()
        elif key == b"p":
            self.set_paused(not self.pause_wanted)
        elif key == b"u":
            self.set_paused(False)
        return True

    def watch_stdin(self) -> None:
        def read() -> None:
            stream = sys.stdin.buffer if sys.stdin is not None else None
            if stream is None:
                return
            with contextlib.suppress(OSError, ValueError):
                while True:
                    ch = stream.read(1)
                    if not ch or not self.on_key(ch):
                        return

        threading.Thread(target=read, name="vtremote-ffmpeg-stdin", daemon=True).start()

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopped_by_signal:
            raise KeyboardInterrupt
        self.stopped_by_signal = True
        log.info("received signal %d: finishing the output", signum)
        self.request_stop()

    def run_plan(self, plan: Plan) -> Any:
        check_spec(plan.spec)
        if counting_only(plan.spec):
            return self._run_counting(plan)
        job = Job(plan.spec)
        progress = Progress(job.stats, sys.stderr, self.stats_enabled)
        job.on_progress = progress.update
        self.job = job
        self._hold(job)
        if self.stop_requested:
            job.stop()
        try:
            return job.run()
        finally:
            self.job = self.pausable = None

    def _hold(self, target: Job | RunClock) -> None:
        self.pausable = target
        if self.pause_wanted:
            self.set_paused(True)

    def _run_counting(self, plan: Plan) -> JobStats:
        """A capability probe (lavfi into -f null): counted, not piped through a job."""
        stats = JobStats(output=plan.spec.output.url, format="null")
        clock = RunClock()
        progress = Progress(stats, sys.stderr, self.stats_enabled)
        self._hold(clock)
        try:
            return run_counting(
                plan.spec, stats, clock, lambda: self.stop_requested, progress.update
            )
        finally:
            self.pausable = None

    def targets(self) -> list[str | None]:
        """The servers as one pool ("" = an embedded server on loopback), then None = this
        machine."""
        servers: list[str | None] = [self.config.pool]
        if self.config.on_unavailable == "local":
            servers.append(None)
        return servers

    def plan(self, target: str | None, media: MediaInfo | None) -> tuple[Plan, MediaInfo | None]:
        """The job for ``target``, and what is known of the main input (read once)."""
        if media is None and self.cmd.inputs:
            # A live input is opened once more only if the chain needs its size.
            first = read_command(self.cmd).inputs[0]
            media = (
                MediaInfo()
                if "://" in first.url
                else probe_media(first.url, first.format, first.options)
            )
        try:
            return translate(self.cmd, self.config, server=target, media=media), media
        except NeedsGeometry:
            if not self.cmd.inputs or (media is not None and media.width):
                raise
            first = read_command(self.cmd).inputs[0]
            media = probe_media(first.url, first.format, first.options)
            return translate(self.cmd, self.config, server=target, media=media), media

    def run(self) -> int:
        state = self.config.state_path
        counters.bump(state, "runs")
        media = None
        last_error: Exception | None = None
        targets = self.targets()
        for n, target in enumerate(targets):
            try:
                plan, media = self.plan(target, media)
            except (Unsupported, UsageError) as e:
                return hand_to_ffmpeg(self.config, self.cmd.argv, str(e))
            # Capability probes on lavfi sources (Jellyfin's runtime-key and hwaccel-flag checks)
            # are answered here, so the media server learns what this command does.
            probe = any(i.format == "lavfi" for i in plan.spec.inputs)
            if (
                not plan.remote
                and not probe
                and target is not None
                and self.config.ffmpeg_path
                and self.config.local_lines == "ffmpeg"
            ):
                return hand_to_ffmpeg(
                    self.config,
                    self.cmd.argv,
                    "no video encode for a server in this line",
                    counter="ffmpeg_passthrough",
                )
            for note in plan.notes:
                log.info("%s", note)
            if target == "" and plan.remote:
                log.info("no server configured: an embedded vtremoted on loopback encodes this run")
            try:
                stats = self.run_plan(plan)
            except UNAVAILABLE as e:
                if not plan.remote:
                    raise
                last_error = e
                self._unavailable(e, target, targets[n + 1 :])
                if self.stop_requested:
                    return EXIT_SIGNAL if self.stopped_by_signal else EXIT_ERROR
                continue
            except (UsageError, Unsupported) as e:
                return hand_to_ffmpeg(self.config, self.cmd.argv, str(e))
            except (VTRemoteError, av.error.FFmpegError, OSError) as e:
                # The run failed for a reason of its own (its output is already taken away):
                # a real ffmpeg may still manage the line, so playback does not break.
                if self.config.ffmpeg_path and not self.stop_requested:
                    return hand_to_ffmpeg(
                        self.config, self.cmd.argv, f"vtremote failed: {_describe(e)}"
                    )
                raise
            self._report(plan, stats, target)
            return EXIT_SIGNAL if self.stopped_by_signal else EXIT_OK
        if self.config.on_unavailable == "ffmpeg":
            return hand_to_ffmpeg(
                self.config, self.cmd.argv, f"no server could take the job ({last_error})"
            )
        counters.bump(state, "failed")
        log.error("no server could take the job: %s", last_error)
        return EXIT_ERROR

    def _unavailable(self, e: Exception, target: str | None, rest: list[str | None]) -> None:
        """Count and log a server that cannot take the job, naming what is tried next."""
        counters.bump(self.config.state_path, "server_unavailable")
        if rest:
            where = "the next server" if rest[0] else "a local encoder"
        else:
            where = (
                "ffmpeg"
                if self.config.on_unavailable == "ffmpeg"
                else "nothing (on_unavailable = fail)"
            )
        log.warning(
            "server %s cannot take the job (%s); falling back to %s", target or "embedded", e, where
        )

    def _report(self, plan: Plan, stats: JobStats, target: str | None) -> None:
        state = self.config.state_path
        if plan.remote:
            sessions = (
                ", ".join(f"{s.get('server')} ({s.get('engine')})" for s in stats.remote) or "?"
            )
            log.info(
                "video encoded remotely by %s: %d frames, %.2fx realtime",
                sessions,
                stats.frames,
                stats.speed,
            )
            counters.bump(state, "remote")
        elif target is None:
            log.warning(
                "video encoded locally with %s (fallback): %d frames",
                plan.video_encoder,
                stats.frames,
            )
            counters.bump(state, "local_fallback")
        else:
            counters.bump(state, "no_video_encode")


def _describe(e: BaseException) -> str:
    return str(getattr(e, "strerror", None) or e)


def hand_to_ffmpeg(
    config: MediaServerConfig, argv: Sequence[str], reason: str, counter: str = "ffmpeg_fallback"
) -> int:
    """Replace this process with the real ffmpeg, the command line unchanged."""
    state = config.state_path
    path = config.ffmpeg_path
    if not path:
        counters.bump(state, "failed")
        log.error(
            "cannot run this command line: %s (no ffmpeg_path configured to hand it to)", reason
        )
        return EXIT_ERROR
    counters.bump(state, counter)
    log.log(
        logging.INFO if counter == "ffmpeg_passthrough" else logging.WARNING,
        "handing the command line to %s: %s",
        path,
        reason,
    )
    for h in logging.getLogger("vtremote").handlers:
        h.flush()
    sys.stderr.flush()
    try:
        os.execv(path, [path, *argv])
    except OSError as e:
        log.error("cannot start %s: %s", path, e.strerror)
    return EXIT_ERROR


# --- entry point ----------------------------------------------------------------------------------


def _setup_logging(config: MediaServerConfig, cmd: Command | None) -> str:
    level_name = config.log_level
    if cmd is not None:
        value = cmd.global_value("loglevel", "v")
        if value:
            level_name = loglevel_name(value)
    level = LOGGING_LEVELS.get(level_name, logging.INFO)
    root = logging.getLogger("vtremote")
    root.setLevel(min(level, logging.INFO) if config.log_file else level)
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[vtremote] %(levelname)s: %(message)s"))
    handler.setLevel(level)
    root.addHandler(handler)
    if config.log_file:
        try:
            fh = logging.FileHandler(config.log_file)
        except OSError as e:
            root.warning("log_file %s cannot be opened: %s", config.log_file, e.strerror)
        else:
            fh.setFormatter(
                logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
            )
            fh.setLevel(logging.INFO)
            root.addHandler(fh)
    return level_name


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config()
    except ConfigError as e:
        print(f"[vtremote] error: {e}", file=sys.stderr)
        fallback = os.environ.get("VTREMOTE_FFMPEG")
        if fallback:
            os.execv(fallback, [fallback, *args])
        return EXIT_ERROR
    if args[:1] == ["-vtremote_counters"]:
        for key, value in counters.read(config.state_path).items():
            print(f"{key}={value}")
        return EXIT_OK
    try:
        cmd = parse_argv(args)
    except UsageError as e:
        _setup_logging(config, None)
        return hand_to_ffmpeg(config, args, str(e))
    level_name = _setup_logging(config, cmd)
    if cmd.info is not None:
        return _answer_info(cmd, config)
    if not cmd.inputs and not cmd.outputs:
        print(
            "Hyper fast Audio and Video encoder (vtremote-ffmpeg)\n"
            "usage: ffmpeg [options] [[infile options] -i infile]... "
            "{[outfile options] outfile}...",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if not cmd.outputs:
        print("At least one output file must be specified", file=sys.stderr)
        return EXIT_ERROR
    stats_enabled = (
        not cmd.has_global("nostats")
        and LOGGING_LEVELS.get(level_name, logging.INFO) <= logging.INFO
        or cmd.has_global("stats")
    )
    runner = Runner(cmd, config, stats_enabled=stats_enabled)
    if not cmd.has_global("nostdin"):
        runner.watch_stdin()
    previous = {s: signal.signal(s, runner.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return runner.run()
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_SIGNAL
    except VTRemoteError as e:
        counters.bump(config.state_path, "failed")
        log.error("%s", e)
        return EXIT_ERROR
    except (av.error.FFmpegError, OSError) as e:
        counters.bump(config.state_path, "failed")
        log.error("%s", _describe(e))
        return EXIT_ERROR
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _answer_info(cmd: Command, config: MediaServerConfig) -> int:
    what = cmd.info
    if what == "version":
        sys.stdout.write(info.version_text(config))
    elif what in ("encoders", "decoders"):
        sys.stdout.write(info.codecs_text(config, encoders=what == "encoders"))
    elif what in ("formats", "muxers", "demuxers"):
        sys.stdout.write(info.formats_text(what))
    elif what == "hwaccels":
        sys.stdout.write(info.hwaccels_text())
    elif what == "filters":
        sys.stdout.write(info.filters_text())
    elif what == "help":
        text, known = info.help_text(config, cmd.help_topic)
        sys.stdout.write(text)
        return EXIT_OK if known else EXIT_ERROR
    else:
        return hand_to_ffmpeg(config, cmd.argv, f"-{what} is answered only by ffmpeg")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
