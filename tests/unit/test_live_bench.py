"""The live benchmark's measuring pieces on tiny pictures (no timings asserted)."""

from __future__ import annotations

import numpy as np

from vtremote.bench import live as bench
from vtremote.cli.bench import main as bench_main


def test_ssim_is_one_for_identical_planes_and_drops_with_noise() -> None:
    rng = np.random.default_rng(1)
    a = (np.add.outer(np.arange(64), np.arange(96)) + 40).astype(np.uint8)  # a smooth ramp
    assert bench._ssim(a, a) == 1.0
    noisy = np.clip(a.astype(int) + rng.integers(-20, 20, a.shape), 0, 255).astype(np.uint8)
    assert bench._ssim(a, noisy) < 0.5


def test_bandwidth_search_finds_settings_at_or_above_the_h264_quality() -> None:
    result = bench.run_codec_bandwidth(width=160, height=96, frames=12, h264_rates=(300_000,))
    rows = result["rows"]
    assert [r["codec"] for r in rows][0] == "h264" and rows[-1]["codec"] == "mjpeg"
    target = rows[0]["ssim"]
    for r in rows:
        assert r["target_ssim"] == target and r["kbytes_per_s"] > 0
        assert r["reaches_target"] == (r["ssim"] >= target - 1e-9)
    assert rows[-1]["vs_jpeg"] == 1.0
    text = bench.tables(
        {
            "machine": "test",
            "bandwidth": result,
            "latency": [],
            "ratelimit": [_stream_summary(rate_bps=3_000_000)],
            "loss": _stream_summary(loss=0.05),
        }
    )
    assert (
        "| H.264 0.3 Mb/s:" in text and "3 Mb/s bottleneck" in text and "5% datagrams lost" in text
    )


def _stream_summary(rate_bps: int = 0, loss: float = 0.0) -> dict[str, object]:
    summary = {
        "frames": 10,
        "fps": 30.0,
        "kbytes_per_s": 1.0,
        "drops": 0,
        "keyframe_requests": 0,
        "max_gap_ms": 33.0,
        "latency_ms": {"p50": 1.0, "p99": 2.0, "max": 3.0},
        "sources": [
            {"retransmit_requests": 1, "recovered_datagrams": 1, "lost": 0, "max_gap_ms": 33.0}
        ],
    }
    return {
        "codec": "h264",
        "transport": "udp" if loss else "tcp",
        "rate_bps": rate_bps,
        "loss": loss,
        "expected_frames": 10,
        "bitrate": 6_000_000,
        "summary": summary,
        "sender": {"bitrate_end": 2_000_000},
        "sender_cpu_s": 0.1,
        "receiver_cpu_s": 0.1,
        "relay": {"dropped": 1, "datagrams": 20},
    }


def test_bench_live_is_a_subcommand_of_vtremote_bench(capsys: object) -> None:
    try:
        rc = bench_main(["live", "--help"])
    except SystemExit as e:  # argparse's --help
        rc = int(e.code or 0)
    assert rc == 0
