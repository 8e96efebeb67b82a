"""HLS output of the pipeline through the ``vtremote`` command: ``-f hls`` with its muxer
options, a keyframe forced at every segment start when none are asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediaserver_helpers import RATE, make_movie, read_hls
from vtremote.cli.main import main


@pytest.mark.parametrize("seg_type", ["mpegts", "fmp4"])
def test_vtremote_writes_hls_with_keyframes_at_segment_starts(
    tmp_path: Path,
    server,
    seg_type: str,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
) -> None:
    movie = make_movie(
        tmp_path / "m.mkv", 3.0, 192, 108, gop=250
    )  # the source has one keyframe only
    out = tmp_path / "hls"
    out.mkdir()
    ext = "m4s" if seg_type == "fmp4" else "ts"
    rc = main(
        [
            "-i",
            str(movie),
            "-map",
            "0:v",
            "-map",
            "0:a",
            "-c:v",
            "hevc_videotoolbox_remote",
            "-vt_remote_host",
            server.addr,
            "-tag:v",
            "hvc1",
            "-c:a",
            "aac",
            "-af",
            "volume=0.5",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_segment_type",
            seg_type,
            "-hls_segment_filename",
            str(out / f"s%d.{ext}"),
            "-hls_playlist_type",
            "vod",
            "-hls_list_size",
            "0",
            str(out / "s.m3u8"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    hls = read_hls(out / "s.m3u8")
    assert len(hls.segments) == 3 and hls.video_frames == 3 * RATE
    assert all(s.first_video_packet_key and s.video_frames[0][1] for s in hls.segments)
    assert hls.total == pytest.approx(3.0, abs=1.5 / RATE)
    assert {s.video_codec for s in hls.segments} == {"hevc"}
    if seg_type == "fmp4":
        assert {s.codec_tag for s in hls.segments} == {"hvc1"}
    assert server.encoded_frames() == 90
