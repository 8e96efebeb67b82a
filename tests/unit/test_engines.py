"""Engines in-process: option parsing, the delay budget, GOP, bit depth, registry, probes.

Hardware engines are exercised for real only when ``VTREMOTE_HW_ENGINE`` names
one (``nvenc``, ``qsv``, ``vaapi``, ``videotoolbox``); elsewhere their probes
must fail cleanly, naming what is missing.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from fractions import Fraction

import av
import pytest
from av.video.frame import PictureType

from vtremote.engines import MAX_FRAME_DELAY, StreamConfig, registry
from vtremote.engines.base import Engine
from vtremote.engines.null import NullEngine
from vtremote.engines.options import (
    FLAG_CLOSED_GOP,
    FLAG_GLOBAL_HEADER,
    FLAG_QSCALE,
    check_decode_options,
    parse_encode_options,
    unhonoured_flags,
)
from vtremote.engines.software import SoftwareEngine, crf_for_quality
from vtremote.errors import ConfigError, EngineUnavailableError, UnsupportedConfigError
from vtremote.wire import annexb
from vtremote.wire.constants import PixelFormat
from vtremote.wire.messages import Configure

HW_ENGINE = os.environ.get("VTREMOTE_HW_ENGINE", "")
HARDWARE = ("nvenc", "qsv", "vaapi", "videotoolbox")
W, H = 128, 72


def grey_frames(
    n: int, pix_fmt: str = "nv12", width: int = W, height: int = H
) -> list[av.VideoFrame]:
    """Frames with a moving gradient (so encoders produce real P/B decisions)."""
    import numpy as np

    out = []
    for i in range(n):
        frame = av.VideoFrame(width, height, pix_fmt)
        for j, plane in enumerate(frame.planes):
            arr = np.frombuffer(plane, dtype=np.uint8)
            arr[:] = (np.arange(arr.size, dtype=np.uint32) * (3 + j) + i * 7).astype(np.uint8)
        if pix_fmt == "p010le":  # keep 10-bit samples in the high bits
            for plane in frame.planes:
                arr = np.frombuffer(plane, dtype=np.uint16)
                arr[:] = arr & 0xFFC0
        out.append(frame)
    return out


def encode_config(
    codec: str = "h264", pix_fmt: PixelFormat = PixelFormat.NV12, **options: str
) -> StreamConfig:
    return StreamConfig(
        mode="encode",
        codec=codec,
        width=W,
        height=H,
        pix_fmt=pix_fmt,
        time_base=Fraction(1, 30),
        framerate=Fraction(30),
        options={"mode": "encode", **options},
    )


def run_engine(
    engine: Engine, frames: list[av.VideoFrame], forced: tuple[int, ...] = ()
) -> tuple[int, list]:
    """Feed frames (pts = index); returns (frames fed before the first packet, all packets)."""
    packets: list = []
    first = -1
    for i, frame in enumerate(frames):
        frame.pts = i
        frame.pict_type = PictureType.I if i in forced else PictureType.NONE
        out = engine.encode(frame)
        if out and first < 0:
            first = i
        packets += out
    packets += engine.encode(None)
    engine.close()
    return first, packets


# --- options -------------------------------------------------------------------------------


def test_parse_encode_options_like_the_reference() -> None:
    s, warnings = parse_encode_options(
        {
            "mode": "encode",
            "wire_compression": "2",
            "bitrate": "300000",
            "gop": "30",
            "flags": str(-(1 << 31) | FLAG_GLOBAL_HEADER),
            "entropy": "0",
            "realtime": "0",
            "a53_cc": "1",
            "constant_bit_rate": "1",
            "ext_decode_pipeline": "1",
        }
    )
    assert warnings == []
    assert (s.bitrate, s.gop, s.entropy, s.realtime, s.a53_cc) == (300000, 30, 0, 0, 1)
    assert s.flags == FLAG_CLOSED_GOP | FLAG_GLOBAL_HEADER  # signed int32 on the wire
    assert s.constant_bit_rate and unhonoured_flags(s) == 0
    assert s.qmin == -1 and s.profile == -99  # reference defaults (VTR1.md §3.3)


def test_parse_encode_options_warns_instead_of_guessing() -> None:
    s, warnings = parse_encode_options(
        {"bitrate": "3M", "gop": " 12", "mystery": "1", "allow_sw": "maybe"}
    )
    assert s.bitrate == 0 and s.gop == 12
    assert any("bitrate='3M'" in w for w in warnings)
    assert any("mystery" in w for w in warnings)
    assert any("allow_sw='maybe'" in w for w in warnings)


def test_quality_as_the_reference_computes_it() -> None:
    assert parse_encode_options({"global_quality": "50"})[0].quality == 0.5
    qscale = parse_encode_options({"global_quality": str(118 * 70), "flags": str(FLAG_QSCALE)})[0]
    assert qscale.quality == pytest.approx(0.7)
    assert parse_encode_options({})[0].quality is None
    assert crf_for_quality(1.0) == 0 and crf_for_quality(0.0) == 51


def test_decode_options() -> None:
    assert check_decode_options({"mode": "decode", "wire_compression": "2", "color_trc": "1"}) == []
    assert check_decode_options({"bitrate": "1"}) == [
        "unknown option bitrate='1' ignored by a decode session"
    ]


def test_stream_config_from_configure() -> None:
    cfg = StreamConfig.from_configure(
        "h264", Configure(320, 180, 1, 0, 1, 0, 1, (("mode", "decode"),))
    )
    assert cfg.mode == "decode" and cfg.time_base == 1 and cfg.framerate is None
    with pytest.raises(UnsupportedConfigError, match="pix_fmt=9"):
        StreamConfig.from_configure("h264", Configure(320, 180, 9))
    with pytest.raises(UnsupportedConfigError, match="codec 'vp9'"):
        StreamConfig.from_configure("vp9", Configure(320, 180, 1))
    with pytest.raises(ConfigError, match="0x180"):
        StreamConfig.from_configure("h264", Configure(0, 180, 1))
    enc = StreamConfig.from_configure("h264", Configure(320, 180, 1, 1, 90000, 30000, 1001))
    assert enc.rate == Fraction(30000, 1001) and enc.frame_ticks == 3003


# --- software engine ---------------------------------------------------------------------------

DELAY_CASES = [
    ("h264", {}),
    ("h264", {"max_b_frames": "16"}),
    ("h264", {"max_b_frames": "3", "prio_speed": "0"}),
    ("h264", {"realtime": "1"}),
    ("h264", {"max_b_frames": "2", "bitrate": "200000", "maxrate": "300000"}),
    ("hevc", {}),
    ("hevc", {"max_b_frames": "4"}),
    ("hevc", {"max_b_frames": "1", "prio_speed": "0"}),
    ("hevc", {"realtime": "1"}),
]


@pytest.mark.parametrize(("codec", "options"), DELAY_CASES)
def test_encoder_delay_and_one_packet_per_frame(codec: str, options: dict[str, str]) -> None:
    engine = SoftwareEngine()
    record = engine.open(encode_config(codec, **options))
    assert record[0] == 1  # avcC/hvcC version byte
    first, packets = run_engine(engine, grey_frames(24))
    assert 0 <= first <= MAX_FRAME_DELAY, f"first packet after {first + 1} frames"
    assert sorted(p.pts for p in packets) == list(range(24))
    dts = [p.dts for p in packets]
    assert all(a < b for a, b in zip(dts, dts[1:], strict=False)) and all(
        p.dts <= p.pts for p in packets
    )
    if options.get("realtime") == "1":
        assert first == 0  # zero latency


# (codec, B-frames asked for, max_delay, least_delay) -> the most frames fed before the first packet
BUDGET_CASES = [
    ("h264", "0", 0, False, 0),
    ("h264", "2", 0, False, 0),  # B-frames cut: a window of 1 cannot wait for them
    ("h264", "2", 1, False, 1),
    ("h264", "3", 3, False, 3),
    ("h264", "0", MAX_FRAME_DELAY, True, 0),  # a plain v1 client without B-frames
    ("h264", "2", MAX_FRAME_DELAY, True, 2),  # ... with B-frames: only what they need
    ("hevc", "0", 0, False, 0),
    ("hevc", "2", 3, False, 0),
    ("hevc", "0", MAX_FRAME_DELAY, True, 0),
    ("hevc", "2", MAX_FRAME_DELAY, True, MAX_FRAME_DELAY),
]


@pytest.mark.parametrize(("codec", "bframes", "budget", "least", "most"), BUDGET_CASES)
def test_encoder_delay_stays_within_the_session_budget(
    codec: str, bframes: str, budget: int, least: bool, most: int
) -> None:
    engine = SoftwareEngine()
    config = dataclasses.replace(
        encode_config(codec, max_b_frames=bframes), max_delay=budget, least_delay=least
    )
    engine.open(config)
    first, packets = run_engine(engine, grey_frames(16))
    assert 0 <= first <= most, f"first packet after {first + 1} frames"
    assert len(packets) == 16
    reordered = any(p.pts != p.dts for p in packets)
    assert reordered == (most > 0 and bframes != "0")
    if budget < int(bframes):
        assert any("max_b_frames" in w for w in engine.warnings)


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_gop_is_exact_and_forced_idr_restarts_it(codec: str) -> None:
    engine = SoftwareEngine()
    engine.open(encode_config(codec, gop="8", max_b_frames="2"))
    _, packets = run_engine(engine, grey_frames(30), forced=(11,))
    keys = sorted(p.pts for p in packets if p.is_keyframe)
    assert keys == [0, 8, 11, 19, 27]
    for p in packets:  # the flag is a real IDR/IRAP
        assert p.is_keyframe == annexb.is_keyframe(codec, bytes(p))


@pytest.mark.parametrize(
    ("pix_fmt", "options", "depth"),
    [
        (PixelFormat.P010, {}, 10),
        (PixelFormat.NV12, {}, 8),
        (PixelFormat.NV12, {"profile": "2"}, 10),  # Main10 from 8-bit input, as VideoToolbox does
        (PixelFormat.P010, {"profile": "1"}, 8),
    ],
)
def test_hevc_bit_depth_follows_format_and_profile(
    pix_fmt: PixelFormat, options: dict[str, str], depth: int
) -> None:
    engine = SoftwareEngine()
    record = engine.open(encode_config("hevc", pix_fmt, **options))
    sps = [
        n for n in annexb.parse_hvcc(record).nals if annexb.nal_type("hevc", n) == annexb.HEVC_SPS
    ][0]
    assert annexb.parse_hevc_sps(sps).bit_depth_luma == depth
    fmt = "p010le" if pix_fmt is PixelFormat.P010 else "nv12"
    _, packets = run_engine(engine, grey_frames(3, fmt))
    assert len(packets) == 3


def test_h264_refuses_p010() -> None:
    with pytest.raises(UnsupportedConfigError, match="NV12 only"):
        SoftwareEngine().open(encode_config("h264", PixelFormat.P010))


def test_baseline_drops_b_frames_and_cabac_with_warnings() -> None:
    engine = SoftwareEngine()
    record = engine.open(encode_config("h264", profile="66", max_b_frames="2", entropy="2"))
    text = " ".join(engine.warnings)
    assert "max_b_frames=2" in text and "CABAC" in text
    assert annexb.parse_h264_sps(annexb.parse_avcc(record).nals[0]).profile_idc == 66
    _, packets = run_engine(engine, grey_frames(10))
    assert [p.pts for p in packets] == list(range(10))  # no reordering


def test_decoder_reports_p010_for_10_bit_streams() -> None:
    enc = SoftwareEngine()
    record = enc.open(encode_config("hevc", PixelFormat.P010))
    _, packets = run_engine(enc, grey_frames(4, "p010le"))
    dec = SoftwareEngine()
    dec.open(
        StreamConfig(
            mode="decode",
            codec="hevc",
            width=W,
            height=H,
            pix_fmt=PixelFormat.NV12,
            extradata=record,
        )
    )
    assert dec.output_pix_fmt is PixelFormat.P010
    frames = []
    for p in packets:
        frames += dec.decode(p)
    frames += dec.decode(None)
    assert len(frames) == 4


# --- null engine ---------------------------------------------------------------------------


def test_null_engine() -> None:
    engine = NullEngine()
    assert engine.open(encode_config(gop="4")) == b""
    first, packets = run_engine(engine, grey_frames(9), forced=(6,))
    assert first == 0 and [p.pts for p in packets] == list(range(9))
    assert [p.pts for p in packets if p.is_keyframe] == [0, 4, 6]
    dec = NullEngine()
    dec.open(
        StreamConfig(mode="decode", codec="h264", width=64, height=36, pix_fmt=PixelFormat.P010)
    )
    pkt = av.Packet(b"\0\0\0\1\x65")
    pkt.pts = 7
    (frame,) = dec.decode(pkt)
    assert (frame.width, frame.height, frame.format.name, frame.pts) == (64, 36, "p010le", 7)


# --- registry and probes -------------------------------------------------------------------------


def test_registry_names() -> None:
    assert registry.canonical("software") == "x264"
    with pytest.raises(ConfigError, match="unknown engine 'vp9'"):
        registry.canonical("vp9")
    assert "null" not in registry.AUTO_ORDER
    assert registry.AUTO_ORDER[-1] == "x264"
    assert registry.AUTO_ORDER.index("videotoolbox") < registry.AUTO_ORDER.index("nvenc")
    assert registry.resolve("null", "h264", "encode") is NullEngine


def test_auto_picks_a_working_engine_never_null() -> None:
    for codec in ("h264", "hevc"):
        for mode in ("encode", "decode"):
            cls = registry.resolve("auto", codec, mode)
            assert cls.name != "null" and cls.probe(codec, mode)  # type: ignore[arg-type]


def test_engines_are_imported_only_when_chosen() -> None:
    code = (
        "import sys\n"
        "from vtremote.engines import registry\n"
        "registry.engine_class('x264')\n"
        "hw = ('vtremote.engines.nvenc', 'vtremote.engines.vaapi')\n"
        "assert not any(m in sys.modules for m in hw), sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("name", [n for n in HARDWARE if n != HW_ENGINE])
def test_missing_hardware_fails_cleanly(name: str) -> None:
    cls = registry.engine_class(name)
    assert cls.hardware
    reason = cls.probe_error("h264", "encode")
    if reason is None:
        pytest.skip(f"{name} works on this host; set VTREMOTE_HW_ENGINE={name} to test it")
    with pytest.raises(EngineUnavailableError, match=f"engine {name} cannot encode h264 here"):
        registry.resolve(name, "h264", "encode")
    assert cls.requirement in reason  # names what is missing
    assert cls.probe_error("h264", "encode") is reason  # cached: probed once


@pytest.mark.hardware
@pytest.mark.skipif(HW_ENGINE not in HARDWARE, reason="set VTREMOTE_HW_ENGINE to a hardware engine")
@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_hardware_engine_round_trip(codec: str) -> None:
    cls = registry.resolve(HW_ENGINE, codec, "encode")
    engine = cls()
    config = StreamConfig(
        mode="encode",
        codec=codec,
        width=320,
        height=192,
        pix_fmt=PixelFormat.NV12,
        time_base=Fraction(1, 30),
        framerate=Fraction(30),
        options={"gop": "10", "bitrate": "500000", "max_b_frames": "2"},
    )
    record = engine.open(config)
    first, packets = run_engine(engine, grey_frames(30, width=320, height=192), forced=(13,))
    assert first <= MAX_FRAME_DELAY
    assert sorted(p.pts for p in packets) == list(range(30))
    assert {0, 10, 13} <= {p.pts for p in packets if p.is_keyframe}
    dec = registry.resolve(HW_ENGINE, codec, "decode")()
    dec.open(
        StreamConfig(
            mode="decode",
            codec=codec,
            width=320,
            height=192,
            pix_fmt=PixelFormat.NV12,
            extradata=record,
        )
    )
    frames = []
    for p in packets:
        frames += dec.decode(p)
    frames += dec.decode(None)
    assert len(frames) == 30


# --- what x264 really runs with (its options SEI in the first packet) ---------------------------

X264_SETTINGS = [
    ({"qmin": "10", "qmax": "30"}, ["qpmin=10", "qpmax=30"]),
    (
        {"bitrate": "300000", "constant_bit_rate": "1"},
        ["rc=cbr", "nal_hrd=cbr", "vbv_maxrate=300", "vbv_bufsize=300"],
    ),
    (
        {"bitrate": "300000", "maxrate": "450000"},
        ["rc=abr", "bitrate=300", "vbv_maxrate=450", "vbv_bufsize=450"],
    ),
    ({"global_quality": str(118 * 50), "flags": str(FLAG_QSCALE)}, ["rc=crf", "crf=25.5"]),
    ({"global_quality": "80"}, ["crf=10.2"]),
    ({"max_ref_frames": "2"}, ["ref=2"]),
    ({"max_slice_bytes": "1500"}, ["slice_max_size=1500"]),
    ({"gop": "48"}, ["keyint=48", "scenecut=0"]),
    ({"realtime": "1"}, ["bframes=0", "mbtree=0"]),  # zerolatency: no lookahead, no reordering
    ({"max_b_frames": "2"}, ["bframes=2", "open_gop=0"]),
    ({"prio_speed": "0"}, ["subme=7"]),
    ({}, ["subme=2", "bframes=0"]),  # reference default: speed first, no reordering
    ({"entropy": "1"}, ["cabac=0"]),
    ({"entropy": "2"}, ["cabac=1"]),
]


@pytest.mark.parametrize(("options", "expected"), X264_SETTINGS)
def test_x264_runs_with_the_requested_settings(
    options: dict[str, str], expected: list[str]
) -> None:
    engine = SoftwareEngine()
    engine.open(encode_config("h264", **options))
    assert engine.warnings == []
    _, packets = run_engine(engine, grey_frames(1))
    first = bytes(packets[0])
    sei = first[first.index(b"x264 - core") :].split(b"\x80", 1)[0].decode()
    settings = sei.split(" options: ", 1)[1].split()
    for item in expected:
        assert item in settings, (item, sei)


def test_colour_description_and_sar_reach_the_bitstream() -> None:
    engine = SoftwareEngine()
    record = engine.open(
        encode_config(
            "h264",
            color_range="1",
            colorspace="9",
            color_primaries="9",
            color_trc="16",
            sar_num="4",
            sar_den="3",
        )
    )
    assert engine.warnings == []
    _, packets = run_engine(engine, grey_frames(2))
    dec = av.CodecContext.create("h264", "r")
    dec.extradata = annexb.config_record_to_annexb("h264", record)
    frames = []
    for p in packets:
        frames += dec.decode(p)
    frame = frames[0]
    assert (frame.color_range, frame.colorspace, frame.color_primaries, frame.color_trc) == (
        1,
        9,
        9,
        16,
    )
    assert dec.sample_aspect_ratio == Fraction(4, 3)


# --- hardware option mapping (runs without the device: only the mapping is checked) ------------


def hw_options(
    name: str, codec: str = "h264", pix_fmt: PixelFormat = PixelFormat.NV12, **options: str
):
    cls = registry.engine_class(name)
    engine = cls()
    config = encode_config(codec, pix_fmt, **options)
    engine.config = config
    settings, warnings = parse_encode_options(config.options)
    engine.settings = settings
    engine.codec_name = cls.encoders[codec]
    ctx = av.CodecContext.create("libx264", "w")  # a stand-in context: only fields are set
    opts = engine.configure_encoder(ctx, config, settings)
    return engine, ctx, opts, warnings + engine.warnings


def test_nvenc_mapping() -> None:
    _, ctx, opts, warnings = hw_options(
        "nvenc",
        bitrate="2000000",
        constant_bit_rate="1",
        gop="30",
        max_b_frames="2",
        profile="578",
        entropy="1",
        spatial_aq="1",
        level="41",
        max_ref_frames="3",
    )
    assert warnings == ["max_b_frames=2 ignored: baseline has no B-frames"]
    assert opts["forced-idr"] == "1" and opts["strict_gop"] == "1" and opts["no-scenecut"] == "1"
    assert opts["rc"] == "cbr" and opts["maxrate"] == opts["bufsize"] == "2000000"
    assert opts["profile"] == "baseline" and opts["level"] == "41" and opts["coder"] == "cavlc"
    assert opts["spatial-aq"] == "1" and opts["refs"] == "3" and opts["preset"] == "p2"
    assert int(opts["delay"]) + ctx.max_b_frames < MAX_FRAME_DELAY
    assert (ctx.bit_rate, ctx.gop_size, ctx.max_b_frames) == (
        2000000,
        30,
        0,
    )  # baseline: no B-frames


def test_videotoolbox_mapping_follows_the_reference_properties() -> None:
    _, ctx, opts, warnings = hw_options(
        "videotoolbox",
        realtime="1",
        prio_speed="0",
        allow_sw="1",
        require_sw="1",
        frames_before="1",
        power_efficient="1",
        max_slice_bytes="1200",
        max_ref_frames="2",
        profile="612",
    )
    assert warnings == []
    for key in ("realtime", "allow_sw", "require_sw", "frames_before", "power_efficient"):
        assert opts[key] == "1", key
    assert (
        opts["prio_speed"] == "0"
        and opts["max_slice_bytes"] == "1200"
        and opts["max_ref_frames"] == "2"
    )
    assert opts["profile"] == "constrained_high" and opts["a53cc"] == "0"


def test_hardware_mapping_warns_about_what_it_cannot_do() -> None:
    _, _, opts, warnings = hw_options(
        "qsv",
        "hevc",
        PixelFormat.P010,
        frames_before="1",
        entropy="2",
        spatial_aq="1",
        max_slice_bytes="100",
        require_sw="1",
    )
    text = " ".join(warnings)
    for needle in (
        "frames_before=1",
        "entropy=2",
        "spatial_aq=1",
        "max_slice_bytes=100",
        "require_sw=1",
    ):
        assert needle in text
    assert opts["profile"] == "main10" and opts["forced_idr"] == "1"
    with pytest.raises(UnsupportedConfigError, match="NV12 only"):
        hw_options("vaapi", "h264", PixelFormat.P010)
