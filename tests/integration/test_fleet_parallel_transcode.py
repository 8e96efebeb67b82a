"""``-vt_remote_parallel N`` on packets: source segments transcoded on several servers at once,
joined into one stream (a file, an HLS set), checked against one server's run."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import av
import pytest

from decoding import strict_file_frames
from media import testsrc_frames
from mediaserver_helpers import RATE, make_movie, read_hls
from vtremote.cli.main import main
from vtremote.testing.servers import ServerProcess

W, H = 160, 90
SECONDS = 4.0
GOP = RATE  # a source keyframe every second
REMOTE_H264 = "h264_videotoolbox_remote"


def transcode(
    capsys: pytest.CaptureFixture[str], src: Path, out: Path, hosts: str, *extra: str
) -> tuple[dict, str]:
    """The job's --json summary and its log."""
    summary, err = run_cli(
        capsys,
        [
            "-i",
            str(src),
            "-map",
            "0:v",
            "-c:v",
            REMOTE_H264,
            "-vt_remote_host",
            hosts,
            "-vt_remote_timeout_ms",
            "5000",
            "-vf",
            "scale=128:72",
            "-b:v",
            "200k",
            "-bf",
            "2",
            *extra,
            str(out),
        ],
    )
    # Servers of one engine and settings send one set of parameter sets: none goes in-band.
    assert "other parameter sets" not in err
    return summary, err


def run_cli(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[dict, str]:
    rc = main([*args, "--json", "-v", "info"])
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(stdout), err


def segments_of(server: ServerProcess) -> list[int]:
    """Output packet counts of the transcode sessions this server finished (its SUMMARY lines)."""
    return [
        int(n)
        for n in re.findall(
            r"SUMMARY mode=transcode packets_in=\d+ packets_out=(\d+)", server.stderr_text()
        )
    ]


def wait_summaries(servers: list[ServerProcess], total: int) -> dict[str, list[int]]:
    """Each server's SUMMARY counts, once their sum is ``total`` output packets (a server logs
    its SUMMARY just after the session's DONE has gone out)."""
    deadline = time.monotonic() + 30
    while True:
        by = {s.addr: segments_of(s) for s in servers}
        if sum(sum(v) for v in by.values()) == total or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sum(sum(v) for v in by.values()) == total, by
    return by


def hls_options(folder: Path, seconds: int) -> list[str]:
    """A VOD playlist with every segment listed, segments ``sN.ts`` in ``folder``."""
    return [
        "-f",
        "hls",
        "-hls_time",
        str(seconds),
        "-hls_playlist_type",
        "vod",
        "-hls_list_size",
        "0",
        "-hls_segment_filename",
        str(folder / "s%d.ts"),
    ]


@pytest.fixture
def movie(tmp_path: Path) -> Path:
    return make_movie(tmp_path / "m.mkv", SECONDS, W, H, gop=GOP)


def throttled(start_server, n: int) -> list[ServerProcess]:  # type: ignore[no-untyped-def]
    # Slow servers of one session each: every segment waits for its server, so the
    # segments in flight at once are spread over all of them.
    return [
        start_server("--engine", "x264", "--max-sessions", "1", "--throttle-fps", "60")
        for _ in range(n)
    ]


def test_parallel_packets_match_one_server(
    start_server, movie: Path, tmp_path: Path, capsys
) -> None:
    servers = throttled(start_server, 3)
    one, many = tmp_path / "one.mp4", tmp_path / "many.mp4"
    keyed = ("-g", str(GOP), "-force_key_frames", "expr:gte(t,n_forced*1)")
    transcode(capsys, movie, one, servers[0].addr, *keyed)
    hosts = ",".join(s.addr for s in servers)
    summary, _ = transcode(capsys, movie, many, hosts, "-vt_remote_parallel", "3", *keyed)
    video = next(s for s in summary["streams"] if s["type"] == "video")
    assert video["strategy"] == "parallel transcode"
    frames = round(SECONDS * RATE)
    p1, f1 = strict_file_frames(one)
    p2, f2 = strict_file_frames(many)
    assert len(f2) == len(f1) == frames
    assert [f.pts for f in f2] == [f.pts for f in f1]
    assert sorted(p.pts for p in p2) == sorted(p.pts for p in p1)
    dts = [p.dts for p in p2]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False))
    assert all(p.dts <= p.pts for p in p2)
    keys = sorted(round(float(p.pts * p.time_base) * RATE) for p in p2 if p.is_keyframe)
    # Segments start at the source's keyframes (one a second), each with an IDR, as the
    # single session puts them.
    assert keys == [i * GOP for i in range(int(SECONDS))]
    assert keys == sorted(round(float(p.pts * p.time_base) * RATE) for p in p1 if p.is_keyframe)
    by = wait_summaries(servers, frames + frames)  # the single run's session counts too
    assert all(by[s.addr] for s in servers), by  # every server took part
    report = video["segments_by_server"]
    assert set(report) == {s.addr for s in servers} and sum(report.values()) == video["segments"]
    assert video["segments"] == int(SECONDS)


def test_parallel_hls_writes_each_segment_once_in_order(
    start_server, movie: Path, tmp_path: Path, capsys
) -> None:
    servers = throttled(start_server, 2)
    out = tmp_path / "hls"
    out.mkdir()
    summary, _ = transcode(
        capsys,
        movie,
        out / "s.m3u8",
        ",".join(s.addr for s in servers),
        "-vt_remote_parallel",
        "2",
        *hls_options(out, 1),
    )
    hls = read_hls(out / "s.m3u8")
    names = [s.name for s in hls.segments]
    assert names == [f"s{i}.ts" for i in range(len(names))]  # each once, in order
    assert sorted(p.name for p in out.iterdir() if p.name != "s.m3u8") == sorted(names)
    assert len(names) == int(SECONDS)
    assert all(s.first_video_packet_key for s in hls.segments)  # keyframes at segment starts
    times = [t for s in hls.segments for t, _ in s.video_frames]
    assert len(times) == round(SECONDS * RATE)
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    by = wait_summaries(servers, round(SECONDS * RATE))
    assert all(by[s.addr] for s in servers), by
    video = next(s for s in summary["streams"] if s["type"] == "video")
    assert video["strategy"] == "parallel transcode" and video["segments"] == int(SECONDS)


def test_uncompressed_input_keeps_segments_of_frames(start_server, tmp_path: Path, capsys) -> None:
    srv = start_server("--engine", "x264")
    out = tmp_path / "o.mp4"
    summary, err = run_cli(
        capsys,
        [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={W}x{H}:rate={RATE}",
            "-frames:v",
            "60",
            "-c:v",
            REMOTE_H264,
            "-vt_remote_host",
            srv.addr,
            "-vt_remote_parallel",
            "2",
            str(out),
        ],
    )
    video = next(s for s in summary["streams"] if s["type"] == "video")
    assert video["strategy"] != "parallel transcode"
    # The first reason: the trim; lavfi pictures would be the next one.
    assert "segments of raw frames, not of packets: -ss, -t, -to and -frames:v are not cut" in err
    assert len(strict_file_frames(out)[1]) == 60


def test_segment_of_a_dead_server_is_transcoded_again(
    start_server, movie: Path, tmp_path: Path, capsys
) -> None:
    dying = start_server("--engine", "x264", "--max-sessions", "1", "--die-after-frames", "20")
    healthy = start_server("--engine", "x264", "--max-sessions", "1", "--throttle-fps", "60")
    out = tmp_path / "out.mp4"
    summary, _ = transcode(
        capsys,
        movie,
        out,
        f"{dying.addr},{healthy.addr}",
        "-vt_remote_parallel",
        "2",
        "-g",
        str(GOP),
        "-force_key_frames",
        "expr:gte(t,n_forced*1)",
    )
    assert dying.wait(10) == -9
    video = next(s for s in summary["streams"] if s["type"] == "video")
    assert summary["failovers"] >= 1
    assert video["segments_by_server"] == {healthy.addr: int(SECONDS)}
    packets, frames = strict_file_frames(out)
    assert len(frames) == round(SECONDS * RATE)
    assert [round(float(f.pts * f.time_base) * RATE) for f in frames] == list(range(len(frames)))
    keys = sorted(round(float(p.pts * p.time_base) * RATE) for p in packets if p.is_keyframe)
    assert keys == [i * GOP for i in range(int(SECONDS))]


def open_gop_movie(path: Path) -> Path:
    """H.264 with x264's open GOPs: some keyframes are followed (in decode order) by B-frames
    shown before them, which reference the GOP before."""
    frames = testsrc_frames(round(SECONDS * RATE), W, H, "yuv420p", RATE)
    with av.open(str(path), "w", format="matroska") as out:
        video = out.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.codec_context.options = {
            "preset": "veryfast",
            "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=2:open-gop=1:log=-1",
        }
        for frame in frames:
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    with av.open(str(path)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
    leading = [
        p.pts for i, p in enumerate(packets[:-1]) if p.is_keyframe and packets[i + 1].pts < p.pts
    ]
    assert leading, "x264 made no open GOP"
    return path


def test_open_gop_keyframes_are_not_cut(start_server, tmp_path: Path, capsys) -> None:
    src = open_gop_movie(tmp_path / "og.mkv")
    servers = throttled(start_server, 2)
    one, many = tmp_path / "one.mp4", tmp_path / "many.mp4"
    keyed = ("-force_key_frames", "expr:gte(t,n_forced*1)")
    transcode(capsys, src, one, servers[0].addr, *keyed)
    hosts = ",".join(s.addr for s in servers)
    summary, err = transcode(capsys, src, many, hosts, "-vt_remote_parallel", "2", *keyed)
    assert "the source has open GOPs: segments are not cut at them" in err
    video = next(s for s in summary["streams"] if s["type"] == "video")
    assert 2 <= video["segments"] < int(SECONDS)  # split, but not at the open GOP
    _, f1 = strict_file_frames(one)
    _, f2 = strict_file_frames(many)
    assert len(f2) == len(f1) == round(SECONDS * RATE)
    assert [f.pts for f in f2] == [f.pts for f in f1]


def test_parallel_hls_keeps_audio_in_its_segments(start_server, tmp_path: Path, capsys) -> None:
    # Segments of 4 s and 2 x 2 of them read ahead: the audio is read up to 16 s before the
    # video it goes with is muxed, beyond FFmpeg's default interleaving delay of 10 s.
    src = make_movie(tmp_path / "long.mkv", 24.0, W, H, gop=4 * RATE)
    servers = [start_server("--engine", "x264", "--max-sessions", "1") for _ in range(2)]
    out = tmp_path / "hls"
    out.mkdir()
    run_cli(
        capsys,
        [
            "-i",
            str(src),
            "-map",
            "0:v",
            "-map",
            "0:a",
            "-c:v",
            REMOTE_H264,
            "-vt_remote_host",
            ",".join(s.addr for s in servers),
            "-vt_remote_parallel",
            "2",
            "-c:a",
            "copy",
            *hls_options(out, 4),
            str(out / "s.m3u8"),
        ],
    )
    hls = read_hls(out / "s.m3u8")
    assert len(hls.segments) == 6
    for seg in hls.segments:
        assert seg.video_frames and seg.first_video_packet_key
        audio = seg.audio_samples / seg.audio_rate
        assert audio == pytest.approx(seg.duration, abs=0.1), seg.name  # its own audio
