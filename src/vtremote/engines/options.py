"""What the engines make of an encode session's settings (wire/settings.py reads them).

:func:`parse_encode_options` turns a CONFIGURE option map into
:class:`~vtremote.wire.settings.EncoderSettings` with the reference server's reading
(VTR1.md §3.3), so each engine only maps settings to its codec; keys it cannot honour
become warnings in CONFIGURE_ACK, never silence. The keys, their types and defaults
live in :mod:`vtremote.wire.settings`, next to the wire.
"""

from __future__ import annotations

from typing import Final

from vtremote.wire import colours
from vtremote.wire.settings import (
    DECODE_KEYS,
    ENCODE_KEYS,
    FLAG_CLOSED_GOP,
    FLAG_COPY_OPAQUE,
    FLAG_FRAME_DURATION,
    FLAG_GLOBAL_HEADER,
    FLAG_LOW_DELAY,
    FLAG_QSCALE,
    SESSION_KEYS,
    EncoderSettings,
    check_decode_options,
    flag_names,
)
from vtremote.wire.settings import parse_configure as parse_encode_options

#: Flags every engine honours through the session itself: QSCALE and LOW_DELAY
#: select rate control / latency, GLOBAL_HEADER is how every engine runs (the
#: parameter sets travel in CONFIGURE_ACK), CLOSED_GOP is how every engine runs,
#: FRAME_DURATION is honoured by filling PACKET durations, COPY_OPAQUE concerns
#: only the client's own AVFrame/AVPacket bookkeeping.
HONOURED_FLAGS: Final = (
    FLAG_QSCALE
    | FLAG_LOW_DELAY
    | FLAG_GLOBAL_HEADER
    | FLAG_CLOSED_GOP
    | FLAG_FRAME_DURATION
    | FLAG_COPY_OPAQUE
)

# FFmpeg's AVColor* enums (libavutil/pixfmt.h): the values a client may send.
COLOR_RANGES: Final = colours.RANGE.values
COLOR_PRIMARIES: Final = colours.PRIMARIES.values
COLOR_TRCS: Final = colours.TRANSFER.values
COLOR_SPACES: Final = colours.MATRIX.values


def unhonoured_flags(settings: EncoderSettings) -> int:
    """The flags the client set that no engine acts on (each engine warns about them)."""
    return settings.flags & ~HONOURED_FLAGS & 0xFFFFFFFF


__all__ = [
    "COLOR_PRIMARIES",
    "COLOR_RANGES",
    "COLOR_SPACES",
    "COLOR_TRCS",
    "DECODE_KEYS",
    "ENCODE_KEYS",
    "FLAG_CLOSED_GOP",
    "FLAG_GLOBAL_HEADER",
    "FLAG_QSCALE",
    "HONOURED_FLAGS",
    "SESSION_KEYS",
    "check_decode_options",
    "flag_names",
    "parse_encode_options",
    "unhonoured_flags",
]
