"""``vtremote`` choosing packet transcode by itself, and falling back to raw frames with a
reason."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import av
import numpy as np
import pytest

from media import decode_video, make_av_mkv, make_hevc_mp4
from transcode_media import luma, ssim
from vtremote.cli.main import main

REMOTE_H264 = "h264_videotoolbox_remote"


def run_json(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, dict, str]:
    rc = main([str(a) for a in args] + ["--json", "-v", "info"])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else {}), err


def video_stream(summary: dict) -> dict:
    return next(s for s in summary["streams"] if s["type"] == "video")


def scaled_reference(src: Path, width: int, height: int) -> list[np.ndarray]:
    return [
        luma(f.reformat(width=width, height=height, format="yuv420p")) for f in decode_video(src)
    ]


def test_scaled_rendition_travels_as_packets(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_av_mkv(tmp_path / "in.mkv", n=60, width=640, height=360, bframes=2)
    out = tmp_path / "out.mkv"
    rc, summary, err = run_json(
        capsys,
        "-i",
        src,
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        server.addr,
        "-vf",
        "scale=-2:180",
        "-b:v",
        "400k",
        "-g",
        "30",
        "-c:a",
        "copy",
        "-c:s",
        "copy",
        out,
    )
    assert rc == 0, err
    video = video_stream(summary)
    assert video["strategy"] == "transcode"
    assert summary["remote_sessions"][0]["mode"] == "transcode"
    with av.open(str(src)) as c:
        source_bytes = sum(p.size for p in c.demux(c.streams.video[0]))
    # What left this machine is the source's packets plus framing, not 60 raw pictures.
    assert summary["wire_bytes_sent"] < 1.3 * source_bytes + 60 * 200
    frames = decode_video(out)
    assert len(frames) == 60
    assert (frames[0].width, frames[0].height) == (320, 180)
    with av.open(str(out)) as c:
        vs = c.streams.video[0]
        pkts = [p for p in c.demux(vs) if p.size]
        dts = [p.dts for p in pkts]
        assert all(b > a for a, b in zip(dts, dts[1:], strict=False))
        assert all(p.dts <= p.pts for p in pkts)
        keys = sorted(float(p.pts * p.time_base) for p in pkts if p.is_keyframe)
        assert keys[:2] == pytest.approx([0.0, 1.0], abs=0.04)
        assert len(list(c.demux(c.streams.audio[0]))) > 0  # audio copied beside it
    ref = scaled_reference(src, 320, 180)
    scores = [ssim(luma(f.reformat(format="yuv420p")), r) for f, r in zip(frames, ref, strict=True)]
    assert min(scores) >= 0.97, min(scores)
    assert "SUMMARY" in server.stderr_text() and "mode=transcode" in server.stderr_text()


def test_hevc_10bit_to_h264_with_remote_decoder_named_before_input(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_hevc_mp4(tmp_path / "in.mp4", 30, 320, 240, ten_bit=True)
    out = tmp_path / "out.mp4"
    rc, summary, err = run_json(
        capsys,
        "-c:v",
        "hevc_videotoolbox_remote",
        "-vt_remote_host",
        server.addr,
        "-i",
        src,
        "-c:v",
        REMOTE_H264,
        "-vf",
        "scale=160:120,format=yuv420p",
        "-b:v",
        "300k",
        out,
    )
    assert rc == 0, err
    assert video_stream(summary)["strategy"] == "transcode"
    assert len(summary["remote_sessions"]) == 1  # one transcode session, no separate decode session
    frames = decode_video(out)
    assert len(frames) == 30 and frames[0].format.name == "yuv420p" and frames[0].width == 160


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["-vf", "hflip"], "filter 'hflip' is not supported on the server"),
        (["-vt_remote_transcode", "0"], "-vt_remote_transcode 0"),
        (["-vf", "scale=iw/2:-2"], "expressions are not supported here"),
    ],
)
def test_falls_back_to_raw_frames_and_says_why(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], reason: str
) -> None:
    src = make_av_mkv(tmp_path / "in.mkv", n=30, width=320, height=180)
    rc, summary, err = run_json(
        capsys,
        "-i",
        src,
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        server.addr,
        *extra,
        "-an",
        "-sn",
        tmp_path / "o.mkv",
    )
    assert rc == 0, err
    assert video_stream(summary)["strategy"] == "frames"
    assert "not packet transcode" in err and reason in err
    assert len(decode_video(tmp_path / "o.mkv")) == 30


def test_plain_v1_server_falls_back(
    start_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = start_server("--engine", "x264", "--no-extensions")
    src = make_av_mkv(tmp_path / "in.mkv", n=30, width=320, height=180)
    rc, summary, err = run_json(
        capsys,
        "-i",
        src,
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        srv.addr,
        "-vf",
        "scale=160:90",
        "-an",
        "-sn",
        tmp_path / "o.mkv",
    )
    assert rc == 0, err
    assert video_stream(summary)["strategy"] == "frames"
    assert "does not offer packet transcode" in err
    frames = decode_video(tmp_path / "o.mkv")
    assert len(frames) == 30 and frames[0].width == 160


def test_required_transcode_fails_with_the_reason(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_av_mkv(tmp_path / "in.mkv", n=10, width=320, height=180)
    rc, _, err = run_json(
        capsys,
        "-i",
        src,
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        server.addr,
        "-vf",
        "hflip",
        "-vt_remote_transcode",
        "1",
        tmp_path / "o.mkv",
    )
    assert rc == 2
    assert "packet transcode is not possible" in err and "hflip" in err
    assert not (tmp_path / "o.mkv").exists()


def test_embedded_server_transcodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    src = make_av_mkv(tmp_path / "in.mkv", n=30, width=320, height=180)
    rc, summary, err = run_json(
        capsys,
        "-i",
        src,
        "-c:v",
        REMOTE_H264,
        "-vf",
        "scale=160:90",
        "-an",
        "-sn",
        tmp_path / "o.mp4",
    )
    assert rc == 0, err
    assert summary["embedded_server"] and video_stream(summary)["strategy"] == "transcode"
    assert len(decode_video(tmp_path / "o.mp4")) == 30
    logging.getLogger("vtremote").handlers.clear()
