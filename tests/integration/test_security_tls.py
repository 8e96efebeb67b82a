"""TLS against a real ``vtremoted``: round trips, fingerprint pinning, trust on first use,
CA verification, client certificates, TLS-only servers, and plain clients on a mixed port."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from client_sessions import encode_testsrc
from decoding import decode_stream
from media import decode_video, make_h264_mp4, video_packets
from vtremote.cli.main import main as cli_main
from vtremote.client import RemoteDecoder, RemoteEncoder
from vtremote.client.tls import TLSOptions, read_known_hosts
from vtremote.errors import CertificateError, ConnectionLostError, UnsupportedError

W, H, N = 160, 96, 20
REFCLIENT = Path(__file__).resolve().parents[3] / "shared" / "refclient" / "ffmpeg"
FINGERPRINT = r"SHA-256 fingerprint ([0-9A-F:]{95})"


def tls_server(start_server, tmp_path: Path, *extra: str):
    server = start_server("--engine", "x264", "--tls", "--tls-dir", str(tmp_path / "state"), *extra)
    fp = server.wait_for_log(FINGERPRINT).group(1)
    return server, fp


def tls_encode(addr: str, **options: object) -> tuple[RemoteEncoder, list[av.Packet]]:
    return encode_testsrc(addr, N, W, H, framerate=30, **options)


def test_encode_and_decode_round_trip_over_tls_with_a_pinned_fingerprint(
    start_server, tmp_path: Path
) -> None:
    server, fp = tls_server(start_server, tmp_path)
    assert "made a self-signed certificate" in server.stderr_text()
    enc, packets = tls_encode(server.addr, tls_fingerprint=fp)
    assert enc._transport.tls
    assert len(packets) == N and len(decode_stream("h264", enc.extradata, packets)) == N

    extradata, src = video_packets(make_h264_mp4(tmp_path / "in.mp4", N, W, H))
    frames = []
    with RemoteDecoder(
        server.addr,
        "h264",
        width=W,
        height=H,
        extradata=extradata,
        time_base=Fraction(1, 30),
        tls_fingerprint=fp.replace(":", "").lower(),
    ) as dec:
        for p in src:
            frames += dec.decode(p)
        frames += dec.flush()
    assert len(frames) == N


def test_certificate_is_kept_across_restarts(start_server, tmp_path: Path) -> None:
    first, fp1 = tls_server(start_server, tmp_path)
    first.stop()
    second, fp2 = tls_server(start_server, tmp_path)
    assert fp1 == fp2 and "made a self-signed" not in second.stderr_text()


def test_wrong_fingerprint_is_refused(start_server, tmp_path: Path) -> None:
    server, fp = tls_server(start_server, tmp_path)
    wrong = "AA:" * 31 + "AA"
    with pytest.raises(CertificateError) as info:
        tls_encode(server.addr, tls_fingerprint=wrong)
    text = str(info.value)
    assert server.addr in text and fp in text and "expected" in text


def test_trust_on_first_use_remembers_and_then_enforces(
    start_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = tmp_path / "known_hosts"
    monkeypatch.setenv("VTREMOTE_KNOWN_HOSTS", str(known))
    server, fp = tls_server(start_server, tmp_path)
    tls_encode(server.addr, tls=True)
    assert read_known_hosts(known) == {server.addr: fp}
    tls_encode(server.addr, tls=True)  # the same certificate: fine
    known.write_text(f"{server.addr} {'BB:' * 31}BB\n")
    with pytest.raises(CertificateError) as info:
        tls_encode(server.addr, tls=True)
    assert "changed" in str(info.value) and str(known) in str(info.value)


def test_plain_client_on_a_tls_only_server_gets_a_clear_error(start_server, tmp_path: Path) -> None:
    server, fp = tls_server(start_server, tmp_path, "--require-tls")
    with pytest.raises(UnsupportedError) as info:
        tls_encode(server.addr)
    assert "TLS connections only" in str(info.value) and server.addr in str(info.value)
    assert len(tls_encode(server.addr, tls_fingerprint=fp)[1]) == N


def test_tls_client_on_a_plain_server_is_told_why(server) -> None:
    with pytest.raises(ConnectionLostError) as info:
        tls_encode(server.addr, tls=True)
    assert "TLS handshake with " + server.addr in str(info.value)


def _ca(tmp_path: Path) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vtremote test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def _leaf(
    tmp_path: Path, stem: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{stem}.pem", tmp_path / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_ca_verification_and_client_certificates(start_server, tmp_path: Path) -> None:
    ca_path, ca_key, ca = _ca(tmp_path)
    server_cert, server_key = _leaf(tmp_path, "server", ca_key, ca)
    client_cert, client_key = _leaf(tmp_path, "client", ca_key, ca)
    server = start_server(
        "--engine",
        "x264",
        "--tls-cert",
        str(server_cert),
        "--tls-key",
        str(server_key),
        "--tls-client-ca",
        str(ca_path),
        "--require-tls",
    )
    ok = TLSOptions(ca=str(ca_path), cert=str(client_cert), key=str(client_key))
    assert len(tls_encode(server.addr, tls=ok)[1]) == N
    with pytest.raises(ConnectionLostError) as info:  # no client certificate
        tls_encode(server.addr, tls_ca=str(ca_path))
    assert server.addr in str(info.value)
    (tmp_path / "other").mkdir()
    other_ca, _, _ = _ca(tmp_path / "other")
    with pytest.raises(CertificateError):  # a CA that did not sign the server
        tls_encode(
            server.addr,
            tls=TLSOptions(ca=str(other_ca), cert=str(client_cert), key=str(client_key)),
        )


def test_probe_over_tls(start_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vtremote.cli.probe import main as probe_main

    server, fp = tls_server(start_server, tmp_path, "--require-tls")
    assert probe_main([server.addr, "--tls-fingerprint", fp, "--json"]) == 0
    assert '"server_name": "vtremoted"' in capsys.readouterr().out
    assert probe_main([server.addr]) == 1
    assert "TLS connections only" in capsys.readouterr().err


def test_cli_options_reach_the_client(start_server, tmp_path: Path) -> None:
    server, fp = tls_server(start_server, tmp_path, "--require-tls")
    out = tmp_path / "out.mp4"
    rc = cli_main(
        [
            "-y",
            "-nostats",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={W}x{H}:rate=30",
            "-frames:v",
            str(N),
            "-c:v",
            "h264_videotoolbox_remote",
            "-vt_remote_host",
            server.addr,
            "-vt_remote_tls_fingerprint",
            fp,
            str(out),
        ]
    )
    assert rc == 0 and len(decode_video(out)) == N
    bad = cli_main(
        [
            "-y",
            "-nostats",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={W}x{H}:rate=30",
            "-frames:v",
            "5",
            "-c:v",
            "h264_videotoolbox_remote",
            "-vt_remote_host",
            server.addr,
            "-vt_remote_tls_fingerprint",
            "AB" * 32,
            str(tmp_path / "bad.mp4"),
        ]
    )
    assert bad == 1


@pytest.mark.skipif(not REFCLIENT.is_file(), reason=f"reference client not found at {REFCLIENT}")
def test_reference_client_over_plain_tcp_on_a_mixed_port(start_server, tmp_path: Path) -> None:
    server, fp = tls_server(start_server, tmp_path)
    out = tmp_path / "ref.mp4"
    done = subprocess.run(
        [
            str(REFCLIENT),
            "-hide_banner",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={W}x{H}:rate=30",
            "-frames:v",
            str(N),
            "-pix_fmt",
            "nv12",
            "-c:v",
            "h264_videotoolbox_remote",
            "-vt_remote_host",
            server.addr,
            "-g",
            "30",
            "-y",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # A plain session on a TLS-enabled port: one packet per distinct frame, as on a plain port.
    assert len(decode_video(out)) == N
    assert "open from" in server.stderr_text() and "HELLO ok client=ffmpeg" in server.stderr_text()
    assert len(tls_encode(server.addr, tls_fingerprint=fp)[1]) == N  # and TLS on the same port
