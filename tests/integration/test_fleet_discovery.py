"""mDNS: vtremoted announces ``_vtremote._tcp`` with its TXT record; clients find it.

Real zeroconf, on the loopback interface only (``VTREMOTE_MDNS_INTERFACES``):
a server listening on 127.0.0.1 announces there and nowhere else.
"""

from __future__ import annotations

import json
import time
from fractions import Fraction

import pytest

from vtremote.cli.main import main
from vtremote.client import RemoteEncoder
from vtremote.client.discovery import Advert, discover
from vtremote.client.failover import FailoverEncoder
from vtremote.client.pool import resolve_pool


def _multicast_on_loopback() -> str | None:
    """None when zeroconf can open its sockets on 127.0.0.1, else why not."""
    from zeroconf import IPVersion, Zeroconf

    try:
        Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only).close()
    except OSError as e:
        return f"multicast on loopback does not work here: {e}"
    return None


pytestmark = pytest.mark.skipif(
    _multicast_on_loopback() is not None, reason=str(_multicast_on_loopback())
)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTREMOTE_MDNS_INTERFACES", "127.0.0.1")


def find(port: int, tries: int = 3) -> Advert | None:
    """Our server's advert (other servers may be announced on this host too)."""
    for _ in range(tries):
        for advert in discover(1.5):
            if advert.port == port:
                return advert
        time.sleep(0.5)
    return None


def test_advert_contents_and_live_counts(start_server, capsys) -> None:
    srv = start_server(
        "--engine", "x264", "--advertise", "--token", "s3cret", "--max-sessions", "3"
    )
    srv.wait_for_log("announced .* on mDNS")
    advert = find(srv.port)
    assert advert is not None, srv.stderr_text()
    assert advert.addresses == ("127.0.0.1",) and advert.address == srv.addr
    props = advert.properties
    assert props["proto"] == "VTR1" and props["version"]
    assert props["codecs"] == "h264,hevc" and props["engines"] == "h264=x264,hevc=x264"
    assert props["max"] == "3" and advert.max_sessions == 3
    assert advert.token_required and props["token"] == "1" and props["tls"] == "0"
    with RemoteEncoder(
        srv.addr, "h264", width=64, height=64, token="s3cret", time_base=Fraction(1, 30)
    ):
        rc = main(["probe", "--discover", "--wait", "1.5", "--token", "s3cret", "--json"])
        out, _ = capsys.readouterr()
    assert rc == 0
    (row,) = [r for r in json.loads(out) if r["address"] == srv.addr]
    assert row["status"] == "ok" and row["active_sessions"] == 1 and row["max_sessions"] == 3
    assert row["advert"]["engines"] == "h264=x264,hevc=x264" and row["token_required"] is True


def test_no_advertise_stays_quiet_and_goodbye_on_exit(start_server) -> None:
    quiet = start_server("--engine", "x264", "--no-advertise")
    loud = start_server("--engine", "x264", "--advertise")
    loud.wait_for_log("announced .* on mDNS")
    assert find(loud.port) is not None
    ports = {a.port for a in discover(1.5)}
    assert quiet.port not in ports
    assert loud.stop() == 0
    assert loud.port not in {a.port for a in discover(1.5)}  # the goodbye withdrew it


def test_mdns_pool_places_on_a_discovered_server(start_server) -> None:
    srv = start_server("--engine", "x264", "--advertise")
    srv.wait_for_log("announced .* on mDNS")
    assert find(srv.port) is not None
    ours = [srv.addr]
    pool = resolve_pool(
        "mdns", discover=lambda wait: [a.address for a in discover(wait) if a.address in ours]
    )
    assert pool.name == "mdns" and pool.addresses == ours
    with FailoverEncoder(pool, "h264", width=64, height=64, time_base=Fraction(1, 30)) as enc:
        assert enc.server == srv.addr


def test_adverts_carry_ipv6_addresses(start_server) -> None:
    """A server on ``::`` announces its IPv6 addresses too; a client connects to ``[v6]:PORT``.

    The announcement travels over loopback IPv4 multicast (zeroconf cannot listen on ``::1``:
    loopback has no multicast), the AAAA records in it name the host's routable IPv6
    addresses; a host without one cannot show this.
    """
    from vtremote.client.discovery import has_ipv6

    if not has_ipv6():
        pytest.skip("this host has no routable IPv6 address to announce")
    srv = start_server("--engine", "x264", "--advertise", "--listen", "[::]:0")
    srv.wait_for_log("announced .* on mDNS")
    advert = find(srv.port)
    assert advert is not None, srv.stderr_text()
    v6 = [a for a in advert.addresses if ":" in a]
    assert v6 and advert.addresses.index(v6[0]) > 0, advert.addresses  # IPv4 first
    assert f"[{v6[0]}]:{srv.port}" in advert.all_addresses
    with RemoteEncoder(
        f"[{v6[0]}]:{srv.port}", "h264", width=64, height=64, time_base=Fraction(1, 30)
    ) as enc:
        assert enc.server == f"[{v6[0]}]:{srv.port}"
    assert Advert("x", ("::1",), 5555).address == "[::1]:5555"
