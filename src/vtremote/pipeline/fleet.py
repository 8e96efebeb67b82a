"""Which client object a job's remote codec gets: one server, or a pool with failover.

A ``-vt_remote_host`` naming one ``HOST:PORT`` (and no fallback) keeps the
plain :class:`RemoteEncoder` / :class:`RemoteDecoder`. A list, a pool of the
config file, ``mdns`` or a fallback turns it into the failover classes
(:mod:`vtremote.client.failover`), which have the same calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vtremote.client import RemoteDecoder, RemoteEncoder
from vtremote.client.config import load_config
from vtremote.client.pool import is_pool, resolve_pool
from vtremote.pipeline.spec import RemoteOptions

if TYPE_CHECKING:  # (loaded only for a pool: one server never needs them)
    from vtremote.client.failover import FailoverEncoder
    from vtremote.client.failover_decoder import FailoverDecoder


def uses_pool(ro: RemoteOptions) -> bool:
    """True when these options need the failover classes."""
    if ro.fallback == "local":
        return True
    config = load_config()
    return is_pool(ro.host, config) or (
        ro.fallback is None and config.fallback == "local" and bool(ro.host)
    )


def open_encoder(ro: RemoteOptions, codec: str, **kwargs: Any) -> RemoteEncoder | FailoverEncoder:
    """The encoder session for ``ro`` (``kwargs``: RemoteEncoder's, without address/token/timeout)."""
    timeout = ro.timeout_ms / 1000
    if uses_pool(ro):
        from vtremote.client.failover import FailoverEncoder

        pool = resolve_pool(ro.host or "", token=ro.token, fallback=ro.fallback)
        return FailoverEncoder(
            pool, codec, timeout=timeout, compression=ro.compression, inflight=ro.inflight, **kwargs
        )
    return RemoteEncoder(
        ro.host or "",
        codec,
        token=ro.token,
        timeout=timeout,
        compression=ro.compression,
        inflight=ro.inflight,
        **ro.tls_kwargs(),
        **kwargs,
    )


def open_decoder(ro: RemoteOptions, in_stream: Any) -> RemoteDecoder | FailoverDecoder:
    """The decoder session for ``ro`` and a demuxed stream."""
    common: dict[str, Any] = {
        "timeout": ro.timeout_ms / 1000,
        "compression": ro.compression,
        "inflight": ro.inflight,
    }
    if uses_pool(ro):
        from vtremote.client.failover_decoder import FailoverDecoder

        pool = resolve_pool(ro.host or "", token=ro.token)
        return FailoverDecoder.from_stream(pool, in_stream, **common)
    return RemoteDecoder.from_stream(
        ro.host or "", in_stream, token=ro.token, **ro.tls_kwargs(), **common
    )
