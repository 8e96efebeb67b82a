"""``vtremote``: the ffmpeg-style command, plus the ``probe`` and ``bench`` subcommands.

Dispatch: a first argument that is a subcommand name (``probe``, ``bench``)
selects it; anything else is an ffmpeg-style command line. An ffmpeg command
line always starts with an option (``-i``, ``-y``, ``-f``...), so the two never
collide: ``vtremote -i probe out.mp4`` reads a file called ``probe``.

Exit codes: 0 ok, 1 runtime error (cannot reach the server, server busy,
authentication failed, bad input...), 2 usage error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Sequence

import av.error

from vtremote import __version__
from vtremote.cli.options import UsageError, build_parser, parse_command
from vtremote.cli.progress import print_summary
from vtremote.errors import VTRemoteError
from vtremote.pipeline.ffmpeg_options.levels import LOGGING_LEVELS

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _subcommand(module: str) -> Callable[[list[str]], int] | None:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            return None
        raise
    entry: Callable[[list[str]], int] = mod.main
    return entry


SUBCOMMANDS = {
    "probe": "vtremote.cli.probe",
    "bench": "vtremote.cli.bench",
    "live": "vtremote.cli.live",
}


_handler: logging.Handler | None = None


def setup_logging(level_name: str) -> None:
    """The CLI owns the handlers (the library never configures any, STYLE.md §7).

    One handler on the ``vtremote`` logger, writing to the current ``sys.stderr``
    (replaced on each call, so repeated in-process runs do not write to a stale stream).
    """
    global _handler
    level = LOGGING_LEVELS.get(level_name, logging.WARNING)
    root = logging.getLogger("vtremote")
    root.setLevel(level)
    if _handler is not None:
        root.removeHandler(_handler)
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(file=sys.stderr), show_time=False, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("vtremote: %(levelname)s: %(message)s"))
    handler.setLevel(level)
    root.addHandler(handler)
    _handler = handler


def _error(message: str) -> None:
    print(f"vtremote: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vtremote`` command; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        entry = _subcommand(SUBCOMMANDS[args[0]])
        if entry is None:
            _error(
                f"'vtremote {args[0]}' is not available in this installation "
                f"({SUBCOMMANDS[args[0]]} is missing)"
            )
            return EXIT_ERROR
        try:
            return int(entry(args[1:]))
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    if not args:
        print(build_parser().format_usage().rstrip(), file=sys.stderr)
        print("vtremote: error: no arguments (try: vtremote -h)", file=sys.stderr)
        return EXIT_USAGE
    return _transcode(args)


def _transcode(args: list[str]) -> int:
    from vtremote.cli.memory import retain_freed_frames
    from vtremote.cli.progress import ProgressDisplay
    from vtremote.pipeline import Job, check_spec

    try:
        cmd, ns = parse_command(args)
    except UsageError as e:
        _error(f"{e} (see vtremote -h)")
        return EXIT_USAGE
    if cmd is None:
        if ns.version:
            print(
                f"vtremote {__version__} (PyAV {av.__version__}, FFmpeg {av.ffmpeg_version_info})"
            )
        else:
            print(build_parser().format_help())
        return EXIT_OK
    setup_logging(cmd.loglevel)
    retain_freed_frames()  # decoded/received frames reuse freed memory (cli/memory.py)
    try:
        check_spec(cmd)
        job = Job(cmd)
        with ProgressDisplay(job.stats, enabled=cmd.stats and not cmd.json) as progress:
            job.on_progress = progress.update
            stats = job.run()
    except KeyboardInterrupt:
        print("vtremote: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as e:
        _error(str(e))
        return EXIT_USAGE
    except VTRemoteError as e:
        _error(str(e))
        return e.exit_code
    except av.error.FFmpegError as e:
        _error(f"{e.strerror or e}" + (f": {e.filename}" if getattr(e, "filename", None) else ""))
        return EXIT_ERROR
    except OSError as e:
        _error(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        return EXIT_ERROR
    except Exception as e:  # a bug: say so, with the traceback, and fail
        logging.getLogger("vtremote").debug("internal error", exc_info=True)
        import traceback

        traceback.print_exc()
        _error(f"internal error: {type(e).__name__}: {e}")
        return EXIT_ERROR
    print_summary(
        stats, as_json=cmd.json, quiet=cmd.loglevel in ("quiet", "panic", "fatal", "error")
    )
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
