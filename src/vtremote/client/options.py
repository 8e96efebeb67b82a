"""How a client connects: one :class:`ConnectionOptions` object, passed whole.

Every client class (:class:`~vtremote.client.RemoteEncoder`,
:class:`~vtremote.client.RemoteDecoder`, :class:`~vtremote.client.RemoteTranscoder`,
the failover classes, pool placement) takes its connection settings as one
frozen, validated object, as httpx takes ``Timeout`` / ``Limits`` objects::

    conn = ConnectionOptions(token="s3cret", timeout=3.0, compression="zstd", window=32)
    with RemoteEncoder("mac.local:5555", "h264", width=1920, height=1080, connection=conn) as enc:
        ...

The public classes still accept the loose keywords (``token=``, ``timeout=``,
``compression=``, ``inflight=``, ``tls=``, ``tls_fingerprint=``, ``tls_ca=``);
:meth:`ConnectionOptions.take` turns them into the object, here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from vtremote import __version__
from vtremote.client.tls import TLSOptions
from vtremote.client.transport import parse_compression
from vtremote.errors import ConfigError
from vtremote.wire import messages as m
from vtremote.wire.constants import WireCompression

#: HELLO ``client_name`` of this client (the reference sends "ffmpeg-vtremote").
CLIENT_NAME = "vtremote"
#: Environment variable holding the server token when none is given.
TOKEN_ENV = "VTREMOTE_TOKEN"
#: Largest window the reference allows (VTR1.md §3.2 ``vt_remote_inflight`` 1..128).
MAX_INFLIGHT = 128
#: The loose keywords of the public client classes -> the :class:`ConnectionOptions` field.
KEYWORDS = {
    "token": "token",
    "timeout": "timeout",
    "compression": "compression",
    "inflight": "window",
}
#: The loose TLS keywords, folded into one :class:`TLSOptions` (:func:`tls_options_for`).
TLS_KEYWORDS = ("tls", "tls_fingerprint", "tls_ca")


def tls_options_for(
    tls: bool | TLSOptions, fingerprint: str = "", ca: str = ""
) -> TLSOptions | None:
    """The TLS settings of a session: None for plain TCP. A pin or a CA implies TLS."""
    if isinstance(tls, TLSOptions):
        if fingerprint or ca:
            raise ConfigError("give tls_fingerprint / tls_ca inside the TLSOptions, not beside it")
        return tls
    if not (tls or fingerprint or ca):
        return None
    return TLSOptions(ca=ca, fingerprint=fingerprint)


def client_hello(token: str, codec: str) -> m.Hello:
    """The HELLO this client sends (VTR1.md §2.1)."""
    return m.Hello(token, codec, CLIENT_NAME, f"vtremote {__version__}")


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """Token, timeout, wire compression, in-flight window and TLS of a client session.

    ``token`` empty: ``$VTREMOTE_TOKEN`` when the HELLO goes out (argv is visible to
    every local user). ``timeout``: seconds without progress before a wait fails, and the
    most one message, or the HELLO and the CONFIGURE exchange, may take to arrive whole.
    ``compression``: ``none|lz4|zstd|auto`` (auto: none on loopback, zstd otherwise).
    ``window``: un-answered messages allowed in flight (1..128). ``tls``: None for
    plain TCP.
    """

    token: str = ""
    timeout: float = 5.0
    compression: str | int = "auto"
    window: int = 16
    tls: TLSOptions | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.window <= MAX_INFLIGHT:
            raise ConfigError(f"in-flight window {self.window} is outside 1..{MAX_INFLIGHT}")
        if not self.timeout > 0:
            raise ConfigError(f"timeout {self.timeout} s must be positive")
        parse_compression(self.compression)  # validate before connecting
        object.__setattr__(self, "timeout", float(self.timeout))

    @property
    def wire_compression(self) -> WireCompression | None:
        """The compression asked for; None for ``auto`` (decided once the peer is known)."""
        return parse_compression(self.compression)

    def hello_token(self) -> str:
        """The token the HELLO carries: the given one, else ``$VTREMOTE_TOKEN``."""
        return self.token or os.environ.get(TOKEN_ENV, "")

    def replace(self, **changes: Any) -> ConnectionOptions:
        return dataclasses.replace(self, **changes)

    @classmethod
    def take(cls, given: ConnectionOptions | None, keywords: dict[str, Any]) -> ConnectionOptions:
        """The options of a constructor: ``connection=`` or the loose keywords, not both.

        The loose keywords (:data:`KEYWORDS`, :data:`TLS_KEYWORDS`) are removed from
        ``keywords``; what is left belongs to the caller (codec options).
        """
        loose = {k: keywords.pop(k) for k in (*KEYWORDS, *TLS_KEYWORDS) if k in keywords}
        if given is not None:
            if loose:
                raise ConfigError(
                    "give connection settings either as connection= or as keywords, not both"
                )
            return given
        fields = {KEYWORDS[k]: v for k, v in loose.items() if k in KEYWORDS}
        tls = tls_options_for(
            loose.get("tls", False), loose.get("tls_fingerprint", ""), loose.get("tls_ca", "")
        )
        return cls(**fields, tls=tls)


__all__ = [
    "CLIENT_NAME",
    "MAX_INFLIGHT",
    "TOKEN_ENV",
    "ConnectionOptions",
    "client_hello",
    "tls_options_for",
]
