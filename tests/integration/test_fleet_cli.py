"""The ``vtremote`` command with a pool whose serving server dies mid-run (encode and decode)."""

from __future__ import annotations

import json
from pathlib import Path

import av

from decoding import strict_file_frames
from media import make_h264_mp4
from vtremote.cli.main import main

W, H = 160, 96
REMOTE_H264 = "h264_videotoolbox_remote"


def test_cli_encode_survives_a_server_killed_mid_run(start_server, tmp_path: Path, capsys) -> None:
    dying = start_server("--engine", "x264", "--die-after-frames", "25")
    healthy = start_server("--engine", "x264")
    out = tmp_path / "out.mp4"
    rc = main(
        [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={W}x{H}:rate=30",
            "-frames:v",
            "60",
            "-c:v",
            REMOTE_H264,
            "-vt_remote_host",
            f"{dying.addr},{healthy.addr}",
            "-vt_remote_timeout_ms",
            "2000",
            "-g",
            "20",
            "-b:v",
            "300k",
            "--json",
            str(out),
        ]
    )
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    assert dying.wait(10) == -9
    summary = json.loads(stdout)
    assert summary["failovers"] == 1 and summary["frames"] == 60
    (session,) = summary["remote_sessions"]
    assert session["servers"] == [dying.addr, healthy.addr]
    assert session["switches"][0]["failed"] == dying.addr and session["switches"][0]["replayed"] > 0
    assert err.count("failed (") == 1  # logged once
    _, frames = strict_file_frames(out)
    assert len(frames) == 60
    with av.open(str(out)) as c:
        packets = [p for p in c.demux(video=0) if p.size]
    assert sorted(p.pts for p in packets) == sorted({p.pts for p in packets})
    dts = [p.dts for p in packets]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False))


def test_cli_decode_survives_a_server_killed_mid_run(start_server, tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.mp4"
    make_h264_mp4(src, 45, W, H, gop=15)
    dying = start_server("--engine", "x264", "--die-after-frames", "20")
    healthy = start_server("--engine", "x264")
    out = tmp_path / "out.mkv"
    rc = main(
        [
            "-c:v",
            REMOTE_H264,
            "-vt_remote_host",
            f"{dying.addr},{healthy.addr}",
            "-vt_remote_timeout_ms",
            "2000",
            "-i",
            str(src),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "--json",
            str(out),
        ]
    )
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    assert dying.wait(10) == -9
    summary = json.loads(stdout)
    assert summary["failovers"] == 1 and summary["frames"] == 45
    (session,) = summary["remote_sessions"]
    assert session["mode"] == "decode" and session["servers"] == [dying.addr, healthy.addr]
    with av.open(str(src)) as c:
        expected = [round(float(f.time) * 30) for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        got = [round(float(f.time) * 30) for f in c.decode(video=0)]
    assert got == expected  # every frame once, in order
