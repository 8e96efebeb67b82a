"""Proof that a live sender holds the receiver's key. Sans-IO: time and addresses are passed in.

docs/live.md "Keyed handshake". The sender says HELLO with :data:`HELLO_KEYED`
in its flags; the receiver answers CHALLENGE with a 16-byte cookie; the sender
answers AUTH: the cookie, a nonce of its own, HMAC-SHA256 over both and its
HELLO, and the HELLO again. The cookie is a time and a MAC of the time, the
peer's address and the HELLO's nonce under a secret only the receiver knows,
so a receiver keeps no state for a HELLO: an AUTH brings back everything it
needs. Both sides then derive a session key; over UDP every later datagram, in
both directions, carries the first :data:`TAG_SIZE` bytes of an HMAC under it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

from vtremote.errors import ConfigError

#: HELLO flags bit: this sender holds a key and will answer a CHALLENGE.
HELLO_KEYED = 0x01
#: Bytes of a datagram's authentication tag (HMAC-SHA256, truncated).
TAG_SIZE = 16
COOKIE_SIZE = 16
NONCE_SIZE = 16
PROOF_SIZE = 32
#: Shortest key accepted: a key is also what an eavesdropper of an AUTH could guess at.
MIN_KEY_CHARS = 16

_COOKIE_TIME = struct.Struct("!Q")
_ADDRESS = struct.Struct("!H")


class KeyChoice(enum.Enum):
    """A receiver given no key makes one (read it back from ``LiveReceiver.key``)."""

    GENERATE = "generate"


GENERATE = KeyChoice.GENERATE


def new_key() -> str:
    """A fresh key: 32 random bytes as URL-safe text (43 characters)."""
    return secrets.token_urlsafe(32)


def check_key(key: str) -> bytes:
    """The secret bytes of ``key``; :class:`ConfigError` when it is too short to be one."""
    if not isinstance(key, str):  # the 8-byte integer key of earlier versions
        raise ConfigError(f"a live key is text (as `vtremote live recv` makes), not {key!r}")
    text = key.strip()
    if len(text) < MIN_KEY_CHARS:
        raise ConfigError(
            f"live key of {len(text)} characters is too short (at least {MIN_KEY_CHARS}; "
            "`vtremote live recv` makes one)"
        )
    return text.encode()


@dataclass(frozen=True, slots=True)
class Proof:
    """What a sender's AUTH proves, and the session key both sides derive from it."""

    tag: bytes
    session_key: bytes


def prove(secret: bytes, cookie: bytes, nonce: bytes, hello_payload: bytes) -> Proof:
    """The AUTH tag over ``cookie``, ``nonce`` and the HELLO payload, and the session key."""
    tag = hmac.digest(secret, b"VL1 auth" + cookie + nonce + hello_payload, "sha256")
    session = hmac.digest(secret, b"VL1 session" + cookie + nonce, "sha256")
    return Proof(tag, session)


def same(a: bytes | memoryview, b: bytes | memoryview) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a, b)


class CookieJar:
    """Receiver side: stateless challenges, valid for ``lifetime_ms`` after they were made."""

    def __init__(self, lifetime_ms: int) -> None:
        self.lifetime_ms = lifetime_ms
        self._secret = secrets.token_bytes(32)

    def _mac(self, when: bytes, host: str, port: int, hello_nonce: int) -> bytes:
        peer = host.encode() + _ADDRESS.pack(port) + hello_nonce.to_bytes(4, "big")
        return hmac.digest(self._secret, when + peer, "sha256")[: COOKIE_SIZE - _COOKIE_TIME.size]

    def make(self, host: str, port: int, hello_nonce: int, now_ms: int) -> bytes:
        when = _COOKIE_TIME.pack(now_ms)
        return when + self._mac(when, host, port, hello_nonce)

    def check(self, cookie: bytes, host: str, port: int, hello_nonce: int, now_ms: int) -> str:
        """Empty when ``cookie`` is one of ours for this peer and fresh; else why not."""
        if len(cookie) != COOKIE_SIZE:
            return "challenge of the wrong size"
        when = cookie[: _COOKIE_TIME.size]
        if not same(cookie[_COOKIE_TIME.size :], self._mac(when, host, port, hello_nonce)):
            return "challenge not made for this peer"
        (made,) = _COOKIE_TIME.unpack(when)
        if not 0 <= now_ms - made <= self.lifetime_ms:
            return f"challenge older than {self.lifetime_ms} ms"
        return ""


def tag(session_key: bytes, *parts: bytes | bytearray | memoryview) -> bytes:
    """The tag a datagram made of ``parts`` carries at its end."""
    h = hmac.new(session_key, digestmod=hashlib.sha256)
    for part in parts:
        h.update(part)
    return h.digest()[:TAG_SIZE]


def untag(session_key: bytes, datagram: memoryview) -> memoryview | None:
    """``datagram`` without its tag when the tag is right; None when it is not."""
    if datagram.nbytes < TAG_SIZE:
        return None
    body = datagram[: datagram.nbytes - TAG_SIZE]
    if not same(tag(session_key, body), datagram[datagram.nbytes - TAG_SIZE :]):
        return None
    return body
