"""The arithmetic of the packet-transcode benchmark (no timing: rows are made up)."""

from __future__ import annotations

from vtremote.bench.transcode import format_tables, ratios


def row(mode: str, up: float, down: float, cpu: float, server: float | None) -> dict[str, object]:
    return {
        "source": "noise-h264",
        "mode": mode,
        "fps": 50.0,
        "up_mbps": up,
        "down_mbps": down,
        "source_mbps": 8.0,
        "output_mbps": 4.0,
        "client_cpu_s_per_1000": cpu,
        "server_cpu_s_per_1000": server,
    }


def test_ratios_and_tables() -> None:
    rows = [
        row("local", 0, 0, 20.0, None),
        row("raw", 176.0, 4.0, 10.0, 8.0),
        row("packet", 8.2, 4.0, 0.5, 15.0),
    ]
    (r,) = ratios(rows)
    assert r == {
        "source": "noise-h264",
        "packet_wire_over_bitrates": round(12.2 / 12.0, 3),
        "raw_wire_over_packet_wire": round(180 / 12.2, 1),
        "client_cpu_packet_over_local": 0.025,
    }
    text = format_tables(
        {
            "job": {"source": "s", "output": "o", "seconds": 5, "compression": "zstd", "cpus": 2},
            "rows": rows,
            "ratios": [r],
        }
    )
    assert "| noise-h264 | packet | 50.0 | 8.20 | 4.00 | 0.5 | 15.0 |" in text
    assert "| noise-h264 | 8.00 | 4.00 | 12.20 | 180.0 |" in text
