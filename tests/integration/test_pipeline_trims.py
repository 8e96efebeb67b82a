"""Trimmed jobs (``-ss``, ``-noaccurate_seek``, ``-t``, ``-to``, ``-frames:v``) as packet
transcodes, and stream copy after ``-ss``: the frames kept and the first timestamps are those
ffmpeg's rules give, computed here from the source's own keyframes.

ffmpeg's rules (checked by hand against Debian's ffmpeg 5.1 on the same kind of source):

* ``-ss`` before ``-i`` seeks to the keyframe at or before; a transcode then starts at the first
  frame at ``-ss`` (accurate, the default) or at that keyframe (``-noaccurate_seek``);
* ``-t`` keeps the frames less than T after the first one kept, and never past T of output
  time (with ``-copyts`` output time is the source's clock); ``-to`` is an end time;
* ``-frames:v N`` keeps N frames;
* stream copy after an input ``-ss`` starts at that keyframe whatever the seek mode.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from media import testsrc_frames
from vtremote.cli.main import main

REMOTE_H264 = "h264_videotoolbox_remote"
RATE = 30
FRAMES = 120
#: Frames made keyframes in the source, deliberately off any round time.
KEY_FRAMES = (0, 37, 90)


@dataclass(frozen=True)
class Source:
    path: Path
    times: list[float]  # presentation times of every frame, in order
    keys: list[float]  # presentation times of the keyframes
    lumas: list[np.ndarray]

    def keyframe_before(self, t: float) -> float:
        return max(k for k in self.keys if k <= t + 1e-9)

    def index_of(self, frame: av.VideoFrame) -> int:
        """The source frame an output frame shows (testsrc2 frames all differ)."""
        y = luma(frame)
        return int(np.argmin([np.abs(y - s).mean() for s in self.lumas]))


def luma(frame: av.VideoFrame) -> np.ndarray:
    plane = frame.reformat(format="gray").to_ndarray()
    return np.asarray(plane, dtype=np.float32)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    path = tmp_path_factory.mktemp("trims") / "src.mkv"
    frames = testsrc_frames(FRAMES, 160, 96, "yuv420p", RATE)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.codec_context.options = {
            "preset": "veryfast",
            "forced-idr": "1",
            "x264-params": "keyint=1000:min-keyint=1000:scenecut=0:bframes=2:log=-1",
        }
        for i, frame in enumerate(frames):
            frame.pict_type = PictureType.I if i in KEY_FRAMES else PictureType.NONE
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)
    with av.open(str(path)) as c:
        pkts = [p for p in c.demux(c.streams.video[0]) if p.size]
        keys = sorted(float(p.pts * p.time_base) for p in pkts if p.is_keyframe)
    with av.open(str(path)) as c:
        decoded = list(c.decode(video=0))
    times = [float(f.pts * f.time_base) for f in decoded]
    return Source(path, times, keys, [luma(f) for f in decoded])


def expected_times(
    src: Source,
    ss: float,
    *,
    accurate: bool = True,
    length: float | None = None,
    frames: int | None = None,
    copyts: bool = False,
) -> list[float]:
    """The source times of the frames ffmpeg keeps for ``-ss ss [-noaccurate_seek] -i ... [-t]``."""
    start = ss if accurate else src.keyframe_before(ss)
    kept = [t for t in src.times if t >= start - 1e-9]
    if length is not None:
        end = min(kept[0] + length, length if copyts else ss + length)
        kept = [t for t in kept if t < end - 1e-9]
    return kept[:frames] if frames is not None else kept


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[dict, str]:
    rc = main([str(a) for a in args] + ["--json", "-v", "info", "-y"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out), err


def run_remote(
    capsys: pytest.CaptureFixture[str],
    server,  # type: ignore[no-untyped-def]
    src: Source,
    before: list[str],
    after: list[str | Path],
) -> tuple[dict, str]:
    """``vtremote BEFORE -i SRC -c:v h264_videotoolbox_remote (on server) AFTER``."""
    return run(
        capsys, *before, "-i", src.path, "-c:v", REMOTE_H264, "-vt_remote_host", server.addr, *after
    )


def decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def video(summary: dict) -> dict:
    return next(s for s in summary["streams"] if s["type"] == "video")


def assert_server_transcoded(server, summary: dict, src: Source) -> None:  # type: ignore[no-untyped-def]
    """The server decoded and encoded (its SUMMARY names a transcode session), and the wire
    carried the source's packets, not pictures."""
    assert video(summary)["strategy"] == "transcode"
    assert summary["remote_sessions"][0]["mode"] == "transcode"
    assert re.search(r"SUMMARY mode=transcode packets_in=[1-9]", server.stderr_text())
    with av.open(str(src.path)) as c:
        source_bytes = sum(p.size for p in c.demux(c.streams.video[0]))
    assert summary["wire_bytes_sent"] < 1.3 * source_bytes + FRAMES * 64


CASES = {
    "accurate -t": (["-ss", "1.5"], ["-t", "1"], {"length": 1.0}),
    "fast -t": (
        ["-ss", "1.5", "-noaccurate_seek"],
        ["-t", "1"],
        {"accurate": False, "length": 1.0},
    ),
    "fast input -t": (
        ["-ss", "1.5", "-noaccurate_seek", "-t", "1"],
        [],
        {"accurate": False, "length": 1.0},
    ),
    "accurate -to": (["-ss", "1.5"], ["-to", "0.8"], {"length": 0.8}),
    "accurate -frames:v": (["-ss", "2"], ["-frames:v", "10"], {"frames": 10}),
    "fast to the end": (["-ss", "2", "-noaccurate_seek"], [], {"accurate": False}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_trimmed_transcode_keeps_ffmpegs_frames(
    server, source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    before, after, rule = CASES[case]
    out = tmp_path / "out.mkv"
    summary, err = run_remote(capsys, server, source, before, ["-b:v", "1M", *after, out])
    want = expected_times(source, float(before[1]), **rule)  # type: ignore[arg-type]
    frames = decoded(out)
    assert len(frames) == len(want), (case, err)
    assert source.times[source.index_of(frames[0])] == pytest.approx(want[0])
    assert source.times[source.index_of(frames[-1])] == pytest.approx(want[-1])
    # Output time 0 is the first frame kept (the muxer moves a keyframe before -ss to 0).
    assert float(frames[0].pts * frames[0].time_base) == pytest.approx(0.0, abs=1e-3)
    assert "raw frames" not in err
    assert_server_transcoded(server, summary, source)


@pytest.mark.parametrize("case", ["fast -t", "fast input -t", "accurate -frames:v"])
def test_raw_frame_fallback_keeps_the_same_frames(
    server, source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    before, after, rule = CASES[case]
    out = tmp_path / "out.mkv"
    summary, err = run_remote(
        capsys, server, source, before, ["-vt_remote_transcode", "0", *after, out]
    )
    assert video(summary)["strategy"] == "frames"
    assert "raw frames to the remote encoder, not packet transcode: -vt_remote_transcode 0" in err
    want = expected_times(source, float(before[1]), **rule)  # type: ignore[arg-type]
    frames = decoded(out)
    assert len(frames) == len(want)
    assert source.times[source.index_of(frames[0])] == pytest.approx(want[0])
    assert source.times[source.index_of(frames[-1])] == pytest.approx(want[-1])


@pytest.mark.parametrize("accurate", [True, False])
def test_copyts_keeps_the_source_clock(
    server, source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str], accurate: bool
) -> None:
    out = tmp_path / "out.mkv"
    seek = ["-ss", "1.5"] + ([] if accurate else ["-noaccurate_seek"])
    summary, _ = run_remote(capsys, server, source, seek, ["-copyts", "-t", "3", out])
    want = expected_times(source, 1.5, accurate=accurate, length=3.0, copyts=True)
    frames = decoded(out)
    assert len(frames) == len(want)
    assert float(frames[0].pts * frames[0].time_base) == pytest.approx(want[0], abs=1e-3)
    assert source.times[source.index_of(frames[0])] == pytest.approx(want[0])
    assert_server_transcoded(server, summary, source)


@pytest.mark.parametrize("mode", [[], ["-noaccurate_seek"]])
def test_copy_after_seek_starts_at_the_keyframe_before(
    source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: list[str]
) -> None:
    out = tmp_path / "copy.mkv"
    run(capsys, "-ss", "2", *mode, "-i", source.path, "-c:v", "copy", "-t", "1.5", out)
    key = source.keyframe_before(2.0)
    with av.open(str(source.path)) as c:
        src_pkts = [p for p in c.demux(c.streams.video[0]) if p.size]
    # ffmpeg copies from the keyframe and stops at the first packet decoded 1.5 s after -ss.
    first = next(i for i, p in enumerate(src_pkts) if float(p.pts * p.time_base) == key)
    end = next(
        i for i, p in enumerate(src_pkts) if i > first and float(p.dts * p.time_base) >= 3.5 - 1e-9
    )
    with av.open(str(out)) as c:
        pkts = [p for p in c.demux(c.streams.video[0]) if p.size]
    assert len(pkts) == end - first
    assert pkts[0].is_keyframe
    assert [bytes(p) for p in pkts] == [bytes(p) for p in src_pkts[first:end]]
    frames = decoded(out)
    assert source.times[source.index_of(frames[0])] == pytest.approx(key)


def test_hls_after_a_seek_is_a_packet_transcode(
    server, source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a media server asks after a seek: HLS from -ss with -noaccurate_seek."""
    out = tmp_path / "hls"
    out.mkdir()
    hls = ["-f", "hls", "-hls_time", "1", "-hls_segment_filename", out / "s%d.ts"]
    summary, err = run_remote(
        capsys, server, source, ["-ss", "1.5", "-noaccurate_seek"], [*hls, out / "index.m3u8"]
    )
    assert video(summary)["strategy"] == "transcode", err
    want = expected_times(source, 1.5, accurate=False)
    segments = re.findall(r"^(s\d+\.ts)$", (out / "index.m3u8").read_text(), re.M)
    assert len(segments) >= 2
    shown: list[av.VideoFrame] = []
    for name in segments:
        with av.open(str(out / name)) as c:
            pkts = [p for p in c.demux(c.streams.video[0]) if p.size]
            assert pkts[0].is_keyframe, name
        shown += decoded(out / name)
    assert len(shown) == len(want)
    assert source.times[source.index_of(shown[0])] == pytest.approx(want[0])
    assert_server_transcoded(server, summary, source)


def test_vtremote_ffmpeg_seek_line_is_a_packet_transcode(
    server, source: Source, tmp_path: Path
) -> None:
    """A media server's seek (Jellyfin's line: -ss -noaccurate_seek, -copyts, HLS) through
    vtremote-ffmpeg: packets to the server, video from the keyframe at or before the seek on
    the source's clock, as ffmpeg writes it."""
    from mediaserver_helpers import read_hls, run_ffmpeg

    out = tmp_path / "hls"
    out.mkdir()
    args = [
        *("-ss", "00:00:02.000", "-noaccurate_seek", "-f", "matroska,webm"),
        *("-i", f"file:{source.path}", "-map", "0:0", "-codec:v:0", "libx264"),
        *("-preset", "veryfast", "-crf", "23", "-force_key_frames:0", "expr:gte(t,2+n_forced*1)"),
        *("-copyts", "-avoid_negative_ts", "disabled", "-f", "hls", "-hls_time", "1"),
        *("-hls_segment_type", "mpegts", "-start_number", "2"),
        *("-hls_segment_filename", str(out / "s%d.ts"), "-y", str(out / "main.m3u8")),
    ]
    result = run_ffmpeg(tmp_path, args, host=server.addr)
    assert result.returncode == 0, result.stderr
    hls = read_hls(out / "main.m3u8")
    want = expected_times(source, 2.0, accurate=False)
    assert hls.video_frames == len(want)
    assert all(s.first_video_packet_key for s in hls.segments)
    # -copyts: segment times keep the source's clock wherever the mpegts muxer puts its origin.
    # Keyframes are forced at 2, 3, 4... s; the first segment ends at the first of them at
    # least -hls_time after its start, the keyframe before the seek.
    cut = min(k for k in range(2, 5) if k - want[0] >= 1.0 - 1e-9)
    starts = [s.video_frames[0][0] for s in hls.segments]
    assert starts[1] - starts[0] == pytest.approx(cut - want[0], abs=1e-3)
    m = server.wait_for_log(r"SUMMARY mode=transcode packets_in=\d+ packets_out=(\d+)")
    assert int(m.group(1)) == len(want)
    assert "raw frames" not in result.stderr


@pytest.mark.parametrize(
    ("codec", "message"),
    [
        # Packet transcode and copy set their streams up from the input: nothing is written.
        (REMOTE_H264, "no packet was written: nothing was kept (check -ss / -t / -map)"),
        ("copy", None),
        # A local encoder is set up by its first frame, which never comes.
        ("libx264", "received no frames: nothing was encoded (check -ss / -t / -map)"),
    ],
)
def test_a_seek_past_the_end_says_nothing_was_kept(
    server,
    source: Source,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    codec: str,
    message: str | None,
) -> None:
    out = tmp_path / "past.mkv"
    rc = main(
        ["-ss", "100", "-i", str(source.path), "-c:v", codec, "-vt_remote_host", server.addr]
        + ["-y", str(out)]
    )
    err = capsys.readouterr().err
    if message is None:
        # ffmpeg's stream copy: the seek lands on the last keyframe, copied from there.
        assert rc == 0, err
        frames = decoded(out)
        assert source.times[source.index_of(frames[0])] == pytest.approx(source.keys[-1])
        return
    assert rc == 1 and message in err
    assert not out.exists() and not list(tmp_path.glob(".past*"))


def test_audio_starts_with_the_keyframe_after_a_fast_seek(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-noaccurate_seek keeps the audio the seek landed on too (ffmpeg trims neither), so the
    re-encoded audio starts with the video's keyframe, half a second before -ss here."""
    from mediaserver_helpers import make_movie

    movie = make_movie(tmp_path / "m.mkv", seconds=3.0, gop=30)  # keyframes every second
    out = tmp_path / "av.mkv"
    summary, err = run(
        capsys,
        *("-ss", "1.5", "-noaccurate_seek", "-i", movie, "-map", "0:0", "-map", "0:1"),
        *("-c:v", REMOTE_H264, "-vt_remote_host", server.addr, "-c:a", "aac", "-t", "1", out),
    )
    assert video(summary)["strategy"] == "transcode", err
    with av.open(str(out)) as c:
        video_start = next(iter(c.decode(video=0))).time
    with av.open(str(out)) as c:
        audio = list(c.decode(audio=0))
    # Both start at the keyframe (1 s), not the audio at -ss (0.5 s after the video).
    assert audio[0].time == pytest.approx(video_start, abs=0.1)
    assert sum(f.samples for f in audio) / 48000 == pytest.approx(1.0, abs=0.05)
