"""AV1 through the software engine: SVT-AV1 encodes, dav1d decodes, av1C in between.

The stream is checked by decoding it with PyAV on its own (frame count, keyframes
at the GOP and at a forced key frame, presentation order) and through the engine's
decode side with the av1C record the encoder produced.
"""

from __future__ import annotations

from fractions import Fraction

import av
import pytest
from av.video.frame import PictureType

from media import testsrc_frames
from vtremote.engines import StreamConfig
from vtremote.engines.software import SoftwareEngine
from vtremote.wire.av1 import AV1C_MARKER_VERSION, av1c_bit_depth, build_av1c
from vtremote.wire.constants import PixelFormat

W, H = 128, 72
pytestmark = pytest.mark.skipif(
    not {"libsvtav1", "libdav1d"} <= av.codecs_available, reason="PyAV without SVT-AV1/dav1d"
)


def encode(n: int, forced: tuple[int, ...], pix: PixelFormat, **options: str):
    engine = SoftwareEngine()
    record = engine.open(
        StreamConfig(
            mode="encode",
            codec="av1",
            width=W,
            height=H,
            pix_fmt=pix,
            framerate=Fraction(30),
            options={"mode": "encode", **options},
        )
    )
    packets = []
    fmt = "nv12" if pix is PixelFormat.NV12 else "p010le"
    for i, frame in enumerate(testsrc_frames(n, W, H, fmt)):
        frame.pts = i
        frame.pict_type = PictureType.I if i in forced else PictureType.NONE
        packets += engine.encode(frame)
    packets += engine.encode(None)
    engine.close()
    return engine, record, packets


def test_av1_keyframes_follow_the_gop_and_forced_frames() -> None:
    engine, record, packets = encode(30, (13,), PixelFormat.NV12, gop="10", bitrate="300000")
    assert record[0] == AV1C_MARKER_VERSION and av1c_bit_depth(record) == 8
    assert len(packets) == 30
    assert [p.pts for p in packets if p.is_keyframe] == [0, 10, 13, 23]
    dec = av.CodecContext.create("libdav1d", "r")
    dec.extradata = record
    frames = []
    for p in packets:
        frames += dec.decode(p)
    frames += dec.decode(None)
    assert len(frames) == 30
    assert [f.pts for f in frames] == list(range(30))
    assert [f.pts for f in frames if f.key_frame] == [0, 10, 13, 23]
    assert any("encodes as CBR" in w for w in engine.warnings)


def test_av1_ten_bit_round_trip_through_the_engine_decoder() -> None:
    _, record, packets = encode(6, (), PixelFormat.P010, global_quality=str(60 * 118))
    assert av1c_bit_depth(record) == 10
    decoder = SoftwareEngine()
    decoder.open(
        StreamConfig(
            mode="decode",
            codec="av1",
            width=W,
            height=H,
            pix_fmt=PixelFormat.NV12,
            extradata=record,
        )
    )
    assert decoder.output_pix_fmt is PixelFormat.P010
    frames = []
    for p in packets:
        frames += decoder.decode(p)
    frames += decoder.decode(None)
    assert len(frames) == 6 and frames[0].format.name.startswith("yuv420p10")


def test_av1_b_frames_and_levels_are_warned_about() -> None:
    engine, _, packets = encode(3, (), PixelFormat.NV12, max_b_frames="2", level="51")
    text = " ".join(engine.warnings)
    assert "max_b_frames=2 ignored" in text and "level=51 ignored" in text
    assert len(packets) == 3


def test_av1c_refuses_extradata_without_a_sequence_header() -> None:
    from vtremote.errors import BitstreamError

    with pytest.raises(BitstreamError, match="no AV1 sequence header"):
        build_av1c(bytes([0x12, 0x00]), ten_bit=False)  # a temporal delimiter only


def test_av1c_reads_profile_level_and_tier_from_the_sequence_header() -> None:
    # profile 0, no reduced header, no timing info, one operating point (idc 0),
    # seq_level_idx 13 (5.1) and seq_tier 1; a temporal delimiter OBU before it.
    seq = bytes([0x0A, 0x04, 0x00, 0x00, 0x00, 0x6C])
    record = build_av1c(bytes([0x12, 0x00]) + seq, ten_bit=True)
    assert record[:4] == bytes([0x81, 13, 0x80 | 0x40 | 0x0C, 0])
    assert record[4:] == seq and av1c_bit_depth(record) == 10


def test_the_client_writes_a_level_for_av1_but_not_for_hevc() -> None:
    from vtremote.wire.constants import WireCompression
    from vtremote.wire.settings import EncoderSettings

    settings = EncoderSettings.from_kwargs(level="5.1", profile="main")
    av1_options = dict(settings.configure_options("av1", WireCompression.NONE))
    assert av1_options["level"] == "51" and av1_options["profile"] == "0"
    assert "level" not in dict(settings.configure_options("hevc", WireCompression.NONE))


def test_servers_offer_av1_only_with_an_engine_that_has_it() -> None:
    from vtremote.engines import registry

    assert registry.extension_codecs("x264") == ("av1",)
    assert registry.extension_codecs("auto") == ("av1",)
    assert registry.extension_codecs("videotoolbox") == ()  # Apple has no AV1 encoder
