"""ffmpeg's log levels: names, AV_LOG_* numbers, and what each means to Python's logging.

Both front ends read ``-loglevel`` with :func:`parse_loglevel`; the CLIs set their handlers with
:data:`LOGGING_LEVELS`.
"""

from __future__ import annotations

import logging

from vtremote.errors import UsageError

#: ffmpeg's level names -> Python logging levels ("quiet" is above CRITICAL: nothing at all).
LOGGING_LEVELS = {
    "quiet": logging.CRITICAL + 10,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "verbose": logging.DEBUG,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}
#: AV_LOG_* numbers -> level names.
AV_LOG_NUMBERS = {
    "-8": "quiet",
    "0": "panic",
    "8": "fatal",
    "16": "error",
    "24": "warning",
    "32": "info",
    "40": "verbose",
    "48": "debug",
    "56": "trace",
}
#: The reference client's -vt_remote_log_level: 0 error, 1 info (its default), 2 debug.
_REFERENCE_LEVELS = {"0": "error", "1": "info", "2": "debug"}


def loglevel_name(text: str) -> str:
    """``repeat+level+debug`` / ``48`` -> ``debug``; any other text is returned lower-cased."""
    key = text.split("+")[-1].lower()
    return AV_LOG_NUMBERS.get(key, key)


def parse_loglevel(text: str) -> str:
    """``-loglevel``'s value as a level name; raises UsageError for an unknown one."""
    level = loglevel_name(text)
    if level not in LOGGING_LEVELS:
        raise UsageError(f"-loglevel {text!r} is not one of {', '.join(sorted(LOGGING_LEVELS))}")
    return level


def parse_reference_loglevel(text: str) -> str:
    """``-vt_remote_log_level``: the reference's 0/1/2, or an AV_LOG_* number except 0 and 8."""
    if text in _REFERENCE_LEVELS:
        return _REFERENCE_LEVELS[text]
    if text not in AV_LOG_NUMBERS or text in ("0", "8"):
        raise UsageError(f"-vt_remote_log_level {text!r} is not 0, 1, 2 or an AV_LOG_* number")
    return AV_LOG_NUMBERS[text]
