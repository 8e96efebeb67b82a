"""Server configuration: a frozen, validated dataclass (STYLE.md §8)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

from vtremote.engines.registry import canonical
from vtremote.errors import ConfigError
from vtremote.wire.framing import Limits

DEFAULT_LISTEN = "127.0.0.1:5555"

MiB = 1 << 20
#: The smallest --max-memory accepted (the process itself takes about 160 MiB).
MIN_MAX_MEMORY = 256 * MiB

#: --log-level spellings: names, and the reference daemon's 0/1/2 (VTR1.md §9.1).
LOG_LEVELS: dict[str, int] = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "0": logging.ERROR,
    "1": logging.INFO,
    "2": logging.DEBUG,
}


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` / ``[V6ADDR]:PORT`` -> (host, port). Hostnames are allowed.

    The port must be 0..65535 (0 picks a free one). Unlike the reference, which
    takes an IPv4 dotted quad only (VTR1.md §9.1, §13.25).
    """
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"listen address {value!r} is not [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ConfigError(f"listen address {value!r} is not HOST:PORT")
        if ":" in host:
            raise ConfigError(f"listen address {value!r}: write IPv6 addresses as [ADDR]:PORT")
    if not host:
        raise ConfigError(f"listen address {value!r} has no host (use 0.0.0.0 or :: for all)")
    try:
        port = int(port_text, 10)
    except ValueError:
        raise ConfigError(f"listen address {value!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"listen address {value!r}: port {port} is outside 0..65535")
    return host, port


def default_max_memory() -> int:
    """Half of the host's physical memory (``os.sysconf``), at least :data:`MIN_MAX_MEMORY`."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 0
    if physical <= 0:
        return 4096 * MiB
    return max(MIN_MAX_MEMORY, physical // 2)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"1.5GiB"``, ``"1073741824"`` -> bytes (units are powers of 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"memory size {text!r} is not a number with an optional K, M, G or T")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def log_level_number(name: str) -> int:
    try:
        return LOG_LEVELS[name.strip().lower()]
    except KeyError:
        raise ConfigError(
            f"log level {name!r} is not one of error, warning, info, debug, 0, 1, 2"
        ) from None


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``vtremoted`` can be told.

    ``max_sessions`` counts sessions that passed HELLO (0 = unlimited);
    ``idle_timeout`` is how long a client may stay silent while the server waits
    for it (seconds; the reference hard-codes 10); ``once`` serves one client,
    then the server stops (``serve_forever`` returns).
    """

    listen: str = DEFAULT_LISTEN
    token: str = ""
    max_sessions: int = 4
    engine: str = "auto"
    idle_timeout: float = 30.0
    log_level: str = "info"
    once: bool = False
    #: On shutdown, how long streaming sessions may go on before they get ERROR 7.
    drain_timeout: float = 30.0
    #: Largest payloads accepted per message type (VTR1.md §13.1); FRAME follows the geometry.
    limits: Limits = Limits()
    #: Connections allowed to wait in the handshake beyond max_sessions (slowloris bound).
    max_handshakes: int = 64
    #: Announce and honour our extensions (wire/extensions.py). False answers HELLO with the
    #: reference daemon's exact 22-byte HELLO_ACK and ignores extension options, so clients
    #: can be tested against plain v1 behaviour.
    extensions: bool = True
    #: A complete HELLO must arrive this many seconds after accept (server/admission.py).
    handshake_timeout: float = 5.0
    #: Connections one source address may hold before its HELLO is accepted.
    max_handshakes_per_source: int = 8
    #: Wrong tokens from one address before it is blocked, and for how long (seconds).
    auth_block_after: int = 10
    auth_block_seconds: float = 60.0
    #: TLS (server/tls.py): on with ``tls`` (self-signed, made in ``tls_state_dir``) or a
    #: certificate and key; plain VTR1 stays allowed on the same port unless ``require_tls``.
    tls: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_state_dir: str = ""
    tls_client_ca: str = ""
    require_tls: bool = False
    #: Sessions the engine runs at full speed at once, announced to pools (ext:capacity);
    #: 0: the engine's own (its device's session limit, or one per CPU core).
    capacity: int = 0
    #: ``HOST:PORT`` of the Prometheus endpoint ("" = none; server/metrics.py).
    metrics: str = ""
    #: Bytes the server may use in all (server/budget.py); by default half the host's memory.
    max_memory: int = field(default_factory=default_max_memory)

    @property
    def tls_enabled(self) -> bool:
        return self.tls or bool(self.tls_cert)

    def __post_init__(self) -> None:
        parse_listen(self.listen)
        if self.max_sessions < 0 or self.max_sessions > 0xFFFF:
            raise ConfigError(
                f"max_sessions={self.max_sessions} is outside 0..65535 (0 = unlimited)"
            )
        if not 0 <= self.capacity <= 0xFFFF:
            raise ConfigError(f"capacity={self.capacity} is outside 0..65535 (0 = the engine's)")
        canonical(self.engine)
        if not self.drain_timeout >= 0:
            raise ConfigError(f"drain_timeout={self.drain_timeout} must be >= 0 seconds")
        if not self.idle_timeout > 0:
            raise ConfigError(f"idle_timeout={self.idle_timeout} must be > 0 seconds")
        log_level_number(self.log_level)
        if len(self.token.encode("utf-8", "surrogateescape")) > 0xFFFF:
            raise ConfigError("token is longer than the 65535 bytes a VTR1 string holds")
        if self.max_handshakes < 1:
            raise ConfigError(f"max_handshakes={self.max_handshakes} must be >= 1")
        if not 1 <= self.max_handshakes_per_source <= self.max_handshakes:
            raise ConfigError(
                f"max_handshakes_per_source={self.max_handshakes_per_source} "
                "is outside 1..max_handshakes"
            )
        if not 0 < self.handshake_timeout <= 600:
            raise ConfigError(
                f"handshake_timeout={self.handshake_timeout} is outside (0, 600] seconds"
            )
        if self.auth_block_after < 1 or not self.auth_block_seconds >= 0:
            raise ConfigError("auth_block_after must be >= 1 and auth_block_seconds >= 0")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        if (self.require_tls or self.tls_client_ca) and not self.tls_enabled:
            raise ConfigError(
                "--require-tls and --tls-client-ca need TLS (--tls or --tls-cert/--tls-key)"
            )
        if self.metrics:
            parse_listen(self.metrics)
        if self.max_memory < MIN_MAX_MEMORY:
            raise ConfigError(
                f"max_memory={self.max_memory} bytes is below the {MIN_MAX_MEMORY // MiB} MiB "
                "the server needs with one small session"
            )

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]

    @property
    def engine_name(self) -> str:
        return canonical(self.engine)

    @property
    def idle_timeout_ms(self) -> int:
        return round(self.idle_timeout * 1000)
