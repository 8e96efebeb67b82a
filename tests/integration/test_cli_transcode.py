"""The ``vtremote`` command end to end, against the real ``vtremoted`` process.

Outputs are opened again with PyAV and checked: copied packets byte for byte,
frame counts, decode timestamps, keyframes, extradata, bitrate, geometry.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from media import decode_video, make_av_mkv, make_h264_mp4, make_hevc_mp4, plane_arrays
from vtremote.cli.main import main
from vtremote.client import RemoteEncoder

REMOTE_H264 = "h264_videotoolbox_remote"


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def run_process(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The installed entry point in its own process (real exit codes, real stderr)."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from vtremote.cli.main import main; sys.exit(main())",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        timeout=100,
    )


def packets_of(path: Path, kind: str) -> list[av.Packet]:
    with av.open(str(path)) as c:
        stream = next(s for s in c.streams if s.type == kind)
        return [p for p in c.demux(stream) if p.size]


def copied(path: Path, kind: str) -> list[tuple[bytes, float | None, float | None]]:
    """(bytes, pts s, duration s) of every packet of the first ``kind`` stream."""
    out = []
    for p in packets_of(path, kind):
        tb = p.time_base
        out.append(
            (
                bytes(p),
                float(p.pts * tb) if p.pts is not None else None,
                float(p.duration * tb) if p.duration else None,
            )
        )
    return out


def video_info(path: Path) -> dict[str, Any]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = {
            "codec": s.codec_context.name,
            "size": (s.codec_context.width, s.codec_context.height),
            "extradata": bytes(s.codec_context.extradata or b""),
            "duration": c.duration / 1e6 if c.duration else None,
        }
        pkts = [p for p in c.demux(s) if p.size]
    info["packets"] = pkts
    info["dts"] = [p.dts for p in pkts]
    info["keyframes"] = sorted(p.pts for p in pkts if p.is_keyframe)
    info["bytes"] = sum(p.size for p in pkts)
    info["frames"] = len(decode_video(path))
    return info


def strictly_increasing(values: list[int]) -> bool:
    return all(b > a for a, b in zip(values, values[1:], strict=False))


# --- the seed command ---------------------------------------------------------------------------


def test_seed_command_copies_audio_and_subtitles_untouched(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reference README's command, verbatim apart from the host."""
    src = make_av_mkv(tmp_path / "input.mkv", n=48, width=320, height=180, rate=24)
    out = tmp_path / "output.mkv"
    rc, _, err = run(
        capsys,
        "-i",
        src,
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        server.addr,
        "-b:v",
        "6000k",
        "-g",
        "240",
        "-c:a",
        "copy",
        "-c:s",
        "copy",
        out,
    )
    assert rc == 0, err
    assert "-> " in err and "frame=    48" in err  # the summary line
    # Audio and subtitles: the same packets, byte for byte, at the same times.
    assert copied(out, "audio") == copied(src, "audio")
    assert copied(out, "subtitle") == copied(src, "subtitle")
    assert len(copied(out, "subtitle")) == 4
    v = video_info(out)
    assert v["codec"] == "h264" and v["size"] == (320, 180)
    assert v["frames"] == 48 == len(v["packets"])
    assert strictly_increasing(v["dts"])
    assert all(p.duration and p.duration > 0 for p in v["packets"])
    assert v["keyframes"] == [0]  # -g 240 > 48 frames: one IDR
    assert (
        v["extradata"][:1] == b"\x01"
    )  # avcC in Matroska CodecPrivate, built from the server's record
    assert abs(v["duration"] - 2.0) < 0.1
    # Compressed source, remote encoder, no client-only filter: one packet transcode session.
    assert "mode=transcode" in server.stderr_text() and "br=6000000 gop=240" in server.stderr_text()


def _shift_video(src: Path, dst: Path, ms: int) -> Path:
    """Remux ``src`` with its video ``ms`` milliseconds late, as ffmpeg's MKVs with B-frames
    often start (e.g. at 21 ms for 23.976 fps)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="matroska") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for pkt in inp.demux():
            if pkt.dts is None and pkt.pts is None:
                continue
            if pkt.stream.type == "video":
                pkt.pts = None if pkt.pts is None else pkt.pts + ms
                pkt.dts = None if pkt.dts is None else pkt.dts + ms
            pkt.stream = streams[pkt.stream.index]
            out.mux(pkt)
    return dst


def test_ntsc_rate_with_millisecond_timestamps_keeps_every_frame(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """23.976 fps in Matroska's 1 ms clock, starting half a frame late: rounding each
    timestamp to the 1001/24000 grid lands some frames on their predecessor's tick;
    they must move to the next tick, not be dropped."""
    made = make_av_mkv(
        tmp_path / "made.mkv", n=96, width=320, height=180, rate=Fraction(24000, 1001)
    )
    src = _shift_video(made, tmp_path / "input.mkv", 21)
    out = tmp_path / "output.mkv"
    rc, _, err = run(
        capsys,
        "-i",
        src,
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        server.addr,
        "-g",
        "48",
        "-an",
        "-sn",
        out,
    )
    assert rc == 0, err
    v = video_info(out)
    assert v["frames"] == 96 == len(v["packets"])
    assert strictly_increasing(v["dts"])


def test_bitrate_within_tolerance(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_av_mkv(tmp_path / "input.mkv", n=60, width=320, height=180, rate=24, source="noise")
    out = tmp_path / "out.mkv"
    rc, _, err = run(
        capsys,
        "-i",
        src,
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        server.addr,
        "-b:v",
        "400k",
        "-g",
        "48",
        "-an",
        "-sn",
        out,
    )
    assert rc == 0, err
    v = video_info(out)
    bitrate = v["bytes"] * 8 / 2.5
    assert 400_000 * 0.75 <= bitrate <= 400_000 * 1.25, (
        bitrate
    )  # the reference's check_bitrate tolerance
    assert v["keyframes"] == [0, 2000]  # -g 48 at 24 fps, Matroska counts milliseconds
    assert v["frames"] == 60


# --- containers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "record"),
    [("mp4", "avcc"), ("mov", "avcc"), ("mkv", "avcc"), ("ts", "annexb"), ("nut", "annexb")],
)
def test_output_containers(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str], ext: str, record: str
) -> None:
    out = tmp_path / f"out.{ext}"
    rc, _, err = run(
        capsys,
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=20",
        "-t",
        "1",
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        server.addr,
        "-b:v",
        "300k",
        "-g",
        "10",
        "-bf",
        "2",
        out,
    )
    assert rc == 0, err
    v = video_info(out)
    assert v["frames"] == 20 == len(v["packets"])
    # Matroska and NUT store no dts: their demuxers leave some unset when there are B-frames.
    dts = [d for d in v["dts"] if d is not None] if ext in ("mkv", "nut") else v["dts"]
    assert len(dts) >= 10 and strictly_increasing(dts)
    assert all(p.dts <= p.pts for p in v["packets"] if p.dts is not None)
    assert len(v["keyframes"]) == 2  # every 10 frames
    if record == "avcc":
        assert v["extradata"][:1] == b"\x01"
    else:
        assert v["extradata"].startswith(b"\x00\x00")
    assert abs(v["duration"] - 1.0) < 0.1


def test_null_output_and_hevc_p010(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run(
        capsys,
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=10",
        "-t",
        "1",
        "-pix_fmt",
        "p010le",
        "-c:v",
        "hevc_videotoolbox_remote",
        "-vt_remote_host",
        server.addr,
        "-f",
        "null",
        "-",
    )
    assert rc == 0, err
    out = tmp_path / "hevc.mp4"
    rc, _, err = run(
        capsys,
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=10",
        "-t",
        "1",
        "-pix_fmt",
        "p010le",
        "-c:v",
        "hevc_videotoolbox_remote",
        "-vt_remote_host",
        server.addr,
        "-profile:v",
        "main10",
        out,
    )
    assert rc == 0, err
    frames = decode_video(out)
    assert len(frames) == 10 and frames[0].format.name == "yuv420p10le"
    assert "profile=2" in server.stderr_text() or "pix=2" in server.stderr_text()


# --- decode paths ---------------------------------------------------------------------------------


def test_remote_decode_then_local_encode(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_h264_mp4(tmp_path / "in.mp4", 24, 320, 180, bframes=2)
    out = tmp_path / "local.mp4"
    rc, _, err = run(
        capsys,
        "-vt_remote_host",
        server.addr,
        "-c:v",
        REMOTE_H264,
        "-i",
        src,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "10",
        out,
    )
    assert rc == 0, err
    assert "mode=decode" in server.stderr_text()
    got = decode_video(out, "nv12")
    want = decode_video(src, "nv12")
    assert len(got) == len(want) == 24
    for a, b in zip(got, want, strict=True):
        luma_a, luma_b = (plane_arrays(f)[0].astype(np.int16) for f in (a, b))
        mse = float(np.mean((luma_a - luma_b) ** 2))
        assert mse < 10.0  # crf 10 of the same pictures: nearly identical
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == 30


def test_remote_decode_scale_remote_encode(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_av_mkv(tmp_path / "in.mkv", n=24, width=320, height=180, rate=24)
    out = tmp_path / "chain.mkv"
    rc, _, err = run(
        capsys,
        "-vt_remote_host",
        server.addr,
        "-c:v",
        REMOTE_H264,
        "-i",
        src,
        "-vf",
        "scale=160:90",
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        server.addr,
        "-b:v",
        "200k",
        "-c:a",
        "copy",
        "-c:s",
        "copy",
        "-vt_remote_transcode",
        "0",
        out,
    )
    assert rc == 0, err
    v = video_info(out)
    assert v["size"] == (160, 90) and v["frames"] == 24 and strictly_increasing(v["dts"])
    assert copied(out, "audio") == copied(src, "audio")
    assert copied(out, "subtitle") == copied(src, "subtitle")
    log = server.stderr_text()
    assert "mode=decode codec=h264 320x180" in log and "mode=encode codec=h264 160x90" in log


@pytest.mark.parametrize(("ten_bit", "pix_fmt"), [(False, "yuv420p"), (True, "yuv420p10le")])
def test_hevc_remote_encode_keeps_the_source_bit_depth(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str], ten_bit: bool, pix_fmt: str
) -> None:
    """Without -pix_fmt the remote HEVC encoder gets NV12 from 8-bit sources (NV12's name
    holds a "12") and P010 from 10-bit ones."""
    src = make_hevc_mp4(tmp_path / "in.mp4", 12, 320, 180, ten_bit=ten_bit)
    out = tmp_path / "out.mkv"
    rc, _, err = run(
        capsys,
        "-c:v",
        "hevc_videotoolbox_remote",
        "-vt_remote_host",
        server.addr,
        "-i",
        src,
        "-vf",
        "scale=160:90",
        "-c:v",
        "hevc_videotoolbox_remote",
        "-vt_remote_host",
        server.addr,
        out,
    )
    assert rc == 0, err
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == pix_fmt
    assert video_info(out)["frames"] == 12


def test_trim_and_forced_keyframes(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_av_mkv(tmp_path / "in.mkv", n=48, width=320, height=180, rate=24)
    out = tmp_path / "cut.mkv"
    rc, _, err = run(
        capsys,
        "-i",
        src,
        "-ss",
        "0.5",
        "-t",
        "1",
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        server.addr,
        "-g",
        "100",
        "-force_key_frames",
        "0,0.5",
        "-c:a",
        "copy",
        "-c:s",
        "copy",
        out,
    )
    assert rc == 0, err
    v = video_info(out)
    assert v["frames"] == 24
    with av.open(str(out)) as c:
        tb = c.streams.video[0].time_base
    assert [round(float(k * tb), 3) for k in v["keyframes"]] == [0.0, 0.5]
    first_audio = copied(out, "audio")[0][1]
    assert first_audio is not None and 0 <= first_audio < 0.05
    src_audio = copied(src, "audio")
    kept = [p for p in src_audio if p[1] is not None and 0.5 <= p[1] < 1.5]
    assert [p[0] for p in copied(out, "audio")] == [p[0] for p in kept]


# --- embedded server, JSON summary ----------------------------------------------------------------


def test_embedded_server_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.mp4"
    rc, stdout, err = run(
        capsys,
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=30",
        "-t",
        "0.5",
        "-c:v",
        REMOTE_H264,
        "-b:v",
        "500k",
        "--json",
        out,
    )
    assert rc == 0, err
    summary = json.loads(stdout)
    assert summary["frames"] == 15 and summary["output"] == str(out)
    assert summary["embedded_server"].startswith("127.0.0.1:")
    (session,) = summary["remote_sessions"]
    assert session["mode"] == "encode" and session["frames"] == session["packets"] == 15
    assert session["compression"] == "none"  # auto on loopback
    assert session["engine"]
    assert summary["size_bytes"] == out.stat().st_size
    assert abs(summary["media_seconds"] - 0.5) < 0.05


# --- errors ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dead_server(tmp_path: Path) -> None:
    port = _free_port()
    proc = run_process(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=30",
        "-t",
        "0.2",
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        f"127.0.0.1:{port}",
        tmp_path / "o.mp4",
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        f"vtremote: error: cannot reach 127.0.0.1:{port}: connection refused"
    )
    assert not (tmp_path / "o.mp4").exists()


def test_busy_server(start_server, tmp_path: Path) -> None:
    srv = start_server("--engine", "x264", "--max-sessions", "1")
    with RemoteEncoder(srv.addr, width=64, height=64) as holder:
        proc = run_process(
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
            "-t",
            "0.2",
            "-c:v",
            REMOTE_H264,
            "-vt_remote_host",
            srv.addr,
            tmp_path / "o.mp4",
        )
        holder.flush()
    assert proc.returncode == 1
    assert f"vtremote: error: server busy: 1 of 1 sessions in use ({srv.addr})" in proc.stderr


def test_auth_failure(start_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    srv = start_server("--engine", "x264", "--token", "s3cret")
    args = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=30",
        "-t",
        "0.2",
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        srv.addr,
    ]
    rc, _, err = run(capsys, *args, "-vt_remote_token", "nope", tmp_path / "o.mp4")
    assert rc == 1
    assert "vtremote: error: authentication failed" in err and srv.addr in err
    rc, _, err = run(capsys, *args, "-vt_remote_token", "s3cret", tmp_path / "o.mp4")
    assert rc == 0, err


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    proc = run_process("-i", "x.mkv", "-bogus", "1", tmp_path / "o.mkv")
    assert proc.returncode == 2 and "unrecognized option '-bogus'" in proc.stderr
    proc = run_process("-i", "x.mkv")
    assert proc.returncode == 2 and "no output file" in proc.stderr


def test_missing_input_and_existing_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run(capsys, "-i", tmp_path / "nope.mkv", "-c:v", "libx264", tmp_path / "o.mp4")
    assert rc == 1 and "cannot open input" in err and "No such file or directory" in err
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"keep me")
    rc, _, err = run(
        capsys, "-f", "lavfi", "-i", "testsrc2", "-t", "0.1", "-c:v", "libx264", existing
    )
    assert rc == 1 and "already exists; use -y" in err
    assert existing.read_bytes() == b"keep me"


# --- probe ----------------------------------------------------------------------------------------


def test_probe(start_server, capsys: pytest.CaptureFixture[str]) -> None:
    srv = start_server("--engine", "x264", "--max-sessions", "3")
    rc, out, err = run(capsys, "probe", srv.addr, "--json")
    assert rc == 0, err
    info = json.loads(out)
    assert info["status"] == "ok" and info["server_name"] == "vtremoted" and info["server_version"]
    assert {"h264", "hevc"} <= set(info["codecs"])
    assert info["engines"] == ["x264"]
    assert "ext:decode-pipeline" in info["capabilities"]
    assert info["max_sessions"] == 3 and info["active_sessions"] == 1  # the probe's own session
    # The first probe's slot is freed when the server sees its EOF, which may be a moment
    # after the client returned: poll until the count settles back.
    deadline = time.monotonic() + 10
    while True:
        rc, out, _ = run(capsys, "probe", srv.addr)
        if "sessions     1 of 3 in use" in out or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert rc == 0 and "sessions     1 of 3 in use" in out and "engines      x264" in out
    rc, _, err = run(capsys, "probe", f"127.0.0.1:{_free_port()}")
    assert rc == 1 and "cannot reach" in err


def test_time_base_is_the_frame_rate(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MKV counts in milliseconds; the encoder counts frames (1/rate), as ffmpeg does."""
    src = make_av_mkv(tmp_path / "in.mkv", n=24, width=320, height=180, rate=24)
    out = tmp_path / "out.mp4"
    rc, _, err = run(
        capsys, "-i", src, "-c:v", REMOTE_H264, "-vt_remote_host", server.addr, "-an", "-sn", out
    )
    assert rc == 0, err
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.average_rate == 24
        time_base = s.time_base  # a stream's fields are readable only while its file is open
        durations = {p.duration for p in c.demux(s) if p.size}
    assert len(durations) == 1  # every frame lasts exactly 1/24 s
    assert Fraction(durations.pop()) * time_base == Fraction(1, 24)


def test_raw_h264_input_without_timestamps(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "clip.h264"
    rc, _, err = run(
        capsys,
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=30",
        "-t",
        "1",
        "-c:v",
        "libx264",
        "-f",
        "h264",
        raw,
    )
    assert rc == 0, err
    out = tmp_path / "out.mp4"
    rc, _, err = run(
        capsys,
        "-framerate",
        "30",
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        server.addr,
        "-i",
        raw,
        "-c:v",
        REMOTE_H264,
        "-vt_remote_host",
        server.addr,
        out,
    )
    assert rc == 0, err
    v = video_info(out)
    assert v["frames"] == 30 and strictly_increasing(v["dts"])
    assert abs(v["duration"] - 1.0) < 0.05


def test_subtitles_mp4(server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_av_mkv(tmp_path / "in.mkv", n=12, width=320, height=180, rate=24)
    out = tmp_path / "out.mp4"
    args = ["-i", src, "-c:v", REMOTE_H264, "-vt_remote_host", server.addr, "-c:a", "copy"]
    rc, _, err = run(capsys, *args, out)
    assert rc == 0, err
    assert "subtitle stream 0:2 (srt) left out: mp4 cannot hold it" in err
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
    rc, _, err = run(capsys, "-y", *args, "-c:s", "copy", out)
    assert rc == 1 and "cannot copy stream 0:2 (srt) into mp4" in err
