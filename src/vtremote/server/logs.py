"""Rate-limited logging: a flood of refused connections must not become a flood of lines.

Log calls that a remote host can trigger at will (a refused or evicted
connection, a wrong token, a handshake that timed out) pass
``extra=RATE_LIMITED``. :class:`RateLimitFilter`, installed on the server's
loggers, lets the first ``burst`` records of each message template through in
every ``window`` seconds and counts the rest; the count comes out as one line
when the window ends::

    refusing connection from %s: ... (3817 more like this in the last 10 s)

Records without the marker are never held back, so session summaries and
errors of authenticated sessions always appear.

Peers choose many strings that reach log lines (HELLO client name and build,
codec names, option keys and values, filter strings, exception texts quoting
them): :func:`printable` escapes what is not printable (``\\n``, ``\\x1b``...),
and :class:`PrintableFilter`, installed on every ``vtremote`` logger, applies
it to each formatted message, so one record is one line that nobody but the
server wrote. Also here: the session's line prefix and how one message reads
in a DEBUG line.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from vtremote.wire import messages
from vtremote.wire.messages import nbytes

_SESSION_PREFIX = re.compile(r"^\[session [^\]]*\] ")

#: Pass as ``extra=`` to mark a record as rate limited.
RATE_LIMITED = {"vtremote_rate_limited": True}


@dataclass
class _Window:
    start: float
    passed: int = 0
    suppressed: int = 0
    level: int = logging.WARNING
    name: str = ""


class RateLimitFilter(logging.Filter):
    """Pass ``burst`` marked records per template per ``window`` s; summarise the rest."""

    def __init__(
        self, burst: int = 5, window: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "vtremote_rate_limited", False):
            return True
        key = _SESSION_PREFIX.sub("", str(record.msg))  # one template for every session
        now = self._clock()
        summaries: list[tuple[str, _Window]] = []
        with self._lock:
            win = self._windows.get(key)
            if win is None or now - win.start >= self.window:
                if win is not None and win.suppressed:
                    summaries.append((key, win))
                win = self._windows[key] = _Window(now, level=record.levelno, name=record.name)
            if win.passed < self.burst:
                win.passed += 1
                allowed = True
            else:
                win.suppressed += 1
                allowed = False
        for k, w in summaries:
            _emit_summary(k, w, self.window)
        return allowed

    def flush(self, final: bool = False) -> None:
        """Write the summary of every window that has ended (the daemon calls this each second);
        ``final``: of every window (at shutdown)."""
        now = self._clock()
        summaries: list[tuple[str, _Window]] = []
        with self._lock:
            for key, win in list(self._windows.items()):
                if final or now - win.start >= self.window:
                    del self._windows[key]
                    if win.suppressed:
                        summaries.append((key, win))
        for k, w in summaries:
            _emit_summary(k, w, self.window)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped as Python writes it (``\\n``,
    ``\\x1b``, ``\\u2028``): one line, no terminal control sequences."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


class PrintableFilter(logging.Filter):
    """Escapes the formatted message of every record with :func:`printable`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a broken format: logging reports it when it formats the record
        if not message.isprintable():
            record.msg, record.args = printable(message), ()
        return True


def _emit_summary(template: str, win: _Window, window: float) -> None:
    # The template, not a formatted line: its arguments differed between the records.
    logging.getLogger(win.name).log(
        win.level, "... %d more like %r in the last %g s", win.suppressed, template, window
    )


#: The loggers whose marked records are rate limited.
SERVER_LOGGERS = ("vtremote.server.daemon", "vtremote.server.state", "vtremote.server.session")


def install(burst: int = 5, window: float = 10.0) -> RateLimitFilter:
    """Attach one rate limit to the server's loggers and the printable filter to every
    ``vtremote`` logger (idempotent); returns the rate limit."""
    flt = RateLimitFilter(burst, window)
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RateLimitFilter)]:
            logger.removeFilter(old)
        logger.addFilter(flt)
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "vtremote"]
    for name in {"vtremote", *SERVER_LOGGERS, *names}:
        logger = logging.getLogger(name)
        for stale in [f for f in logger.filters if isinstance(f, PrintableFilter)]:
            logger.removeFilter(stale)
        logger.addFilter(_PRINTABLE)  # after the rate limit, which reads the template
    return flt


_PRINTABLE = PrintableFilter()


class SessionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with ``[session 3f2a]`` (STYLE.md §7)."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[session {self.extra['id'] if self.extra else '?'}] {msg}", kwargs


def describe(msg: messages.Message) -> str:
    """One message in a DEBUG line: its type and the fields that tell it apart."""
    if isinstance(msg, messages.Frame):
        return (
            f"FRAME pts={msg.pts} dur={msg.duration} flags={msg.flags} "
            f"planes={[(p.stride, p.height, nbytes(p.data)) for p in msg.planes]}"
        )
    if isinstance(msg, messages.Packet):
        return (
            f"PACKET pts={msg.pts} dts={msg.dts} dur={msg.duration} flags={msg.flags} "
            f"bytes={nbytes(msg.data)}"
        )
    if isinstance(msg, messages.Configure):
        return f"CONFIGURE {msg.width}x{msg.height} pix={msg.pix_fmt} options={dict(msg.options)}"
    if isinstance(msg, messages.ConfigureAck):
        return (
            f"CONFIGURE_ACK extradata={nbytes(msg.extradata)}B pix={msg.pix_fmt} "
            f"warnings={len(msg.warnings)}"
        )
    if isinstance(msg, messages.Hello):
        return f"HELLO client={msg.client_name} codec={msg.codec} build={msg.build}"
    if isinstance(msg, messages.Unknown):
        return f"unknown type {msg.raw_type} ({len(msg.payload)} bytes)"
    return type(msg).__name__.upper()


def log_client_gone(
    log: logging.Logger | logging.LoggerAdapter[Any],
    error: BaseException,
    *,
    streaming: bool,
    has_data: bool,
) -> None:
    """How a session whose client left says so: a warning only mid-stream with data."""
    if streaming and has_data:
        log.warning("client vanished mid-stream (%s); stopping the engine", error)
    elif streaming:
        # FFmpeg opens and closes a codec while probing a stream: not a failure.
        log.info("client closed the session before sending data (%s)", error, extra=RATE_LIMITED)
    else:
        log.info("client closed the connection (%s)", error, extra=RATE_LIMITED)


__all__ = [
    "RATE_LIMITED",
    "PrintableFilter",
    "RateLimitFilter",
    "SessionLog",
    "describe",
    "install",
    "log_client_gone",
    "printable",
]
