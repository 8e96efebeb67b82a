"""``-vt_remote_parallel N``: segments encoded on several servers at once, joined into one
stream."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from decoding import strict_file_frames
from vtremote.cli.main import main

W, H = 128, 72
FRAMES = 150
GOP = 30  # segments of 60 frames: 60 + 60 + 30
REMOTE_H264 = "h264_videotoolbox_remote"


def run_job(
    capsys: pytest.CaptureFixture[str], out: Path, hosts: str, parallel: int, *extra: str
) -> dict:
    rc = main(
        [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={W}x{H}:rate=30",
            "-frames:v",
            str(FRAMES),
            "-c:v",
            REMOTE_H264,
            "-vt_remote_host",
            hosts,
            "-vt_remote_parallel",
            str(parallel),
            "-vt_remote_timeout_ms",
            "3000",
            "-g",
            str(GOP),
            "-b:v",
            "200k",
            *extra,
            "--json",
            str(out),
        ]
    )
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(stdout)


def check_joined(out: Path) -> None:
    packets, frames = strict_file_frames(out)
    assert len(packets) == FRAMES and len(frames) == FRAMES
    seconds = [float(p.pts * p.time_base) for p in sorted(packets, key=lambda p: p.pts)]
    assert seconds == pytest.approx(
        [i / 30 for i in range(FRAMES)], abs=1e-3
    )  # continuous timestamps
    dts = [p.dts for p in packets]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False))
    keys = [round(float(p.pts * p.time_base) * 30) for p in packets if p.is_keyframe]
    assert keys == [0, 30, 60, 90, 120]  # every segment starts at a keyframe and GOPs stay whole
    assert [round(float(f.pts * f.time_base) * 30) for f in frames] == list(range(FRAMES))


@pytest.mark.parametrize("bframes", [0, 2])
def test_parallel_segments_on_three_servers(
    start_server, tmp_path: Path, capsys, bframes: int
) -> None:
    servers = [start_server("--engine", "x264", "--max-sessions", "1") for _ in range(3)]
    out = tmp_path / "out.mp4"
    summary = run_job(capsys, out, ",".join(s.addr for s in servers), 3, "-bf", str(bframes))
    (report,) = summary["remote_sessions"]
    assert report["segments"] == 3 and sum(report["segments_by_server"].values()) == 3
    assert set(report["segments_by_server"]) <= {s.addr for s in servers}
    assert summary["failovers"] == 0 and summary["frames"] == FRAMES
    check_joined(out)


def test_failed_segment_is_redone_elsewhere(start_server, tmp_path: Path, capsys) -> None:
    dying = start_server("--engine", "x264", "--die-after-frames", "20")
    healthy = start_server("--engine", "x264")
    out = tmp_path / "out.mp4"
    summary = run_job(capsys, out, f"{dying.addr},{healthy.addr}", 2)
    assert dying.wait(10) == -9
    (report,) = summary["remote_sessions"]
    assert summary["failovers"] >= 1 and report["segments_by_server"] == {healthy.addr: 3}
    check_joined(out)


def test_parallel_output_matches_one_session_in_timestamps(
    start_server, tmp_path: Path, capsys
) -> None:
    srv = start_server("--engine", "x264")
    one, many = tmp_path / "one.mp4", tmp_path / "many.mp4"
    rc = main(
        [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={W}x{H}:rate=30",
            "-frames:v",
            str(FRAMES),
            "-c:v",
            REMOTE_H264,
            "-vt_remote_host",
            srv.addr,
            "-g",
            str(GOP),
            "-b:v",
            "200k",
            str(one),
        ]
    )
    capsys.readouterr()
    assert rc == 0
    run_job(capsys, many, srv.addr, 2)
    p1, _ = strict_file_frames(one)
    p2, _ = strict_file_frames(many)
    assert sorted(p.pts for p in p1) == sorted(p.pts for p in p2)
    assert Fraction(p1[0].time_base) == Fraction(p2[0].time_base)
