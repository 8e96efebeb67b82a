"""HDR -> SDR tone mapping on the server: the ``tonemap`` filter of a packet transcode.

A real vtremoted transcodes synthetic HDR10 / HLG HEVC main10 clips (hdr_media.py)
through RemoteTranscoder; the output is decoded with FFmpeg and checked: BT.709
tags in the bitstream, mean luma in SDR range and well below the same pictures
left as they are, no picture clipped flat, every frame decoded.
"""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from hdr_media import HLG, PQ, check_tone_mapped, make_hdr_mkv, mean_luma

from media import testsrc_frames
from transcode_media import check_timestamps, decode_output, run_transcode, source_frames
from vtr_client import VTRClient
from vtremote.client import RemoteTranscoder, transcode_capabilities
from vtremote.errors import ConfigError, UnsupportedConfigError

pytestmark = pytest.mark.skipif(
    "libx265" not in av.codecs_available, reason="the HDR clips are written with libx265"
)


def _untouched(path: Path) -> tuple[list[av.VideoFrame], float]:
    frames, _ = source_frames(path)
    return frames, mean_luma(frames)


def test_offer_has_tonemap(server) -> None:
    offer = transcode_capabilities(server.addr)
    assert offer is not None and "tonemap" in offer.filters


@pytest.mark.parametrize("algorithm", ["bt2390", "hable", "mobius", "reinhard", "clip"])
def test_hdr10_to_sdr_h264(server, tmp_path: Path, algorithm: str) -> None:
    src = make_hdr_mkv(tmp_path / "hdr10.mkv", 12, 320, 180, PQ)
    frames, raw_mean = _untouched(src)
    assert int(frames[0].color_trc) == PQ
    tc, sent, out = run_transcode(
        server.addr,
        src,
        codec="h264",
        filters=f"tonemap={algorithm}:peak=100:desat=0",
        bitrate=800_000,
        gop=12,
    )
    assert len(out) == len(sent) == 12
    check_timestamps(out)
    decoded = decode_output("h264", tc.extradata, out)
    assert len(decoded) == 12 and decoded[0].format.name == "yuv420p"
    check_tone_mapped(decoded, frames, algorithm, 100.0, darker=algorithm == "hable")


def test_hlg_to_sdr_hevc_10bit_output(server, tmp_path: Path) -> None:
    src = make_hdr_mkv(tmp_path / "hlg.mkv", 8, 320, 180, HLG)
    frames, _ = _untouched(src)
    assert int(frames[0].color_trc) == HLG
    tc, _sent, out = run_transcode(
        server.addr, src, codec="hevc", filters="tonemap=hable", bitrate=600_000
    )
    decoded = decode_output("hevc", tc.extradata, out)
    assert len(decoded) == 8 and decoded[0].format.name == "yuv420p10le"
    check_tone_mapped(decoded, frames, "hable", 0.0, darker=True)


def test_sdr_source_passes_unchanged(server, tmp_path: Path) -> None:
    """A source tagged SDR (BT.709 transfer) is not tone-mapped: its pictures keep their
    levels. (An untagged one is taken as PQ, as Jellyfin's tonemapx takes it.)"""
    src = tmp_path / "sdr.mkv"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        ctx = stream.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = 1, 1, 1, 1
        for frame in testsrc_frames(10, 320, 180, pix_fmt="yuv420p", rate=24):
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)
    frames, raw_mean = _untouched(src)
    assert int(frames[0].color_trc) == 1
    tc, _sent, out_packets = run_transcode(server.addr, src, codec="h264", filters="tonemap=hable")
    decoded = decode_output("h264", tc.extradata, out_packets)
    assert len(decoded) == 10
    assert abs(mean_luma(decoded) - raw_mean) < 3
    server.wait_for_log(r"tonemap: the source's transfer 1 is not HDR; passed unchanged")


def test_bad_parameters_refused_before_connecting(server, tmp_path: Path) -> None:
    src = make_hdr_mkv(tmp_path / "hdr10.mkv", 2, 320, 180, PQ)
    with av.open(str(src)) as c:
        stream = c.streams.video[0]
        with pytest.raises(UnsupportedConfigError, match="tonemap algorithm 'gamma'"):
            RemoteTranscoder.from_stream(server.addr, stream, codec="h264", filters="tonemap=gamma")
        with pytest.raises(ConfigError, match=r"peak=1000 is outside 0..100"):
            RemoteTranscoder.from_stream(
                server.addr, stream, codec="h264", filters="tonemap=hable:peak=1000"
            )


def test_a_v1_peer_never_meets_the_filter(start_server, tmp_path: Path) -> None:
    """A server answering as the reference does (--no-extensions) offers no filter at all, and
    our client refuses to send a tonemap chain to it (the job falls back to raw frames)."""
    srv = start_server("--engine", "x264", "--no-extensions")
    with VTRClient((srv.host, srv.port)) as client:
        ack = client.hello("hevc")
    assert not any("tonemap" in cap or cap.startswith("ext:") for cap in ack.capabilities)
    assert transcode_capabilities(srv.addr) is None
    src = make_hdr_mkv(tmp_path / "hdr10.mkv", 2, 320, 180, PQ)
    with av.open(str(src)) as c, pytest.raises(UnsupportedConfigError, match="ext:transcode"):
        RemoteTranscoder.from_stream(srv.addr, c.streams.video[0], codec="h264", filters="tonemap")
