"""Packet transcode end to end: a real vtremoted (software engine) and RemoteTranscoder.

Source files are made in-process with PyAV; the output packets are decoded with
FFmpeg and checked: frame count, timestamps (dts strictly increasing, dts <= pts,
one packet per frame), key frames, bitrate, and SSIM against a local decode and
scale of the same source.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import make_h264_mp4, make_hevc_mp4, testsrc_frames
from transcode_media import (
    bitrate,
    check_timestamps,
    decode_output,
    encode_file,
    encoder_available,
    local_reference,
    luma,
    run_transcode,
    source_frames,
    ssim,
    vfr_frames,
)
from vtremote.client import RemoteTranscoder, transcode_capabilities


def test_offer_lists_decoders_and_filters(server) -> None:
    offer = transcode_capabilities(server.addr)
    assert offer is not None
    assert {"h264", "hevc", "mpeg2video", "vp9"} <= set(offer.decoders)
    assert {"scale", "fps", "format", "crop", "yadif", "bwdif", "setparams"} <= set(offer.filters)
    assert offer.engine == "x264"


def test_h264_to_h264_scaled(server, tmp_path: Path) -> None:
    src = make_h264_mp4(tmp_path / "in.mp4", 60, 320, 180, bframes=0, gop=60)
    tc, sent, out = run_transcode(
        server.addr, src, codec="h264", filters="scale=-2:144", bitrate=400_000, gop=30
    )
    assert (tc.width, tc.height) == (256, 144)
    frames, stream = source_frames(src)
    assert tc.time_base == stream.time_base
    assert len(sent) == 60 and len(out) == 60 == tc.stats.packets
    check_timestamps(out)
    # pts are the source frames' pts, in the source time base
    assert sorted(p.pts for p in out) == [f.pts for f in frames]
    # key frames every 30 output frames, nowhere else
    by_pts = sorted(out, key=lambda p: p.pts)
    assert [i for i, p in enumerate(by_pts) if p.is_keyframe] == [0, 30]
    seconds = 60 / 30
    assert 0.4 * 400_000 < bitrate(out, seconds) < 1.5 * 400_000
    decoded = decode_output("h264", tc.extradata, out)
    assert len(decoded) == 60 and (decoded[0].width, decoded[0].height) == (256, 144)
    ref = local_reference(frames, 256, 144)
    scores = [ssim(r, luma(d)) for r, d in zip(ref, decoded, strict=True)]
    assert min(scores) >= 0.97, min(scores)
    server.wait_for_log(
        r"SUMMARY mode=transcode packets_in=60 packets_out=60 input=h264 frames_decoded=60"
    )


def test_hevc_10bit_to_h264_8bit(server, tmp_path: Path) -> None:
    src = make_hevc_mp4(tmp_path / "in10.mp4", 30, 320, 180, ten_bit=True, bframes=2)
    frames, _ = source_frames(src)
    assert frames[0].format.name == "yuv420p10le"
    tc, sent, out = run_transcode(
        server.addr,
        src,
        codec="h264",
        filters="scale=-2:144,format=yuv420p",
        bitrate=500_000,
        gop=30,
    )
    assert tc.pix_fmt.name == "NV12"
    check_timestamps(out)
    decoded = decode_output("h264", tc.extradata, out)
    assert len(decoded) == 30
    assert decoded[0].format.name == "yuv420p"  # 8-bit High, not High 10
    ref = local_reference(frames, 256, 144)
    assert min(ssim(r, luma(d)) for r, d in zip(ref, decoded, strict=True)) >= 0.97


def test_bframes_in_and_out(server, tmp_path: Path) -> None:
    src = make_h264_mp4(tmp_path / "b.mp4", 45, 320, 180, bframes=3, gop=15)
    tc, sent, out = run_transcode(
        server.addr,
        src,
        codec="h264",
        filters="scale=160:90",
        bitrate=300_000,
        gop=15,
        max_b_frames=2,
    )
    assert len(out) == 45
    check_timestamps(out)
    assert any(p.dts < p.pts for p in out)  # the output reorders
    frames, _ = source_frames(src)
    assert sorted(p.pts for p in out) == sorted(f.pts for f in frames)
    decoded = decode_output("h264", tc.extradata, out)
    assert [f.pts for f in decoded] == sorted(f.pts for f in frames)


@pytest.mark.parametrize(
    ("name", "encoder", "fmt", "pix_fmt", "options"),
    [
        ("mpeg2", "mpeg2video", "mpegts", "yuv420p", {"g": "12"}),
        (
            "vp9",
            "libvpx-vp9",
            "webm",
            "yuv420p",
            {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"},
        ),
    ],
)
def test_other_codecs_to_hevc(
    server, tmp_path: Path, name: str, encoder: str, fmt: str, pix_fmt: str, options: dict[str, str]
) -> None:
    if not encoder_available(encoder):
        pytest.skip(f"this PyAV build has no {encoder} encoder to make the {name} source")
    frames = testsrc_frames(24, 320, 180, pix_fmt)
    src = encode_file(
        tmp_path / f"in.{fmt}", encoder, frames, pix_fmt, 30, options, fmt=fmt, bit_rate=2_000_000
    )
    decoded_src, stream = source_frames(src)
    tc, sent, out = run_transcode(
        server.addr, src, codec="hevc", filters="scale=-2:144", bitrate=300_000, gop=30
    )
    assert (tc.width, tc.height) == (256, 144)
    assert len(out) == len(decoded_src) == 24
    check_timestamps(out)
    decoded = decode_output("hevc", tc.extradata, out)
    assert len(decoded) == 24
    ref = local_reference(decoded_src, 256, 144)
    assert min(ssim(r, luma(d)) for r, d in zip(ref, decoded, strict=True)) >= 0.95


def test_vfr_matroska_keeps_millisecond_timestamps(server, tmp_path: Path) -> None:
    frames = vfr_frames(40, 320, 180)
    src = encode_file(
        tmp_path / "vfr.mkv",
        "libx264",
        frames,
        "yuv420p",
        30,
        {"preset": "veryfast", "x264-params": "bframes=2:keyint=20"},
        bframes=2,
        time_base=Fraction(1, 1000),
    )
    decoded_src, stream = source_frames(src)
    assert stream.time_base == Fraction(1, 1000)
    tc, sent, out = run_transcode(
        server.addr,
        src,
        codec="h264",
        filters="scale=-2:144",
        bitrate=300_000,
        gop=60,
        max_b_frames=2,
    )
    assert tc.time_base == Fraction(1, 1000)
    check_timestamps(out)
    assert sorted(p.pts for p in out) == [f.pts for f in decoded_src] == [f.pts for f in frames]


def test_fps_filter_changes_the_frame_count(server, tmp_path: Path) -> None:
    src = make_h264_mp4(tmp_path / "30.mp4", 60, 320, 180, bframes=0)
    tc, sent, out = run_transcode(
        server.addr, src, codec="h264", filters="fps=15,scale=160:90", bitrate=200_000, gop=15
    )
    assert tc.time_base == Fraction(1, 15) and tc.output_framerate == 15
    assert len(sent) == 60
    assert len(out) == 30
    assert sorted(p.pts for p in out) == list(range(30))
    check_timestamps(out)
    assert len(decode_output("h264", tc.extradata, out)) == 30


def test_resolution_change_mid_stream(server, tmp_path: Path) -> None:
    """An Annex B stream whose second half has another SPS and size: the filter graph is
    rebuilt and the output keeps the announced size."""
    parts = []
    for size in ((320, 180), (256, 144)):
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = size
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 30)
        ctx.options = {"preset": "ultrafast", "x264-params": "bframes=0:keyint=30"}
        pkts = []
        for f in testsrc_frames(15, *size, "yuv420p"):
            pkts += ctx.encode(f)
        pkts += ctx.encode(None)
        parts.append([bytes(p) for p in pkts])
    out = []
    with RemoteTranscoder(
        server.addr,
        input_codec="h264",
        input_time_base=Fraction(1, 30),
        input_width=320,
        input_height=180,
        framerate=30,
        codec="h264",
        filters="scale=160:90",
        bitrate=200_000,
        gop=30,
    ) as tc:
        for i, data in enumerate(parts[0] + parts[1]):
            pkt = av.Packet(data)
            pkt.pts = pkt.dts = i
            out += tc.transcode(pkt)
        out += tc.flush()
    assert len(out) == 30
    check_timestamps(out)
    decoded = decode_output("h264", tc.extradata, out)
    assert len(decoded) == 30 and {(f.width, f.height) for f in decoded} == {(160, 90)}
    server.wait_for_log(r"SUMMARY mode=transcode packets_in=30 packets_out=30 .*graph_rebuilds=1")


def test_force_key_frames_by_time(server, tmp_path: Path) -> None:
    src = make_h264_mp4(tmp_path / "k.mp4", 60, 320, 180, bframes=0)
    tc, _, out = run_transcode(
        server.addr,
        src,
        codec="h264",
        filters="scale=160:90",
        bitrate=200_000,
        gop=600,
        force_key_frames=[0.5, 1.2],
    )
    by_pts = sorted(out, key=lambda p: p.pts)
    assert [i for i, p in enumerate(by_pts) if p.is_keyframe] == [0, 15, 36]


def test_field_rate_deinterlace_doubles_frames_and_halves_the_time_base(
    server, tmp_path: Path
) -> None:
    src = make_h264_mp4(tmp_path / "i.mp4", 20, 320, 180, bframes=0)
    frames, stream = source_frames(src)
    tc, sent, out = run_transcode(
        server.addr,
        src,
        codec="h264",
        filters="bwdif=mode=send_field,scale=160:90",
        bitrate=300_000,
        gop=60,
    )
    assert tc.time_base == stream.time_base / 2 and tc.output_framerate == 60
    assert len(out) == 40
    check_timestamps(out)
    # every source frame's time appears, and one half way to the next
    pts = sorted(p.pts for p in out)
    assert pts[0::2] == [2 * f.pts for f in frames]


def test_crop_and_colour_tags(server, tmp_path: Path) -> None:
    src = make_h264_mp4(tmp_path / "c.mp4", 20, 320, 180, bframes=0)
    tc, _, out = run_transcode(
        server.addr,
        src,
        codec="h264",
        bitrate=300_000,
        filters="crop=200:100:20:40,setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709",
    )
    assert (tc.width, tc.height) == (200, 100)
    decoded = decode_output("h264", tc.extradata, out)
    assert len(decoded) == 20 and (decoded[0].width, decoded[0].height) == (200, 100)
    f = decoded[0]
    assert (f.color_primaries, f.color_trc, f.colorspace, f.color_range) == (1, 1, 1, 1)
    frames, _ = source_frames(src)
    ref = [fr.to_ndarray()[40:140, 20:220] for fr in frames]  # yuv420p luma rows/cols
    assert min(ssim(r, luma(d)) for r, d in zip(ref, decoded, strict=True)) >= 0.97


def test_anamorphic_source_keeps_its_display_aspect(server, tmp_path: Path) -> None:
    frames = testsrc_frames(10, 320, 180, "yuv420p")
    path = tmp_path / "sar.mp4"
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=30)
        st.width, st.height, st.pix_fmt = 320, 180, "yuv420p"
        st.codec_context.sample_aspect_ratio = Fraction(4, 3)
        for f in frames:
            for p in st.encode(f):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    _, stream = source_frames(path)
    assert stream.sample_aspect_ratio == Fraction(4, 3)
    tc, _, out_packets = run_transcode(
        server.addr, path, codec="h264", filters="scale=240:90", bitrate=200_000
    )
    assert tc.sample_aspect_ratio == Fraction(8, 9)  # 320x180 at 4:3 = 240x90 at 8:9 on screen
    ctx = av.CodecContext.create("h264", "r")
    ctx.extradata = tc.extradata
    decoded = []
    for p in out_packets:
        decoded += ctx.decode(av.Packet(bytes(p)))
    assert decoded and ctx.sample_aspect_ratio == Fraction(8, 9)  # in the SPS VUI


def test_flush_without_packets_ends_cleanly(server) -> None:
    with RemoteTranscoder(
        server.addr,
        input_codec="hevc",
        input_time_base=Fraction(1, 90000),
        input_width=320,
        input_height=180,
        codec="hevc",
        filters="scale=-2:90",
    ) as tc:
        assert tc.flush() == []
        assert tc.stats.packets_sent == 0 and tc.stats.packets == 0
    server.wait_for_log(r"SUMMARY mode=transcode packets_in=0 packets_out=0")
