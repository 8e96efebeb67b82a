"""Receive-side framing: header checks, per-type limits before buffering, EOF, misuse."""

from __future__ import annotations

import tracemalloc

import pytest

from vtremote.errors import LocalProtocolError, RemoteProtocolError
from vtremote.wire import (
    HEADER,
    MAGIC,
    Configure,
    Connection,
    Frame,
    Hello,
    HelloAck,
    Limits,
    MessageType,
    Packet,
    Ping,
    Plane,
    Receiver,
    Role,
    frame_limit,
    serialize,
    serialize_bytes,
)
from vtremote.wire.framing import (
    LAZY_BODY_THRESHOLD,
    MAX_DIMENSION,
    SIDE_DATA_ALLOWANCE,
    max_stride,
)

GiB4 = 0xFFFFFFFF


def header(raw_type: int, length: int, magic: int = MAGIC, version: int = 1) -> bytes:
    return HEADER.pack(magic, version, raw_type, length)


@pytest.mark.parametrize("raw_type", [int(t) for t in MessageType] + [0, 12, 0xFFFF])
def test_four_gib_header_refused_without_allocating(raw_type: int) -> None:
    r = Receiver(Limits().with_geometry(1920, 1080, 1, 2))
    tracemalloc.start()
    try:
        r.receive_data(header(raw_type, GiB4))
        with pytest.raises(RemoteProtocolError, match=f"of {GiB4} bytes exceeds the limit of"):
            r.next_message()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert r.allocated == 0  # no body buffer was made for it
    with pytest.raises(RemoteProtocolError):  # the receiver stays failed
        r.receive_data(b"more")


def test_limit_checked_on_twelfth_byte_zero_copy_path() -> None:
    r = Receiver()
    wire = header(MessageType.HELLO, 64 * 1024 + 1)
    for i, b in enumerate(wire):
        view = r.get_buffer()
        assert len(view) == 12 - i  # still reading the header
        view[0] = b
        if i < 11:
            r.buffer_updated(1)
    with pytest.raises(
        RemoteProtocolError, match="HELLO of 65537 bytes exceeds the limit of 65536"
    ):
        r.buffer_updated(1)
    assert r.allocated == 0


@pytest.mark.parametrize(
    ("raw_type", "limit"),
    [
        (MessageType.HELLO, 64 * 1024),
        (MessageType.HELLO_ACK, 64 * 1024),
        (MessageType.ERROR, 64 * 1024),
        (MessageType.FLUSH, 64 * 1024),
        (MessageType.PING, 64 * 1024),
        (99, 64 * 1024),
        (MessageType.CONFIGURE, 1024 * 1024),
        (MessageType.CONFIGURE_ACK, 1024 * 1024),
        (MessageType.PACKET, 64 * 1024 * 1024),
        (MessageType.FRAME, 0),
    ],
)
def test_default_limits_exact_boundary(raw_type: int, limit: int) -> None:
    assert Limits().for_type(raw_type) == limit
    if limit:
        ok = Receiver()
        ok.receive_data(header(raw_type, limit))
        assert ok.next_message() is None  # accepted: waiting for the body
        assert ok.allocated == limit
    over = Receiver()
    over.receive_data(header(raw_type, limit + 1))
    with pytest.raises(
        RemoteProtocolError, match=f"of {limit + 1} bytes exceeds the limit of {limit}"
    ):
        over.next_message()


def test_large_body_is_lazily_reserved() -> None:
    """A 64 MiB PACKET announcement reserves address space, not memory."""
    r = Receiver()
    tracemalloc.start()
    try:
        r.receive_data(header(MessageType.PACKET, 64 * 1024 * 1024))
        assert r.next_message() is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.allocated == 64 * 1024 * 1024
    assert peak < 1 << 20
    # and a real large PACKET still arrives intact through that buffer
    data = bytes(range(256)) * (LAZY_BODY_THRESHOLD // 128)
    r2 = Receiver()
    r2.receive_data(serialize_bytes(Packet(1, 2, 3, 1, data)))
    got = r2.next_message()
    assert isinstance(got, Packet) and bytes(got.data) == data


def test_bad_magic_and_version() -> None:
    r = Receiver()
    r.receive_data(header(1, 0, magic=0x56545232))
    with pytest.raises(RemoteProtocolError, match="bad header magic=0x56545232 version=1"):
        r.next_message()
    r = Receiver()
    r.receive_data(header(1, 0, version=2))
    with pytest.raises(RemoteProtocolError, match="bad header magic=0x56545231 version=2"):
        r.next_message()


def test_eof_mid_header_and_mid_body() -> None:
    wire = serialize_bytes(Hello("tok", "h264", "x", "1"))
    r = Receiver()
    r.receive_data(wire[:5])
    r.receive_eof()
    with pytest.raises(RemoteProtocolError, match="closed mid-message after 5 of 12 header bytes"):
        r.next_message()
    r = Receiver()
    r.receive_data(wire[:-1])
    r.receive_eof()
    n = len(wire) - 12
    with pytest.raises(RemoteProtocolError, match=f"after {n - 1} of {n} body bytes of HELLO"):
        r.next_message()


def test_clean_eof() -> None:
    r = Receiver()
    r.receive_data(serialize_bytes(Ping()) * 2)
    r.receive_eof()
    assert isinstance(r.next_message(), Ping)
    assert not r.at_eof
    assert isinstance(r.next_message(), Ping)
    assert r.next_message() is None and r.at_eof
    with pytest.raises(RemoteProtocolError, match="after end of stream"):
        r.receive_data(b"x")


def test_zero_copy_misuse() -> None:
    r = Receiver()
    view = r.get_buffer()
    view[:12] = serialize_bytes(Ping())
    with pytest.raises(LocalProtocolError, match="room for 12 bytes"):
        r.buffer_updated(13)
    r = Receiver()
    r.receive_data(serialize_bytes(Ping()))
    with pytest.raises(LocalProtocolError, match="pending"):
        r.get_buffer()


def test_frame_body_lands_in_one_buffer_and_planes_are_views() -> None:
    """Planes of a received FRAME are memoryview slices of the one body buffer."""
    y, uv = bytes(range(256)) * 4, bytes(512)
    wire = serialize_bytes(Frame(0, 0, 0, (Plane(32, 32, y), Plane(32, 16, uv))))
    r = Receiver(Limits().with_geometry(32, 32, 1, 0))
    r.receive_data(wire)
    frame = r.next_message()
    assert isinstance(frame, Frame)
    p0, p1 = frame.planes
    assert isinstance(p0.data, memoryview) and isinstance(p1.data, memoryview)
    assert p0.data.obj is p1.data.obj  # same underlying body
    assert bytes(p0.data) == y and bytes(p1.data) == uv


def test_frame_limit_formula() -> None:
    # prefix 21 + side-data count 1 + allowance + per plane: 12 + bound(max_stride * rows)
    assert max_stride(320) == 320 + 4096
    assert max_stride(3840) == 4 * 3840
    raw = frame_limit(320, 180, 1, 0)
    assert raw == 21 + 1 + SIDE_DATA_ALLOWANCE + 12 + 4416 * 180 + 12 + 4416 * 90
    lz4 = frame_limit(320, 180, 1, 1)
    assert lz4 == 21 + 1 + SIDE_DATA_ALLOWANCE + sum(
        12 + n + n // 255 + 128 for n in (4416 * 180, 4416 * 90)
    )
    p010 = frame_limit(1920, 1080, 2, 0)
    assert p010 == 21 + 1 + SIDE_DATA_ALLOWANCE + 12 + 4 * 3840 * 1080 + 12 + 4 * 3840 * 540
    # odd height: chroma up to ceil(h / 2) rows; odd width: chroma rows hold ceil(w / 2) pairs
    assert (
        frame_limit(321, 181, 1, 0)
        == 21 + 1 + SIDE_DATA_ALLOWANCE + 12 + (321 + 4096) * 181 + 12 + (322 + 4096) * 91
    )
    # geometry outside 1..MAX_DIMENSION: no FRAME at all
    assert frame_limit(0, 180, 1, 0) == 0
    assert frame_limit(MAX_DIMENSION + 1, 16, 1, 0) == 0
    assert frame_limit(16, 0xFFFFFFFF, 1, 2) == 0
    assert frame_limit(MAX_DIMENSION, MAX_DIMENSION, 2, 0) > 0


def test_connection_sets_frame_limit_from_configure() -> None:
    srv = Connection(Role.SERVER)
    assert srv.receiver.limits.frame == 0
    srv.receive_data(serialize_bytes(Hello()))
    srv.next_event()
    srv.send(HelloAck())
    cfg = Configure(640, 360, 1, 1, 30, 30, 1, (("mode", "encode"), ("wire_compression", "2")))
    srv.receive_data(serialize_bytes(cfg))
    assert srv.next_event() == cfg
    assert srv.receiver.limits.frame == frame_limit(640, 360, 1, 2)


def test_serialize_returns_buffer_list_for_sendmsg() -> None:
    bufs = serialize(Ping())
    assert len(bufs) == 1 and bytes(bufs[0]) == header(MessageType.PING, 0)
