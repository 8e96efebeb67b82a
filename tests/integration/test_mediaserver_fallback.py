"""What ``vtremote-ffmpeg`` does when it cannot use a server, or cannot run a line at all.

* server down or busy -> the job runs with a local PyAV encoder, logged and counted;
* a line vtremote cannot run (``-filter_complex`` burn-in) -> handed, unchanged, to the
  configured real ffmpeg (here a script that records its argv);
* ``on_unavailable = "ffmpeg"`` -> the same hand-over when no server can take the job;
* no ffmpeg configured -> exit 1 with the reason, counted as failed.
"""

from __future__ import annotations

import socket
from fractions import Fraction
from pathlib import Path

import pytest

from mediaserver_helpers import RATE, counters, make_movie, read_hls, run_ffmpeg
from vtremote.client import RemoteEncoder


@pytest.fixture
def movie(tmp_path: Path) -> Path:
    return make_movie(tmp_path / "movie.mkv", 2.0, 160, 96)


@pytest.fixture
def fake_ffmpeg(tmp_path: Path) -> Path:
    """A stand-in for the real ffmpeg: records its argv, one per line, and exits 0."""
    script = tmp_path / "ffmpeg"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path / "argv.txt"}"\nexit 0\n')
    script.chmod(0o755)
    return script


def closed_port() -> str:
    """An address where nothing listens (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


def hls_line(movie: Path, out: Path, encoder: str = "libx264") -> list[str]:
    return [
        "-i",
        f"file:{movie}",
        "-map",
        "0:0",
        "-map",
        "0:1",
        "-codec:v:0",
        encoder,
        "-crf",
        "23",
        "-vf",
        "scale=128:-2",
        "-codec:a:0",
        "copy",
        "-f",
        "hls",
        "-hls_time",
        "1",
        "-hls_segment_filename",
        str(out / "s%d.ts"),
        "-hls_playlist_type",
        "vod",
        "-hls_list_size",
        "0",
        "-y",
        str(out / "s.m3u8"),
    ]


def test_server_down_falls_back_to_a_local_encoder(tmp_path: Path, movie: Path) -> None:
    out = tmp_path / "t"
    out.mkdir()
    result = run_ffmpeg(tmp_path, hls_line(movie, out, "h264_nvenc"), host=closed_port())
    assert result.returncode == 0, result.stderr
    assert "cannot take the job" in result.stderr and "connection refused" in result.stderr
    assert "encoded locally with libx264 (fallback)" in result.stderr
    hls = read_hls(out / "s.m3u8")
    assert hls.video_frames == 2 * RATE
    assert {s.size for s in hls.segments} == {(128, 76)}
    assert all(s.first_video_packet_key for s in hls.segments)
    c = counters(tmp_path)
    assert (c["runs"], c["server_unavailable"], c["local_fallback"]) == (1, 1, 1)
    assert "remote" not in c
    shown = run_ffmpeg(tmp_path, ["-vtremote_counters"]).stdout.splitlines()
    assert "local_fallback=1" in shown and "remote=0" in shown and "runs=1" in shown


def test_busy_server_of_the_pool_is_skipped_and_the_next_takes_it(
    tmp_path: Path, movie: Path, start_server
) -> None:  # type: ignore[no-untyped-def]
    busy = start_server("--engine", "x264", "--max-sessions", "1")
    free = start_server("--engine", "x264")
    out = tmp_path / "t"
    out.mkdir()
    with RemoteEncoder(busy.addr, "h264", width=64, height=64, time_base=Fraction(1, 30)):
        result = run_ffmpeg(tmp_path, hls_line(movie, out), host=f"{busy.addr},{free.addr}")
    assert result.returncode == 0, result.stderr
    # The servers are one pool: placement skips the busy one, the line is not run twice.
    assert f"skipping {busy.addr}: server busy: 1 of 1 sessions in use" in result.stderr
    assert "cannot take the job" not in result.stderr
    assert read_hls(out / "s.m3u8").video_frames == 2 * RATE
    assert free.encoded_frames() == 2 * RATE
    c = counters(tmp_path)
    assert (c.get("server_unavailable", 0), c["remote"]) == (0, 1)


def test_busy_only_server_falls_back_to_local(tmp_path: Path, movie: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    busy = start_server("--engine", "x264", "--max-sessions", "1")
    out = tmp_path / "t"
    out.mkdir()
    with RemoteEncoder(busy.addr, "h264", width=64, height=64, time_base=Fraction(1, 30)):
        result = run_ffmpeg(tmp_path, hls_line(movie, out, "hevc_qsv"), host=busy.addr)
    assert result.returncode == 0, result.stderr
    assert "encoded locally with libx265 (fallback)" in result.stderr
    hls = read_hls(out / "s.m3u8")
    assert {s.video_codec for s in hls.segments} == {"hevc"}
    assert counters(tmp_path)["local_fallback"] == 1


def test_unsupported_line_goes_to_real_ffmpeg_unchanged(
    tmp_path: Path, movie: Path, fake_ffmpeg: Path, server
) -> None:  # type: ignore[no-untyped-def]
    line = [
        "-analyzeduration",
        "200M",
        "-i",
        f"file:{movie}",
        "-filter_complex",
        "[0:2]scale=160:96[sub];[0:0][sub]overlay=eof_action=pass:repeatlast=0",
        "-codec:v:0",
        "libx264",
        "-f",
        "hls",
        "-y",
        str(tmp_path / "x.m3u8"),
    ]
    result = run_ffmpeg(tmp_path, line, host=server.addr, env={"VTREMOTE_FFMPEG": str(fake_ffmpeg)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "argv.txt").read_text().splitlines() == line
    assert f"handing the command line to {fake_ffmpeg}: -filter_complex" in result.stderr
    assert counters(tmp_path)["ffmpeg_fallback"] == 1
    assert "SUMMARY" not in server.stderr_text()


def test_unsupported_line_without_ffmpeg_fails_with_the_reason(tmp_path: Path, movie: Path) -> None:
    result = run_ffmpeg(
        tmp_path,
        ["-i", str(movie), "-vf", "subtitles=x.srt", "-c:v", "libx264", str(tmp_path / "o.mp4")],
        host=closed_port(),
    )
    assert result.returncode == 1
    assert (
        "cannot run this command line: filter subtitles (subtitles/overlays) runs only in ffmpeg"
        in result.stderr
    )
    assert counters(tmp_path)["failed"] == 1


def test_on_unavailable_ffmpeg_hands_over_when_no_server_answers(
    tmp_path: Path, movie: Path, fake_ffmpeg: Path
) -> None:
    out = tmp_path / "t"
    out.mkdir()
    line = hls_line(movie, out)
    config = (
        f'[ffmpeg]\nservers = ["{closed_port()}"]\non_unavailable = "ffmpeg"\n'
        f'ffmpeg_path = "{fake_ffmpeg}"\n'
    )
    result = run_ffmpeg(tmp_path, line, config=config)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "argv.txt").read_text().splitlines() == line
    assert "no server could take the job" in result.stderr
    assert not (
        out / "s.m3u8"
    ).exists()  # the failed attempt left nothing behind for ffmpeg to trip on
    c = counters(tmp_path)
    assert (c["server_unavailable"], c["ffmpeg_fallback"]) == (1, 1)


def test_on_unavailable_fail_exits_1_and_leaves_no_playlist(tmp_path: Path, movie: Path) -> None:
    out = tmp_path / "t"
    out.mkdir()
    result = run_ffmpeg(
        tmp_path,
        hls_line(movie, out),
        config=f'[ffmpeg]\nservers = ["{closed_port()}"]\non_unavailable = "fail"\n',
    )
    assert result.returncode == 1
    assert "no server could take the job" in result.stderr
    assert list(out.iterdir()) == []


def test_lines_without_a_remote_encode_go_to_ffmpeg_when_configured(
    tmp_path: Path, movie: Path, fake_ffmpeg: Path, server
) -> None:  # type: ignore[no-untyped-def]
    thumb = [
        "-ss",
        "00:00:01",
        "-i",
        f"file:{movie}",
        "-threads",
        "0",
        "-v",
        "quiet",
        "-vframes",
        "1",
        "-vf",
        "scale=trunc(iw*sar/2)*2:ih",
        "-f",
        "image2",
        str(tmp_path / "thumb.jpg"),
    ]
    result = run_ffmpeg(
        tmp_path, thumb, host=server.addr, env={"VTREMOTE_FFMPEG": str(fake_ffmpeg)}
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "argv.txt").read_text().splitlines() == thumb
    assert counters(tmp_path)["ffmpeg_passthrough"] == 1
    # local_lines = "vtremote": run here instead (a JPEG from PyAV's mjpeg).
    result = run_ffmpeg(
        tmp_path,
        [*thumb[:-5], "-an", "-sn", *thumb[-5:]],
        host=server.addr,
        config=f'[ffmpeg]\nffmpeg_path = "{fake_ffmpeg}"\nlocal_lines = "vtremote"\n',
    )
    assert result.returncode == 0, result.stderr
    import av

    with av.open(str(tmp_path / "thumb.jpg")) as c:
        frame = next(c.decode(video=0))
    assert (frame.width, frame.height) == (160, 96)
    assert counters(tmp_path)["no_video_encode"] == 1


def test_a_run_that_fails_here_goes_to_ffmpeg(tmp_path: Path, fake_ffmpeg: Path, server) -> None:  # type: ignore[no-untyped-def]
    """An input vtremote cannot open: the line still reaches ffmpeg, which may know better."""
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(b"\x1aE\xdf\xa3" + b"\x00" * 64)
    line = [
        "-i",
        f"file:{broken}",
        "-codec:v:0",
        "libx264",
        "-f",
        "hls",
        "-y",
        str(tmp_path / "b.m3u8"),
    ]
    result = run_ffmpeg(tmp_path, line, host=server.addr, env={"VTREMOTE_FFMPEG": str(fake_ffmpeg)})
    assert result.returncode == 0, result.stderr
    assert (
        "handing the command line to" in result.stderr
        and "vtremote failed: cannot open input" in result.stderr
    )
    assert (tmp_path / "argv.txt").read_text().splitlines() == line
    assert not (tmp_path / "b.m3u8").exists()
