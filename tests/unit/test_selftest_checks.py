"""The self-test's measuring parts on known inputs: SSIM and the bitstream checks."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest

from vtremote.selftest import checks as ck
from vtremote.selftest.media import Source, make_frames
from vtremote.selftest.report import Check
from vtremote.selftest.ssim import frame_ssim, luma, ssim


def scope() -> ck.Scope:
    return ck.Scope("x264", "h264", "nv12", "encode", lambda check: None)


def packet(pts: int, dts: int, key: bool = False, size: int = 10) -> av.Packet[Any]:
    p: av.Packet[Any] = av.Packet(b"\0" * size)
    p.pts, p.dts, p.is_keyframe = pts, dts, key
    return p


def test_ssim_is_one_for_identical_and_falls_with_damage() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((64, 80))
    assert ssim(a, a) == pytest.approx(1.0)
    slightly = np.clip(a + rng.normal(0, 0.02, a.shape), 0, 1)
    badly = rng.random(a.shape)
    assert 0.5 < ssim(a, slightly) < 1.0
    assert ssim(a, badly) < ssim(a, slightly)
    with pytest.raises(ValueError, match="SSIM of a"):
        ssim(a, a[:-1])


def test_luma_reads_8_and_10_bit_frames_on_one_scale() -> None:
    nv12, p010 = (make_frames(Source(64, 48, 10, 1), fmt)[3] for fmt in ("nv12", "p010le"))
    assert nv12.pict_type == av.video.frame.PictureType.NONE  # no IDR forced by the source
    assert luma(nv12).shape == (48, 64)
    assert luma(p010).max() <= 1.0
    assert frame_ssim(nv12, p010) > 0.99  # the same picture in two depths
    assert frame_ssim(nv12, nv12.reformat(format="yuv420p10le")) > 0.99


def test_packet_order_catches_dts_above_pts_and_repeated_dts() -> None:
    s = scope()
    ck.check_packet_order(s, [packet(0, -1), packet(2, 0), packet(1, 1)])
    ck.check_packet_order(s, [packet(0, 0), packet(1, 2), packet(2, 2)])
    good, bad = s.checks
    assert good.status == "PASS"
    assert bad.status == "FAIL"
    assert "dts 2 > pts 1" in bad.reason and "dts 2 <= previous dts 2" in bad.reason


def test_keyframes_at_every_gop_start_and_not_everywhere() -> None:
    s = scope()
    tb = Fraction(1, 30)
    ck.check_keyframes(s, [packet(i, i, key=i % 10 == 0) for i in range(30)], tb, 30, 10, 30)
    ck.check_keyframes(s, [packet(i, i, key=i in (0, 10)) for i in range(30)], tb, 30, 10, 30)
    ck.check_keyframes(s, [packet(i, i, key=True) for i in range(30)], tb, 30, 10, 30)
    ok, missing, everywhere = s.checks
    assert ok.status == "PASS"
    assert missing.status == "FAIL" and "no keyframe at frame(s) 20" in missing.reason
    assert everywhere.status == "FAIL" and "ignores the GOP" in everywhere.reason


def test_bitrate_within_ten_percent() -> None:
    s = scope()
    ck.check_bitrate(s, [packet(0, 0, size=1_050)], 1.0, 8_000)  # +5 %
    ck.check_bitrate(s, [packet(0, 0, size=1_200)], 1.0, 8_000)  # +20 %
    assert [c.status for c in s.checks] == ["PASS", "FAIL"]
    assert "+20.0% off" in s.checks[1].reason


def test_a_failed_check_line_says_why() -> None:
    check = Check("nvenc", "hevc", "p010", "encode", "ssim", "FAIL", "mean 0.2", "too low")
    assert check.line() == "FAIL  nvenc hevc/p010 encode.ssim: too low"


def test_ssim_check_catches_output_one_frame_late() -> None:
    frames = make_frames(Source(96, 64, 10, 2), "nv12")
    reference = dict(enumerate(frames))
    s = scope()
    ck.check_ssim(s, reference, dict(enumerate(frames)), 0.9, "source")
    late = {i: frames[i - 1] for i in range(1, len(frames))}
    ck.check_ssim(s, reference, late, 0.5, "source")  # a mean above 0.5 is not enough
    good, shifted = s.checks
    assert good.status == "PASS" and good.values["mean"] == pytest.approx(1.0)
    assert shifted.status == "FAIL" and "looks like source frame" in shifted.reason
