"""Progress on stderr (rich, only when stderr is a terminal) and the final summary.

The job (vtremote.pipeline) updates one :class:`JobStats`; :class:`ProgressDisplay`
redraws at most four times a second from it. The summary line is printed once
at the end (stderr), and ``--json`` prints :meth:`JobStats.summary` as JSON on
stdout for scripts.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, TextIO

from vtremote.pipeline.stats import JobStats, clock

if TYPE_CHECKING:
    from rich.live import Live

__all__ = ["JobStats", "ProgressDisplay", "clock", "print_summary"]


class ProgressDisplay:
    """A live status line on a terminal; silent otherwise. Use as a context manager."""

    def __init__(self, stats: JobStats, *, enabled: bool, stream: TextIO | None = None) -> None:
        self.stats = stats
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self._live: Live | None = None
        self._last = 0.0

    def __enter__(self) -> ProgressDisplay:
        if (
            self.enabled
        ):  # rich is loaded only for a terminal (it costs a command's start-up otherwise)
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            console = Console(file=self.stream, highlight=False, soft_wrap=True)
            self._live = Live(
                Text(self.stats.line(), overflow="fold"),
                console=console,
                refresh_per_second=4,
                transient=True,
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self, force: bool = False) -> None:
        if self._live is None:
            return
        now = time.monotonic()
        if force or now - self._last >= 0.25:
            self._last = now
            from rich.text import Text

            self._live.update(Text(self.stats.line(), overflow="fold"))


def print_summary(stats: JobStats, *, as_json: bool, quiet: bool) -> None:
    """The final report: a line on stderr (unless quiet) and, with --json, JSON on stdout."""
    if not quiet:
        size = stats.size_bytes if stats.size_bytes is not None else stats.bytes_out
        print(
            f"vtremote: {stats.line()} -> {stats.output} ({size / 1024:.1f} KiB in "
            f"{stats.elapsed:.2f} s)",
            file=sys.stderr,
        )
    if as_json:
        print(json.dumps(stats.summary(), indent=2, sort_keys=True))
