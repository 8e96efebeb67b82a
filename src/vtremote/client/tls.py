"""Client TLS: verify the server by a CA, by a pinned fingerprint, or trust on first use.

Three ways to know the server is the right one, strongest first:

* ``ca``: a CA file; the certificate must chain to it and name the host.
* ``fingerprint``: the SHA-256 ``vtremoted`` printed when it made its
  certificate; anything else is refused.
* neither: trust on first use, like SSH. The first fingerprint seen for
  ``host:port`` is written to the known-hosts file (``$VTREMOTE_KNOWN_HOSTS``,
  else ``~/.config/vtremote/known_hosts``) and every later connection must
  show the same one.

``cert``/``key`` present a client certificate (servers started with
``--tls-client-ca``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from vtremote.errors import CertificateError, ConfigError, ConnectionLostError, TimeoutExpiredError
from vtremote.tlsutil import TLSSocket, fingerprint, normalize_fingerprint

log = logging.getLogger(__name__)

CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def default_known_hosts() -> Path:
    env = os.environ.get("VTREMOTE_KNOWN_HOSTS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "vtremote" / "known_hosts"


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """How a client secures and checks its connection (see the module docstring)."""

    ca: str = ""
    fingerprint: str = ""
    known_hosts: str = ""
    cert: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        if self.fingerprint:
            normalize_fingerprint(self.fingerprint)
        if bool(self.cert) != bool(self.key):
            raise ConfigError("a TLS client certificate needs both cert and key")
        for path in (self.ca, self.cert, self.key):
            if path and not os.path.isfile(path):
                raise ConfigError(f"TLS file {path} does not exist")

    @property
    def known_hosts_path(self) -> Path:
        return Path(self.known_hosts) if self.known_hosts else default_known_hosts()

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(CIPHERS)
        if self.ca:
            ctx.load_verify_locations(cafile=self.ca)
            ctx.check_hostname = True
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:  # checked by fingerprint after the handshake
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


def wrap(
    sock: socket.socket, host: str, name: str, options: TLSOptions, timeout: float
) -> TLSSocket:
    """TLS handshake on a connected socket and the server check; errors name ``name``."""
    try:
        return _handshake(sock, host, name, options, timeout)
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise


def _handshake(
    sock: socket.socket, host: str, name: str, options: TLSOptions, timeout: float
) -> TLSSocket:
    try:
        tls = TLSSocket.handshake(
            sock,
            options.context(),
            server_side=False,
            server_hostname=host,
            deadline=time.monotonic() + timeout,
        )
    except ssl.SSLCertVerificationError as e:
        raise CertificateError(
            f"TLS certificate of {name} rejected: {e.verify_message or e.reason}"
        ) from e
    except ssl.SSLError as e:
        hint = ""
        if e.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
            hint = (
                " (the server does not speak TLS on this port: start it with --tls, "
                "or connect without TLS)"
            )
        elif "CERTIFICATE_REQUIRED" in str(e.reason) or "certificate required" in str(e).lower():
            hint = " (the server requires a client certificate: give cert and key)"
        raise ConnectionLostError(f"TLS handshake with {name} failed: {e.reason or e}{hint}") from e
    except TimeoutError as e:
        raise TimeoutExpiredError(f"TLS handshake with {name} timed out") from e
    except OSError as e:
        raise ConnectionLostError(
            f"TLS handshake with {name} failed: {e.strerror or e}"
            " (the server closed the connection; does it have TLS on?)"
        ) from e
    _check_server(tls, name, options)
    return tls


def _check_server(tls: TLSSocket, name: str, options: TLSOptions) -> None:
    der = tls.getpeercert(binary_form=True)
    if der is None:
        raise CertificateError(f"{name} sent no TLS certificate")
    seen = fingerprint(der)
    if options.fingerprint:
        if normalize_fingerprint(seen) != normalize_fingerprint(options.fingerprint):
            raise CertificateError(
                f"TLS fingerprint of {name} is {seen}, expected {options.fingerprint}: "
                "refusing the connection (wrong server, or its certificate changed)"
            )
        return
    if options.ca:
        return  # chain and host name checked by the handshake
    path = options.known_hosts_path
    known = read_known_hosts(path)
    expected = known.get(name)
    if expected is None:
        add_known_host(path, name, seen)
        log.warning(
            "%s: first TLS connection, trusting its certificate %s (saved in %s)", name, seen, path
        )
    elif normalize_fingerprint(expected) != normalize_fingerprint(seen):
        raise CertificateError(
            f"TLS fingerprint of {name} changed: {seen}, {path} has {expected}; "
            f"if the server really got a new certificate, delete its line from {path}"
        )


def read_known_hosts(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#"):
            out[parts[0]] = parts[1]
    return out


def add_known_host(path: Path, name: str, fp: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(f"{name} {fp}\n")


__all__ = ["TLSOptions", "add_known_host", "default_known_hosts", "read_known_hosts", "wrap"]
