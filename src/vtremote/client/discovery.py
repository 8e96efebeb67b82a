"""Find vtremoted servers on the LAN: browse ``_vtremote._tcp`` with :mod:`zeroconf`.

``VTREMOTE_MDNS_INTERFACES`` (comma-separated addresses, e.g. ``127.0.0.1``)
limits the interfaces browsed; by default every interface is.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field

from zeroconf import InterfaceChoice, IPVersion, ServiceBrowser, ServiceListener, Zeroconf

from vtremote.client.transport import format_address

SERVICE_TYPE = "_vtremote._tcp.local."
ENV_INTERFACES = "VTREMOTE_MDNS_INTERFACES"


@dataclass(frozen=True, slots=True)
class Advert:
    """One announced server: its instance name, addresses, port and TXT properties."""

    name: str
    addresses: tuple[str, ...]
    port: int
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """``HOST:PORT`` of its first address."""
        return format_address(self.addresses[0], self.port)

    @property
    def max_sessions(self) -> int | None:
        value = self.properties.get("max", "")
        return int(value) if value.isdigit() else None

    @property
    def token_required(self) -> bool:
        return self.properties.get("token") == "1"

    @property
    def tls_required(self) -> bool:
        return self.properties.get("tls") == "1"


def _interfaces(interfaces: list[str] | None) -> list[str] | None:
    if interfaces is not None:
        return interfaces
    env = os.environ.get(ENV_INTERFACES, "")
    return [i.strip() for i in env.split(",") if i.strip()] or None


def discover(wait: float = 1.5, *, interfaces: list[str] | None = None) -> list[Advert]:
    """Browse for ``wait`` seconds; every server that answered, sorted by name."""
    chosen = _interfaces(interfaces)
    zc = Zeroconf(interfaces=chosen if chosen else InterfaceChoice.All, ip_version=IPVersion.V4Only)
    names: set[str] = set()
    lock = threading.Lock()

    class Listener(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            with lock:
                names.add(name)

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            with lock:
                names.add(name)

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            with lock:
                names.discard(name)

    try:
        browser = ServiceBrowser(zc, SERVICE_TYPE, Listener())
        time.sleep(wait)
        browser.cancel()
        adverts = []
        with lock:
            found = sorted(names)
        for name in found:
            info = zc.get_service_info(SERVICE_TYPE, name, timeout=1000)
            if info is None or info.port is None:
                continue
            addresses = tuple(socket.inet_ntoa(a) for a in info.addresses if len(a) == 4)
            if not addresses:
                continue
            props = {
                k.decode("utf-8", "replace"): (v or b"").decode("utf-8", "replace")
                for k, v in info.properties.items()
            }
            adverts.append(
                Advert(name.removesuffix("." + SERVICE_TYPE), addresses, info.port, props)
            )
        return adverts
    finally:
        zc.close()


def discover_addresses(wait: float = 1.5) -> list[str]:
    """``HOST:PORT`` of every server found (for ``-vt_remote_host mdns``)."""
    return [a.address for a in discover(wait)]
