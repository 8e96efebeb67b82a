"""The remote session a job's codec gets: one server, or a pool with failover.

A ``-vt_remote_host`` naming one ``HOST:PORT`` (and no fallback) keeps the
plain :class:`RemoteEncoder` / :class:`RemoteDecoder`. A list, a pool of the
config file, ``mdns`` or a fallback turns it into the failover classes
(:mod:`vtremote.client.failover`), which have the same calls. Either way the
session gets the codec's :class:`~vtremote.client.options.ConnectionOptions`
whole (:meth:`RemoteOptions.connection`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vtremote.client import RemoteDecoder, RemoteEncoder
from vtremote.client.config import load_config
from vtremote.client.pool import Pool, is_pool, resolve_pool
from vtremote.pipeline.spec import RemoteOptions

if TYPE_CHECKING:  # (loaded only for a pool: one server never needs them)
    from vtremote.client.failover import FailoverEncoder
    from vtremote.client.failover_decoder import FailoverDecoder
    from vtremote.client.failover_transcoder import FailoverTranscoder
    from vtremote.client.packet_transcoder import RemoteTranscoder


def uses_pool(ro: RemoteOptions) -> bool:
    """True when these options need the failover classes."""
    if ro.fallback == "local":
        return True
    config = load_config()
    return is_pool(ro.host, config) or (
        ro.fallback is None and config.fallback == "local" and bool(ro.host)
    )


def pool_of(ro: RemoteOptions) -> Pool:
    """The pool ``-vt_remote_host`` names, with the codec's token and fallback."""
    return resolve_pool(ro.host or "", token=ro.token, fallback=ro.fallback)


def open_encoder(ro: RemoteOptions, codec: str, **kwargs: Any) -> RemoteEncoder | FailoverEncoder:
    """The encoder session for ``ro`` (``kwargs``: RemoteEncoder's, without address and
    connection settings)."""
    if uses_pool(ro):
        from vtremote.client.failover import FailoverEncoder

        return FailoverEncoder(pool_of(ro), codec, connection=ro.connection(), **kwargs)
    return RemoteEncoder(ro.host or "", codec, connection=ro.connection(), **kwargs)


def open_decoder(ro: RemoteOptions, in_stream: Any) -> RemoteDecoder | FailoverDecoder:
    """The decoder session for ``ro`` and a demuxed stream."""
    if uses_pool(ro):
        from vtremote.client.failover_decoder import FailoverDecoder

        return FailoverDecoder.from_stream(pool_of(ro), in_stream, connection=ro.connection())
    return RemoteDecoder.from_stream(ro.host or "", in_stream, connection=ro.connection())


def open_transcoder(
    ro: RemoteOptions, in_stream: Any, **kwargs: Any
) -> RemoteTranscoder | FailoverTranscoder:
    """The packet transcode session for ``ro`` and a demuxed stream (``kwargs``:
    RemoteTranscoder's, without address and connection settings)."""
    if uses_pool(ro):
        from vtremote.client.failover_transcoder import FailoverTranscoder

        return FailoverTranscoder.from_stream(
            pool_of(ro), in_stream, connection=ro.connection(), **kwargs
        )
    from vtremote.client.packet_transcoder import RemoteTranscoder

    return RemoteTranscoder.from_stream(
        ro.host or "", in_stream, connection=ro.connection(), **kwargs
    )
