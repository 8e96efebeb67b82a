"""Packet transcode failures: each gets an ERROR with its code while another session keeps
running; a plain v1 server offers no transcode at all."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import make_h264_mp4
from transcode_media import check_timestamps
from vtr_client import Closed, VTRClient
from vtremote.client import RemoteTranscoder, transcode_capabilities
from vtremote.errors import BadRequestError, UnsupportedConfigError
from vtremote.wire import messages
from vtremote.wire.constants import PixelFormat


class Running:
    """A transcode session that is half way through while the others fail."""

    def __init__(self, addr: str, path: Path) -> None:
        self.container = av.open(str(path))
        self.stream = self.container.streams.video[0]
        self.packets = [p for p in self.container.demux(self.stream) if p.size]
        self.tc = RemoteTranscoder.from_stream(
            addr, self.stream, codec="h264", filters="scale=160:90", bitrate=200_000, gop=30
        )
        self.out: list[av.Packet] = []
        for pkt in self.packets[: len(self.packets) // 2]:
            self.out += self.tc.transcode(pkt)

    def finish(self) -> None:
        for pkt in self.packets[len(self.packets) // 2 :]:
            self.out += self.tc.transcode(pkt)
        self.out += self.tc.flush()
        self.tc.close()
        self.container.close()
        assert len(self.out) == len(self.packets)
        check_timestamps(self.out)


def transcode_configure(
    client: VTRClient, options: tuple[tuple[str, str], ...], extradata: bytes = b""
) -> messages.Message:
    client.hello("h264")
    client.send(
        messages.Configure(
            320, 180, PixelFormat.NV12, 1, 30, 30, 1, (("mode", "transcode"), *options), extradata
        )
    )
    return client.recv()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_h264_mp4(tmp_path / "in.mp4", 40, 320, 180, bframes=0)


def test_corrupt_packet_is_bad_request(server, source: Path) -> None:
    healthy = Running(server.addr, source)
    with av.open(str(source)) as c:
        stream = c.streams.video[0]
        packets = [p for p in c.demux(stream) if p.size]
        tc = RemoteTranscoder.from_stream(server.addr, stream, codec="h264", filters="scale=160:90")
        with pytest.raises(BadRequestError) as info:  # ERROR code 4
            for pkt in packets[:5]:
                tc.transcode(pkt)
            # a NAL length prefix that runs far past the packet (avcC framing)
            bad = av.Packet(b"\x7f\xff\xff\xff\x65\x88\x84\x00" * 4)
            bad.pts = bad.dts = packets[5].pts
            tc.transcode(bad)
            tc.flush()
        tc.close()
    assert info.value.wire_code == 4
    assert "PACKET 6" in str(info.value) and "is not valid h264" in str(info.value)
    healthy.finish()
    server.wait_for_log(r"ERROR 4 to client: PACKET 6 \(pts=")


def test_unknown_input_codec_is_unsupported(server, source: Path) -> None:
    healthy = Running(server.addr, source)
    with VTRClient(server.address) as client:
        reply = transcode_configure(client, (("ext_in_codec", "cinepak9000"),))
        assert isinstance(reply, messages.Error) and reply.code == 3
        assert "unsupported input codec 'cinepak9000'" in reply.message
        with pytest.raises(Closed):
            client.recv()
    # The client library refuses it before CONFIGURE, from the server's offer.
    with pytest.raises(UnsupportedConfigError, match="cannot decode cinepak9000"):
        RemoteTranscoder(
            server.addr,
            input_codec="cinepak9000",
            input_time_base=Fraction(1, 30),
            input_width=320,
            input_height=180,
        )
    healthy.finish()


def test_forbidden_filter_is_unsupported_and_named(server, source: Path) -> None:
    healthy = Running(server.addr, source)
    with VTRClient(server.address) as client:
        reply = transcode_configure(
            client, (("ext_in_codec", "h264"), ("ext_filters", "scale=160:90,drawtext=text=x"))
        )
        assert isinstance(reply, messages.Error) and reply.code == 3
        assert "filter 'drawtext' is not supported" in reply.message
    with VTRClient(server.address) as client:
        reply = transcode_configure(
            client, (("ext_in_codec", "h264"), ("ext_filters", "crop=999:999"))
        )
        assert isinstance(reply, messages.Error) and reply.code == 4
        assert "crop 999x999 does not fit a 320x180 picture" in reply.message
    with pytest.raises(UnsupportedConfigError, match="'drawtext'"):  # refused locally, nothing sent
        RemoteTranscoder(
            "127.0.0.1:9",
            input_codec="h264",
            input_time_base=Fraction(1, 30),
            input_width=320,
            input_height=180,
            filters="drawtext=text=x",
        )
    healthy.finish()


def test_plain_v1_server_offers_no_transcode(start_server) -> None:
    v1 = start_server("--engine", "x264", "--no-extensions")
    assert transcode_capabilities(v1.addr) is None
    with pytest.raises(UnsupportedConfigError, match="does not offer packet transcode"):
        RemoteTranscoder(
            v1.addr,
            input_codec="h264",
            input_time_base=Fraction(1, 30),
            input_width=320,
            input_height=180,
        )


def test_unreachable_server_fails_fast_naming_it() -> None:
    import socket

    from vtremote.errors import ConnectionLostError

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        ConnectionLostError, match=f"cannot reach 127.0.0.1:{port}: connection refused"
    ):
        RemoteTranscoder(
            f"127.0.0.1:{port}",
            input_codec="h264",
            input_time_base=Fraction(1, 30),
            input_width=320,
            input_height=180,
        )
    with pytest.raises(ConnectionLostError, match=f"127.0.0.1:{port}"):
        transcode_capabilities(f"127.0.0.1:{port}")
