"""FailoverEncoder / FailoverDecoder against real vtremoted processes that really die (SIGKILL).

The servers kill themselves with the test-only ``--die-after-frames N`` /
``--die-at-flush`` flags (vtremote/testing/faults.py), so the moment of death is exact:
at the first frame, mid-GOP, during FLUSH. The output must then have exactly
one packet per frame, the frames' pts, increasing dts, a keyframe at the
start, and decode strictly (errors raise) to the same number of frames, each
close to its source picture.
"""

from __future__ import annotations

import logging
import os
import signal
from fractions import Fraction

import av
import numpy as np
import pytest

from decoding import decode_stream
from media import make_h264_mp4, plane_arrays, testsrc_frames
from vtremote.client.failover import FailoverEncoder
from vtremote.client.failover_decoder import FailoverDecoder
from vtremote.client.pool import Pool, PoolMember
from vtremote.errors import NoServerError

W, H, N = 160, 96, 30
GOP = 10


def luma_error(a: av.VideoFrame, b: av.VideoFrame) -> float:
    ya = plane_arrays(a.reformat(format="nv12"))[0].astype(np.int16)
    yb = plane_arrays(b.reformat(format="nv12"))[0].astype(np.int16)
    return float(np.abs(ya - yb).mean())


def pool_of(*servers: object) -> Pool:
    return Pool("test", tuple(PoolMember(s.addr) for s in servers))  # type: ignore[attr-defined]


def run_encode(
    pool: Pool, frames: list[av.VideoFrame], **kw: object
) -> tuple[FailoverEncoder, list[av.Packet]]:
    packets: list[av.Packet] = []
    enc = FailoverEncoder(
        pool,
        "h264",
        width=W,
        height=H,
        time_base=Fraction(1, 30),
        framerate=30,
        bitrate=300_000,
        gop=GOP,
        inflight=16,
        timeout=3.0,
        **kw,
    )  # type: ignore[arg-type]
    with enc:
        for f in frames:
            packets += enc.encode(f)
        packets += enc.flush()
    return enc, packets


def check_failover_output(
    enc: FailoverEncoder, packets: list[av.Packet], frames: list[av.VideoFrame]
) -> None:
    assert len(packets) == len(frames)  # one packet per frame: none lost, none twice
    assert sorted(p.pts for p in packets) == [f.pts for f in frames]
    dts = [p.dts for p in packets]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False)), dts
    assert all(p.dts <= p.pts for p in packets)
    assert packets[0].is_keyframe
    decoded = decode_stream("h264", enc.extradata, packets, strict=True)
    assert [f.pts for f in decoded] == [f.pts for f in frames] or len(decoded) == len(frames)
    assert len(decoded) == len(frames)
    errors = [luma_error(d, s) for d, s in zip(decoded, frames, strict=True)]
    assert max(errors) < 12, errors  # each output frame is its own source frame, not a neighbour


@pytest.mark.parametrize("die_after", [0, 14], ids=["first-frame", "mid-gop"])
def test_encoder_fails_over_without_losing_a_frame(start_server, die_after: int, caplog) -> None:
    dying = start_server("--engine", "x264", "--die-after-frames", str(die_after))
    healthy = start_server("--engine", "x264")
    frames = testsrc_frames(N, W, H, "nv12")
    with caplog.at_level(logging.WARNING, logger="vtremote.client.failover"):
        enc, packets = run_encode(pool_of(dying, healthy), frames)
    assert dying.wait(10) == -9  # it really died, by SIGKILL
    assert enc.failovers == 1 and enc.servers == [dying.addr, healthy.addr]
    assert enc.switches[0].failed == dying.addr and enc.switches[0].to == healthy.addr
    check_failover_output(enc, packets, frames)
    # the seam is an IDR at the first frame whose packet had not come back
    seam = enc.switches[0].at_pts
    assert seam is not None and seam <= die_after
    assert next(p for p in packets if p.pts == seam).is_keyframe
    logged = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(logged) == 1 and dying.addr in logged[0].getMessage()


def test_encoder_fails_over_during_flush(start_server) -> None:
    dying = start_server("--engine", "x264", "--die-at-flush")
    healthy = start_server("--engine", "x264")
    frames = testsrc_frames(N, W, H, "nv12")
    enc, packets = run_encode(pool_of(dying, healthy), frames)
    assert dying.wait(10) == -9
    assert enc.failovers == 1
    check_failover_output(enc, packets, frames)


def test_encoder_survives_two_deaths(start_server) -> None:
    first = start_server("--engine", "x264", "--die-after-frames", "5")
    second = start_server("--engine", "x264", "--die-after-frames", "7")
    third = start_server("--engine", "x264")
    frames = testsrc_frames(N, W, H, "nv12")
    enc, packets = run_encode(pool_of(first, second, third), frames)
    assert first.wait(10) == -9 and second.wait(10) == -9
    assert enc.failovers == 2 and enc.servers == [first.addr, second.addr, third.addr]
    check_failover_output(enc, packets, frames)


def test_encoder_falls_back_to_local_when_every_server_dies(start_server) -> None:
    dying = start_server("--engine", "x264", "--die-after-frames", "9")
    frames = testsrc_frames(N, W, H, "nv12")
    enc, packets = run_encode(pool_of(dying), frames, fallback="local")
    assert dying.wait(10) == -9
    assert enc.fell_back and enc.servers == [dying.addr, "local libx264"]
    check_failover_output(enc, packets, frames)


def test_encoder_without_fallback_names_every_host(start_server) -> None:
    dying = start_server("--engine", "x264", "--die-after-frames", "4")
    frames = testsrc_frames(N, W, H, "nv12")
    with pytest.raises(NoServerError) as err:
        run_encode(pool_of(dying), frames)
    assert dying.wait(10) == -9
    # How the death shows depends on what the client was doing when it came: a clean EOF
    # while reading, or a reset while sending.
    text = str(err.value)
    assert f"{dying.addr}: failed earlier in this session (" in text
    assert any(
        how in text
        for how in (f"{dying.addr} closed the connection", f"connection to {dying.addr} lost")
    ), text


@pytest.mark.parametrize("die_after", [0, 13, "flush"], ids=["first-packet", "mid-gop", "flush"])
def test_decoder_resumes_from_the_last_keyframe(
    start_server, tmp_path, die_after: int | str
) -> None:
    src = tmp_path / "in.mp4"
    make_h264_mp4(src, N, W, H, gop=GOP)
    args = ["--die-at-flush"] if die_after == "flush" else ["--die-after-frames", str(die_after)]
    dying = start_server("--engine", "x264", *args)
    healthy = start_server("--engine", "x264")
    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        reference = [f for f in container.decode(stream)]
    out: list[av.VideoFrame] = []
    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        with FailoverDecoder.from_stream(
            pool_of(dying, healthy), stream, inflight=4, timeout=3.0
        ) as dec:
            for pkt in container.demux(stream):
                out += dec.decode(pkt) if pkt.size else []
            out += dec.flush()
    assert dying.wait(10) == -9
    assert dec.failovers == 1
    assert [f.pts for f in out] == [f.pts for f in reference]  # every frame once, in order
    errors = [luma_error(a, b) for a, b in zip(out, reference, strict=True)]
    assert max(errors) < 2, errors


def test_encoder_moves_off_a_stalled_server(start_server) -> None:
    """SIGSTOP: the server keeps its connection but answers nothing; the timeout moves the
    session."""
    stalled = start_server("--engine", "x264")
    healthy = start_server("--engine", "x264")
    frames = testsrc_frames(N, W, H, "nv12")
    packets: list[av.Packet] = []
    enc = FailoverEncoder(
        pool_of(stalled, healthy),
        "h264",
        width=W,
        height=H,
        time_base=Fraction(1, 30),
        framerate=30,
        bitrate=300_000,
        gop=GOP,
        inflight=16,
        timeout=1.0,
    )
    try:
        with enc:
            for i, f in enumerate(frames):
                packets += enc.encode(f)
                if i == 11:
                    os.kill(stalled.proc.pid, signal.SIGSTOP)
            packets += enc.flush()
    finally:
        os.kill(stalled.proc.pid, signal.SIGCONT)
    assert enc.failovers == 1 and "no reply" in enc.switches[0].reason
    assert enc.servers == [stalled.addr, healthy.addr]
    check_failover_output(enc, packets, frames)


def test_decoder_moves_off_a_stalled_server(start_server, tmp_path) -> None:
    src = tmp_path / "in.mp4"
    make_h264_mp4(src, N, W, H, gop=GOP)
    stalled = start_server("--engine", "x264")
    healthy = start_server("--engine", "x264")
    with av.open(str(src)) as container:
        reference = list(container.decode(video=0))
    out: list[av.VideoFrame] = []
    try:
        with av.open(str(src)) as container:
            stream = container.streams.video[0]
            with FailoverDecoder.from_stream(
                pool_of(stalled, healthy), stream, inflight=4, timeout=1.0
            ) as dec:
                for i, pkt in enumerate(p for p in container.demux(stream) if p.size):
                    out += dec.decode(pkt)
                    if i == 15:
                        os.kill(stalled.proc.pid, signal.SIGSTOP)
                out += dec.flush()
    finally:
        os.kill(stalled.proc.pid, signal.SIGCONT)
    assert dec.failovers == 1
    assert [f.pts for f in out] == [f.pts for f in reference]


def test_encoder_fails_over_with_b_frames(start_server) -> None:
    dying = start_server("--engine", "x264", "--die-after-frames", "17")
    healthy = start_server("--engine", "x264")
    frames = testsrc_frames(N, W, H, "nv12")
    enc, packets = run_encode(pool_of(dying, healthy), frames, max_b_frames=2)
    assert dying.wait(10) == -9
    assert enc.failovers == 1
    assert any(p.pts != p.dts for p in packets)  # there really are B-frames (reordered)
    check_failover_output(enc, packets, frames)


def test_other_parameter_sets_go_in_band_at_the_seam(start_server, caplog) -> None:
    """Remote x264 -> local libx264 with global headers: the new SPS/PPS travel with the new IDR."""
    dying = start_server("--engine", "x264", "--die-after-frames", "12")
    frames = testsrc_frames(N, W, H, "nv12")
    with caplog.at_level(logging.WARNING, logger="vtremote.client.failover"):
        enc, packets = run_encode(pool_of(dying), frames, fallback="local", flags=1 << 22)
    assert dying.wait(10) == -9
    assert enc.fell_back and enc.failovers == 1
    assert "other parameter sets" in caplog.text
    seam = next(p for p in packets if p.pts == enc.switches[0].at_pts)
    assert (
        seam.is_keyframe and b"\x00\x00\x00\x01\x67" in bytes(seam)[:64]
    )  # an SPS in front of the IDR
    check_failover_output(enc, packets, frames)
