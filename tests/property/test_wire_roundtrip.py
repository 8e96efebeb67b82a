"""Hypothesis: every message survives serialize -> any chunking -> parse; zero copy on send."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vtremote.wire import (
    Configure,
    ConfigureAck,
    Done,
    Error,
    Flush,
    Frame,
    Hello,
    HelloAck,
    Limits,
    Message,
    MessageType,
    Packet,
    Ping,
    Plane,
    Pong,
    Raw,
    Receiver,
    SideData,
    Unknown,
    parse_payload,
    serialize,
    serialize_bytes,
)
from vtremote.wire.framing import LAZY_BODY_THRESHOLD

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i64 = st.integers(-(2**63), 2**63 - 1)
text = st.text(max_size=24)
blob = st.binary(max_size=300)
# Buffers come in every form a caller may hold.
buffers = st.one_of(blob, blob.map(bytearray), blob.map(memoryview))

hello = st.builds(Hello, text, text, text, text)
hello_ack = st.builds(HelloAck, u8, text, text, st.lists(text, max_size=6).map(tuple), u16, u16)
configure = st.builds(
    Configure,
    u32,
    u32,
    u8,
    u32,
    u32,
    u32,
    u32,
    st.lists(st.tuples(text, text), max_size=8).map(tuple),
    buffers,
)
configure_ack = st.builds(ConfigureAck, u8, buffers, u8, st.lists(text, max_size=4).map(tuple))
plane = st.builds(Plane, u32, u32, buffers)
side = st.builds(SideData, u32, st.binary(max_size=40))
frame = st.builds(
    Frame,
    i64,
    i64,
    u32,
    st.lists(plane, max_size=3).map(tuple),
    st.none() | st.lists(side, max_size=3).map(tuple),
)
packet = st.builds(Packet, i64, i64, i64, u32, buffers)


def _unframed_ok(e: Error) -> bool:
    # An unframed text that happens to start with its own u16 length reads back framed.
    raw = e.message.encode()
    return not (len(raw) >= 2 and int.from_bytes(raw[:2], "big") == len(raw) - 2)


error = st.builds(Error, u32, text, st.booleans()).filter(
    lambda e: not e.unframed or _unframed_ok(e)
)
unknown = st.builds(Unknown, st.integers(12, 0xFFFF) | st.just(0), st.binary(max_size=60))
raw = st.builds(
    Raw,
    st.sampled_from([MessageType.FLUSH, MessageType.DONE, MessageType.PING, MessageType.PONG]),
    st.binary(min_size=1, max_size=60),
)
empty = st.sampled_from([Flush(), Done(), Ping(), Pong()])

messages = st.one_of(
    hello, hello_ack, configure, configure_ack, frame, packet, error, unknown, raw, empty
)

LIMITS = Limits(frame=1 << 20)


def plain(value: object) -> object:
    """Buffers -> bytes, recursively through dataclasses and tuples (for equality)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            *(plain(getattr(value, f.name)) for f in dataclasses.fields(value)),
        )
    return value


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` split at the given positions (any chunking, empty chunks included)."""
    marks = sorted({min(p, len(data)) for p in points})
    out, prev = [], 0
    for m in [*marks, len(data)]:
        out.append(data[prev:m])
        prev = m
    return out


@SETTINGS
@given(st.lists(messages, min_size=1, max_size=6), st.lists(st.integers(0, 4000), max_size=20))
def test_any_messages_survive_any_chunking(msgs: list[Message], points: list[int]) -> None:
    wire = b"".join(serialize_bytes(m) for m in msgs)
    r = Receiver(LIMITS)
    got: list[Message] = []
    for chunk in cut(wire, points):
        r.receive_data(chunk)
        while (m := r.next_message()) is not None:
            got.append(m)
    r.receive_eof()
    assert r.next_message() is None and r.at_eof
    assert [plain(m) for m in got] == [plain(m) for m in msgs]
    assert b"".join(serialize_bytes(m) for m in got) == wire


@SETTINGS
@given(
    st.lists(messages, min_size=1, max_size=6),
    st.lists(st.integers(1, 700), min_size=1, max_size=30),
)
def test_any_messages_survive_recv_into_path(msgs: list[Message], sizes: list[int]) -> None:
    """get_buffer()/buffer_updated(n) with reads of arbitrary sizes, as recv_into gives them."""
    wire = b"".join(serialize_bytes(m) for m in msgs)
    r = Receiver(LIMITS)
    got: list[Message] = []
    pos, i = 0, 0
    while pos < len(wire):
        view = r.get_buffer()
        assert len(view) > 0
        n = min(len(view), sizes[i % len(sizes)], len(wire) - pos)
        i += 1
        view[:n] = wire[pos : pos + n]
        r.buffer_updated(n)
        pos += n
        while (m := r.next_message()) is not None:
            got.append(m)
    assert [plain(m) for m in got] == [plain(m) for m in msgs]
    assert r.allocated == 0 and not r.mid_message


@SETTINGS
@given(messages)
def test_parse_payload_inverts_serialize(msg: Message) -> None:
    wire = serialize_bytes(msg)
    raw_type = int.from_bytes(wire[6:8], "big")
    assert int.from_bytes(wire[8:12], "big") == len(wire) - 12
    back = parse_payload(raw_type, wire[12:])
    assert plain(back) == plain(msg)


@SETTINGS
@given(frame)
def test_serialize_frame_returns_callers_planes(msg: Frame) -> None:
    bufs = serialize(msg)
    # header, FRAME prefix, then (plane header, plane data) per plane, then the side data
    # block: count, then (entry header, entry data) per entry
    n = len(msg.planes)
    for i, p in enumerate(msg.planes):
        assert bufs[3 + 2 * i] is p.data, "plane bytes must be the caller's object, not a copy"
    for j, sd in enumerate(msg.side_data or ()):
        assert bufs[2 + 2 * n + 2 + 2 * j] is sd.data
    assert len(bufs) == 2 + 2 * n + (0 if msg.side_data is None else 1 + 2 * len(msg.side_data))


@SETTINGS
@given(packet)
def test_serialize_packet_returns_callers_data(msg: Packet) -> None:
    bufs = serialize(msg)
    assert bufs[-1] is msg.data
    assert len(bufs) == 3  # header, prefix, data: one sendmsg, no concatenation


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(LAZY_BODY_THRESHOLD + 1, 3 * LAZY_BODY_THRESHOLD), u8, st.booleans()),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([4096, 65536, 1 << 20]),
)
def test_large_bodies_survive_buffer_reuse(specs: list[tuple[int, int, bool]], chunk: int) -> None:
    """Bodies above the lazy threshold are memory maps that the receiver reuses once no
    message views them: a message still held must never be overwritten by a later one."""
    r = Receiver()
    held: list[tuple[Packet, int, int]] = []
    for i, (size, fill, hold) in enumerate(specs):
        wire = memoryview(serialize_bytes(Packet(i, i, 0, 0, bytes([fill]) * size)))
        msg = None
        while msg is None:
            view = r.get_buffer()
            n = min(len(view), len(wire), chunk)
            view[:n] = wire[:n]
            wire = wire[n:]
            del view  # a transport drops its recv_into view after each read
            r.buffer_updated(n)
            msg = r.next_message()
        assert isinstance(msg, Packet) and msg.pts == i
        assert bytes(msg.data) == bytes([fill]) * size
        if hold:
            held.append((msg, fill, size))
        del msg
    for msg, fill, size in held:
        assert bytes(msg.data) == bytes([fill]) * size
