"""The client's config file: named pools of servers, their weights, the fallback.

Read with :mod:`tomllib` from the first of ``$VTREMOTE_CONFIG``,
``~/.config/vtremote/config.toml`` and ``/etc/vtremote/config.toml`` that exists::

    fallback = "local"              # when no server can be had: encode here (or "none")

    [pools.studio]
    hosts = [
        "mac-mini.local:5555",
        { host = "gpu.local:5555", weight = 2, token = "other", tls_fingerprint = "ab:cd:..." },
        { host = "tower.local:5555", mac = "3c:22:fb:01:02:03" },   # woken when unreachable
    ]
    token = "s3cret"                # optional, for every host without its own
    tls = true                      # optional, tls_fingerprint / tls_ca too; a host's own win
    fallback = "local"              # optional, overrides the top-level one
    timeout_ms = 3000               # optional
    wake = "wait"                   # or "background": go on without the woken host
    wake_timeout_s = 60             # broadcast = "255.255.255.255", wake_port = 9

Pool-level keys are defaults for every host; a host table's own keys override
them one by one (:data:`MEMBER_KEYS`).

This module only reads and validates; it opens no socket, so a media-server
drop-in can reuse it as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vtremote.client.tls import TLSOptions
from vtremote.errors import ConfigError

#: Environment variable naming the config file (it must then exist).
ENV_CONFIG = "VTREMOTE_CONFIG"
#: Where the config file is looked for when ``$VTREMOTE_CONFIG`` is not set, in order.
DEFAULT_PATHS = (Path("~/.config/vtremote/config.toml"), Path("/etc/vtremote/config.toml"))
#: What a client may do when no server can be had.
FALLBACKS = ("none", "local")
#: What a pool does while a woken host boots: wait for it, or go on without it.
WAKE_MODES = ("wait", "background")
#: Keys a host table may carry; all but ``host``, ``weight`` and ``mac`` may also be
#: given once for the whole pool.
MEMBER_KEYS = (
    "host",
    "weight",
    "token",
    "tls",
    "tls_fingerprint",
    "tls_ca",
    "mac",
    "broadcast",
    "wake_port",
    "wake_timeout_s",
    "wake",
)
#: Pool-level defaults a host inherits (the rest of :data:`MEMBER_KEYS` is per host).
SHARED_KEYS = MEMBER_KEYS[2:6] + MEMBER_KEYS[7:]
#: Wake-on-LAN defaults: the limited broadcast, the discard port, a minute to boot.
WAKE_BROADCAST = "255.255.255.255"
WAKE_PORT = 9
WAKE_TIMEOUT_S = 60.0


def parse_mac(text: str) -> bytes:
    """``3c:22:fb:01:02:03`` (``-`` or no separators too) -> its 6 bytes."""
    digits = text.replace(":", "").replace("-", "").replace(".", "")
    if len(digits) != 12:
        raise ConfigError(f"MAC address {text!r} does not have 6 bytes (aa:bb:cc:dd:ee:ff)")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ConfigError(f"MAC address {text!r} is not hexadecimal") from None


@dataclass(frozen=True, slots=True)
class WakeTarget:
    """How to wake one host: its MAC, where the magic packet goes, how long to wait."""

    mac: bytes
    broadcast: str = WAKE_BROADCAST
    port: int = WAKE_PORT
    timeout_s: float = WAKE_TIMEOUT_S
    mode: str = "wait"

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise ConfigError(f"MAC address of {len(self.mac)} bytes; expected 6")
        if not 0 < self.port < 65536:
            raise ConfigError(f"wake_port {self.port} is outside 1..65535")
        if not self.timeout_s > 0:
            raise ConfigError(f"wake_timeout_s {self.timeout_s} must be positive")
        object.__setattr__(self, "timeout_s", float(self.timeout_s))
        if self.mode not in WAKE_MODES:
            raise ConfigError(f"wake {self.mode!r} is not one of {', '.join(WAKE_MODES)}")

    @property
    def mac_text(self) -> str:
        return ":".join(f"{b:02x}" for b in self.mac)

    @property
    def background(self) -> bool:
        return self.mode == "background"


@dataclass(frozen=True, slots=True)
class PoolMember:
    """One server of a pool; ``weight`` scales its expected throughput in placement.

    ``token`` None: the pool's. ``tls`` None: the connection's (command line);
    False: plain TCP; else these TLS settings. ``wake``: how to wake it, if it can be.
    """

    address: str
    weight: float = 1.0
    token: str | None = None
    tls: TLSOptions | Literal[False] | None = None
    wake: WakeTarget | None = None

    def tls_for(self, default: TLSOptions | None) -> TLSOptions | None:
        """The TLS settings to greet this member with (``default``: the connection's)."""
        if self.tls is None:
            return default
        return self.tls or None

    def __post_init__(self) -> None:
        if not self.address:
            raise ConfigError("a pool member has an empty address")
        if not self.weight > 0:
            raise ConfigError(f"pool member {self.address}: weight {self.weight} must be positive")


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """A named pool: its members and the options they share."""

    name: str
    members: tuple[PoolMember, ...]
    token: str | None = None
    fallback: str | None = None
    timeout_ms: int | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise ConfigError(f"pool {self.name!r} has no hosts")
        if self.fallback is not None and self.fallback not in FALLBACKS:
            raise ConfigError(
                f"pool {self.name!r}: fallback {self.fallback!r} is not one of "
                f"{', '.join(FALLBACKS)}"
            )


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The whole file (empty when there is none)."""

    pools: dict[str, PoolConfig]
    fallback: str = "none"
    path: str | None = None

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ConfigError(
                f"{self.path}: fallback {self.fallback!r} is not one of {', '.join(FALLBACKS)}"
            )

    def pool(self, name: str) -> PoolConfig | None:
        return self.pools.get(name)


def config_path() -> Path | None:
    """The config file to read, or None when there is none."""
    env = os.environ.get(ENV_CONFIG)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"${ENV_CONFIG} names {env}, which is not a file")
        return path
    for candidate in DEFAULT_PATHS:
        path = candidate.expanduser()
        if path.is_file():
            return path
    return None


def load_config(path: str | Path | None = None) -> ClientConfig:
    """Read ``path`` (default: :func:`config_path`); an absent file is an empty config."""
    chosen = Path(path) if path is not None else config_path()
    if chosen is None:
        return ClientConfig(pools={})
    import tomllib  # only with a config file: every command reads this, few have one

    try:
        with chosen.open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read {chosen}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{chosen} is not valid TOML: {e}") from e
    return parse_config(data, str(chosen))


def parse_config(data: dict[str, Any], where: str = "config") -> ClientConfig:
    """The parsed TOML document -> :class:`ClientConfig`, with messages naming the key."""
    pools_raw = data.get("pools", {})
    if not isinstance(pools_raw, dict):
        raise ConfigError(f"{where}: [pools] must be a table of tables")
    pools = {name: _pool(name, table, where) for name, table in pools_raw.items()}
    fallback = data.get("fallback", "none")
    if not isinstance(fallback, str):
        raise ConfigError(f"{where}: fallback must be a string")
    return ClientConfig(pools=pools, fallback=fallback, path=where)


def _pool(name: str, table: Any, where: str) -> PoolConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: pools.{name} must be a table")
    key = f"{where}: pools.{name}"
    hosts = table.get("hosts")
    if not isinstance(hosts, list):
        raise ConfigError(f"{key}.hosts must be a list of HOST:PORT strings or tables")
    weights = table.get("weights", {})
    if not isinstance(weights, dict):
        raise ConfigError(f"{key}.weights must be a table of HOST:PORT = weight")
    for k in ("host", "mac"):
        if k in table:
            raise ConfigError(f"{key}.{k} belongs in a host table of hosts, not the pool")
    shared = {k: table[k] for k in SHARED_KEYS if k in table}
    members: list[PoolMember] = []
    for i, entry in enumerate(hosts):
        if isinstance(entry, str):
            entry = {"host": entry, "weight": weights.get(entry, 1.0)}
        if not isinstance(entry, dict) or not isinstance(entry.get("host"), str):
            raise ConfigError(
                f"{key}.hosts entry {entry!r} is not HOST:PORT or {{host=..., weight=...}}"
            )
        try:
            members.append(_member(entry, shared))
        except ConfigError as e:
            raise ConfigError(f"{key}.hosts entry {i + 1} ({entry['host']}): {e}") from None
    fallback = table.get("fallback")
    timeout_ms = table.get("timeout_ms")
    token = shared.get("token")
    if token is not None and not isinstance(token, str):
        raise ConfigError(f"{key}.token must be a string")
    if timeout_ms is not None and not isinstance(timeout_ms, int):
        raise ConfigError(f"{key}.timeout_ms must be an integer")
    return PoolConfig(name, tuple(members), token, fallback, timeout_ms)


def _typed(values: dict[str, Any], k: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``values[k]`` checked against ``kind`` (True is no number here), or None."""
    value = values.get(k)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{k} must be {what}, not {value!r}")
    return value


def _member(entry: dict[str, Any], shared: dict[str, Any]) -> PoolMember:
    """One host table with the pool's defaults under it -> a :class:`PoolMember`."""
    unknown = sorted(set(entry) - set(MEMBER_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(MEMBER_KEYS)})")
    own = {**{k: v for k, v in shared.items() if k != "token"}, **entry}
    weight = _typed(own, "weight", (int, float), "a number")
    token = _typed(entry, "token", str, "a string")
    tls_flag = _typed(own, "tls", bool, "true or false")
    fingerprint = _typed(own, "tls_fingerprint", str, "a string") or ""
    ca = _typed(own, "tls_ca", str, "a string (a PEM file)") or ""
    own_pin = bool(entry.get("tls_fingerprint") or entry.get("tls_ca"))
    tls: TLSOptions | Literal[False] | None = None
    if tls_flag is False and ("tls" in entry or not own_pin):
        if own_pin or ("tls" not in entry and (fingerprint or ca)):
            raise ConfigError("tls = false contradicts tls_fingerprint / tls_ca")
        tls = False
    elif tls_flag or fingerprint or ca:
        tls = TLSOptions(ca=ca, fingerprint=fingerprint)
    wake = None
    mac = _typed(own, "mac", str, "a string (aa:bb:cc:dd:ee:ff)")
    if mac is not None:
        given = {
            "broadcast": _typed(own, "broadcast", str, "an IPv4 address"),
            "port": _typed(own, "wake_port", int, "an integer"),
            "timeout_s": _typed(own, "wake_timeout_s", (int, float), "a number"),
            "mode": _typed(own, "wake", str, "a string"),
        }
        wake = WakeTarget(parse_mac(mac), **{k: v for k, v in given.items() if v is not None})
    else:
        stray = [k for k in ("broadcast", "wake_port", "wake_timeout_s") if k in entry]
        if stray:
            raise ConfigError(f"{', '.join(stray)} without mac: nothing to wake")
    return PoolMember(entry["host"], float(1.0 if weight is None else weight), token, tls, wake)
