"""Find vtremoted servers on the LAN: browse ``_vtremote._tcp`` with :mod:`zeroconf`.

``VTREMOTE_MDNS_INTERFACES`` (comma-separated addresses, e.g. ``127.0.0.1`` or
``127.0.0.1,fd00::2``) limits the interfaces browsed; by default every interface is.
Browsing is over IPv4 and IPv6 where the host has a routable IPv6 address (or an
IPv6 interface is named), IPv4 only otherwise. An advert keeps every address the
server announced, IPv4 first; IPv6 link-local ones are left out (they need a scope
a ``HOST:PORT`` cannot carry).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from zeroconf import InterfaceChoice, IPVersion, ServiceBrowser, ServiceListener, Zeroconf

from vtremote.client.transport import format_address
from vtremote.wire.advert import ENV_INTERFACES, SERVICE_TYPE

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Advert:
    """One announced server: its instance name, addresses, port and TXT properties."""

    name: str
    addresses: tuple[str, ...]
    port: int
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """``HOST:PORT`` of its first address (IPv4 when it has one; ``[v6]:PORT`` else)."""
        return format_address(self.addresses[0], self.port)

    @property
    def all_addresses(self) -> list[str]:
        """``HOST:PORT`` of every announced address, IPv4 first."""
        return [format_address(a, self.port) for a in self.addresses]

    @property
    def max_sessions(self) -> int | None:
        value = self.properties.get("max", "")
        return int(value) if value.isdigit() else None

    @property
    def capacity(self) -> int | None:
        """Sessions its engine runs at full speed at once (TXT ``capacity``)."""
        value = self.properties.get("capacity", "")
        return int(value) if value.isdigit() and int(value) > 0 else None

    @property
    def fps(self) -> float | None:
        """The rolling fps of its sessions when it was announced (TXT ``fps``; None: 0)."""
        try:
            value = float(self.properties.get("fps", ""))
        except ValueError:
            return None
        return value if value > 0 else None

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


def has_ipv6() -> bool:
    """True when this host has an IPv6 address beyond loopback and link-local."""
    if not socket.has_ipv6:
        return False
    import ifaddr  # zeroconf's own dependency

    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple) and _usable(ip.ip[0]):
                return True
    return False


def _usable(address: str) -> bool:
    """An address a client can connect to by ``HOST:PORT`` (no IPv6 scope needed)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return not (ip.is_unspecified or (ip.version == 6 and (ip.is_link_local or ip.is_loopback)))


def ip_version_for(interfaces: list[str] | None) -> IPVersion:
    """IPv4 and IPv6 when IPv6 is named or the host has it; IPv4 only otherwise."""
    if interfaces:
        return IPVersion.All if any(":" in i for i in interfaces) else IPVersion.V4Only
    return IPVersion.All if has_ipv6() else IPVersion.V4Only


def open_zeroconf(interfaces: list[str] | None) -> Zeroconf:
    """A :class:`Zeroconf` on ``interfaces`` (None: all), IPv6 too where there is IPv6;
    IPv4 only when the IPv6 sockets cannot be opened (said in the log)."""
    version = ip_version_for(interfaces)
    choice = interfaces if interfaces else InterfaceChoice.All
    if version is IPVersion.V4Only:
        return Zeroconf(interfaces=choice, ip_version=version)
    try:
        return Zeroconf(interfaces=choice, ip_version=version)
    except OSError as e:
        log.info("mDNS over IPv6 unavailable (%s): browsing IPv4 only", e)
        v4 = [i for i in interfaces if ":" not in i] if interfaces else None
        return Zeroconf(interfaces=v4 or InterfaceChoice.All, ip_version=IPVersion.V4Only)


def discover(wait: float = 1.5, *, interfaces: list[str] | None = None) -> list[Advert]:
    """Browse for ``wait`` seconds; every server that answered, sorted by name."""
    zc = open_zeroconf(_interfaces(interfaces))
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
            addresses = tuple(a for a in info.parsed_addresses(IPVersion.All) if _usable(a))
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
