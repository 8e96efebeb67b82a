"""Jellyfin's command lines through ``vtremote-ffmpeg`` against a real ``vtremoted``.

The lines are laid out as Jellyfin's EncodingHelper writes them (as seen in its
public bug reports), with paths and sizes scaled down to short test clips. Each
run must leave an HLS set a player can use: a valid VOD playlist, segments that
decode cleanly, durations that add up to the input's, a keyframe at every
segment start, video encoded by the server (its SUMMARY line counts the
frames) and the audio as asked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from media import make_hevc_mp4
from mediaserver_helpers import RATE, make_movie, read_hls, run_ffmpeg, source_rms

SECONDS = 3.0
FRAMES = round(SECONDS * RATE)
JELLYFIN_SCALE = (
    "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709,"
    r"scale=trunc(min(max(iw\,ih*a)\,min({w}\,{h}*a))/2)*2:trunc(min(max(iw/a\,ih)\,min({w}/a\,{h}))/2)*2,"
    "format=yuv420p"
)


@pytest.fixture
def movie(tmp_path: Path) -> Path:
    return make_movie(tmp_path / "movie.mkv", SECONDS)


def hls_args(
    out: Path,
    name: str,
    *,
    seg_type: str = "mpegts",
    hls_time: int = 1,
    start_number: int = 0,
    extra: tuple[str, ...] = (),
) -> list[str]:
    ext = "mp4" if seg_type == "fmp4" else "ts"
    args = [
        "-f",
        "hls",
        "-max_delay",
        "5000000",
        "-hls_time",
        str(hls_time),
        "-hls_segment_type",
        seg_type,
    ]
    if seg_type == "fmp4":
        args += ["-hls_fmp4_init_filename", str(out / f"{name}-1.mp4")]
    args += [
        "-start_number",
        str(start_number),
        "-hls_segment_filename",
        str(out / f"{name}%d.{ext}"),
        "-hls_playlist_type",
        "vod",
        "-hls_list_size",
        "0",
        *extra,
        "-y",
        str(out / f"{name}.m3u8"),
    ]
    return args


def summary_frames(server) -> int:  # type: ignore[no-untyped-def]
    return server.encoded_frames()


def assert_segments_start_with_keyframes(hls) -> None:  # type: ignore[no-untyped-def]
    for seg in hls.segments:
        assert seg.video_frames, f"{seg.name} has no video"
        assert seg.first_video_packet_key, f"{seg.name} does not start with a keyframe"
        assert seg.video_frames[0][1], f"{seg.name}: first decoded frame is not a keyframe"


def test_h264_transcode_with_scale_expression(tmp_path: Path, movie: Path, server) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "transcodes"
    out.mkdir()
    args = [
        "-analyzeduration",
        "200M",
        "-probesize",
        "1G",
        "-f",
        "matroska,webm",
        "-autorotate",
        "0",
        "-i",
        f"file:{movie}",
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
        "-threads",
        "0",
        "-map",
        "0:0",
        "-map",
        "0:1",
        "-map",
        "-0:s",
        "-codec:v:0",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        "-maxrate",
        "1500000",
        "-bufsize",
        "3000000",
        "-profile:v:0",
        "high",
        "-level",
        "31",
        "-x264opts:0",
        "subme=0:me_range=4:rc_lookahead=10:me=dia:no_chroma_me:8x8dct=0:partitions=none",
        "-force_key_frames:0",
        "expr:gte(t,0+n_forced*1)",
        "-sc_threshold:v:0",
        "0",
        "-vf",
        JELLYFIN_SCALE.format(w=256, h=144),
        "-codec:a:0",
        "copy",
        "-copyts",
        "-avoid_negative_ts",
        "disabled",
        "-max_muxing_queue_size",
        "2048",
        *hls_args(out, "abc"),
    ]
    result = run_ffmpeg(tmp_path, args, host=server.addr)
    assert result.returncode == 0, result.stderr
    hls = read_hls(out / "abc.m3u8")
    assert hls.media_sequence == 0
    assert [s.name for s in hls.segments] == ["abc0.ts", "abc1.ts", "abc2.ts"]
    assert hls.total == pytest.approx(SECONDS, abs=1.5 / RATE)
    assert hls.video_frames == FRAMES
    assert_segments_start_with_keyframes(hls)
    assert {s.size for s in hls.segments} == {(256, 144)}
    assert {s.video_codec for s in hls.segments} == {"h264"}
    assert {s.audio_codec for s in hls.segments} == {"aac"}
    assert summary_frames(server) == FRAMES
    # ffmpeg's progress line, as Jellyfin reads it.
    assert "frame=   90 fps=" in result.stderr and "time=" in result.stderr


def test_direct_stream_copy(tmp_path: Path, movie: Path, server) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "t"
    out.mkdir()
    args = [
        "-analyzeduration",
        "200M",
        "-probesize",
        "1G",
        "-readrate",
        "10",
        "-fflags",
        "+genpts",
        "-f",
        "matroska",
        "-i",
        f"file:{movie}",
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
        "-threads",
        "0",
        "-map",
        "0:0",
        "-map",
        "0:1",
        "-map",
        "-0:s",
        "-codec:v:0",
        "copy",
        "-bsf:v",
        "h264_mp4toannexb",
        "-start_at_zero",
        "-codec:a:0",
        "copy",
        "-copyts",
        "-avoid_negative_ts",
        "disabled",
        "-max_muxing_queue_size",
        "2048",
        *hls_args(out, "cp"),
    ]
    result = run_ffmpeg(tmp_path, args, host=server.addr)
    assert result.returncode == 0, result.stderr
    hls = read_hls(out / "cp.m3u8")
    assert len(hls.segments) == 3  # the source's keyframes are 1 s apart
    assert hls.video_frames == FRAMES
    assert hls.total == pytest.approx(SECONDS, abs=1.5 / RATE)
    assert_segments_start_with_keyframes(hls)
    assert "SUMMARY" not in server.stderr_text()  # nothing to encode: no session


def test_hevc_10bit_to_h264_8bit(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    src = make_hevc_mp4(tmp_path / "hdr.mp4", 60, 320, 180, ten_bit=True)
    out = tmp_path / "t"
    out.mkdir()
    args = [
        "-analyzeduration",
        "200M",
        "-f",
        "mov,mp4,m4a,3gp,3g2,mj2",
        "-noautorotate",
        "-i",
        f"file:{src}",
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
        "-threads",
        "0",
        "-map",
        "0:0",
        "-map",
        "-0:s",
        "-codec:v:0",
        "h264_vaapi",
        "-rc_mode",
        "VBR",
        "-b:v",
        "800000",
        "-maxrate",
        "800000",
        "-bufsize",
        "1600000",
        "-profile:v:0",
        "high",
        "-force_key_frames:0",
        "expr:gte(t,n_forced*1)",
        "-vf",
        "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709,hwupload=extra_hw_frames=64,"
        "scale_vaapi=w=320:h=180:format=nv12:extra_hw_frames=24,hwdownload,format=nv12",
        "-copyts",
        "-avoid_negative_ts",
        "disabled",
        "-max_muxing_queue_size",
        "2048",
        *hls_args(out, "h"),
    ]
    result = run_ffmpeg(
        tmp_path, args, host=server.addr, config='[ffmpeg]\nrate_control = "bitrate"\n'
    )
    assert result.returncode == 0, result.stderr
    hls = read_hls(out / "h.m3u8")
    assert hls.video_frames == 60
    assert {s.video_codec for s in hls.segments} == {"h264"}
    assert {s.pix_fmt for s in hls.segments} == {"yuv420p"}  # 8-bit from a 10-bit source
    assert_segments_start_with_keyframes(hls)
    assert summary_frames(server) == 60
    assert re.search(r"CONFIGURE ok mode=(encode|transcode) codec=h264", server.stderr_text())


def test_fmp4_hls_with_hevc_output_and_audio_reencode(tmp_path: Path, movie: Path, server) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "t"
    out.mkdir()
    args = [
        "-analyzeduration",
        "200M",
        "-probesize",
        "1G",
        "-fflags",
        "+genpts",
        "-f",
        "matroska",
        "-i",
        f"file:{movie}",
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
        "-threads",
        "0",
        "-map",
        "0:0",
        "-map",
        "0:1",
        "-map",
        "-0:s",
        "-codec:v:0",
        "libx265",
        "-preset",
        "veryfast",
        "-crf",
        "28",
        "-maxrate",
        "1000000",
        "-bufsize",
        "2000000",
        "-profile:v:0",
        "main",
        "-x265-params:0",
        "no-scenecut=1:no-open-gop=1:no-info=1",
        "-force_key_frames:0",
        "expr:gte(t,n_forced*1)",
        "-tag:v:0",
        "hvc1",
        "-vf",
        JELLYFIN_SCALE.format(w=320, h=180),
        "-codec:a:0",
        "libfdk_aac",
        "-ac",
        "2",
        "-ab",
        "128000",
        "-af",
        "volume=2",
        "-copyts",
        "-avoid_negative_ts",
        "disabled",
        "-max_muxing_queue_size",
        "2048",
        *hls_args(
            out, "f", seg_type="fmp4", extra=("-hls_segment_options", "movflags=+frag_discont")
        ),
    ]
    result = run_ffmpeg(tmp_path, args, host=server.addr)
    assert result.returncode == 0, result.stderr
    hls = read_hls(out / "f.m3u8")
    assert hls.init == "f-1.mp4" and (out / "f-1.mp4").exists()
    assert "#EXT-X-MAP" in hls.text
    assert hls.video_frames == FRAMES
    assert hls.total == pytest.approx(SECONDS, abs=1.5 / RATE)
    assert_segments_start_with_keyframes(hls)
    assert {s.video_codec for s in hls.segments} == {"hevc"}
    assert {s.codec_tag for s in hls.segments} == {"hvc1"}
    assert {s.audio_codec for s in hls.segments} == {"aac"}
    assert {s.audio_channels for s in hls.segments} == {2}
    samples = sum(s.audio_samples for s in hls.segments)
    assert samples == pytest.approx(SECONDS * 48000, rel=0.03)
    # volume=2 doubles the amplitude (AAC at 128 kb/s keeps the sine's level within a few percent).
    assert hls.audio_rms() / source_rms(movie) == pytest.approx(2.0, rel=0.08)
    assert summary_frames(server) == FRAMES
    assert "codec=hevc" in server.stderr_text()


def test_start_offset_with_ss(tmp_path: Path, movie: Path, server) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "t"
    out.mkdir()
    args = [
        "-analyzeduration",
        "200M",
        "-probesize",
        "1G",
        "-ss",
        "00:00:01.000",
        "-noaccurate_seek",
        "-f",
        "matroska,webm",
        "-i",
        f"file:{movie}",
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
        "-threads",
        "0",
        "-map",
        "0:0",
        "-map",
        "0:1",
        "-map",
        "-0:s",
        "-codec:v:0",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        "-force_key_frames:0",
        "expr:gte(t,1+n_forced*1)",
        "-sc_threshold:v:0",
        "0",
        "-vf",
        JELLYFIN_SCALE.format(w=320, h=180),
        "-codec:a:0",
        "libmp3lame",
        "-ac",
        "2",
        "-ab",
        "192000",
        "-copyts",
        "-avoid_negative_ts",
        "disabled",
        "-max_muxing_queue_size",
        "2048",
        *hls_args(out, "ss", start_number=1),
    ]
    result = run_ffmpeg(tmp_path, args, host=server.addr)
    assert result.returncode == 0, result.stderr
    hls = read_hls(out / "ss.m3u8")
    assert hls.media_sequence == 1
    assert [s.name for s in hls.segments] == ["ss1.ts", "ss2.ts"]
    assert hls.video_frames == FRAMES - RATE
    assert hls.total == pytest.approx(SECONDS - 1, abs=1.5 / RATE)
    assert_segments_start_with_keyframes(hls)
    # -copyts: the segments keep the source's clock, so segment N starts N seconds after the
    # first one wherever the mpegts muxer puts its origin.
    starts = [s.video_frames[0][0] for s in hls.segments]
    assert starts[1] - starts[0] == pytest.approx(1.0, abs=1e-3)
    assert {s.audio_codec for s in hls.segments} == {"mp3float"}
    assert summary_frames(server) == FRAMES - RATE


def test_progressive_fragmented_mp4(tmp_path: Path, movie: Path, server) -> None:  # type: ignore[no-untyped-def]
    """Jellyfin's progressive stream: one fragmented MP4 written under its own name as it grows."""
    target = tmp_path / "stream.mp4"
    args = [
        "-analyzeduration",
        "200M",
        "-f",
        "matroska,webm",
        "-i",
        f"file:{movie}",
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
        "-threads",
        "0",
        "-map",
        "0:0",
        "-map",
        "0:1",
        "-map",
        "-0:s",
        "-codec:v:0",
        "h264_qsv",
        "-preset",
        "veryfast",
        "-b:v",
        "800000",
        "-maxrate",
        "800000",
        "-bufsize",
        "1600000",
        "-g:v:0",
        "30",
        "-keyint_min:v:0",
        "30",
        "-vf",
        "scale=trunc(min(max(iw\\,ih*a)\\,min(256\\,144*a))/2)*2:trunc(min(max(iw/a\\,ih)\\,min(256/a\\,144))/2)*2",
        "-codec:a:0",
        "copy",
        "-movflags",
        "frag_keyframe+empty_moov+delay_moov",
        "-f",
        "mp4",
        "-y",
        str(target),
    ]
    result = run_ffmpeg(tmp_path, args, host=server.addr)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".mp4") == [
        "stream.mp4"
    ]  # no temporary name
    import av

    with av.open(str(target)) as c:
        frames = [f for f in c.decode(video=0)]
    assert len(frames) == FRAMES and (frames[0].width, frames[0].height) == (256, 144)
    assert summary_frames(server) == FRAMES


def make_tv_recording(path: Path, seconds: float = 3.0) -> Path:
    """An MPEG-TS like a DVB recording: MPEG-2 video 720x576 (SAR 16:15) at 25 fps, MP2 audio;
    the muxer starts its clock at 1.4 s, as broadcast streams start well after 0."""
    from fractions import Fraction

    import av

    from media import sine_frames, testsrc_frames

    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("mpeg2video", rate=25)
        video.width, video.height, video.pix_fmt = 720, 576, "yuv420p"
        video.codec_context.sample_aspect_ratio = Fraction(16, 15)
        audio = out.add_stream("mp2", rate=48000)
        audio.layout = "stereo"
        for frame in testsrc_frames(round(seconds * 25), 720, 576, "yuv420p", 25):
            for p in video.encode(frame):
                out.mux(p)
        for p in video.encode(None):
            out.mux(p)
        for aframe in sine_frames(seconds, 48000, frame_size=1152):
            for p in audio.encode(aframe):
                out.mux(p)
        for p in audio.encode(None):
            out.mux(p)
    return path


def test_tv_recording_deinterlaced_with_even_segments(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    src = make_tv_recording(tmp_path / "rec.ts")
    out = tmp_path / "t"
    out.mkdir()
    args = [
        "-analyzeduration",
        "200M",
        "-probesize",
        "1G",
        "-fflags",
        "+genpts",
        "-f",
        "mpegts",
        "-i",
        f"file:{src}",
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
        "-threads",
        "0",
        "-map",
        "0:0",
        "-map",
        "0:1",
        "-map",
        "-0:s",
        "-codec:v:0",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        "-force_key_frames:0",
        "expr:gte(t,n_forced*1)",
        "-sc_threshold:v:0",
        "0",
        "-vf",
        JELLYFIN_SCALE.format(w=640, h=360).replace("setparams=", "yadif=0:-1:0,setparams="),
        "-codec:a:0",
        "libfdk_aac",
        "-ac",
        "2",
        "-ab",
        "256000",
        "-copyts",
        "-avoid_negative_ts",
        "disabled",
        "-max_muxing_queue_size",
        "2048",
        *hls_args(out, "tv"),
    ]
    result = run_ffmpeg(tmp_path, args, host=server.addr)
    assert result.returncode == 0, result.stderr
    hls = read_hls(out / "tv.m3u8")
    # The source's clock starts at 1.4 s; segments are still cut every second of media.
    assert [len(s.video_frames) for s in hls.segments] == [25, 25, 25]
    assert_segments_start_with_keyframes(hls)
    assert {s.size for s in hls.segments} == {(450, 360)}
    assert {s.audio_codec for s in hls.segments} == {"aac"}
    assert summary_frames(server) == 75


def test_live_tv_over_http_with_bob_deinterlace(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    """A Live TV line: the tuner's stream over HTTP with a user agent, yadif doubling the rate,
    an event playlist. The input is opened a second time only to size the scale expression."""
    import functools
    import http.server
    import threading

    make_tv_recording(tmp_path / "tuner.ts")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that closes mid-file (the probe) is expected

    httpd = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    out = tmp_path / "t"
    out.mkdir()
    try:
        args = [
            "-analyzeduration",
            "3000000",
            "-probesize",
            "1G",
            "-user_agent",
            "Mozilla/5.0 (X11)",
            "-fflags",
            "+igndts+genpts",
            "-i",
            f"http://127.0.0.1:{httpd.server_address[1]}/tuner.ts",
            "-map_metadata",
            "-1",
            "-map_chapters",
            "-1",
            "-threads",
            "0",
            "-sn",
            "-codec:v:0",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "23",
            "-force_key_frames:0",
            "expr:gte(t,n_forced*1)",
            "-sc_threshold:v:0",
            "0",
            "-vf",
            JELLYFIN_SCALE.format(w=640, h=360).replace("setparams=", "yadif=1:-1:0,setparams="),
            "-codec:a:0",
            "libfdk_aac",
            "-ac",
            "2",
            "-vbr:a",
            "5",
            "-copyts",
            "-avoid_negative_ts",
            "disabled",
            "-max_muxing_queue_size",
            "2048",
            "-f",
            "hls",
            "-max_delay",
            "5000000",
            "-hls_time",
            "1",
            "-hls_segment_type",
            "mpegts",
            "-start_number",
            "0",
            "-hls_segment_filename",
            str(out / "l%d.ts"),
            "-hls_playlist_type",
            "event",
            "-hls_list_size",
            "0",
            "-y",
            str(out / "l.m3u8"),
        ]
        result = run_ffmpeg(tmp_path, args, host=server.addr)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.returncode == 0, result.stderr
    hls = read_hls(out / "l.m3u8")
    assert [len(s.video_frames) for s in hls.segments] == [50, 50, 50]  # bob: 25i -> 50p
    assert_segments_start_with_keyframes(hls)
    assert {s.size for s in hls.segments} == {(450, 360)}
    assert summary_frames(server) == 150
