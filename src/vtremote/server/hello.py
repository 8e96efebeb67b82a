"""HELLO: the token check and the HELLO_ACK a server answers with (VTR1.md §3.1, §14)."""

from __future__ import annotations

import hmac

import vtremote
from vtremote.engines import registry
from vtremote.server.config import ServerConfig
from vtremote.server.speed import engine_capacity
from vtremote.server.transcode import offer as transcode_offer
from vtremote.wire import messages
from vtremote.wire.constants import CODECS, HelloStatus
from vtremote.wire.extensions import (
    CAP_BUSY,
    CAP_DECODE_PIPELINE,
    CAP_ENGINE_PREFIX,
    CAP_ERRORS,
    CAP_KEEPALIVE,
    CAP_WINDOW,
    capacity_capability,
    codecs_capability,
)


def token_matches(hello: messages.Hello, token: str) -> bool:
    """True if the server wants no token or ``hello`` carries it (constant time)."""
    if not token:
        return True
    return hmac.compare_digest(
        hello.token.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    )


def hello_ack(
    config: ServerConfig, status: HelloStatus, active: int, engine_label: str, fps: float = 0.0
) -> messages.HelloAck:
    """The answer to HELLO; ``engine_label`` names the engine for the client's codec,
    ``fps`` is the rolling speed of its sessions (server/speed.py)."""
    if not config.extensions:
        # The reference daemon's 22 bytes: empty strings, h264/hevc, constants 4 and 1.
        return messages.HelloAck(status=int(status))
    caps: tuple[str, ...] = (
        *CODECS,
        CAP_BUSY,
        CAP_ERRORS,
        f"{CAP_KEEPALIVE}={config.idle_timeout_ms}",
        CAP_DECODE_PIPELINE,
        CAP_WINDOW,
        transcode_offer(),
        codecs_capability(registry.extension_codecs(config.engine)),  # AV1: on request
        f"{CAP_ENGINE_PREFIX}{engine_label}",
        capacity_capability(config.capacity or engine_capacity(engine_label), fps),
    )
    return messages.HelloAck(
        status=int(status),
        server_name="vtremoted",
        server_version=vtremote.__version__,
        capabilities=caps,
        max_sessions=config.max_sessions,
        active_sessions=min(active, 0xFFFF),
    )


__all__ = ["hello_ack", "token_matches"]
