"""The exception tree of vtremote and the ERROR codes it maps to on the wire.

Every failure has one class here, one wire code (:class:`ErrorCode`, sent in an
ERROR message, docs/protocol.md "ERROR") and one CLI exit code. The translation
points are few: ``OSError`` becomes :class:`ConnectionLostError` in the
transports, ``av.FFmpegError`` becomes :class:`EngineError` in the engines, a
received ERROR becomes ``RemoteError.for_code(code, text)``, and at the session
boundary any :class:`VTRemoteError` becomes one ERROR message with its ``code``.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class ErrorCode(enum.IntEnum):
    """ERROR message codes (docs/protocol.md).

    1..5 are the table the v1 documentation announced; the reference server only
    ever sent code 1 (for an unsupported ``wire_compression``), so a v1 client
    treats every code alike. 6 and 7 are ours.
    """

    AUTH = 1
    BUSY = 2
    UNSUPPORTED = 3
    BAD_REQUEST = 4
    INTERNAL = 5
    TIMEOUT = 6
    SHUTTING_DOWN = 7


class VTRemoteError(Exception):
    """Base of every error vtremote raises on purpose."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL
    exit_code: ClassVar[int] = 1


# --- protocol ---------------------------------------------------------------------------


class ProtocolError(VTRemoteError):
    """The VTR1 byte stream or message order is wrong."""

    code = ErrorCode.BAD_REQUEST


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol does not allow (a bug on our side)."""

    code = ErrorCode.INTERNAL


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes or a message order the protocol does not allow."""


class BitstreamError(RemoteProtocolError):
    """Malformed H.264/HEVC data: Annex B, length-prefixed NAL units, avcC/hvcC, SPS."""


# --- errors reported by the peer in an ERROR message ------------------------------------


class RemoteError(VTRemoteError):
    """The peer sent an ERROR message (or a refusing HELLO_ACK status)."""

    _by_code: ClassVar[dict[int, type[RemoteError]]] = {}

    def __init__(self, message: str, *, wire_code: int | None = None) -> None:
        super().__init__(message)
        self.wire_code = int(self.code) if wire_code is None else wire_code

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            RemoteError._by_code[int(cls.code)] = cls

    @classmethod
    def for_code(cls, code: int, text: str) -> RemoteError:
        """The exception for a received ERROR(code, text); unknown codes give RemoteError."""
        klass = cls._by_code.get(code, RemoteError)
        return klass(text or f"remote error {code}", wire_code=code)


class AuthError(RemoteError):
    code = ErrorCode.AUTH


class BusyError(RemoteError):
    code = ErrorCode.BUSY


class UnsupportedError(RemoteError):
    code = ErrorCode.UNSUPPORTED


class BadRequestError(RemoteError):
    code = ErrorCode.BAD_REQUEST


class InternalServerError(RemoteError):
    code = ErrorCode.INTERNAL


class RemoteTimeoutError(RemoteError):
    code = ErrorCode.TIMEOUT


class ShuttingDownError(RemoteError):
    code = ErrorCode.SHUTTING_DOWN


# --- local failures -----------------------------------------------------------------------


class EngineError(VTRemoteError):
    """The codec failed; raised ``from`` the ``av.FFmpegError``."""

    code = ErrorCode.INTERNAL


class EngineUnavailableError(EngineError):
    """The requested engine or codec does not work on this host."""

    code = ErrorCode.UNSUPPORTED


class ConnectionLostError(VTRemoteError, ConnectionError):
    """The TCP connection failed, was refused or closed early."""

    code = ErrorCode.INTERNAL


class CertificateError(ConnectionLostError):
    """The server's TLS certificate is not the one expected (CA, pinned or known fingerprint)."""


class TimeoutExpiredError(VTRemoteError, TimeoutError):
    """A deadline passed (connect, handshake, idle, reply)."""

    code = ErrorCode.TIMEOUT


class ConfigError(VTRemoteError, ValueError):
    """A configuration value is invalid (local config or a peer's CONFIGURE)."""

    code = ErrorCode.BAD_REQUEST
    exit_code = 2


class UsageError(ConfigError):
    """A command line or job description is wrong (exit code 2)."""

    exit_code = 2


class JobError(VTRemoteError):
    """A job cannot go on: an input, output or stream problem (exit code 1)."""


class UnsupportedConfigError(ConfigError):
    """A well-formed request this side cannot serve (codec, pixel format, compression...)."""

    code = ErrorCode.UNSUPPORTED
    exit_code = 1


class ShutdownError(VTRemoteError):
    """The server is draining and refuses the session."""

    code = ErrorCode.SHUTTING_DOWN


class AuthenticationError(VTRemoteError):
    """A HELLO carried the wrong token (server side; HELLO_ACK status 2, then ERROR 1)."""

    code = ErrorCode.AUTH


class CapacityError(VTRemoteError):
    """Every session slot is taken (server side; HELLO_ACK status 1, then ERROR 2)."""

    code = ErrorCode.BUSY


class NoServerError(ConnectionLostError):
    """No server of a pool could take the session; the message names every host and why."""

    code = ErrorCode.BUSY


__all__ = [
    "AuthError",
    "AuthenticationError",
    "BadRequestError",
    "BitstreamError",
    "BusyError",
    "CapacityError",
    "CertificateError",
    "ConfigError",
    "ConnectionLostError",
    "EngineError",
    "EngineUnavailableError",
    "ErrorCode",
    "InternalServerError",
    "JobError",
    "LocalProtocolError",
    "NoServerError",
    "ProtocolError",
    "RemoteError",
    "RemoteProtocolError",
    "RemoteTimeoutError",
    "ShutdownError",
    "ShuttingDownError",
    "TimeoutExpiredError",
    "UnsupportedConfigError",
    "UnsupportedError",
    "UsageError",
    "VTRemoteError",
]
