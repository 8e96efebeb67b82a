"""The client's config file: named pools of servers, their weights, the fallback.

Read with :mod:`tomllib` from the first of ``$VTREMOTE_CONFIG``,
``~/.config/vtremote/config.toml`` and ``/etc/vtremote/config.toml`` that exists::

    fallback = "local"              # when no server can be had: encode here (or "none")

    [pools.studio]
    hosts = ["mac-mini.local:5555", { host = "gpu.local:5555", weight = 2 }]
    token = "s3cret"                # optional, for every host of the pool
    fallback = "local"              # optional, overrides the top-level one
    timeout_ms = 3000               # optional

This module only reads and validates; it opens no socket, so a media-server
drop-in can reuse it as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtremote.errors import ConfigError

#: Environment variable naming the config file (it must then exist).
ENV_CONFIG = "VTREMOTE_CONFIG"
#: Where the config file is looked for when ``$VTREMOTE_CONFIG`` is not set, in order.
DEFAULT_PATHS = (Path("~/.config/vtremote/config.toml"), Path("/etc/vtremote/config.toml"))
#: What a client may do when no server can be had.
FALLBACKS = ("none", "local")


@dataclass(frozen=True, slots=True)
class PoolMember:
    """One server of a pool; ``weight`` scales its free capacity in placement."""

    address: str
    weight: float = 1.0

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
                f"pool {self.name!r}: fallback {self.fallback!r} is not one of {', '.join(FALLBACKS)}"
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
    hosts = table.get("hosts")
    if not isinstance(hosts, list):
        raise ConfigError(
            f"{where}: pools.{name}.hosts must be a list of HOST:PORT strings or tables"
        )
    weights = table.get("weights", {})
    if not isinstance(weights, dict):
        raise ConfigError(f"{where}: pools.{name}.weights must be a table of HOST:PORT = weight")
    members: list[PoolMember] = []
    for entry in hosts:
        if isinstance(entry, str):
            members.append(PoolMember(entry, float(weights.get(entry, 1.0))))
        elif isinstance(entry, dict) and isinstance(entry.get("host"), str):
            members.append(PoolMember(entry["host"], float(entry.get("weight", 1.0))))
        else:
            raise ConfigError(
                f"{where}: pools.{name}.hosts entry {entry!r} is not HOST:PORT or {{host=..., weight=...}}"
            )
    token = table.get("token")
    fallback = table.get("fallback")
    timeout_ms = table.get("timeout_ms")
    if token is not None and not isinstance(token, str):
        raise ConfigError(f"{where}: pools.{name}.token must be a string")
    if timeout_ms is not None and not isinstance(timeout_ms, int):
        raise ConfigError(f"{where}: pools.{name}.timeout_ms must be an integer")
    return PoolConfig(name, tuple(members), token, fallback, timeout_ms)
