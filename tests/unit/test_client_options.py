"""ConnectionOptions: one validated object for a client's connection settings."""

from __future__ import annotations

import pytest

from vtremote.client import ConnectionOptions, TLSOptions
from vtremote.client.options import TOKEN_ENV
from vtremote.errors import ConfigError
from vtremote.pipeline import RemoteOptions
from vtremote.wire.constants import WireCompression


def test_loose_keywords_become_one_object_and_leave_the_codec_options() -> None:
    keywords = {"token": "t", "timeout": 2, "compression": "lz4", "inflight": 8, "gop": 10}
    conn = ConnectionOptions.take(None, keywords)
    assert conn == ConnectionOptions(token="t", timeout=2.0, compression="lz4", window=8)
    assert keywords == {"gop": 10}
    assert conn.wire_compression is WireCompression.LZ4
    assert ConnectionOptions().wire_compression is None  # auto: decided once the peer is known


def test_tls_keywords_fold_into_tls_options() -> None:
    assert ConnectionOptions.take(None, {}).tls is None
    conn = ConnectionOptions.take(None, {"tls_fingerprint": "ab" * 32})
    assert conn.tls == TLSOptions(fingerprint="ab" * 32)
    given = TLSOptions()
    assert ConnectionOptions.take(None, {"tls": given}).tls is given
    with pytest.raises(ConfigError, match="inside the TLSOptions"):
        ConnectionOptions.take(None, {"tls": given, "tls_ca": "ca.pem"})


def test_object_or_keywords_not_both() -> None:
    conn = ConnectionOptions(token="t")
    assert ConnectionOptions.take(conn, {"gop": 1}) is conn
    with pytest.raises(ConfigError, match="not both"):
        ConnectionOptions.take(conn, {"timeout": 1.0})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window": 0}, "in-flight window 0 is outside 1..128"),
        ({"window": 129}, "in-flight window 129 is outside 1..128"),
        ({"timeout": 0}, "timeout 0 s must be positive"),
        ({"compression": "gzip"}, "gzip"),
    ],
)
def test_validated_when_built(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ConnectionOptions(**changes)  # type: ignore[arg-type]


def test_token_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert ConnectionOptions().hello_token() == "from-env"
    assert ConnectionOptions(token="given").hello_token() == "given"


def test_remote_options_give_the_connection_whole() -> None:
    ro = RemoteOptions(host="h:1", token="t", compression="zstd", inflight=4, timeout_ms=1500)
    assert ro.connection() == ConnectionOptions(
        token="t", timeout=1.5, compression="zstd", window=4, tls=None
    )
    assert RemoteOptions(tls=True).connection().tls == TLSOptions()
