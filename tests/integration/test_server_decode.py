"""Decode sessions against the real ``vtremoted`` process.

Pixels must equal a local PyAV decode of the same file converted to NV12/P010
the same way (the path is lossless); frames come in presentation order with
their packets' pts; a plain v1 client gets at most one FRAME per PACKET.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from media import decode_video, make_h264_mp4, make_hevc_mp4, plane_arrays, video_packets
from vtr_client import VTRClient, frame_planes
from vtremote.wire import annexb, messages
from vtremote.wire.constants import PixelFormat, WireCompression
from vtremote.wire.extensions import OPT_DECODE_PIPELINE

W, H = 320, 180


@pytest.fixture(scope="module")
def h264_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_h264_mp4(tmp_path_factory.mktemp("media") / "h264.mp4", 30, W, H, bframes=2)


@pytest.fixture(scope="module")
def hevc10_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hevc_mp4(tmp_path_factory.mktemp("media") / "hevc10.mp4", 20, W, H, ten_bit=True)


def wire_packets(codec: str, path: Path) -> tuple[bytes, list[messages.Packet]]:
    """The container's extradata and its packets as a v1 client sends them (Annex B)."""
    extradata, packets = video_packets(path)
    out = []
    for p in packets:
        data = annexb.length_prefixed_to_annexb(bytes(p), 4)
        out.append(
            messages.Packet(
                pts=p.pts or 0,
                dts=p.dts if p.dts is not None else p.pts or 0,
                duration=p.duration or 0,
                flags=1 if p.is_keyframe else 0,
                data=data,
            )
        )
    return extradata, out


def decode_lockstep(client: VTRClient, packets: list[messages.Packet]) -> list[messages.Frame]:
    """Send one PACKET at a time like the reference decoder; PING after each makes the
    server's reply to that PACKET observable (its PONG comes after the PACKET's output)."""
    frames: list[messages.Frame] = []
    for p in packets:
        client.send(p)
        replies = client.ping_barrier()
        assert len(replies) <= 1, f"{len(replies)} messages for one PACKET"
        assert all(isinstance(r, messages.Frame) for r in replies)
        frames += replies  # type: ignore[arg-type]
    client.send(messages.Flush())
    while not isinstance(msg := client.recv(), messages.Done):
        assert isinstance(msg, messages.Frame), msg
        frames.append(msg)
    return frames


def assert_pixels_equal(
    frames: list[messages.Frame],
    expected: list[av.VideoFrame],
    compression: WireCompression,
    bps: int,
) -> None:
    assert len(frames) == len(expected)
    for got, want in zip(frames, expected, strict=True):
        assert got.pts == want.pts
        w, h = want.width, want.height
        assert [(p.stride, p.height) for p in got.planes] == [(w * bps, h), (w * bps, (h + 1) // 2)]
        ours = frame_planes(got, compression)
        for plane, ref in zip(ours, plane_arrays(want), strict=True):
            assert np.array_equal(np.frombuffer(plane, np.uint8).reshape(ref.shape), ref)


@pytest.mark.parametrize("compression", [0, 1, 2], ids=["none", "lz4", "zstd"])
def test_decode_h264_with_b_frames_lockstep(server, h264_mp4: Path, compression: int) -> None:
    extradata, packets = wire_packets("h264", h264_mp4)
    assert extradata[0] == 1  # avcC
    expected = decode_video(h264_mp4, "nv12")
    opts = [("mode", "decode")] + ([("wire_compression", str(compression))] if compression else [])
    with VTRClient(server.address) as client:
        client.hello("h264")
        ack = client.configure(
            W, H, PixelFormat.NV12, opts, extradata=extradata, time_base=(0, 1), framerate=(30, 1)
        )
        assert ack.pix_fmt == PixelFormat.NV12 and ack.extradata == b"" and ack.warnings == ()
        frames = decode_lockstep(client, packets)
        assert client.after_done() == []
    # Presentation order with the packets' own pts.
    assert [f.pts for f in frames] == sorted(p.pts for p in packets)
    assert_pixels_equal(frames, expected, WireCompression(compression), 1)


def test_decode_hevc_10bit_gives_p010(server, hevc10_mp4: Path) -> None:
    extradata, packets = wire_packets("hevc", hevc10_mp4)
    expected = decode_video(hevc10_mp4, "p010le")
    with VTRClient(server.address) as client:
        client.hello("hevc")
        # Asking for NV12: the ACK says P010 because the stream has 10 bits.
        ack = client.configure(
            W,
            H,
            PixelFormat.NV12,
            [("mode", "decode"), ("wire_compression", "2")],
            extradata=extradata,
        )
        assert ack.pix_fmt == PixelFormat.P010
        frames = decode_lockstep(client, packets)
    assert_pixels_equal(frames, expected, WireCompression.ZSTD, 2)


def test_decode_pipelined_with_extension(server, h264_mp4: Path) -> None:
    """With ext_decode_pipeline=1 the client need not wait: FRAMEs flow as decoded."""
    extradata, packets = wire_packets("h264", h264_mp4)
    expected = decode_video(h264_mp4, "nv12")
    with VTRClient(server.address) as client:
        hello = client.hello("h264")
        assert "ext:decode-pipeline" in hello.capabilities
        client.configure(
            W,
            H,
            PixelFormat.NV12,
            [("mode", "decode"), ("wire_compression", "1"), (OPT_DECODE_PIPELINE, "1")],
            extradata=extradata,
        )
        for p in packets:
            client.send(p)
        client.send(messages.Flush())
        frames = []
        while not isinstance(msg := client.recv(), messages.Done):
            assert isinstance(msg, messages.Frame)
            frames.append(msg)
    assert_pixels_equal(frames, expected, WireCompression.LZ4, 1)


def test_decode_with_annexb_extradata(server, h264_mp4: Path) -> None:
    extradata, packets = wire_packets("h264", h264_mp4)
    annexb_params = annexb.parse_avcc(extradata).annexb()
    expected = decode_video(h264_mp4, "nv12")
    with VTRClient(server.address) as client:
        client.hello("h264")
        client.configure(W, H, PixelFormat.NV12, [("mode", "decode")], extradata=annexb_params)
        frames = decode_lockstep(client, packets)
    assert_pixels_equal(frames, expected, WireCompression.NONE, 1)


def test_decode_in_band_parameter_sets_without_extradata(server, h264_mp4: Path) -> None:
    """The reference refused empty extradata; parameter sets in the first packet work here."""
    extradata, packets = wire_packets("h264", h264_mp4)
    first = packets[0]
    packets[0] = messages.Packet(
        first.pts,
        first.dts,
        first.duration,
        first.flags,
        annexb.parse_avcc(extradata).annexb() + bytes(first.data),
    )
    with VTRClient(server.address) as client:
        client.hello("h264")
        client.configure(W, H, PixelFormat.NV12, [("mode", "decode")])
        frames = decode_lockstep(client, packets)
    assert len(frames) == len(packets)


def test_decode_never_sends_more_than_the_configured_size(server, h264_mp4: Path) -> None:
    """A stream larger than CONFIGURE says is scaled down: a v1 client copies as many rows
    as it receives into a frame of its own size (VTR1.md §13.4)."""
    extradata, packets = wire_packets("h264", h264_mp4)
    with VTRClient(server.address) as client:
        client.hello("h264")
        client.configure(160, 90, PixelFormat.NV12, [("mode", "decode")], extradata=extradata)
        frames = decode_lockstep(client, packets)
    assert len(frames) == len(packets)
    for f in frames:
        assert [(p.stride, p.height, messages.nbytes(p.data)) for p in f.planes] == [
            (160, 90, 160 * 90),
            (160, 45, 160 * 45),
        ]


def test_decode_8bit_as_p010_when_asked(server, h264_mp4: Path) -> None:
    extradata, packets = wire_packets("h264", h264_mp4)
    expected = decode_video(h264_mp4, "p010le")
    with VTRClient(server.address) as client:
        client.hello("h264")
        ack = client.configure(W, H, PixelFormat.P010, [("mode", "decode")], extradata=extradata)
        assert ack.pix_fmt == PixelFormat.P010
        frames = decode_lockstep(client, packets)
    assert_pixels_equal(frames, expected, WireCompression.NONE, 2)


def test_null_engine_decode_returns_configured_frames(start_server, h264_mp4: Path) -> None:
    srv = start_server("--engine", "null")
    extradata, packets = wire_packets("h264", h264_mp4)
    with VTRClient(srv.address) as client:
        client.hello("h264")
        client.configure(W, H, PixelFormat.NV12, [("mode", "decode")], extradata=extradata)
        frames = decode_lockstep(client, packets[:5])
    assert [f.pts for f in frames] == [p.pts for p in packets[:5]]
    assert all([(p.stride, p.height) for p in f.planes] == [(W, H), (W, H // 2)] for f in frames)


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_no_reordering_means_one_frame_per_packet_at_once(
    server, tmp_path: Path, codec: str
) -> None:
    """Without B-frames the decoder adds no delay: a lock-step v1 client gets each FRAME
    right after its PACKET instead of waiting out its receive timeout (VTR1.md §13.18)."""
    if codec == "h264":
        mp4 = make_h264_mp4(tmp_path / "ip.mp4", 12, W, H, bframes=0)
    else:
        mp4 = make_hevc_mp4(tmp_path / "ip.mp4", 12, W, H, ten_bit=False, bframes=0)
    extradata, packets = wire_packets(codec, mp4)
    with VTRClient(server.address) as client:
        client.hello(codec)
        client.configure(W, H, PixelFormat.NV12, [("mode", "decode")], extradata=extradata)
        for p in packets:
            client.send(p)
            (reply,) = client.ping_barrier()
            assert isinstance(reply, messages.Frame) and reply.pts == p.pts
        client.send(messages.Flush())
        assert isinstance(client.recv(), messages.Done)
