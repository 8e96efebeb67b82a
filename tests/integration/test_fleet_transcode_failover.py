"""FailoverTranscoder against real vtremoted processes that really die (SIGKILL) mid-stream.

A packet transcode (source PACKETs out, output PACKETs back) on a pool whose first server kills
itself at a chosen source packet (``--die-after-frames N``) must give the output of an
undisturbed run: the same number of frames, the same pts, dts strictly increasing, decodable
strictly, each frame its own source picture, and packets on the wire (the surviving server's
SUMMARY says ``mode=transcode``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from decoding import decode_stream
from media import decode_video, make_h264_mp4, plane_arrays
from transcode_media import check_timestamps, run_transcode, source_frames
from vtremote.cli.main import main
from vtremote.client import failover_transcoder
from vtremote.client.failover_transcoder import FailoverTranscoder
from vtremote.client.pool import Pool, PoolMember
from vtremote.errors import BadRequestError, NoServerError

N, W, H = 75, 192, 108
SETTINGS: dict[str, Any] = {
    "codec": "h264",
    "filters": "scale=-2:72",
    "bitrate": 300_000,
    "gop": 20,
    "inflight": 8,
    "timeout": 5.0,
}


#: The server's SUMMARY of two transcode sessions (the undisturbed run's and the failover's).
TWO_TRANSCODES = r"(?s)SUMMARY mode=transcode.*SUMMARY mode=transcode"


def pool_of(*servers: Any) -> Pool:
    return Pool("test", tuple(PoolMember(s.addr) for s in servers))


def run_failover(
    pool: Pool, src: Path, **kw: Any
) -> tuple[FailoverTranscoder, list[av.Packet], int]:
    out: list[av.Packet] = []
    source_bytes = 0
    with av.open(str(src)) as c:
        stream = c.streams.video[0]
        with FailoverTranscoder.from_stream(pool, stream, **(SETTINGS | kw)) as tc:
            for pkt in c.demux(stream):
                source_bytes += pkt.size
                out += tc.transcode(pkt)
            out += tc.flush()
    return tc, out, source_bytes


def luma(frame: av.VideoFrame) -> np.ndarray:
    return plane_arrays(frame.reformat(format="nv12"))[0].astype(np.int16)


def check_like_undisturbed(
    tc: FailoverTranscoder, out: list[av.Packet], reference: list[av.Packet], codec: str = "h264"
) -> None:
    assert len(out) == len(reference) == N  # none lost, none twice
    assert sorted(p.pts for p in out) == sorted(p.pts for p in reference)
    check_timestamps(out)
    assert out[0].is_keyframe
    decoded = decode_stream(codec, tc.extradata, out, strict=True)
    expected = decode_stream(codec, tc.extradata, reference, strict=True)
    assert [f.pts for f in decoded] == [f.pts for f in expected]
    errors = [
        float(np.abs(luma(a) - luma(b)).mean()) for a, b in zip(decoded, expected, strict=True)
    ]
    assert max(errors) < 10, errors  # each frame is its own picture, not a neighbour's


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_h264_mp4(tmp_path / "in.mp4", N, W, H, bframes=2, gop=15)


@pytest.mark.parametrize(
    ("die_after", "b_frames"),
    [(4, 0), (38, 0), (38, 2)],
    ids=["first-gop", "mid-stream", "mid-stream-b-frames"],
)
def test_transcode_moves_to_the_next_server(
    start_server, source: Path, die_after: int, b_frames: int, caplog
) -> None:
    settings = SETTINGS | {"max_b_frames": b_frames}
    steady = start_server("--engine", "x264")
    _ref_tc, _sent, reference = run_transcode(steady.addr, source, **settings)
    reordered = [p.pts for p in reference] != sorted(p.pts for p in reference)
    assert reordered == bool(b_frames)  # the output really has B-frames when asked
    dying = start_server("--engine", "x264", "--die-after-frames", str(die_after))
    with caplog.at_level(logging.WARNING):
        tc, out, _ = run_failover(pool_of(dying, steady), source, max_b_frames=b_frames)
    assert dying.wait(30) == -9  # it really died, by SIGKILL
    check_like_undisturbed(tc, out, reference)
    assert tc.failovers == 1 and tc.servers == [dying.addr, steady.addr]
    assert not tc.fell_back
    assert "transcode session with" in caplog.text
    assert tc.stats.bytes_sent > 0
    steady.wait_for_log(TWO_TRANSCODES)  # the reference run's session and the failover's


@pytest.mark.parametrize(("codec", "local"), [("h264", "libx264"), ("hevc", "libx265")])
def test_transcode_falls_back_to_this_machine(
    start_server, source: Path, codec: str, local: str
) -> None:
    settings = SETTINGS | {"codec": codec}
    steady = start_server("--engine", "x264")
    _ref_tc, _sent, reference = run_transcode(steady.addr, source, **settings)
    dying = start_server("--engine", "x264", "--die-after-frames", "41")
    tc, out, _ = run_failover(pool_of(dying), source, fallback="local", codec=codec)
    assert dying.wait(30) == -9
    # parameter sets of this machine that differ from the server's go in-band at the seam
    check_like_undisturbed(tc, out, reference, codec)
    assert tc.failovers == 1 and tc.fell_back
    assert tc.servers == [dying.addr, f"local {local}"]


def test_transcode_survives_a_death_in_the_replay(start_server, source: Path) -> None:
    steady = start_server("--engine", "x264")
    _ref_tc, _sent, reference = run_transcode(steady.addr, source, **SETTINGS)
    first = start_server("--engine", "x264", "--die-after-frames", "50")
    second = start_server("--engine", "x264", "--die-after-frames", "3")
    tc, out, _ = run_failover(pool_of(first, second, steady), source)
    assert first.wait(30) == -9 and second.wait(30) == -9
    check_like_undisturbed(tc, out, reference)
    assert tc.failovers == 2 and tc.servers == [first.addr, second.addr, steady.addr]


def test_source_kept_is_a_gop_plus_the_window(start_server, source: Path) -> None:
    steady = start_server("--engine", "x264")
    most = 0
    with av.open(str(source)) as c:
        stream = c.streams.video[0]
        with FailoverTranscoder.from_stream(pool_of(steady), stream, **SETTINGS) as tc:
            for pkt in c.demux(stream):
                tc.transcode(pkt)
                most = max(most, tc.in_flight)
            tc.flush()
    frames, _ = source_frames(source)
    assert len(frames) == N
    # source GOP 15, window 8, encoder and decoder delays: well under the whole stream
    assert most < 15 + 8 + 30 < N


@pytest.mark.parametrize("to", ["pool", "local"])
def test_cli_packet_transcode_fails_over(
    start_server, source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], to: str
) -> None:
    """``vtremote`` keeps packet transcode on a pool (or with a local fallback) and the file is
    whole after its server dies."""
    steady = start_server("--engine", "x264")
    dying = start_server("--engine", "x264", "--die-after-frames", "33")
    out = tmp_path / "out.mkv"
    host = f"{dying.addr},{steady.addr}" if to == "pool" else dying.addr
    args = ["-i", source, "-c:v", "h264_videotoolbox_remote", "-vt_remote_host", host]
    args += ["-vf", "scale=-2:72", "-b:v", "300k", "-g", "20"]
    if to == "local":
        args += ["-vt_remote_fallback", "local"]
    rc = main([str(a) for a in [*args, "-y", out, "--json"]])
    printed, err = capsys.readouterr()
    assert rc == 0, err
    summary = json.loads(printed)
    assert dying.wait(30) == -9
    video = next(s for s in summary["streams"] if s["type"] == "video")
    assert video["strategy"] == "transcode"  # packets, not raw frames
    session = summary["remote_sessions"][0]
    assert summary["failovers"] == 1 and session["failovers"] == 1
    if to == "pool":
        steady.wait_for_log("SUMMARY mode=transcode")  # packets on the wire, not raw frames
    else:
        assert summary["fallbacks"] == 1 and session["servers"] == [dying.addr, "local libx264"]
    with av.open(str(out)) as c:
        pkts = [p for p in c.demux(c.streams.video[0]) if p.size]
    frames, info = source_frames(source)
    assert len(pkts) == N
    assert sorted(float(p.pts * p.time_base) for p in pkts) == pytest.approx(
        [float(f.pts * info.time_base) for f in frames], abs=0.002
    )
    dts = [p.dts for p in pkts]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False))
    assert len(decode_video(out)) == N


def test_transcode_moves_off_a_stalled_server(start_server, source: Path) -> None:
    """SIGSTOP: the server keeps its connection but answers nothing; the timeout moves the
    session, and the output is still the undisturbed run's."""
    steady = start_server("--engine", "x264")
    _ref_tc, _sent, reference = run_transcode(steady.addr, source, **SETTINGS)
    stalled = start_server("--engine", "x264")
    out: list[av.Packet] = []
    try:
        with av.open(str(source)) as c:
            stream = c.streams.video[0]
            pool = pool_of(stalled, steady)
            with FailoverTranscoder.from_stream(
                pool, stream, **(SETTINGS | {"timeout": 1.0})
            ) as tc:
                for i, pkt in enumerate(c.demux(stream)):
                    out += tc.transcode(pkt)
                    if i == 29:
                        os.kill(stalled.proc.pid, signal.SIGSTOP)
                out += tc.flush()
    finally:
        os.kill(stalled.proc.pid, signal.SIGCONT)
    assert tc.failovers == 1 and "no reply" in tc.switches[0].reason
    assert tc.servers == [stalled.addr, steady.addr]
    check_like_undisturbed(tc, out, reference)


def test_a_gop_longer_than_what_is_kept_ends_the_job_clearly(
    start_server, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the packets kept for a resume (here 10, the source GOP is 15), a server failing
    before the next source keyframe cannot be resumed without a gap: the job stops, saying so."""
    monkeypatch.setattr(failover_transcoder, "MAX_KEPT_PACKETS", 10)
    steady = start_server("--engine", "x264")
    dying = start_server("--engine", "x264", "--die-after-frames", "13")
    with pytest.raises(NoServerError, match="no resume point"):
        run_failover(pool_of(dying, steady), source)
    assert dying.wait(30) == -9


def test_a_corrupt_source_packet_is_not_failed_over(start_server, source: Path) -> None:
    """ERROR 4 for a packet the decoder rejects is the source's fault: every server would say
    the same, so the job stops with it at once (host named) instead of trying them all."""
    first = start_server("--engine", "x264")
    second = start_server("--engine", "x264")
    with av.open(str(source)) as c:
        stream = c.streams.video[0]
        packets = [p for p in c.demux(stream) if p.size]
        tc = FailoverTranscoder.from_stream(pool_of(first, second), stream, **SETTINGS)
        with pytest.raises(BadRequestError) as info:
            for pkt in packets[:5]:
                tc.transcode(pkt)
            # a NAL length prefix that runs far past the packet (avcC framing)
            bad = av.Packet(b"\x7f\xff\xff\xff\x65\x88\x84\x00" * 4)
            bad.pts = bad.dts = packets[5].pts
            tc.transcode(bad)
            tc.flush()
        tc.close()
    assert info.value.wire_code == 4 and "is not valid h264" in str(info.value)
    assert tc.failovers == 0 and tc.servers == [first.addr]
    assert "SUMMARY" not in second.stderr_text()  # the second server never got the job
