"""An Emby-style line (the ``ssegment`` muxer with an m3u8 segment list, old-style option
names) through ``vtremote-ffmpeg`` against a real ``vtremoted``."""

from __future__ import annotations

from pathlib import Path

from mediaserver_helpers import make_movie, read_hls, run_ffmpeg


def test_emby_segment_muxer_line(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    movie = make_movie(tmp_path / "m.mkv", 3.0, 320, 180)
    out = tmp_path / "hls"
    out.mkdir()
    args = [
        "-ss",
        "0.000",
        "-i",
        str(movie),
        "-threads",
        "0",
        "-vcodec",
        "libx264",
        "-vsync",
        "2",
        "-preset",
        "superfast",
        "-vprofile",
        "baseline",
        "-level",
        "30",
        "-s",
        "256x144",
        "-vb",
        "1000000",
        "-r",
        "15",
        "-acodec",
        "libmp3lame",
        "-ab",
        "96k",
        "-ac",
        "2",
        "-f",
        "ssegment",
        "-pix_fmt",
        "yuv420p",
        "-segment_format",
        "mpegts",
        "-segment_list_type",
        "m3u8",
        "-segment_list",
        str(out / "list.m3u8"),
        "-segment_time",
        "1",
        "-segment_time_delta",
        "0.000",
        "-segment_start_number",
        "00000",
        "-individual_header_trailer",
        "0",
        "-avoid_negative_ts",
        "0",
        "-break_non_keyframes",
        "1",
        "-max_muxing_queue_size",
        "1024",
        "-map",
        "0:0",
        "-map",
        "0:1",
        str(out / "slice-%05d.ts"),
    ]
    result = run_ffmpeg(tmp_path, args, host=server.addr)
    assert result.returncode == 0, result.stderr
    hls = read_hls(out / "list.m3u8")
    assert [s.name for s in hls.segments] == ["slice-00000.ts", "slice-00001.ts", "slice-00002.ts"]
    assert hls.video_frames == 45  # -r 15 over 3 s
    assert all(s.first_video_packet_key and s.video_frames[0][1] for s in hls.segments)
    assert {s.size for s in hls.segments} == {(256, 144)}
    assert {s.audio_codec for s in hls.segments} == {"mp3float"}
    assert server.encoded_frames() == 45
