"""Hypothesis: hostile bytes raise only ProtocolError subclasses and never allocate past the limits.

Random bytes, mutated valid streams and mutated reference captures go through a
bare Receiver and through Connections of both roles (answering like a peer
would). Bitstream functions on arbitrary bytes raise only BitstreamError, plane
decompression only RemoteProtocolError.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vtremote.errors import BitstreamError, LocalProtocolError, ProtocolError, RemoteProtocolError
from vtremote.wire import (
    HEADER,
    MAGIC,
    Configure,
    ConfigureAck,
    Connection,
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
    Receiver,
    Role,
    State,
    WireCompression,
    annexb,
    compression,
    serialize_bytes,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "protocol" / "vectors"
CAPTURES = (
    {p.stem: p.read_bytes() for p in sorted(VECTORS.glob("*.bin"))} if VECTORS.is_dir() else {}
)
needs_captures = pytest.mark.skipif(
    not CAPTURES, reason=f"reference captures not found: {VECTORS} does not exist"
)

BARE_LIMITS = Limits().with_geometry(320, 180, 1, 2)


# --- drivers ----------------------------------------------------------------------------------


def drain_receiver(data: bytes, chunks: list[int]) -> int:
    """Feed ``data`` to a Receiver in chunks; returns how many messages came out."""
    r = Receiver(BARE_LIMITS)
    n = 0
    pos = 0
    for size in [*chunks, len(data)]:
        r.receive_data(data[pos : pos + size])
        pos += size
        while r.next_message() is not None:
            n += 1
        assert r.allocated <= BARE_LIMITS.packet
    r.receive_eof()
    while r.next_message() is not None:
        n += 1
    return n


def answer_as_server(conn: Connection, msg: Message) -> None:
    if isinstance(msg, Hello):
        conn.send(HelloAck())
    elif isinstance(msg, Configure):
        try:
            compression.parse_compression(msg.option("wire_compression"))
        except ValueError as e:
            conn.send(Error(1, str(e)))
            return
        conn.send(ConfigureAck(pix_fmt=msg.pix_fmt))
    elif isinstance(msg, Ping):
        conn.send(Pong())
    elif isinstance(msg, Flush) and not conn.finished:
        conn.send(Done())
    elif isinstance(msg, Frame):
        for p in msg.planes:  # geometry was checked by the Connection
            compression.decompress_plane(conn.compression, p.data, p.stride * p.height)


def drive_server(data: bytes) -> Connection:
    conn = Connection(Role.SERVER)
    conn.receive_data(data)
    conn.receive_eof()
    while not conn.finished and (m := conn.next_event()) is not None:
        answer_as_server(conn, m)
    return conn


CLIENT_PRELUDE: list[Message] = [
    Hello("", "h264", "test", "1"),
    Configure(320, 180, 1, 1, 5, 5, 1, (("mode", "decode"), ("wire_compression", "2")), b"\x01"),
]


def drive_client(data: bytes) -> Connection:
    conn = Connection(Role.CLIENT)
    conn.send(CLIENT_PRELUDE[0])
    conn.receive_data(data)
    conn.receive_eof()
    while not conn.finished and (m := conn.next_event()) is not None:
        if isinstance(m, HelloAck) and m.status == 0:
            conn.send(CLIENT_PRELUDE[1])
        elif isinstance(m, ConfigureAck):
            conn.send(Flush())
        elif isinstance(m, Ping):
            conn.send(Pong())
        elif isinstance(m, Frame):
            for p in m.planes:
                compression.decompress_plane(conn.compression, p.data, p.stride * p.height)
    return conn


def server_stream() -> bytes:
    """A valid decode session as the server sends it (zstd planes)."""
    luma = bytes(range(256)) * 225
    chroma = bytes(range(128)) * 225
    planes = (
        Plane(320, 180, compression.compress_plane(WireCompression.ZSTD, luma)),
        Plane(320, 90, compression.compress_plane(WireCompression.ZSTD, chroma)),
    )
    msgs: list[Message] = [
        HelloAck(),
        ConfigureAck(pix_fmt=1),
        Frame(0, 1, 0, planes),
        Ping(),
        Frame(1, 1, 0, planes),
        Done(),
    ]
    return b"".join(serialize_bytes(m) for m in msgs)


SERVER_STREAM = server_stream()


def only_protocol_errors(fn: object, *args: object) -> None:
    """Run ``fn``; a ProtocolError is an accepted outcome, anything else fails the test."""
    with contextlib.suppress(ProtocolError):
        fn(*args)  # type: ignore[operator]


# --- mutations --------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["flip", "set", "truncate", "insert", "delete", "length", "splice"])
        )
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 32))]
        elif kind == "length":
            # Overwrite a u32 with an interesting value: header lengths, counts, strides.
            value = draw(
                st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])
                | st.integers(0, 2**32 - 1)
            )
            data[pos : pos + 4] = value.to_bytes(4, "big")
        elif kind == "splice":
            a = draw(st.integers(0, len(base)))
            data[pos:pos] = base[a : a + draw(st.integers(1, 2000))]
    return bytes(data)


# --- tests ------------------------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=2000), st.lists(st.integers(0, 300), max_size=8))
def test_random_bytes_receiver(data: bytes, chunks: list[int]) -> None:
    only_protocol_errors(drain_receiver, data, chunks)


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes_after_valid_header(tail: bytes) -> None:
    """Random bodies behind a valid header of every type."""
    for raw_type in range(0, 13):
        data = HEADER.pack(MAGIC, 1, raw_type, len(tail)) + tail
        only_protocol_errors(drain_receiver, data, [])
        only_protocol_errors(drive_server, serialize_bytes(CLIENT_PRELUDE[0]) + data)
        only_protocol_errors(drive_client, serialize_bytes(HelloAck()) + data)


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes_connections(data: bytes) -> None:
    only_protocol_errors(drive_server, data)
    only_protocol_errors(drive_client, data)


@SETTINGS
@given(mutated(SERVER_STREAM))
def test_mutated_server_stream_client_role(data: bytes) -> None:
    only_protocol_errors(drive_client, data)
    only_protocol_errors(drain_receiver, data, [])


@needs_captures
@SETTINGS
@given(st.data())
def test_mutated_captures(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(CAPTURES)))
    stream = data.draw(mutated(CAPTURES[name]))
    only_protocol_errors(drive_server, stream)
    only_protocol_errors(
        drain_receiver, stream, data.draw(st.lists(st.integers(0, 5000), max_size=4))
    )


@needs_captures
def test_unmutated_captures_drive_cleanly() -> None:
    """The drivers above are real: unmutated input runs to DONE without any error."""
    for stream in CAPTURES.values():
        assert drive_server(stream).state is State.DONE
        assert drain_receiver(stream, []) >= 6
    client = drive_client(SERVER_STREAM)
    assert client.state is State.DONE and client.messages_sent == 4  # HELLO, CONFIGURE, FLUSH, PONG


# --- limits -----------------------------------------------------------------------------------


@SETTINGS
@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 2**32 - 1),
    st.builds(
        Limits,
        st.integers(0, 1 << 16),
        st.integers(0, 1 << 16),
        st.integers(0, 1 << 20),
        st.integers(0, 1 << 20),
    ),
)
def test_over_limit_refused_after_twelve_bytes(raw_type: int, length: int, limits: Limits) -> None:
    assume(length > limits.for_type(raw_type))
    r = Receiver(limits)
    view = r.get_buffer()
    view[:12] = HEADER.pack(MAGIC, 1, raw_type, length)
    with pytest.raises(
        RemoteProtocolError,
        match=f"of {length} bytes exceeds the limit of {limits.for_type(raw_type)}",
    ):
        r.buffer_updated(12)
    assert r.allocated == 0
    with pytest.raises(RemoteProtocolError):
        r.next_message()


@SETTINGS
@given(st.integers(0, 0xFFFF), st.integers(0, 1 << 16))
def test_within_limit_reserves_exactly_the_length(raw_type: int, length: int) -> None:
    limits = Limits(control=1 << 16, configure=1 << 16, packet=1 << 16, frame=1 << 16)
    r = Receiver(limits)
    r.receive_data(HEADER.pack(MAGIC, 1, raw_type, length))
    try:
        assert r.next_message() is None or length == 0
    except RemoteProtocolError:
        assert length == 0  # an empty body that is not a valid message
        return
    assert r.allocated == (length if length else 0)


# --- bitstreams and compression -----------------------------------------------------------------

ANNEXB_CALLS = [
    lambda d: list(annexb.iter_annexb(d)),
    lambda d: annexb.annexb_to_length_prefixed(d, 4),
    lambda d: annexb.annexb_to_length_prefixed(d, 1),
    lambda d: list(annexb.iter_length_prefixed(d, 4)),
    lambda d: list(annexb.iter_length_prefixed(d, 2)),
    lambda d: annexb.length_prefixed_to_annexb(d, 4),
    lambda d: annexb.length_prefixed_to_annexb(d, 3),
    lambda d: annexb.is_annexb(d),
    lambda d: annexb.is_keyframe("h264", d),
    lambda d: annexb.is_keyframe("hevc", d),
    lambda d: annexb.parse_avcc(d),
    lambda d: annexb.parse_hvcc(d),
    lambda d: annexb.parse_extradata("h264", d),
    lambda d: annexb.parse_extradata("hevc", d),
    lambda d: annexb.parameter_sets_from_annexb("h264", d),
    lambda d: annexb.parameter_sets_from_annexb("hevc", d),
    lambda d: annexb.build_config_record("h264", d),
    lambda d: annexb.build_config_record("hevc", d),
    lambda d: annexb.config_record_to_annexb("h264", d),
    lambda d: annexb.config_record_to_annexb("hevc", d),
    lambda d: annexb.parse_h264_sps(d),
    lambda d: annexb.parse_hevc_sps(d),
    lambda d: annexb.build_avcc(annexb.parse_avcc(d)),
    lambda d: annexb.build_hvcc(annexb.parse_hvcc(d)),
    lambda d: annexb.strip_atom(d, b"avcC"),
    lambda d: annexb.unescape_rbsp(d),
]


@st.composite
def nal_soup(draw: st.DrawFn) -> bytes:
    """Start codes around random NAL units whose header bytes name parameter sets."""
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        sc = draw(st.sampled_from([b"\x00\x00\x01", b"\x00\x00\x00\x01"]))
        head = draw(st.sampled_from([0x67, 0x68, 0x65, 0x41, 0x06, 0x40, 0x42, 0x44, 0x26, 0x4E]))
        out += sc + bytes([head]) + draw(st.binary(max_size=40))
    return out


@st.composite
def record_like(draw: st.DrawFn) -> bytes:
    """Bytes that start like an avcC / hvcC record, then go random."""
    if draw(st.booleans()):
        return b"\x01" + draw(st.binary(min_size=4, max_size=4)) + draw(st.binary(max_size=80))
    return b"\x01" + draw(st.binary(min_size=21, max_size=21)) + draw(st.binary(max_size=120))


@SETTINGS
@given(st.binary(max_size=300) | nal_soup() | record_like())
def test_bitstream_functions_raise_only_bitstream_error(data: bytes) -> None:
    for call in ANNEXB_CALLS:
        with contextlib.suppress(BitstreamError):
            call(data)


@st.composite
def nal_units(draw: st.DrawFn) -> list[bytes]:
    """NAL units as an encoder writes them: emulation prevention applied, non-zero last byte."""
    nals = []
    for _ in range(draw(st.integers(1, 6))):
        body = bytearray([draw(st.integers(1, 0x7F))])
        zeros = 0
        for b in draw(st.binary(max_size=60)):
            if zeros >= 2 and b <= 3:
                body.append(3)
                zeros = 0
            body.append(b)
            zeros = zeros + 1 if b == 0 else 0
        body.append(0x80)  # rbsp_stop_one_bit
        nals.append(bytes(body))
    return nals


@SETTINGS
@given(nal_units(), st.sampled_from([1, 2, 4]), st.booleans())
def test_annexb_length_prefixed_round_trip(nals: list[bytes], size: int, short_codes: bool) -> None:
    sc = b"\x00\x00\x01" if short_codes else annexb.START_CODE
    stream = b"".join(sc + n for n in nals)
    assert [bytes(n) for n in annexb.iter_annexb(stream)] == nals
    lp = annexb.annexb_to_length_prefixed(stream, size)
    assert len(lp) == sum(size + len(n) for n in nals)
    assert [bytes(n) for n in annexb.iter_length_prefixed(lp, size)] == nals
    assert annexb.length_prefixed_to_annexb(lp, size) == b"".join(
        annexb.START_CODE + n for n in nals
    )
    assert annexb.unescape_rbsp(annexb.START_CODE) == annexb.START_CODE


@SETTINGS
@given(st.sampled_from(list(WireCompression)), st.binary(max_size=5000), st.integers(1, 64))
def test_compression_round_trip(mode: WireCompression, plane: bytes, repeat: int) -> None:
    data = plane * repeat  # compressible and not
    packed = compression.compress_plane(mode, data)
    assert len(packed) <= compression.compress_bound(mode, len(data))
    assert bytes(compression.decompress_plane(mode, packed, len(data))) == data
    if mode is not WireCompression.NONE:
        for wrong in (len(data) - 1, len(data) + 1, 2 * len(data) + 1):
            if wrong >= 0:
                with pytest.raises(RemoteProtocolError):
                    compression.decompress_plane(mode, packed, wrong)


@SETTINGS
@given(st.sampled_from(list(WireCompression)), st.binary(max_size=400), st.integers(0, 1 << 22))
def test_decompress_garbage_raises_only_protocol_error(
    mode: WireCompression, data: bytes, expected: int
) -> None:
    try:
        out = compression.decompress_plane(mode, data, expected)
    except RemoteProtocolError:
        return
    assert len(out) == expected


def test_local_misuse_is_local() -> None:
    """Sending garbage is our bug: LocalProtocolError, never a struct.error."""
    with pytest.raises(LocalProtocolError):
        serialize_bytes(Packet(2**63, 0, 0, 0, b""))
    with pytest.raises(LocalProtocolError):
        serialize_bytes(Frame(0, 0, 0, (Plane(-1, 1, b""),)))
    with pytest.raises(LocalProtocolError):
        serialize_bytes(Hello(token="x" * 70000))
    with pytest.raises(LocalProtocolError):
        serialize_bytes(ConfigureAck(extradata=bytes(70000)))
    assert MessageType.PONG == 11
