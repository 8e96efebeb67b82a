"""``vtremote probe HOST:PORT``: what a vtremoted offers, without opening a codec.

Sends HELLO and reads HELLO_ACK (VTR1.md §2), then closes: server name and
version, codecs, engines and extension capabilities, sessions in use. A plain
v1 server answers with empty names and constant session counts (§2.2), which
the output says rather than presenting them as facts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from vtremote import __version__
from vtremote.client.options import CLIENT_NAME, TOKEN_ENV, tls_options_for
from vtremote.client.tls import TLSOptions
from vtremote.client.transport import Transport
from vtremote.errors import (
    ConnectionLostError,
    RemoteProtocolError,
    TimeoutExpiredError,
    VTRemoteError,
)
from vtremote.wire import extensions as ext
from vtremote.wire import messages as m
from vtremote.wire.constants import HelloStatus


def probe(
    address: str, *, token: str = "", timeout: float = 5.0, tls: TLSOptions | None = None
) -> dict[str, Any]:
    """HELLO -> HELLO_ACK; a dict describing the server. Raises on connection failures."""
    t0 = time.monotonic()
    transport = Transport.connect(address, timeout=timeout, tls=tls)
    try:
        transport.send(m.Hello(token, "h264", CLIENT_NAME, f"vtremote {__version__}"))
        ack = transport.receive()
        rtt = time.monotonic() - t0
        if isinstance(ack, m.Error):
            raise transport.remote_error(ack)
        if not isinstance(ack, m.HelloAck):
            raise RemoteProtocolError(
                f"{transport.name} answered HELLO with {type(ack).__name__.upper()}"
            )
        message = ""
        if ack.status != HelloStatus.OK:
            try:
                follow = transport.receive(timeout=min(timeout, 2.0))
                if isinstance(follow, m.Error):
                    message = follow.message
            except (ConnectionLostError, TimeoutExpiredError, RemoteProtocolError):
                pass  # a v1 server just closes after a refusal
    finally:
        transport.close()
    codecs, exts = ext.split_capabilities(ack.capabilities)
    engines = [
        c[len(ext.CAP_ENGINE_PREFIX) :]
        for c in ack.capabilities
        if c.startswith(ext.CAP_ENGINE_PREFIX)
    ]
    statuses = {
        int(HelloStatus.OK): "ok",
        int(HelloStatus.BUSY): "busy",
        int(HelloStatus.AUTH_FAILED): "authentication failed",
    }
    status = statuses.get(ack.status, f"refused (status {ack.status})")
    # Without ext:busy the counts are the reference's constants 4 and 1 (VTR1.md §2.2).
    counts_real = ext.CAP_BUSY in exts
    return {
        "server": transport.name,
        "status": status,
        "message": message,
        "server_name": ack.server_name,
        "server_version": ack.server_version,
        "codecs": list(codecs),
        "engines": engines,
        "capabilities": [c for c in ack.capabilities if ext.is_extension(c)],
        "extensions": sorted(exts),
        "active_sessions": ack.active_sessions if counts_real else None,
        "max_sessions": ack.max_sessions if counts_real else None,
        "protocol": "VTR1 v1"
        + (" + extensions" if exts else " (reference-compatible server, no extensions)"),
        "hello_ms": round(rtt * 1000, 3),
    }


def _text(info: dict[str, Any]) -> str:
    if info["max_sessions"] is None:
        sessions = "not reported (v1 server)"
    elif info["max_sessions"] == 0:
        sessions = f"{info['active_sessions']} in use (no limit)"
    else:
        sessions = f"{info['active_sessions']} of {info['max_sessions']} in use"
    lines = [
        f"server       {info['server']}",
        f"status       {info['status']}"
        + (f": {info['message']}" if info["message"] and info["message"] != info["status"] else ""),
        f"name         {info['server_name'] or '(not given)'}",
        f"version      {info['server_version'] or '(not given)'}",
        f"protocol     {info['protocol']}",
        f"codecs       {', '.join(info['codecs']) or '(none)'}",
        f"engines      {', '.join(info['engines']) or '(not reported)'}",
        f"capabilities {', '.join(info['capabilities']) or '(none)'}",
        f"sessions     {sessions}",
        f"hello        {info['hello_ms']:.1f} ms (connect + HELLO round trip)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtremote probe",
        allow_abbrev=False,
        description="Ask a vtremoted what it offers (HELLO only; no codec is opened).",
    )
    parser.add_argument(
        "address",
        metavar="HOST:PORT",
        nargs="?",
        help="server address ([v6]:port and host names work)",
    )
    parser.add_argument(
        "--discover",
        action="store_true",
        help="list the servers announced on the LAN (mDNS _vtremote._tcp) with live session counts",
    )
    parser.add_argument(
        "--wait", type=float, default=2.0, help="seconds to listen with --discover (2)"
    )
    parser.add_argument("--token", default="", help="token, if the server requires one")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (5)")
    parser.add_argument("--tls", action="store_true", help="connect with TLS (trust on first use)")
    parser.add_argument(
        "--tls-fingerprint", default="", metavar="SHA256", help="pin the server's certificate"
    )
    parser.add_argument(
        "--tls-ca", default="", metavar="FILE", help="verify the server's certificate with this CA"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    if args.discover:
        return discover_main(args.wait, args.token, args.timeout, args.json)
    if not args.address:
        print("vtremote probe: error: give HOST:PORT or --discover", file=sys.stderr)
        return 2
    try:
        tls = tls_options_for(args.tls, args.tls_fingerprint, args.tls_ca)
        info = probe(
            args.address,
            token=args.token or os.environ.get(TOKEN_ENV, ""),
            timeout=args.timeout,
            tls=tls,
        )
    except VTRemoteError as e:
        print(f"vtremote probe: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    print(json.dumps(info, indent=2) if args.json else _text(info))
    return 1 if info["status"] == "authentication failed" else 0


def discover_main(wait: float, token: str, timeout: float, as_json: bool) -> int:
    """``--discover``: every announced server, its TXT record and a live HELLO."""
    from vtremote.client.discovery import discover

    rows: list[dict[str, Any]] = []
    for advert in discover(wait):
        row: dict[str, Any] = {
            "name": advert.name,
            "address": advert.address,
            "addresses": list(advert.addresses),
            "endpoints": advert.all_addresses,
            "advert": advert.properties,
            "token_required": advert.token_required,
            "tls_required": advert.tls_required,
        }
        try:
            live = probe(advert.address, token=token, timeout=timeout)
            row |= {k: live[k] for k in ("status", "server_version", "engines", "max_sessions")}
            # HELLO_ACK counts the probe's own session: report the others.
            active = live["active_sessions"]
            row["active_sessions"] = (
                max(active - 1, 0) if active is not None and live["status"] == "ok" else active
            )
        except VTRemoteError as e:
            row |= {"status": f"unreachable: {e}", "active_sessions": None, "max_sessions": None}
        rows.append(row)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no vtremoted announced itself within {wait:g} s (mDNS _vtremote._tcp)")
        return 0
    for r in rows:
        if r["max_sessions"] is None:
            sessions = "?"
        else:
            sessions = f"{r['active_sessions']}/{r['max_sessions'] or 'unlimited'}"
        flags = (
            ",".join(
                f for f, on in (("token", r["token_required"]), ("tls", r["tls_required"])) if on
            )
            or "-"
        )
        print(
            f"{r['address']:<22} {r['name']:<36} {r['advert'].get('version', '?'):<8} "
            f"{r['advert'].get('engines', '?'):<24} sessions {sessions:<10} needs {flags:<9} "
            f"{r['status']}"
        )
        if len(r["endpoints"]) > 1:
            print(f"{'':<22} also at {', '.join(r['endpoints'][1:])}")
    return 0
