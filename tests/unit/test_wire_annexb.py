"""Annex B / length-prefixed conversion and avcC/hvcC records, with real encoder output.

The streams are tiny libx264/libx265 encodes made in-process with PyAV. Our
records are checked three ways: they parse back to the same parameter sets,
FFmpeg's decoder accepts them as extradata for the length-prefixed packets, and
(H.264) they equal the record FFmpeg's MP4 muxer writes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import pytest

from vtremote.errors import BitstreamError
from vtremote.wire import annexb


@dataclass(frozen=True)
class Encoded:
    codec: str  # "h264" / "hevc"
    extradata: bytes  # as the encoder gives it (Annex B parameter sets)
    packets: list[bytes]  # Annex B access units
    keyframes: list[bool]
    frames: list[np.ndarray]  # the encoded pictures (for decode checks)
    pix_fmt: str


def _encode(encoder: str, codec: str, pix_fmt: str, options: dict[str, str], n: int = 4) -> Encoded:
    w, h = 64, 48
    ctx = av.CodecContext.create(encoder, "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, pix_fmt
    ctx.time_base = Fraction(1, 25)
    ctx.framerate = Fraction(25)
    ctx.gop_size = 2
    ctx.flags |= av.codec.context.Flags.global_header  # parameter sets in extradata
    ctx.options = options
    graph = av.filter.Graph()
    src = graph.add("testsrc2", f"size={w}x{h}:rate=25")
    fmt = graph.add("format", pix_fmt)
    sink = graph.add("buffersink")
    src.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    packets, frames = [], []
    for i in range(n):
        frame = sink.pull()
        frame.pts = i
        frames.append(frame.to_ndarray())
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    return Encoded(
        codec,
        bytes(ctx.extradata),
        [bytes(p) for p in packets],
        [p.is_keyframe for p in packets],
        frames,
        pix_fmt,
    )


@pytest.fixture(scope="module")
def x264() -> Encoded:
    return _encode("libx264", "h264", "yuv420p", {"preset": "ultrafast", "tune": "zerolatency"})


@pytest.fixture(scope="module")
def x264_high() -> Encoded:
    return _encode("libx264", "h264", "yuv420p", {"preset": "medium", "profile": "high", "bf": "2"})


@pytest.fixture(scope="module")
def x265() -> Encoded:
    return _encode(
        "libx265", "hevc", "yuv420p", {"preset": "ultrafast", "x265-params": "log-level=error"}
    )


@pytest.fixture(scope="module")
def x265_10bit() -> Encoded:
    return _encode(
        "libx265", "hevc", "yuv420p10le", {"preset": "ultrafast", "x265-params": "log-level=error"}
    )


ALL = ["x264", "x264_high", "x265", "x265_10bit"]


def _decoded_arrays(codec: str, extradata: bytes, packets: list[bytes]) -> list[np.ndarray]:
    ctx = av.CodecContext.create(codec, "r")
    ctx.extradata = extradata
    out = []
    for p in packets:
        out += [f.to_ndarray() for f in ctx.decode(av.Packet(p))]
    out += [f.to_ndarray() for f in ctx.decode(None)]
    return out


@pytest.mark.parametrize("name", ALL)
def test_record_round_trip(request: pytest.FixtureRequest, name: str) -> None:
    enc: Encoded = request.getfixturevalue(name)
    assert annexb.is_annexb(enc.extradata)
    record = annexb.build_config_record(enc.codec, enc.extradata)
    assert record[0] == 1  # configurationVersion
    parsed = annexb.parse_avcc(record) if enc.codec == "h264" else annexb.parse_hvcc(record)
    assert parsed.nal_length_size == 4
    expected = annexb.parameter_sets_from_annexb(enc.codec, enc.extradata)
    assert parsed.nals == expected.nals
    # build -> parse -> build is stable, and the Annex B form comes back
    rebuilt = annexb.build_avcc(parsed) if enc.codec == "h264" else annexb.build_hvcc(parsed)
    assert rebuilt == record
    assert annexb.config_record_to_annexb(enc.codec, record) == expected.annexb()
    # an atom header (size + fourcc) is stripped as the reference does
    fourcc = b"avcC" if enc.codec == "h264" else b"hvcC"
    atom = (len(record) + 8).to_bytes(4, "big") + fourcc + record
    assert annexb.parse_extradata(enc.codec, atom).nals == parsed.nals


@pytest.mark.parametrize("name", ALL)
def test_record_fields_match_sps(request: pytest.FixtureRequest, name: str) -> None:
    enc: Encoded = request.getfixturevalue(name)
    record = annexb.build_config_record(enc.codec, enc.extradata)
    depth = 10 if enc.pix_fmt.endswith("10le") else 8
    if enc.codec == "h264":
        sps = annexb.parse_h264_sps(annexb.parse_avcc(record).nals[0])
        assert record[1:4] == bytes([sps.profile_idc, sps.constraint_flags, sps.level_idc])
        assert record[4] == 0xFF  # lengthSizeMinusOne = 3
        assert sps.bit_depth_luma == depth
        if name == "x264_high":
            assert sps.profile_idc == 100
            assert record[-4:-1] == bytes([0xFC | 1, 0xF8 | (depth - 8), 0xF8 | (depth - 8)])
    else:
        sps_nal = next(
            n
            for n in annexb.parse_hvcc(record).nals
            if annexb.nal_type("hevc", n) == annexb.HEVC_SPS
        )
        hsps = annexb.parse_hevc_sps(sps_nal)
        assert (hsps.width, hsps.height) == (64, 48)
        assert hsps.bit_depth_luma == depth
        assert record[1:13] == hsps.ptl
        assert record[16] == 0xFC | 1  # chroma_format_idc 4:2:0
        assert record[17] == 0xF8 | (depth - 8)
        assert record[21] & 3 == 3  # lengthSizeMinusOne


@pytest.mark.parametrize("name", ALL)
def test_ffmpeg_decodes_length_prefixed_packets_with_our_record(
    request: pytest.FixtureRequest, name: str
) -> None:
    """What a server does with a decode session: our record + length-prefixed samples."""
    enc: Encoded = request.getfixturevalue(name)
    record = annexb.build_config_record(enc.codec, enc.extradata)
    samples = [annexb.annexb_to_length_prefixed(p, 4) for p in enc.packets]
    decoded = _decoded_arrays(enc.codec, record, samples)
    reference = _decoded_arrays(enc.codec, enc.extradata, enc.packets)
    assert len(decoded) == len(reference) == len(enc.frames)
    for a, b in zip(decoded, reference, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_packets_convert_both_ways(request: pytest.FixtureRequest, name: str) -> None:
    enc: Encoded = request.getfixturevalue(name)
    for pkt, key in zip(enc.packets, enc.keyframes, strict=True):
        nals = [bytes(n) for n in annexb.iter_annexb(pkt)]
        assert nals and all(nals)
        for size in (1, 2, 4) if max(map(len, nals)) < 256 else (2, 4):
            lp = annexb.annexb_to_length_prefixed(pkt, size)
            assert [bytes(n) for n in annexb.iter_length_prefixed(lp, size)] == nals
            back = annexb.length_prefixed_to_annexb(lp, size)
            assert back == b"".join(annexb.START_CODE + n for n in nals)
        assert annexb.is_keyframe(enc.codec, pkt) == key


def _mp4_muxer_record(enc: Encoded) -> bytes:
    """The avcC/hvcC FFmpeg's MP4 muxer writes for the raw Annex B stream ``enc``."""
    raw = io.BytesIO(enc.extradata + b"".join(enc.packets))
    out_buf = io.BytesIO()
    with av.open(raw, format=enc.codec) as inp, av.open(out_buf, "w", format="mp4") as out:
        src = inp.streams.video[0]
        dst = out.add_stream_from_template(src)
        for i, pkt in enumerate(inp.demux(src)):
            if pkt.size == 0:
                continue
            pkt.stream = dst
            pkt.pts = pkt.dts = i  # a raw stream carries no timestamps
            pkt.time_base = dst.time_base
            out.mux(pkt)
    out_buf.seek(0)
    with av.open(out_buf) as chk:
        return bytes(chk.streams.video[0].codec_context.extradata)


def test_h264_record_equals_mp4_muxer(x264_high: Encoded) -> None:
    """FFmpeg's MP4 muxer writes the very same avcC for the same parameter sets."""
    assert annexb.build_config_record("h264", x264_high.extradata) == _mp4_muxer_record(x264_high)


def test_hevc_record_agrees_with_mp4_muxer(x265_10bit: Encoded) -> None:
    """Same 22-byte hvcC header and VPS/SPS/PPS as FFmpeg's muxer.

    The arrays' completeness bit and the declarative SEI array (we keep x265's SEI,
    as the reference's hvcC reader accepts any array type) may differ.
    """
    ours = annexb.build_config_record("hevc", x265_10bit.extradata)
    theirs = _mp4_muxer_record(x265_10bit)
    assert ours[:22] == theirs[:22]
    wanted = (annexb.HEVC_VPS, annexb.HEVC_SPS, annexb.HEVC_PPS)

    def sets(record: bytes) -> list[bytes]:
        return [n for n in annexb.parse_hvcc(record).nals if annexb.nal_type("hevc", n) in wanted]

    assert sets(ours) == sets(theirs)
    assert len(sets(ours)) == 3


# --- malformed input: a clear BitstreamError, never an IndexError -----------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: list(annexb.iter_annexb(b"\x65\x88\x00\x00\x01\x41")),
            "does not start with a start code",
        ),
        (
            lambda: list(annexb.iter_length_prefixed(b"\x00\x00\x00\x09abc")),
            "overruns the 7-byte buffer",
        ),
        (lambda: list(annexb.iter_length_prefixed(b"\x00\x00", 4)), "runs past the end"),
        (
            lambda: annexb.annexb_to_length_prefixed(b"\x00\x00\x01" + b"\x41" * 300, 1),
            "does not fit a 1-byte",
        ),
        (lambda: annexb.annexb_to_length_prefixed(b"", 3), "is not 1, 2 or 4"),
        (lambda: annexb.parse_avcc(b"\x01\x64\x00\x1f\xff"), "not an avcC record"),
        (
            lambda: annexb.parse_avcc(b"\x01\x64\x00\x1f\xff\xe1\x00\x40\x67"),
            "avcC truncated at SPS 0",
        ),
        (lambda: annexb.parse_avcc(b"\x01\x64\x00\x1f\xfe\xe0\x00"), "length size 3"),
        (lambda: annexb.parse_hvcc(b"\x01" + b"\x00" * 10), "not an hvcC record"),
        (
            lambda: annexb.parse_hvcc(b"\x01" + b"\x00" * 20 + b"\x03\x01\x20\x00\x01\x00\x05ab"),
            "hvcC truncated",
        ),
        (lambda: annexb.parse_extradata("h264", b""), "decoder requires extradata"),
        (lambda: annexb.parameter_sets_from_annexb("h264", b"\x00\x00\x01\x67\x42"), "lack PPS"),
        (
            lambda: annexb.parameter_sets_from_annexb("hevc", b"\x00\x00\x01\x40\x01"),
            "lack SPS, PPS",
        ),
        (lambda: annexb.parse_h264_sps(b"\x67\x64"), "too short"),
        (lambda: annexb.parse_hevc_sps(b"\x42\x01" + b"\x00" * 13), "parameter set ends early"),
        (lambda: annexb.nal_type("h264", b""), "empty NAL unit"),
        (
            lambda: annexb.build_avcc(annexb.ParameterSets("h264", 4, (b"\x67\x42\x00\x0a",))),
            "at least one SPS",
        ),
        (
            lambda: annexb.build_avcc(
                annexb.ParameterSets("h264", 4, (b"\x67\x42\x00\x0a",) * 32 + (b"\x68",))
            ),
            "at most 31 SPS",
        ),
        (
            lambda: annexb.build_avcc(
                annexb.ParameterSets("h264", 4, (b"\x67\x42\x00\x0a" + bytes(70000), b"\x68"))
            ),
            "16 bits",
        ),
    ],
)
def test_malformed_bitstreams(call: object, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        call()  # type: ignore[operator]


def test_leading_zero_bytes_and_three_byte_start_codes() -> None:
    data = b"\x00\x00\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce\x00\x00\x00\x01\x65\x88\x00"
    assert [bytes(n) for n in annexb.iter_annexb(data)] == [b"\x67\x42", b"\x68\xce", b"\x65\x88"]
    assert list(annexb.iter_annexb(b"\x00\x00\x00")) == []
    assert annexb.is_keyframe("h264", data)
    assert not annexb.is_keyframe("h264", b"\x00\x00\x01\x41\x9a")
    assert annexb.is_keyframe("hevc", b"\x00\x00\x01\x26\x01\xaf")  # IDR_W_RADL (19)
