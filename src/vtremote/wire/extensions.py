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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from vtremote.errors import RemoteProtocolError
from vtremote.wire.constants import EXTENSION_CODECS

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

#: Packet transcode (docs/protocol.md "Packet transcode"): ``ext:transcode=<decoders>;<filters>``,
#: two comma-separated lists: the input codecs the server decodes (FFmpeg codec names:
#: h264, hevc, mpeg2video, vp9, av1, ...) and the filters its chains may use
#: (wire.filters.ALLOWED). A client that sees it may send CONFIGURE ``mode=transcode``.
CAP_TRANSCODE = "ext:transcode"

#: Extension codecs (wire.constants.EXTENSION_CODECS): ``ext:codecs=av1`` lists those the
#: server encodes and decodes. HELLO always names a v1 codec; a client that sees its
#: codec here adds CONFIGURE option ``ext_codec=<codec>``, which makes the session that
#: codec's. A v1 server never announces it, so it never sees an extension codec.
CAP_CODECS = "ext:codecs"
#: CONFIGURE: the session's codec when it is an extension codec (only after ext:codecs).
OPT_CODEC = "ext_codec"
#: What an extension-codec session names in HELLO: a v1 codec, so HELLO stays v1.
HELLO_CODEC_FOR_EXTENSION = "hevc"

OPT_KEEPALIVE = "ext_keepalive"
OPT_DECODE_PIPELINE = "ext_decode_pipeline"
#: CONFIGURE ``mode`` of a transcode session (only to a server announcing ext:transcode).
MODE_TRANSCODE = "transcode"
#: Transcode CONFIGURE: FFmpeg name of the input codec.
OPT_INPUT_CODEC = "ext_in_codec"
#: Transcode CONFIGURE: the filter chain, canonical text of wire.filters.
OPT_FILTERS = "ext_filters"
OPT_WINDOW = "ext_window"
#: Transcode CONFIGURE_ACK: an entry of the warning list that is not a warning but
#: ``ext:output=<w>x<h>;tb=<num>/<den>;fr=<num>/<den>;sar=<num>/<den>``, the output picture,
#: the time base of the output PACKETs' pts/dts (fr 0/1 when unknown) and the sample aspect
#: ratio (a reader takes a missing ``sar`` part as 1/1).
NOTE_OUTPUT = "ext:output"

#: ``ext:capacity=<sessions>;fps=<fps>``: how many sessions the server's engine runs at
#: full speed at once (hardware session limit, or CPU cores for software) and the frames
#: per second one session's engine achieved lately (busy time only; 0: not measured yet).
#: Pool placement ranks by free capacity x fps x weight. Informational; the reference
#: client ignores it like every ``ext:`` entry.
CAP_CAPACITY = "ext:capacity"

#: All capabilities this implementation understands (for docs and tests).
KNOWN_CAPABILITIES = (
    CAP_BUSY,
    CAP_ERRORS,
    CAP_KEEPALIVE,
    CAP_DECODE_PIPELINE,
    CAP_WINDOW,
    CAP_TRANSCODE,
    CAP_CODECS,
    CAP_CAPACITY,
)


def capacity_capability(sessions: int, fps: float) -> str:
    """``ext:capacity=<sessions>;fps=<fps>`` (fps with one decimal)."""
    return f"{CAP_CAPACITY}={max(int(sessions), 1)};fps={max(fps, 0.0):.1f}"


def parse_capacity(value: str | None) -> tuple[int, float] | None:
    """The value of ``ext:capacity`` -> (sessions >= 1, fps >= 0; 0 = not measured), or None
    when absent or malformed (it is informational: a bad one is ignored, not an error)."""
    if not value:
        return None
    sessions_text, _, rest = value.partition(";")
    fps_text = rest.removeprefix("fps=") if rest.startswith("fps=") else "0"
    try:
        sessions, fps = int(sessions_text), float(fps_text)
    except ValueError:
        return None
    if sessions < 1 or not 0 <= fps < 1e7:
        return None
    return sessions, fps


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


# --- extension codecs ----------------------------------------------------------------------


def codecs_capability(codecs: Sequence[str]) -> str:
    """``ext:codecs=av1`` for HELLO_ACK."""
    return f"{CAP_CODECS}={','.join(codecs)}"


def offered_codecs(caps: Iterable[str]) -> tuple[str, ...]:
    """The extension codecs a HELLO_ACK offers (none from a v1 server)."""
    value = capability_value(caps, CAP_CODECS)
    return tuple(c for c in (value or "").split(",") if c)


def hello_codec(codec: str) -> str:
    """The codec a HELLO names for a session of ``codec`` (a v1 name, always)."""
    return HELLO_CODEC_FOR_EXTENSION if codec in EXTENSION_CODECS else codec


def session_codec(hello: str, options: Mapping[str, str], enabled: bool) -> str:
    """The codec of a session: HELLO's, or CONFIGURE's ``ext_codec`` when extensions are on.

    RemoteProtocolError when ``ext_codec`` names no extension codec."""
    asked = options.get(OPT_CODEC) if enabled else None
    if asked is None:
        return hello
    if asked not in EXTENSION_CODECS:
        raise RemoteProtocolError(
            f"{OPT_CODEC}={asked[:40]!r} is not one of {', '.join(EXTENSION_CODECS)}"
        )
    return asked


# --- packet transcode ---------------------------------------------------------------------


def transcode_capability(decoders: Sequence[str], filters: Sequence[str]) -> str:
    """``ext:transcode=h264,hevc;scale,fps`` for HELLO_ACK."""
    return f"{CAP_TRANSCODE}={','.join(decoders)};{','.join(filters)}"


def transcode_offer(caps: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(decoders, filters) of an ``ext:transcode`` capability, None when it is absent."""
    value = capability_value(caps, CAP_TRANSCODE)
    if value is None:
        return None
    decoders, _, filters = value.partition(";")
    return (
        tuple(d for d in decoders.split(",") if d),
        tuple(f for f in filters.split(",") if f),
    )


@dataclass(frozen=True, slots=True)
class OutputNote:
    """What a transcode CONFIGURE_ACK says about the output (NOTE_OUTPUT)."""

    width: int
    height: int
    time_base: Fraction
    frame_rate: Fraction | None
    sar: Fraction = Fraction(1)

    def text(self) -> str:
        fr = self.frame_rate or Fraction(0)
        return (
            f"{NOTE_OUTPUT}={self.width}x{self.height};tb={self.time_base.numerator}/"
            f"{self.time_base.denominator};fr={fr.numerator}/{fr.denominator};"
            f"sar={self.sar.numerator}/{self.sar.denominator}"
        )

    @classmethod
    def parse(cls, text: str) -> OutputNote:
        """Parse the note; RemoteProtocolError when it is malformed."""
        prefix = NOTE_OUTPUT + "="
        try:
            if not text.startswith(prefix):
                raise ValueError("no prefix")
            parts = text[len(prefix) :].split(";")
            sar_text = parts.pop() if len(parts) == 4 else "sar=1/1"
            size, tb, fr = parts
            if not sar_text.startswith("sar="):
                raise ValueError("sar")
            sarn, sard = (int(v) for v in sar_text[4:].split("/"))
            w, h = (int(v) for v in size.split("x"))
            if not tb.startswith("tb=") or not fr.startswith("fr="):
                raise ValueError("fields")
            tbn, tbd = (int(v) for v in tb[3:].split("/"))
            frn, frd = (int(v) for v in fr[3:].split("/"))
            if (
                w <= 0
                or h <= 0
                or tbn <= 0
                or tbd <= 0
                or frd <= 0
                or frn < 0
                or sarn <= 0
                or sard <= 0
            ):
                raise ValueError("range")
        except ValueError:
            raise RemoteProtocolError(f"malformed transcode output note {text[:200]!r}") from None
        return cls(
            w, h, Fraction(tbn, tbd), Fraction(frn, frd) if frn else None, Fraction(sarn, sard)
        )


def split_notes(warnings: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """CONFIGURE_ACK warning list -> (real warnings, ``ext:`` notes)."""
    real: list[str] = []
    notes: list[str] = []
    for w in warnings:
        (notes if is_extension(w) else real).append(w)
    return tuple(real), tuple(notes)
