"""Announce a vtremoted on the LAN with mDNS/DNS-SD (``_vtremote._tcp``), with :mod:`zeroconf`.

The service instance is ``vtremoted on HOST (PORT)``; its TXT record says what
a client needs before connecting (keys are short and stable, values text):

========== ===========================================================
key        value
========== ===========================================================
version    vtremoted version
proto      ``VTR1``
codecs     ``h264,hevc``
engines    ``h264=x264,hevc=x264`` (what serves each codec)
max        max sessions (0 = unlimited); live counts come from HELLO_ACK
token      ``1`` when a token is required, else ``0``
tls        ``1`` when TLS is required, else ``0``
capacity   sessions the engine runs at full speed at once (server/speed.py)
fps        the rolling fps of its sessions when announced (0: not measured
           yet); HELLO_ACK's ``ext:capacity`` carries the live value
========== ===========================================================

A server listening on a loopback address announces on loopback only; one on
a specific address announces on that interface (IPv6 too: ``fd00::2``);
``0.0.0.0`` announces its IPv4 addresses on every interface, ``::`` its IPv4
and IPv6 ones (routable IPv6 only: a link-local address needs a scope a client's
``HOST:PORT`` cannot carry), over IPv4 and IPv6 multicast.
``VTREMOTE_MDNS_INTERFACES`` (comma-separated addresses) limits the interfaces
announced on, as it limits those a client browses. Registration runs in a background thread, so the
``listening`` line is never delayed by mDNS probing.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Mapping

from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, Zeroconf
from zeroconf._utils.net import get_all_addresses

import vtremote
from vtremote.server.speed import engine_capacity
from vtremote.wire.advert import ENV_INTERFACES, SERVICE_TYPE

log = logging.getLogger(__name__)


def txt_record(
    *,
    codecs: Mapping[str, str],
    max_sessions: int,
    token: bool,
    tls: bool,
    capacity: int = 0,
    fps: float = 0.0,
) -> dict[str, str]:
    """The TXT properties for a server (``codecs``: codec -> engine label)."""
    return {
        "version": vtremote.__version__,
        "proto": "VTR1",
        "codecs": ",".join(codecs),
        "engines": ",".join(f"{c}={e}" for c, e in codecs.items()),
        "max": str(max_sessions),
        "token": "1" if token else "0",
        "tls": "1" if tls else "0",
        "capacity": str(capacity or engine_capacity(next(iter(codecs.values()), ""))),
        "fps": f"{fps:.1f}",
    }


def instance_name(port: int) -> str:
    host = socket.gethostname().split(".")[0] or "vtremoted"
    return f"vtremoted on {host} ({port})"


class Advertiser:
    """Registers one ``_vtremote._tcp`` service until :meth:`close`."""

    def __init__(
        self, listen_host: str, port: int, properties: Mapping[str, str], name: str | None = None
    ) -> None:
        self.listen_host = listen_host
        self.port = port
        self.properties = dict(properties)
        self.name = name or instance_name(port)
        self._zc: Zeroconf | None = None
        self._info: ServiceInfo | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        #: Set once registered (or failed: see :attr:`error`).
        self.ready = threading.Event()
        self.error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._register, name="vtremoted-mdns", daemon=True)
        self._thread.start()

    def _register(self) -> None:
        try:
            interfaces, addresses, version = _scope(self.listen_host)
            named = [i.strip() for i in os.environ.get(ENV_INTERFACES, "").split(",") if i.strip()]
            if named:
                interfaces = named
                version = IPVersion.All if any(":" in i for i in named) else IPVersion.V4Only
            zc = Zeroconf(
                interfaces=interfaces if interfaces else InterfaceChoice.All, ip_version=version
            )
            if not addresses:
                addresses = _all_addresses(ipv6=":" in self.listen_host)  # "::": both families
            info = ServiceInfo(
                SERVICE_TYPE,
                f"{self.name}.{SERVICE_TYPE}",
                addresses=[
                    socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a)
                    for a in addresses
                ],
                port=self.port,
                properties=self.properties,
                server=f"{socket.gethostname().split('.')[0] or 'vtremoted'}.local.",
            )
            with self._lock:
                if self._closed:
                    zc.close()
                    return
                self._zc, self._info = zc, info
            zc.register_service(info, allow_name_change=True)
            log.info("announced %r on mDNS (%s, %s)", info.name, SERVICE_TYPE, ", ".join(addresses))
        except Exception as e:  # noqa: BLE001 - mDNS is optional: say why and keep serving
            self.error = f"{type(e).__name__}: {e}"
            log.warning("mDNS announcement failed (serving anyway): %s", self.error)
        finally:
            self.ready.set()

    def close(self) -> None:
        """Withdraw the announcement (a goodbye packet) and stop zeroconf."""
        with self._lock:
            self._closed = True
            zc, info = self._zc, self._info
            self._zc = self._info = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if zc is not None:
            try:
                if info is not None:
                    zc.unregister_service(info)
            finally:
                zc.close()


def _all_addresses(*, ipv6: bool) -> list[str]:
    """This host's addresses to announce: IPv4 beyond loopback (127.0.0.1 when there is
    none), then, with ``ipv6``, routable IPv6 ones."""
    found = [a for a in get_all_addresses() if not a.startswith("127.")] or ["127.0.0.1"]
    if ipv6:
        import ifaddr  # zeroconf's own dependency

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                if isinstance(ip.ip, tuple):
                    v6 = ipaddress.ip_address(ip.ip[0])
                    if not (v6.is_link_local or v6.is_loopback) and str(v6) not in found:
                        found.append(str(v6))
    return found


def _scope(host: str) -> tuple[list[str], list[str], IPVersion]:
    """(interfaces to announce on, addresses to announce, IP version) for a listen host."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:  # a host name: resolve it
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    if ip.is_unspecified:
        return [], [], IPVersion.All if ip.version == 6 else IPVersion.V4Only
    version = IPVersion.V6Only if ip.version == 6 else IPVersion.V4Only
    return [str(ip)], [str(ip)], version
