"""Our extensions to VTR1 v1 and how they are negotiated (docs/protocol.md "Extensions").

A plain v1 peer must never notice them:

* The server announces what it supports by appending capability strings to
  HELLO_ACK's codec list. The reference client reads that list and ignores it; the
  reference server never sends these strings, so our client sees none of them and
  behaves exactly like the reference client.
* The client turns on an extension that needs both sides by adding an option key
  to CONFIGURE, only when the server announced it. The reference server ignores
  option keys it does not know.

Capability strings contain ``:`` so they can never be mistaken for a codec name.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The server answers a full house with HELLO_ACK status 1 (busy) followed by
#: ERROR code 2 carrying "server busy: N of M sessions in use", and reports real
#: ``max_sessions`` / ``active_sessions`` in HELLO_ACK (0 = unlimited).
CAP_BUSY = "ext:busy"
#: Every failure is reported with an ERROR whose code follows errors.ErrorCode and
#: whose text says what was wrong, instead of a silent close.
CAP_ERRORS = "ext:errors"
#: The server answers PING at any time after CONFIGURE_ACK and its idle timeout
#: restarts on every message; ``ext:keepalive=<ms>`` tells the idle timeout. A
#: client that sets CONFIGURE option ``ext_keepalive=1`` sends PING when it has
#: been silent for a third of that.
CAP_KEEPALIVE = "ext:keepalive"
#: Decode sessions need not be lock-step: with CONFIGURE option
#: ``ext_decode_pipeline=1`` the client may send many PACKETs before reading and
#: the server sends FRAMEs as soon as they are decoded (zero or more per PACKET).
#: Without it the server sends at most one FRAME per PACKET before reading the
#: next message, as the reference client requires.
CAP_DECODE_PIPELINE = "ext:decode-pipeline"
#: Encode sessions: with CONFIGURE option ``ext_window=<n>`` the client says it
#: stops sending FRAMEs while ``n`` are unanswered, and the server keeps its
#: encoder's delay below ``n`` (a window of 1 gets one packet per frame before the
#: next frame). Without it the server assumes a plain v1 client (VTR1.md §10.1).
CAP_WINDOW = "ext:window"
#: ``ext:engine=<name>`` names the engine that serves this server's sessions
#: (x264, nvenc, videotoolbox, ...). Informational.
CAP_ENGINE_PREFIX = "ext:engine="

OPT_KEEPALIVE = "ext_keepalive"
OPT_DECODE_PIPELINE = "ext_decode_pipeline"
OPT_WINDOW = "ext_window"

#: All capabilities this implementation understands (for docs and tests).
KNOWN_CAPABILITIES = (CAP_BUSY, CAP_ERRORS, CAP_KEEPALIVE, CAP_DECODE_PIPELINE, CAP_WINDOW)


def is_extension(cap: str) -> bool:
    return cap.startswith("ext:")


def split_capabilities(caps: Iterable[str]) -> tuple[tuple[str, ...], frozenset[str]]:
    """HELLO_ACK list -> (codec names, extension capability names without values)."""
    codecs: list[str] = []
    exts: set[str] = set()
    for cap in caps:
        if is_extension(cap):
            exts.add(cap.split("=", 1)[0])
        else:
            codecs.append(cap)
    return tuple(codecs), frozenset(exts)


def capability_value(caps: Iterable[str], name: str) -> str | None:
    """The value of ``name=value`` in the capability list, if present."""
    prefix = name + "="
    for cap in caps:
        if cap.startswith(prefix):
            return cap[len(prefix) :]
    return None
