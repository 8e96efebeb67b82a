"""``vtremoted --metrics``: the Prometheus counters match what a run did; /healthz answers."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from fractions import Fraction

import pytest

from media import testsrc_frames
from vtremote.client import RemoteEncoder
from vtremote.errors import AuthError

W, H, N = 64, 64, 12
TOKEN = "metrics-token"


def scrape(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(vtremoted_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def test_metrics_match_a_run(start_server) -> None:
    server = start_server(
        "--engine",
        "x264",
        "--token",
        TOKEN,
        "--metrics",
        "127.0.0.1:0",
        "--max-sessions",
        "1",
        "--handshake-timeout",
        "1",
    )
    port = int(server.wait_for_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
    base = f"http://127.0.0.1:{port}"
    health = json.loads(urllib.request.urlopen(base + "/healthz", timeout=10).read())
    assert health["status"] == "ok" and health["max_sessions"] == 1

    with RemoteEncoder(
        server.addr, "h264", width=W, height=H, time_base=Fraction(1, 30), token=TOKEN
    ) as enc:
        packets = [p for f in testsrc_frames(N, W, H, "nv12") for p in enc.encode(f)]
        during = scrape(base + "/metrics")
        packets += enc.flush()
        sent, received = enc.stats.bytes_sent, enc.stats.bytes_received
    with pytest.raises(AuthError):
        RemoteEncoder(server.addr, "h264", width=W, height=H, token="wrong")
    with socket.create_connection(server.address) as idle:  # says nothing: handshake timeout
        idle.settimeout(10)
        while idle.recv(65536):
            pass
    server.wait_for_log(r"SUMMARY mode=encode")

    m = scrape(base + "/metrics")
    assert during["vtremoted_sessions_active"] == 1
    assert m["vtremoted_sessions_active"] == 0
    assert m["vtremoted_sessions_total"] == 1
    assert m["vtremoted_frames_received_total"] == N == len(packets)
    assert m["vtremoted_packets_sent_total"] == N
    assert (
        m["vtremoted_bytes_received_total"] == sent and m["vtremoted_bytes_sent_total"] == received
    )
    assert m["vtremoted_encode_latency_seconds_count"] == N
    assert m["vtremoted_auth_failures_total"] == 1
    assert m['vtremoted_connections_refused_total{reason="auth_failed"}'] == 1
    assert m['vtremoted_connections_refused_total{reason="handshake_timeout"}'] == 1
    assert m['vtremoted_errors_total{code="auth"}'] == 1
    assert m['vtremoted_errors_total{code="timeout"}'] == 1
