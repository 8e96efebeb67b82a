"""The live wire format: layouts, stream framing, limits; hypothesis on chunking and garbage."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vtremote.errors import LocalProtocolError, RemoteProtocolError
from vtremote.live import protocol as p

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MESSAGES: list[p.Message] = [
    p.Hello(
        7,
        99,
        p.Codec.HEVC,
        1920,
        1080,
        30000,
        1001,
        p.Capability.METADATA | p.Capability.RETRANSMIT,
        5,
        "cam-1",
    ),
    p.HelloAck(p.AckStatus.OK, 0xDEADBEEF, p.Capability.METADATA, ""),
    p.HelloAck(p.AckStatus.REFUSED, 0, p.Capability(0), "wrong key"),
    p.Video(12, 123_456_789_000, b"\x00\x00\x00\x01\x65" + bytes(100), True, 3),
    p.Video(13, -5, b"", False, 0),
    p.Metadata(12, 123_456_789_000, b'{"gps":[1.5,2.5]}'),
    p.Audio(p.AudioCodec.OPUS, 4, 1000, b"\xfc\x00"),
    p.KeyframeRequest(p.KeyframeReason.LOSS, 77),
    p.Stats(100, 2, 1_000_000, 12_000, 40_000, 50),
    p.BitrateHint(3_000_000),
    p.ClockRequest(1, 10),
    p.ClockReply(1, 10, 20, 30),
    p.Bye(p.ByeReason.END_OF_STREAM, 300, 4),
    p.Error(4, "bad"),
    p.Nack((1, 2, 0xFFFFFFFF)),
    p.Challenge(bytes(range(16))),
    p.Auth(b"c" * 16, b"n" * 16, b"p" * 32, b"hello payload"),
]


def _bytes(msg: p.Message) -> bytes:
    return b"".join(bytes(b) for b in p.serialize(msg))


def _with_bytes_data(msg: p.Message) -> p.Message:
    if isinstance(msg, (p.Video, p.Audio)):
        return type(msg)(
            **{**{f: getattr(msg, f) for f in msg.__dataclass_fields__}, "data": bytes(msg.data)}
        )
    return msg


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: p.Message) -> None:
    data = _bytes(msg)
    magic, version, kind, length = p.HEADER.unpack_from(data)
    assert (magic, version, kind, length) == (b"VL", 1, p.message_type(msg), len(data) - 8)
    (back,) = p.StreamParser().feed(data)
    assert _with_bytes_data(back) == _with_bytes_data(msg)


def test_video_layout_matches_the_byte_table() -> None:
    data = _bytes(p.Video(0x01020304, 0x1122334455667788, b"AB", True, 9))
    assert (
        data
        == b"VL\x01\x03"
        + struct.pack("!I", 19)
        + b"\x01\x01\x02\x03\x04"
        + bytes.fromhex("1122334455667788")
        + b"\x00\x00\x00\x09AB"
    )


def test_video_data_is_not_copied_on_serialize() -> None:
    picture = bytearray(b"\x00\x00\x01\x65" * 1000)
    parts = p.serialize(p.Video(1, 2, picture))
    assert parts[-1] is picture


def test_oversized_header_is_refused_before_the_payload() -> None:
    parser = p.StreamParser()
    with pytest.raises(RemoteProtocolError, match="VIDEO of 4294967295 bytes exceeds 8388608"):
        parser.feed(p.HEADER.pack(b"VL", 1, p.MessageType.VIDEO, 0xFFFFFFFF))
    assert parser.buffered <= p.HEADER_SIZE  # nothing beyond the header was kept


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"XX\x01\x03\x00\x00\x00\x00", "bad header magic"),
        (b"VL\x02\x03\x00\x00\x00\x00", "version=2"),
        (b"VL\x01\x63\x00\x00\x00\x00", "unknown message type 99"),
        (b"VL\x01\x03\x00\x00\x00\x02\x00\x00", "VIDEO payload of 2 bytes, needs at least 17"),
        (b"VL\x01\x04\x00\x00\x00\x0dxxxxxxxxxxxx{", "METADATA for frame .* is not JSON"),
        (b"VL\x01\x06\x00\x00\x00\x01\x01", "KEYFRAME_REQUEST payload of 1 bytes, must be 5"),
    ],
)
def test_malformed_messages_name_the_fault(data: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        p.StreamParser().feed(data)


def test_hello_geometry_and_rate_are_checked() -> None:
    good = _bytes(MESSAGES[0])
    bad = bytearray(good)
    struct.pack_into("!H", bad, 8 + 10, 0)  # width 0
    with pytest.raises(RemoteProtocolError, match="HELLO size 0x1080"):
        p.StreamParser().feed(bytes(bad))


def test_eof_inside_a_message_is_an_error() -> None:
    parser = p.StreamParser()
    parser.feed(_bytes(MESSAGES[3])[:20])
    with pytest.raises(RemoteProtocolError, match="closed inside a message"):
        parser.feed(b"")


def test_local_limits_are_enforced_on_send() -> None:
    with pytest.raises(LocalProtocolError, match="exceeds"):
        p.serialize(p.Metadata(1, 1, b"1" * (64 * 1024)))
    with pytest.raises(LocalProtocolError, match="NACK of 257"):
        p.serialize(p.Nack(tuple(range(257))))


@SETTINGS
@given(st.lists(st.sampled_from(MESSAGES), min_size=1, max_size=8), st.data())
def test_any_chunking_gives_the_same_messages(msgs: list[p.Message], data: st.DataObject) -> None:
    stream = b"".join(_bytes(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    parser = p.StreamParser()
    out: list[p.Message] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        out += parser.feed(stream[last:cut]) if cut > last else []
        last = cut
    assert [_with_bytes_data(m) for m in out] == [_with_bytes_data(m) for m in msgs]
    assert parser.feed(b"") == []


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_protocol_errors(garbage: bytes) -> None:
    parser = p.StreamParser()
    try:
        parser.feed(garbage)
        parser.feed(b"")
    except RemoteProtocolError:
        pass
    assert parser.buffered <= max(len(garbage), 8)


@SETTINGS
@given(st.sampled_from(MESSAGES), st.integers(0, 200), st.integers(0, 255))
def test_mutated_messages_raise_only_protocol_errors(msg: p.Message, pos: int, value: int) -> None:
    data = bytearray(_bytes(msg))
    data[pos % len(data)] = value
    with contextlib.suppress(RemoteProtocolError):
        p.StreamParser().feed(bytes(data))


@SETTINGS
@given(st.integers(0, 255), st.binary(max_size=300))
def test_parse_payload_of_any_type_raises_only_protocol_errors(kind: int, payload: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        p.parse_payload(kind, payload)
