"""The live encoders' contract.

A packet per frame at once, in-band parameter sets, IDR on demand.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from media import lavfi_frames
from vtremote.errors import ConfigError
from vtremote.live.codec import (
    EncoderConfig,
    LiveDecoder,
    LiveEncoder,
    available,
    hardware_encoder,
    parameter_sets,
)
from vtremote.live.protocol import Codec


@pytest.mark.parametrize("codec", [Codec.H264, Codec.HEVC])
def test_zero_delay_keyframes_on_demand_with_parameter_sets(codec: Codec) -> None:
    if not available(codec):
        pytest.skip(f"no software encoder for {codec.name} in this PyAV build")
    enc = LiveEncoder(
        EncoderConfig(codec, 320, 240, Fraction(30), bitrate=500_000, keyint_s=10, hardware=False)
    )
    assert enc.name in ("libx264", "libx265")
    dec = LiveDecoder(codec)
    keys = []
    for i, frame in enumerate(lavfi_frames(12)):
        units = enc.encode(frame, i, keyframe=i in (0, 7))
        assert len(units) == 1 and units[0].index == i  # out at once: no lookahead, no B-frames
        keys.append(units[0].keyframe)
        if units[0].keyframe:
            assert parameter_sets(codec, units[0].data)  # a receiver can start here
        assert len(dec.decode(units[0].data)) == 1  # and decodes it at once too
    assert keys == [i in (0, 7) for i in range(12)]


def test_a_decoder_can_start_at_a_forced_keyframe_mid_stream() -> None:
    enc = LiveEncoder(
        EncoderConfig(Codec.H264, 320, 240, Fraction(30), keyint_s=10, hardware=False)
    )
    units = [enc.encode(f, i, keyframe=i in (0, 5))[0] for i, f in enumerate(lavfi_frames(8))]
    dec = LiveDecoder(Codec.H264)
    assert [len(dec.decode(u.data)) for u in units[5:]] == [1, 1, 1]


def test_mjpeg_quality_changes_the_size_and_bitrate_changes_apply_to_x264() -> None:
    frames = lavfi_frames(3)
    sizes = {}
    for q in (2, 31):
        enc = LiveEncoder(EncoderConfig(Codec.MJPEG, 320, 240, Fraction(30), mjpeg_quality=q))
        sizes[q] = sum(len(u.data) for i, f in enumerate(frames) for u in enc.encode(f, i))
        assert not enc.set_bitrate(100_000)
    assert sizes[2] > 2 * sizes[31]
    x264 = LiveEncoder(
        EncoderConfig(Codec.H264, 320, 240, Fraction(30), bitrate=800_000, hardware=False)
    )
    assert x264.set_bitrate(300_000) and x264.bitrate == 300_000
    assert x264.set_bitrate(10**9) and x264.bitrate == 800_000  # never above the VBV maximum


def test_hardware_probe_answers_and_is_cached() -> None:
    first = hardware_encoder(Codec.H264)
    assert first is None or first[0].startswith("h264_")
    assert hardware_encoder(Codec.H264) is first
    assert hardware_encoder(Codec.MJPEG) is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 321}, "must be positive and even"),
        ({"bitrate": 0}, "bitrate 0"),
        ({"mjpeg_quality": 1}, "outside 2..31"),
    ],
)
def test_bad_encoder_configs_are_refused(kwargs: dict[str, int], match: str) -> None:
    args: dict[str, object] = {
        "codec": Codec.H264,
        "width": 320,
        "height": 240,
        "fps": Fraction(30),
        **kwargs,
    }
    with pytest.raises(ConfigError, match=match):
        EncoderConfig(**args)  # type: ignore[arg-type]
