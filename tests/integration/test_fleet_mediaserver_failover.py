"""The media-server drop-in's servers are one pool: a server killed mid-line
(``--die-after-frames``) hands the line to the other, and the HLS playlist goes on without a
restart, a gap or a repeated segment."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediaserver_helpers import RATE, make_movie, read_hls, run_ffmpeg

SECONDS = 4.0
FRAMES = round(SECONDS * RATE)


#: The server's SUMMARY of two transcode sessions (the undisturbed run's and the failover's).
TWO_TRANSCODES = r"(?s)SUMMARY mode=transcode.*SUMMARY mode=transcode"


def hls_line(movie: Path, out: Path, name: str) -> list[str]:
    return [
        "-f", "matroska,webm", "-i", f"file:{movie}",
        "-map", "0:0", "-map", "0:1",
        "-codec:v:0", "libx264", "-preset", "veryfast", "-b:v", "400000",
        "-force_key_frames:0", "expr:gte(t,0+n_forced*1)", "-sc_threshold:v:0", "0",
        "-vf", "scale=256:144", "-codec:a:0", "copy",
        "-f", "hls", "-hls_time", "1", "-hls_segment_type", "mpegts", "-start_number", "0",
        "-hls_segment_filename", str(out / f"{name}%d.ts"),
        "-hls_playlist_type", "vod", "-hls_list_size", "0", "-y", str(out / f"{name}.m3u8"),
    ]  # fmt: skip


def test_hls_line_carries_on_when_its_server_dies(tmp_path: Path, start_server) -> None:
    movie = make_movie(tmp_path / "movie.mkv", SECONDS)
    steady = start_server("--engine", "x264")
    calm = tmp_path / "calm"
    calm.mkdir()
    result = run_ffmpeg(tmp_path, hls_line(movie, calm, "v"), host=steady.addr)
    assert result.returncode == 0, result.stderr
    reference = read_hls(calm / "v.m3u8")

    dying = start_server("--engine", "x264", "--die-after-frames", "50")
    out = tmp_path / "out"
    out.mkdir()
    result = run_ffmpeg(tmp_path, hls_line(movie, out, "v"), host=f"{dying.addr},{steady.addr}")
    assert result.returncode == 0, result.stderr
    assert dying.wait(30) == -9  # it died mid-line, by SIGKILL
    assert "continued on" in result.stderr  # one failover, not a restart of the line
    hls = read_hls(out / "v.m3u8")
    names = [s.name for s in hls.segments]
    assert names == [s.name for s in reference.segments]  # every segment once, in order
    assert len(set(names)) == len(names) == round(SECONDS)
    assert [s.duration for s in hls.segments] == pytest.approx(
        [s.duration for s in reference.segments], abs=0.5 / RATE
    )
    assert hls.video_frames == reference.video_frames == FRAMES  # no gap, no repeat
    for seg in hls.segments:
        assert seg.first_video_packet_key and seg.video_frames[0][1], seg.name
    steady.wait_for_log(TWO_TRANSCODES)  # packets on the wire, not raw frames
