"""Extension negotiation: capabilities ride in HELLO_ACK's codec list, invisible to v1 peers."""

from __future__ import annotations

import pytest

from vtremote.errors import RemoteProtocolError
from vtremote.wire import HelloAck, MessageType, parse_payload, serialize_bytes
from vtremote.wire import extensions as ext

OURS = HelloAck(
    status=0,
    server_name="vtremoted",
    server_version="0.1.0",
    capabilities=(
        "h264",
        "hevc",
        ext.CAP_BUSY,
        ext.CAP_ERRORS,
        f"{ext.CAP_KEEPALIVE}=10000",
        ext.CAP_DECODE_PIPELINE,
        f"{ext.CAP_ENGINE_PREFIX}x264",
    ),
    max_sessions=8,
    active_sessions=3,
)


def test_names() -> None:
    assert ext.KNOWN_CAPABILITIES == (
        "ext:busy",
        "ext:errors",
        "ext:keepalive",
        "ext:decode-pipeline",
        "ext:window",
        "ext:transcode",
        "ext:codecs",
        "ext:capacity",
    )
    assert all(ext.is_extension(c) and ":" in c for c in ext.KNOWN_CAPABILITIES)
    assert not ext.is_extension("h264") and not ext.is_extension("hevc")
    assert ext.OPT_KEEPALIVE == "ext_keepalive" and ext.OPT_DECODE_PIPELINE == "ext_decode_pipeline"
    assert ext.OPT_WINDOW == "ext_window"


def test_extension_codecs_are_negotiated() -> None:
    caps = ("h264", "hevc", ext.CAP_BUSY, ext.codecs_capability(("av1",)))
    assert ext.split_capabilities(caps)[0] == ("h264", "hevc")  # never a plain codec name
    assert ext.offered_codecs(caps) == ("av1",) and ext.offered_codecs(("h264", "hevc")) == ()
    assert ext.hello_codec("av1") == "hevc" and ext.hello_codec("h264") == "h264"
    assert ext.session_codec("hevc", {ext.OPT_CODEC: "av1"}, True) == "av1"
    assert ext.session_codec("hevc", {ext.OPT_CODEC: "av1"}, False) == "hevc"
    assert ext.session_codec("h264", {}, True) == "h264"
    with pytest.raises(RemoteProtocolError, match="ext_codec='vp9' is not one of av1"):
        ext.session_codec("hevc", {ext.OPT_CODEC: "vp9"}, True)


def test_split_and_values() -> None:
    codecs, exts = ext.split_capabilities(OURS.capabilities)
    assert codecs == ("h264", "hevc")
    assert exts == {"ext:busy", "ext:errors", "ext:keepalive", "ext:decode-pipeline", "ext:engine"}
    assert ext.capability_value(OURS.capabilities, ext.CAP_KEEPALIVE) == "10000"
    assert ext.capability_value(OURS.capabilities, "ext:engine") == "x264"
    assert ext.capability_value(OURS.capabilities, ext.CAP_BUSY) is None


def test_reference_hello_ack_has_no_extensions() -> None:
    """A reference server's 22-byte HELLO_ACK announces nothing: our client stays plain v1."""
    ref = parse_payload(MessageType.HELLO_ACK, serialize_bytes(HelloAck())[12:])
    assert isinstance(ref, HelloAck)
    assert len(serialize_bytes(HelloAck())) == 12 + 22
    assert ext.split_capabilities(ref.capabilities) == (("h264", "hevc"), frozenset())
    # the 1-byte form the reference client also accepts
    tiny = parse_payload(MessageType.HELLO_ACK, b"\x00")
    assert isinstance(tiny, HelloAck) and tiny.capabilities == () and tiny.status == 0


def test_extended_hello_ack_keeps_the_v1_layout() -> None:
    """Status, two strings, u8 count + strings, two u16: what the reference client reads
    (and then ignores) — the extensions are just more strings in the list."""
    wire = serialize_bytes(OURS)[12:]
    assert wire[0] == 0
    pos = 1
    strings = []
    for _ in range(2):
        n = int.from_bytes(wire[pos : pos + 2], "big")
        strings.append(wire[pos + 2 : pos + 2 + n].decode())
        pos += 2 + n
    count = wire[pos]
    pos += 1
    caps = []
    for _ in range(count):
        n = int.from_bytes(wire[pos : pos + 2], "big")
        caps.append(wire[pos + 2 : pos + 2 + n].decode())
        pos += 2 + n
    assert strings == ["vtremoted", "0.1.0"]
    assert tuple(caps) == OURS.capabilities
    assert wire[pos:] == (8).to_bytes(2, "big") + (3).to_bytes(2, "big")
    assert parse_payload(MessageType.HELLO_ACK, wire) == OURS


def test_transcode_capability_and_output_note() -> None:
    from fractions import Fraction

    import pytest

    from vtremote.errors import RemoteProtocolError

    cap = ext.transcode_capability(("h264", "hevc", "vp9"), ("scale", "fps"))
    assert cap == "ext:transcode=h264,hevc,vp9;scale,fps"
    assert ext.transcode_offer(("h264", "hevc", "ext:busy", cap)) == (
        ("h264", "hevc", "vp9"),
        ("scale", "fps"),
    )
    assert ext.transcode_offer(("h264", "hevc")) is None
    assert ext.transcode_offer(("ext:transcode=;",)) == ((), ())
    note = ext.OutputNote(1280, 720, Fraction(1, 1000), Fraction(30000, 1001))
    assert note.text() == "ext:output=1280x720;tb=1/1000;fr=30000/1001;sar=1/1"
    assert ext.OutputNote.parse(note.text()) == note
    wide = ext.OutputNote(720, 480, Fraction(1, 25), None, Fraction(32, 27))
    assert ext.OutputNote.parse(wide.text()) == wide
    assert ext.OutputNote.parse("ext:output=2x2;tb=1/25;fr=0/1").frame_rate is None
    for bad in (
        "ext:output=",
        "ext:output=0x2;tb=1/25;fr=0/1",
        "ext:output=2x2;tb=1/0;fr=0/1",
        "x",
        "ext:output=2x2;tb=a;fr=0/1",
        "ext:output=2x2;tb=1/25;fr=0/1;sar=0/1",
        "ext:output=2x2;tb=1/25;fr=0/1;xx=1/1",
    ):
        with pytest.raises(RemoteProtocolError, match="malformed transcode output note"):
            ext.OutputNote.parse(bad)
    assert ext.split_notes(["slow preset", note.text()]) == (("slow preset",), (note.text(),))


def test_capacity_capability() -> None:
    assert ext.capacity_capability(3, 41.26) == "ext:capacity=3;fps=41.3"
    assert ext.parse_capacity("3;fps=41.3") == (3, 41.3)
    assert ext.parse_capacity("2") == (2, 0.0)  # fps not said: not measured
    for bad in (None, "", "0;fps=1", "x;fps=1", "2;fps=nan", "2;fps=-1", "2;fps=1e9"):
        assert ext.parse_capacity(bad) is None
