"""TLS pieces both sides share: certificate fingerprints and a socket class that takes ``sendmsg``.

Stdlib only, no I/O of its own: the server (server/tls.py) and the client
(client/tls.py) build their contexts from these.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterable
from typing import Any

from vtremote.errors import ConfigError

#: Largest slice handed to one TLS write (OpenSSL cuts it into 16 KiB records itself).
_WRITE_CHUNK = 256 * 1024


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as ``AB:CD:...`` (the form ``vtremoted`` prints)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(text: str) -> str:
    """``ab:cd..``, ``ABCD..``, ``sha256:abcd..`` -> lower-case hex; ConfigError if not SHA-256."""
    raw = text.strip().lower()
    if raw.startswith("sha256:"):
        raw = raw[7:]
    raw = raw.replace(":", "").replace(" ", "")
    if len(raw) != 64 or any(c not in "0123456789abcdef" for c in raw):
        raise ConfigError(f"TLS fingerprint {text!r} is not a SHA-256 fingerprint (64 hex digits)")
    return raw


class MessageSSLSocket(ssl.SSLSocket):
    """An ``SSLSocket`` whose ``sendmsg`` works like a partial plain ``sendmsg``.

    The plain-TCP paths send a message's header and plane buffers with one
    ``sendmsg`` and handle short writes; ``ssl.SSLSocket`` refuses ``sendmsg``.
    Here it writes (part of) the first non-empty buffer and returns the count,
    so the same loops drive both. Encryption is the copy TLS adds; nothing is
    concatenated. A write that times out is retried by the caller with the same
    buffer, which is what OpenSSL requires of a retried write.
    """

    def sendmsg(self, buffers: Iterable[Any], *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        if args or kwargs:
            raise NotImplementedError("ancillary data cannot travel over TLS")
        for buf in buffers:
            view = buf if isinstance(buf, memoryview) else memoryview(buf)
            if view.nbytes == 0:
                continue
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
            return self.send(view[:_WRITE_CHUNK])
        return 0


def use_message_sockets(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.sslsocket_class = MessageSSLSocket
    return ctx


__all__ = ["MessageSSLSocket", "fingerprint", "normalize_fingerprint", "use_message_sockets"]
