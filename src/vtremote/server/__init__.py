"""The vtremoted server: :class:`Server` and its :class:`ServerConfig`."""

from __future__ import annotations

from vtremote.server.config import ServerConfig
from vtremote.server.daemon import Server, format_address

__all__ = ["Server", "ServerConfig", "format_address"]
