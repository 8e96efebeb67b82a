"""Golden tests against the reference client's captures (../shared/protocol/vectors).

Every capture must parse into the messages its index lists, re-serialize to the
identical bytes (through a bare Receiver and through a server-role Connection),
the encode captures' FRAME planes must decompress to the NV12 planes of the
lavfi source they were made from, and the decode capture must carry an avcC
record and Annex B packets that decode to the same pictures as its source file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import av
import numpy as np
import pytest

from vtremote.frames import plane_views
from vtremote.wire import (
    HEADER,
    HEADER_SIZE,
    Configure,
    ConfigureAck,
    Connection,
    Done,
    Flush,
    Frame,
    Hello,
    HelloAck,
    Limits,
    Message,
    MessageType,
    Packet,
    Receiver,
    Role,
    State,
    annexb,
    compression,
    message_type,
    serialize,
    serialize_bytes,
)
from vtremote.wire.compression import parse_compression

# The captures are 320x180 NV12; a bare Receiver needs the FRAME limit a session sets.
CAPTURE_LIMITS = Limits().with_geometry(320, 180, 1, 2)


def parse_stream(data: bytes, chunk: int | None = None) -> list[Message]:
    r = Receiver(CAPTURE_LIMITS)
    step = chunk or len(data)
    for i in range(0, len(data), step):
        r.receive_data(data[i : i + step])
    r.receive_eof()
    out = []
    while (m := r.next_message()) is not None:
        out.append(m)
    assert r.at_eof
    return out


def parse_stream_zero_copy(data: bytes) -> list[Message]:
    """The recv_into path: bytes are written straight into get_buffer() views."""
    r = Receiver(CAPTURE_LIMITS)
    out = []
    pos = 0
    while pos < len(data):
        view = r.get_buffer()
        n = min(len(view), len(data) - pos, 997)  # odd size: headers and bodies get split
        view[:n] = data[pos : pos + n]
        r.buffer_updated(n)
        pos += n
        while (m := r.next_message()) is not None:
            out.append(m)
    return out


def test_messages_match_index(capture: Any) -> None:
    msgs = parse_stream(capture.data)
    assert [message_type(m) for m in msgs] == [e["type"] for e in capture.index]
    offset = 0
    for msg, entry in zip(msgs, capture.index, strict=True):
        wire = serialize_bytes(msg)
        assert entry["offset"] == offset
        assert len(wire) - HEADER_SIZE == entry["length"]
        assert HEADER.unpack_from(capture.data, offset)[3] == entry["length"]
        offset += len(wire)
    assert offset == len(capture.data)


def test_configure_matches_index(capture: Any) -> None:
    msgs = parse_stream(capture.data)
    configures = [(m, e) for m, e in zip(msgs, capture.index, strict=True) if "configure" in e]
    assert configures, "every capture indexes its CONFIGURE"
    for msg, entry in configures:
        assert isinstance(msg, Configure)
        want = entry["configure"]
        assert (msg.width, msg.height, msg.pix_fmt) == (want["w"], want["h"], want["pf"])
        assert msg.option_map() == want["opts"]
        assert [k for k, _ in msg.options] == list(want["opts"])  # wire order kept


@pytest.mark.parametrize("chunk", [None, 1, 12, 4096], ids=["whole", "bytewise", "by12", "by4096"])
def test_reserialize_identical(capture: Any, chunk: int | None) -> None:
    data = capture.data
    if chunk == 1:
        data = data[:6000]  # byte-wise feeding is slow in pure Python; the head has every kind
        data = data[: max(e["offset"] for e in capture.index if e["offset"] <= len(data))]
    msgs = parse_stream(data, chunk)
    assert b"".join(serialize_bytes(m) for m in msgs) == data


def test_reserialize_identical_zero_copy_path(capture: Any) -> None:
    msgs = parse_stream_zero_copy(capture.data)
    assert len(msgs) == len(capture.index)
    out = bytearray()
    for m in msgs:
        for buf in serialize(m):
            out += buf
    assert out == capture.data


def _serve(conn: Connection, msg: Message) -> None:
    """Answer as the server that recorded the captures did (vectors/README.md)."""
    if isinstance(msg, Hello):
        conn.send(HelloAck())
    elif isinstance(msg, Configure):
        conn.send(ConfigureAck(pix_fmt=msg.pix_fmt))
    elif isinstance(msg, Flush):
        conn.send(Done())


@pytest.mark.parametrize("feed", ["receive_data", "get_buffer"])
def test_server_connection_accepts_capture(capture: Any, feed: str) -> None:
    conn = Connection(Role.SERVER)
    events: list[Message] = []
    if feed == "receive_data":
        conn.receive_data(capture.data)
        while (m := conn.next_event()) is not None:
            events.append(m)
            _serve(conn, m)
    else:
        pos = 0
        while pos < len(capture.data):
            view = conn.get_buffer()
            n = min(len(view), len(capture.data) - pos)
            view[:n] = capture.data[pos : pos + n]
            conn.buffer_updated(n)
            pos += n
            while (m := conn.next_event()) is not None:
                events.append(m)
                _serve(conn, m)
    assert [message_type(m) for m in events] == [e["type"] for e in capture.index]
    assert b"".join(serialize_bytes(m) for m in events) == capture.data
    assert conn.state is State.DONE
    cfg = events[1]
    assert isinstance(cfg, Configure)
    assert conn.configure is cfg
    assert conn.mode == cfg.option("mode")
    assert conn.compression == parse_compression(cfg.option("wire_compression"))


# --- FRAME planes against the lavfi source ------------------------------------------------


@pytest.fixture(scope="module")
def testsrc2_frames() -> list[av.VideoFrame]:
    """Frames 0, 1, 2 of testsrc2=size=320x180:rate=5 in NV12, made in-process."""
    graph = av.filter.Graph()
    src = graph.add("testsrc2", "size=320x180:rate=5")
    fmt = graph.add("format", "nv12")
    sink = graph.add("buffersink")
    src.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    frames = [sink.pull() for _ in range(3)]
    assert [f.pts for f in frames] == [0, 1, 2]
    return frames


@pytest.mark.parametrize(("name", "mode"), [("h264_enc_zstd_token", 2), ("h264_enc_lz4", 1)])
def test_frame_planes_equal_testsrc2(
    capture_loader: Callable[[str], Any], testsrc2_frames: list[av.VideoFrame], name: str, mode: int
) -> None:
    cap = capture_loader(name)
    msgs = parse_stream(cap.data)
    cfg = msgs[1]
    assert isinstance(cfg, Configure)
    assert parse_compression(cfg.option("wire_compression")) == mode
    frames = [m for m in msgs if isinstance(m, Frame)]
    assert len(frames) == 3
    for i, (msg, ref) in enumerate(zip(frames, testsrc2_frames, strict=True)):
        assert msg.pts == i
        assert len(msg.planes) == 2
        for plane, (stride, rows, view) in zip(msg.planes, plane_views(ref), strict=True):
            assert (plane.stride, plane.height) == (stride, rows)
            raw = compression.decompress_plane(mode, plane.data, plane.stride * plane.height)
            assert len(raw) == plane.stride * plane.height
            # the wire bytes really are compressed, not a raw plane that happens to fit
            assert len(plane.data) < len(raw)
            np.testing.assert_array_equal(
                np.frombuffer(raw, np.uint8), np.frombuffer(view, np.uint8)
            )


# --- the decode capture -------------------------------------------------------------------


def test_decode_capture_avcc_and_annexb(
    capture_loader: Callable[[str], Any], vectors_dir: Any
) -> None:
    cap = capture_loader("h264_dec_zstd")
    msgs = parse_stream(cap.data)
    cfg = msgs[1]
    assert isinstance(cfg, Configure) and cfg.option("mode") == "decode"
    record = bytes(cfg.extradata)
    assert record[0] == 1  # avcC configurationVersion
    ps = annexb.parse_avcc(record)
    assert ps.nal_length_size == 4
    assert [annexb.nal_type("h264", n) for n in ps.nals] == [annexb.H264_SPS, annexb.H264_PPS]
    sps = annexb.parse_h264_sps(ps.nals[0])
    assert (sps.profile_idc, sps.chroma_format_idc, sps.bit_depth_luma) == (record[1], 1, 8)
    assert annexb.build_avcc(ps) == record  # our builder writes the same record as x264's muxer
    packets = [m for m in msgs if isinstance(m, Packet)]
    assert len(packets) == 10
    for i, pkt in enumerate(packets):
        data = bytes(pkt.data)
        assert data.startswith(annexb.START_CODE), f"PACKET {i} is not Annex B"
        nals = list(annexb.iter_annexb(data))
        assert nals and all(len(n) for n in nals)
        assert annexb.is_keyframe("h264", data) == pkt.keyframe
    assert packets[0].keyframe

    # The packets decode to the same pictures as the source file they came from.
    ctx = av.CodecContext.create("h264", "r")
    ctx.extradata = record
    from_wire = []
    for pkt in packets:
        from_wire += ctx.decode(av.Packet(annexb.annexb_to_length_prefixed(pkt.data, 4)))
    from_wire += ctx.decode(None)
    with av.open(str(vectors_dir / "src_h264.mp4")) as container:
        from_file = list(container.decode(video=0))
    assert len(from_wire) == len(from_file) == 10
    for a, b in zip(from_wire, from_file, strict=True):
        assert (a.width, a.height) == (320, 180)
        np.testing.assert_array_equal(a.to_ndarray(format="nv12"), b.to_ndarray(format="nv12"))


def test_captured_handshake_values(capture: Any) -> None:
    """HELLO carries four strings; the build is a version string, not a number."""
    hello = parse_stream(capture.data)[0]
    assert isinstance(hello, Hello)
    assert hello.codec == "h264" and hello.client_name == "ffmpeg-vtremote"
    assert hello.build and not hello.build.isdigit()
    if "token" in capture.name:
        assert hello.token == "secret_test_token"
    else:
        assert hello.token == ""
    assert MessageType(message_type(hello)) is MessageType.HELLO
