"""TLS for vtremoted with the standard library's :mod:`ssl`.

* :func:`load_or_create` gives the certificate and key to serve: the files the
  operator named, or a self-signed pair made once in the state directory
  (``cryptography`` writes it; no ``openssl`` binary is needed) and reused on
  every later start, so the fingerprint clients pinned stays valid.
* :func:`server_context` builds the context: TLS 1.2 or newer, AES-GCM or
  ChaCha20 only (both authenticated; AES-GCM is what x86 and Apple CPUs
  accelerate), optional client certificates (mutual TLS).
* :func:`is_tls_hello` tells TLS from plain VTR1 by the first byte: a TLS
  record of type handshake starts with 0x16, a VTR1 message with the magic's
  first byte 0x56 ('V', VTR1.md §1.1), so both share one port.

The fingerprint is SHA-256 over the DER certificate, the form clients pin.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from vtremote.errors import ConfigError
from vtremote.tlsutil import fingerprint

log = logging.getLogger(__name__)

#: First byte of a TLS record carrying a handshake message (RFC 8446 §5.1).
TLS_HANDSHAKE_BYTE = 0x16
#: Authenticated ciphers only, AES-GCM first (TLS 1.2 names; TLS 1.3 suites are all AEAD).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
CERT_NAME = "vtremoted-cert.pem"
KEY_NAME = "vtremoted-key.pem"
#: Validity of a generated self-signed certificate.
SELF_SIGNED_DAYS = 3650


def default_state_dir() -> Path:
    """Where a generated certificate lives: ``$XDG_CONFIG_HOME/vtremoted`` or
    ``~/.config/vtremoted``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "vtremoted"


def certificate_fingerprint(cert_path: str | Path) -> str:
    pem = Path(cert_path).read_text()
    return fingerprint(ssl.PEM_cert_to_DER_cert(pem))


@dataclass(frozen=True, slots=True)
class CertPair:
    cert: Path
    key: Path
    created: bool  # made just now (self-signed)


def load_or_create(cert: str, key: str, state_dir: str | Path | None) -> CertPair:
    """The operator's files, or the self-signed pair of ``state_dir`` (created if missing)."""
    if cert or key:
        if not (cert and key):
            raise ConfigError("--tls-cert and --tls-key go together")
        for path in (cert, key):
            if not os.path.isfile(path):
                raise ConfigError(f"TLS file {path} does not exist")
        return CertPair(Path(cert), Path(key), False)
    directory = Path(state_dir) if state_dir else default_state_dir()
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        return CertPair(cert_path, key_path, False)
    _make_self_signed(cert_path, key_path)
    return CertPair(cert_path, key_path, True)


def _make_self_signed(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    host = socket.gethostname() or "localhost"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"vtremoted {host}")])
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    for dns in {host, f"{host}.local"}:
        if dns and dns != "localhost":
            sans.append(x509.DNSName(dns))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The key is written with 0600 from the start, never readable by others even briefly.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_context(pair: CertPair, client_ca: str = "") -> ssl.SSLContext:
    """A server context for ``pair``; with ``client_ca``, clients must show a certificate it
    signed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    # No session tickets: nothing to resume (each session is one long connection).
    ctx.num_tickets = 0
    try:
        ctx.load_cert_chain(str(pair.cert), str(pair.key))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load TLS certificate {pair.cert} / key {pair.key}: {e}") from e
    if client_ca:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"cannot load client CA {client_ca}: {e}") from e
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def is_tls_hello(first: bytes) -> bool:
    return bool(first) and first[0] == TLS_HANDSHAKE_BYTE


__all__ = [
    "CertPair",
    "certificate_fingerprint",
    "default_state_dir",
    "fingerprint",
    "is_tls_hello",
    "load_or_create",
    "server_context",
]
