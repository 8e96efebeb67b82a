"""Live camera streaming: H.264/HEVC (or MJPEG) pictures with capture times and metadata.

A package of its own beside the offload parts: its own small wire format
(:mod:`~vtremote.live.protocol`, :mod:`~vtremote.live.datagram`, docs/live.md),
a :class:`Sender` and a :class:`LiveReceiver`. The command line is
``vtremote live send`` / ``vtremote live recv``. A receiver takes only senders that
prove they hold its key (:mod:`~vtremote.live.auth`).
"""

from __future__ import annotations

from vtremote.live.composite import CompositeConfig
from vtremote.live.protocol import Codec
from vtremote.live.receiver import LiveReceiver
from vtremote.live.sender import Sender, SenderConfig, SenderStats
from vtremote.live.stream import ReceivedFrame

__all__ = [
    "Codec",
    "CompositeConfig",
    "ReceivedFrame",
    "LiveReceiver",
    "Sender",
    "SenderConfig",
    "SenderStats",
]
