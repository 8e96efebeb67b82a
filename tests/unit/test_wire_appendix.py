"""Byte-exact examples of every message kind (VTR1.md Appendix A).

Each example is built from message objects and compared with the hex bytes the
reference produces, then the hex is parsed back to the same object.
"""

from __future__ import annotations

import pytest

from vtremote.wire import (
    HEADER,
    Configure,
    ConfigureAck,
    Done,
    Error,
    Flush,
    Frame,
    Hello,
    HelloAck,
    Message,
    MessageType,
    Packet,
    Ping,
    Plane,
    Pong,
    Receiver,
    parse_payload,
    serialize,
    serialize_bytes,
)
from vtremote.wire.constants import FRAME_PREFIX


def h(text: str) -> bytes:
    """Hex with spaces, ``|`` separators and newlines -> bytes."""
    return bytes.fromhex(text.replace("|", " "))


HELLO = h(
    """56 54 52 31 00 01 00 01 00 00 00 22
    00 00 | 00 04 68 32 36 34 | 00 0f 66 66 6d 70 65 67 2d 76 74 72 65 6d 6f 74 65 |
    00 07 38 2e 30 2e 67 69 74"""
)
HELLO_ACK = h(
    """56 54 52 31 00 01 00 02 00 00 00 16
    00 | 00 00 | 00 00 | 02 | 00 04 68 32 36 34 | 00 04 68 65 76 63 | 00 04 | 00 01"""
)
CONFIGURE = h(
    """56 54 52 31 00 01 00 03 00 00 00 90
    00 00 01 40 | 00 00 00 b4 | 01 | 00 00 00 01 | 00 00 00 1e | 00 00 00 1e | 00 00 00 01 | 00 08
    00 04 6d6f6465 00 06 656e636f6465
    00 10 776972655f636f6d7072657373696f6e 00 01 32
    00 07 62697472617465 00 06 333030303030
    00 03 676f70 00 02 3330
    00 05 666c616773 00 07 34313934333034
    00 07 656e74726f7079 00 01 30
    00 08 7265616c74696d65 00 01 30
    00 06 6135335f6363 00 01 31
    00 00 00 00"""
)
CONFIGURE_ACK = h("56 54 52 31 00 01 00 04 00 00 00 05 | 00 | 00 00 | 01 | 00")
PACKET = h(
    """56 54 52 31 00 01 00 06 00 00 00 26
    00 00 00 00 00 00 00 00 | ff ff ff ff ff ff ff ff | 00 00 00 00 00 00 00 00 |
    00 00 00 01 | 00 00 00 06 | 00 00 00 01 65 88"""
)
FRAME_PREFIX_HEX = h("00 00 00 00 00 00 00 05 | 00 00 00 00 00 00 00 01 | 00 00 00 01 | 02")
FLUSH = h("56 54 52 31 00 01 00 07 00 00 00 00")
DONE = h("56 54 52 31 00 01 00 08 00 00 00 00")
PING = h("56 54 52 31 00 01 00 0a 00 00 00 00")
PONG = h("56 54 52 31 00 01 00 0b 00 00 00 00")
ERROR = h(
    """56 54 52 31 00 01 00 09 00 00 00 24 | 00 00 00 01 |
    00 1e 75 6e 73 75 70 70 6f 72 74 65 64 20 77 69 72 65 5f 63 6f 6d 70 72 65 73 73 69 6f 6e
    3d 33"""
)

CONFIGURE_MSG = Configure(
    width=320,
    height=180,
    pix_fmt=1,
    time_base_num=1,
    time_base_den=30,
    framerate_num=30,
    framerate_den=1,
    options=(
        ("mode", "encode"),
        ("wire_compression", "2"),
        ("bitrate", "300000"),
        ("gop", "30"),
        ("flags", "4194304"),
        ("entropy", "0"),
        ("realtime", "0"),
        ("a53_cc", "1"),
    ),
)

EXAMPLES: list[tuple[str, Message, bytes]] = [
    ("HELLO", Hello(token="", codec="h264", client_name="ffmpeg-vtremote", build="8.0.git"), HELLO),
    ("HELLO_ACK", HelloAck(), HELLO_ACK),
    ("CONFIGURE", CONFIGURE_MSG, CONFIGURE),
    ("CONFIGURE_ACK", ConfigureAck(status=0, extradata=b"", pix_fmt=1), CONFIGURE_ACK),
    (
        "PACKET",
        Packet(pts=0, dts=-1, duration=0, flags=1, data=b"\x00\x00\x00\x01\x65\x88"),
        PACKET,
    ),
    ("FLUSH", Flush(), FLUSH),
    ("DONE", Done(), DONE),
    ("PING", Ping(), PING),
    ("PONG", Pong(), PONG),
    ("ERROR", Error(1, "unsupported wire_compression=3"), ERROR),
]


@pytest.mark.parametrize(("name", "msg", "wire"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_serialize_matches_appendix(name: str, msg: Message, wire: bytes) -> None:
    assert serialize_bytes(msg).hex(" ") == wire.hex(" ")


@pytest.mark.parametrize(("name", "msg", "wire"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_parse_appendix(name: str, msg: Message, wire: bytes) -> None:
    magic, version, raw_type, length = HEADER.unpack_from(wire)
    assert (magic, version, raw_type) == (0x56545231, 1, MessageType[name])
    assert length == len(wire) - 12
    parsed = parse_payload(raw_type, wire[12:])
    assert _plain(parsed) == _plain(msg)
    # and through the receiver, one byte at a time
    r = Receiver()
    for b in wire:
        r.receive_data(bytes([b]))
    got = r.next_message()
    assert got is not None and _plain(got) == _plain(msg)
    assert r.next_message() is None


def test_appendix_payload_lengths() -> None:
    """The sizes the appendix states: HELLO 34, HELLO_ACK 22, CONFIGURE 144, PACKET 38."""
    assert [len(w) - 12 for w in (HELLO, HELLO_ACK, CONFIGURE, CONFIGURE_ACK, PACKET, ERROR)] == [
        34,
        22,
        144,
        5,
        38,
        36,
    ]


def test_configure_option_map_and_fields() -> None:
    cfg = parse_payload(MessageType.CONFIGURE, CONFIGURE[12:])
    assert isinstance(cfg, Configure)
    assert (cfg.width, cfg.height, cfg.pix_fmt) == (320, 180, 1)
    assert (cfg.time_base_num, cfg.time_base_den, cfg.framerate_num, cfg.framerate_den) == (
        1,
        30,
        30,
        1,
    )
    assert cfg.option_map() == {
        "mode": "encode",
        "wire_compression": "2",
        "bitrate": "300000",
        "gop": "30",
        "flags": "4194304",
        "entropy": "0",
        "realtime": "0",
        "a53_cc": "1",
    }
    assert bytes(cfg.extradata) == b""


def test_frame_prefix_matches_appendix() -> None:
    """FRAME prefix pts 5, duration 1, flags 1, two planes, then 12-byte plane headers."""
    y, uv = b"\x10" * 8, b"\x80" * 4
    frame = Frame(pts=5, duration=1, flags=1, planes=(Plane(4, 2, y), Plane(4, 1, uv)))
    wire = serialize_bytes(frame)
    assert wire[12 : 12 + FRAME_PREFIX.size] == FRAME_PREFIX_HEX
    plane0 = h("00 00 00 04 | 00 00 00 02 | 00 00 00 08")
    plane1 = h("00 00 00 04 | 00 00 00 01 | 00 00 00 04")
    assert wire[12 + 21 :] == plane0 + y + plane1 + uv  # no side-data block when None
    assert HEADER.unpack_from(wire)[3] == 21 + 12 + 8 + 12 + 4
    parsed = parse_payload(MessageType.FRAME, wire[12:])
    assert isinstance(parsed, Frame) and parsed.side_data is None
    assert [(p.stride, p.height, bytes(p.data)) for p in parsed.planes] == [(4, 2, y), (4, 1, uv)]


def test_uncompressed_1080p_frame_size() -> None:
    """Appendix A: 1920x1080 NV12 at linesize 1920 is a 3,110,445-byte payload."""
    y, uv = bytearray(1920 * 1080), bytearray(1920 * 540)
    bufs = serialize(Frame(0, 0, 0, (Plane(1920, 1080, y), Plane(1920, 540, uv))))
    assert HEADER.unpack_from(bufs[0])[3] == 3_110_445


def _plain(msg: Message) -> object:
    """A message with its buffers turned into bytes, for equality."""
    if isinstance(msg, Configure):
        return (
            msg.width,
            msg.height,
            msg.pix_fmt,
            msg.time_base_num,
            msg.time_base_den,
            msg.framerate_num,
            msg.framerate_den,
            msg.options,
            bytes(msg.extradata),
        )
    if isinstance(msg, ConfigureAck):
        return (msg.status, bytes(msg.extradata), msg.pix_fmt, msg.warnings)
    if isinstance(msg, Packet):
        return (msg.pts, msg.dts, msg.duration, msg.flags, bytes(msg.data))
    return msg
