"""The one place where tests may break a server on purpose: :class:`FaultHooks`.

A :class:`~vtremote.server.daemon.Server` built with ``faults=`` calls the hooks
from each session's reader; production servers have none. The switches behind
``vtremoted --throttle-fps / --die-after-frames / --die-at-flush`` live in
:mod:`vtremote.testing.faults`, outside the product.
"""

from __future__ import annotations

from typing import Protocol


class FaultHooks(Protocol):
    """Called by a streaming session for each message it reads (after CONFIGURE_ACK)."""

    def on_message(self, session: str, kind: int) -> None:
        """``session``: the session's id; ``kind``: the message's wire type (a
        ``MessageType`` value). A hook may sleep (throttle) or kill the process."""


__all__ = ["FaultHooks"]
