"""The vtremote client library: use a vtremoted's encoders and decoders from PyAV.

:class:`RemoteEncoder` takes ``av.VideoFrame`` and gives ``av.Packet``;
:class:`RemoteDecoder` takes ``av.Packet`` and gives ``av.VideoFrame``. Both
are context managers, pipelined, and end with ``flush()``, which returns every
remaining result before the session ends. :class:`RemoteTranscoder` takes a
source's ``av.Packet`` and gives encoded ``av.Packet``: the server decodes,
filters and encodes (:func:`transcode_capabilities` says whether it can).
:class:`FailoverEncoder`, :class:`FailoverDecoder` and :class:`FailoverTranscoder` have the
same calls on a pool of servers and move to another one, losing no frame, when theirs dies
(``client/failover.py``, ``client/failover_transcoder.py``).
Every one of them takes its connection settings as one :class:`ConnectionOptions`
(``connection=``) or as the loose keywords ``token``, ``timeout``, ``compression``,
``inflight``, ``tls``...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vtremote.client.decoder import RemoteDecoder
from vtremote.client.encoder import EncoderSettings, RemoteEncoder
from vtremote.client.options import ConnectionOptions
from vtremote.client.stats import SessionReport, SessionStats
from vtremote.client.tls import TLSOptions
from vtremote.client.transport import Transport, parse_address

if TYPE_CHECKING:
    from vtremote.client.failover import FailoverEncoder
    from vtremote.client.failover_decoder import FailoverDecoder
    from vtremote.client.failover_transcoder import FailoverTranscoder
    from vtremote.client.packet_transcoder import (
        RemoteTranscoder,
        TranscodeOffer,
        TranscodeStats,
        transcode_capabilities,
    )

# Loaded on first use: a command that encodes or decodes on one server never needs them
# (and a command's start-up is part of every job's time).
_LAZY = {
    "FailoverEncoder": "vtremote.client.failover",
    "FailoverDecoder": "vtremote.client.failover_decoder",
    "FailoverTranscoder": "vtremote.client.failover_transcoder",
    "RemoteTranscoder": "vtremote.client.packet_transcoder",
    "TranscodeOffer": "vtremote.client.packet_transcoder",
    "TranscodeStats": "vtremote.client.packet_transcoder",
    "transcode_capabilities": "vtremote.client.packet_transcoder",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ConnectionOptions",
    "EncoderSettings",
    "FailoverDecoder",
    "FailoverEncoder",
    "FailoverTranscoder",
    "RemoteDecoder",
    "RemoteEncoder",
    "RemoteTranscoder",
    "SessionReport",
    "SessionStats",
    "TLSOptions",
    "TranscodeOffer",
    "TranscodeStats",
    "Transport",
    "parse_address",
    "transcode_capabilities",
]
