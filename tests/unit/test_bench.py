"""Smoke tests of ``vtremote bench``: every subcommand runs end to end against a real
vtremoted with tiny parameters and prints the documented JSON keys.

No timing is asserted (timings belong in docs/benchmarks.md); what is checked is
that the numbers exist, are consistent with each other (ratios, byte counts),
and that the tables render.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from vtremote import bench as bm
from vtremote.cli import bench

MACHINE_KEYS = {"cpu", "cores", "python", "pyav", "ffmpeg"}


def bench_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = bench.main([*argv, "--json", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out)
    assert set(result["machine"]) >= MACHINE_KEYS
    for table in bench.tables_for(result):
        text = bench.render_markdown(table)
        assert result["machine"]["pyav"] in text and result["machine"]["ffmpeg"] in text
        assert bench.render_plain(table).count("\n") >= 3 + len(table.rows)
    return result


def test_wire_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    r = bench_json(
        capsys, "wire", "--size", "320x180", "--frames", "12", "--repeat", "1", "--distinct", "3"
    )
    assert r["raw_fps"] > 0
    uncompressed = 320 * 180 * 3 // 2 + 12 + 21 + 2 * 12
    for source in bm.SOURCES:
        modes = r["sources"][source]
        assert modes["raw"]["message_bytes"] == uncompressed
        for mode in bm.MODES:
            m = modes[mode]
            assert {"fps", "gbps", "ratio_to_raw", "wire_bytes_per_frame"} <= set(m)
            assert m["fps"] > 0 and m["gbps"] > 0
            assert m["ratio_to_raw"] == pytest.approx(
                m["fps"] / modes["raw"]["fps"], rel=0.01, abs=0.001
            )
        # Raw planes travel as they are; testsrc2 compresses, so lz4/zstd send fewer bytes.
        assert modes["none"]["wire_bytes_per_frame"] == uncompressed
    assert r["sources"]["testsrc2"]["lz4"]["wire_bytes_per_frame"] < uncompressed
    assert r["sources"]["testsrc2"]["zstd"]["wire_bytes_per_frame"] < uncompressed
    # Top-level convenience keys repeat testsrc2.
    assert r["none"] == r["sources"]["testsrc2"]["none"]
    assert r["raw_fps"] == r["sources"]["testsrc2"]["raw"]["fps"]
    assert {g["name"] for g in r["goals"]} >= {"uncompressed / raw socket (testsrc2)"}


def test_offload_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    r = bench_json(
        capsys,
        "offload",
        "--size",
        "320x180",
        "--frames",
        "10",
        "--distinct",
        "5",
        "--probe-frames",
        "5",
    )
    assert r["client_cpu_remote_s"] > 0 and r["client_cpu_local_s"] > 0
    assert r["ratio"] == pytest.approx(r["client_cpu_remote_s"] / r["client_cpu_local_s"], rel=0.01)
    assert set(r["client_cpu_ms_per_frame_by_mode"]) == set(bm.MODES)
    assert r["compression"] == min(
        r["client_cpu_ms_per_frame_by_mode"], key=r["client_cpu_ms_per_frame_by_mode"].get
    )


def test_bandwidth_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    r = bench_json(
        capsys, "bandwidth", "--formats", "320x180@10", "--seconds", "0.5", "--sources", "testsrc2"
    )
    rows = r["rows"]
    assert [row["codec"] for row in rows] == [c[0] for c in bm.BANDWIDTH_CODECS]
    for row in rows:
        assert row["frames"] == 5
        for mode in bm.MODES:
            m = row["modes"][mode]
            assert m["required_mbps"] == max(m["in_mbps"], m["out_mbps"])
        # Uncompressed input: exactly the FRAME messages' bytes (plus FLUSH), per media second.
        bps = 2 if "P010" in row["codec"] else 1
        frame_bytes = 12 + 21 + 2 * 12 + 320 * 180 * 3 // 2 * bps
        expected = (5 * frame_bytes + 12) * 8 / 0.5 / 1e6
        assert row["modes"]["none"]["in_mbps"] == pytest.approx(expected, rel=0.001)
    assert len(bench.bandwidth_tables(r)) == len(bm.MODES) + 1  # one per mode, one detail


def test_decode_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    r = bench_json(capsys, "decode", "--size", "320x180", "--frames", "8", "--codecs", "h264")
    e = r["codecs"]["h264"]
    assert e["frames"] == 8 and e["local_fps"] > 0
    assert e["remote"]["none"]["fps"] > 0


def test_latency_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    r = bench_json(capsys, "latency", "--sizes", "320x180", "--frames", "8", "--rate", "100")
    e = r["sizes"]["180p"]
    assert 0 < e["p50_ms"] <= e["p99_ms"] <= e["max_ms"]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["wire", "--size", "banana"]) == 2
    assert bench.main(["bandwidth", "--formats", "8K240"]) == 2
    assert bench.main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_percentile_matches_linear_interpolation() -> None:
    assert bm.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert bm.percentile([5.0], 0.99) == 5.0
    assert bm.percentile(list(map(float, range(101))), 0.99) == pytest.approx(99.0)
    s = bm.summarize_ms([0.001, 0.002, 0.003])
    assert s["p50_ms"] == 2.0 and s["max_ms"] == 3.0


def test_machine_line_names_versions() -> None:
    info = bm.machine_info()
    line = bm.machine_line(info)
    for key in ("python", "pyav", "ffmpeg"):
        assert str(info[key]) in line
    assert info["cores"] >= 1
