"""Every (state, message type) pair of both session state machines, both directions.

The expectations below are written out by hand from the session rules
(docs/protocol.md "State machine"), not derived from the tables in
``vtremote.wire.connection``: a change to those tables must show up here.

For each role, each state is reached by playing a real session up to it (sends
of our own messages, received bytes of the peer's), then each message kind is
tried: sending it must advance to the expected state or raise
LocalProtocolError; receiving the peer's bytes must advance or raise
RemoteProtocolError, without touching the state.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vtremote.errors import LocalProtocolError, RemoteProtocolError
from vtremote.wire import (
    Configure,
    ConfigureAck,
    Connection,
    Done,
    Error,
    Flush,
    Frame,
    Hello,
    HelloAck,
    Message,
    Packet,
    Ping,
    Plane,
    Pong,
    Raw,
    Role,
    State,
    Unknown,
    check_frame_geometry,
    message_type,
    serialize_bytes,
)
from vtremote.wire.constants import MessageType

C, S = Role.CLIENT, Role.SERVER
W, H = 64, 36  # the configured geometry (NV12)


def configure(mode: str) -> Configure:
    return Configure(W, H, 1, 1, 25, 25, 1, (("mode", mode), ("wire_compression", "0")))


def nv12_wire_frame(pts: int = 0) -> Frame:
    return Frame(pts, 1, 0, (Plane(W, H, bytes(W * H)), Plane(W, H // 2, bytes(W * H // 2))))


#: One sample of each kind. Data-dependent variants get their own names.
SAMPLES: dict[str, Callable[[], Message]] = {
    "HELLO": lambda: Hello("t", "h264", "test", "1"),
    "HELLO_ACK": lambda: HelloAck(),
    "HELLO_ACK_BUSY": lambda: HelloAck(status=1),
    "HELLO_ACK_AUTH": lambda: HelloAck(status=2),
    "CONFIGURE": lambda: configure("encode"),
    "CONFIGURE_DECODE": lambda: configure("decode"),
    "CONFIGURE_TRANSCODE": lambda: configure("transcode"),
    "CONFIGURE_ACK": lambda: ConfigureAck(pix_fmt=1),
    "FRAME": nv12_wire_frame,
    "PACKET": lambda: Packet(0, 0, 0, 1, b"\x00\x00\x00\x01\x65\x88"),
    "FLUSH": Flush,
    "DONE": Done,
    "ERROR": lambda: Error(4, "bad request"),
    "PING": Ping,
    "PONG": Pong,
    "PING_WITH_BODY": lambda: Raw(MessageType.PING, b"x"),
    "UNKNOWN": lambda: Unknown(200, b"future"),
}

# Paths that reach each state: (sender, message kind) in order.
_HELLO = [(C, "HELLO")]
_READY = [*_HELLO, (S, "HELLO_ACK")]
PATHS: dict[State, list[tuple[Role, str]]] = {
    State.START: [],
    State.HELLO: _HELLO,
    State.REFUSED: [*_HELLO, (S, "HELLO_ACK_BUSY")],
    State.READY: _READY,
    State.CONFIGURING_ENCODE: [*_READY, (C, "CONFIGURE")],
    State.CONFIGURING_DECODE: [*_READY, (C, "CONFIGURE_DECODE")],
    State.CONFIGURING_TRANSCODE: [*_READY, (C, "CONFIGURE_TRANSCODE")],
    State.TRANSCODING: [*_READY, (C, "CONFIGURE_TRANSCODE"), (S, "CONFIGURE_ACK")],
    State.DRAINING_TRANSCODE: [
        *_READY,
        (C, "CONFIGURE_TRANSCODE"),
        (S, "CONFIGURE_ACK"),
        (C, "FLUSH"),
    ],
    State.ENCODING: [*_READY, (C, "CONFIGURE"), (S, "CONFIGURE_ACK")],
    State.DECODING: [*_READY, (C, "CONFIGURE_DECODE"), (S, "CONFIGURE_ACK")],
    State.DRAINING_ENCODE: [*_READY, (C, "CONFIGURE"), (S, "CONFIGURE_ACK"), (C, "FLUSH")],
    State.DRAINING_DECODE: [*_READY, (C, "CONFIGURE_DECODE"), (S, "CONFIGURE_ACK"), (C, "FLUSH")],
    State.DONE: [*_READY, (C, "CONFIGURE"), (S, "CONFIGURE_ACK"), (C, "FLUSH"), (S, "DONE")],
    State.FAILED: [*_HELLO, (S, "ERROR")],
}

ST = State
STREAMING = [
    ST.ENCODING,
    ST.DECODING,
    ST.TRANSCODING,
    ST.DRAINING_ENCODE,
    ST.DRAINING_DECODE,
    ST.DRAINING_TRANSCODE,
]
NOT_FINISHED = [s for s in State if s not in (ST.DONE, ST.FAILED)]

# What the CLIENT may send: {(state, kind): next state}; everything else is illegal.
CLIENT_MAY_SEND: dict[tuple[State, str], State] = {
    (ST.START, "HELLO"): ST.HELLO,
    (ST.READY, "CONFIGURE"): ST.CONFIGURING_ENCODE,
    (ST.READY, "CONFIGURE_DECODE"): ST.CONFIGURING_DECODE,
    (ST.READY, "CONFIGURE_TRANSCODE"): ST.CONFIGURING_TRANSCODE,
    # transcode (extension): source PACKETs in, like a decode session
    (ST.TRANSCODING, "PACKET"): ST.TRANSCODING,
    (ST.TRANSCODING, "FLUSH"): ST.DRAINING_TRANSCODE,
    (ST.DRAINING_TRANSCODE, "FLUSH"): ST.DRAINING_TRANSCODE,
    (ST.ENCODING, "FRAME"): ST.ENCODING,
    (ST.ENCODING, "FLUSH"): ST.DRAINING_ENCODE,
    (ST.DECODING, "PACKET"): ST.DECODING,
    (ST.DECODING, "FLUSH"): ST.DRAINING_DECODE,
    # The reference encoder may repeat FLUSH while draining: tolerated, no change.
    (ST.DRAINING_ENCODE, "FLUSH"): ST.DRAINING_ENCODE,
    (ST.DRAINING_DECODE, "FLUSH"): ST.DRAINING_DECODE,
}
# What the SERVER may send.
SERVER_MAY_SEND: dict[tuple[State, str], State] = {
    (ST.HELLO, "HELLO_ACK"): ST.READY,
    (ST.HELLO, "HELLO_ACK_BUSY"): ST.REFUSED,
    (ST.HELLO, "HELLO_ACK_AUTH"): ST.REFUSED,
    (ST.CONFIGURING_ENCODE, "CONFIGURE_ACK"): ST.ENCODING,
    (ST.CONFIGURING_DECODE, "CONFIGURE_ACK"): ST.DECODING,
    (ST.ENCODING, "PACKET"): ST.ENCODING,
    (ST.DRAINING_ENCODE, "PACKET"): ST.DRAINING_ENCODE,
    (ST.DRAINING_ENCODE, "DONE"): ST.DONE,
    (ST.DECODING, "FRAME"): ST.DECODING,
    (ST.DRAINING_DECODE, "FRAME"): ST.DRAINING_DECODE,
    (ST.DRAINING_DECODE, "DONE"): ST.DONE,
    # transcode (extension): output PACKETs back, like an encode session
    (ST.CONFIGURING_TRANSCODE, "CONFIGURE_ACK"): ST.TRANSCODING,
    (ST.TRANSCODING, "PACKET"): ST.TRANSCODING,
    (ST.DRAINING_TRANSCODE, "PACKET"): ST.DRAINING_TRANSCODE,
    (ST.DRAINING_TRANSCODE, "DONE"): ST.DONE,
}
# ERROR: from the server in every state that is not finished (START and REFUSED included).
for _st in NOT_FINISHED:
    SERVER_MAY_SEND[(_st, "ERROR")] = ST.FAILED
# Keepalive and unknown ids: only once streaming (a PING in the handshake is fatal, as in
# the reference), from either side, leaving the state alone.
for _table in (CLIENT_MAY_SEND, SERVER_MAY_SEND):
    for _st in STREAMING:
        for _kind in ("PING", "PONG", "PING_WITH_BODY", "UNKNOWN"):
            _table[(_st, _kind)] = _st

EXPECTED = {C: CLIENT_MAY_SEND, S: SERVER_MAY_SEND}


def test_expectation_table_size() -> None:
    """Guard against a typo silently shrinking the hand-written tables."""
    assert len(CLIENT_MAY_SEND) == 9 + 4 + 4 * 6
    assert len(SERVER_MAY_SEND) == 11 + 4 + 13 + 4 * 6


def reach(role: Role, state: State) -> Connection:
    """A Connection of ``role`` in ``state``, reached by a real exchange."""
    conn = Connection(role)
    for sender, kind in PATHS[state]:
        msg = SAMPLES[kind]()
        if sender is role:
            conn.send(msg)
        else:
            conn.receive_data(serialize_bytes(msg))
            got = conn.next_event()
            assert got is not None and message_type(got) == message_type(msg)
    assert conn.state is state
    return conn


CASES = [(sender, state, kind) for sender in (C, S) for state in State for kind in SAMPLES]


def _id(case: tuple[Role, State, str]) -> str:
    return f"{case[0].value}-{case[1].value}-{case[2]}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_send(case: tuple[Role, State, str]) -> None:
    """The sender's own Connection: legal -> next state, illegal -> LocalProtocolError."""
    sender, state, kind = case
    conn = reach(sender, state)
    msg = SAMPLES[kind]()
    want = EXPECTED[sender].get((state, kind))
    if want is None:
        with pytest.raises(LocalProtocolError, match=f"in state {state.value}"):
            conn.send(msg)
        assert conn.state is state
    else:
        bufs = conn.send(msg)
        assert b"".join(bytes(b) for b in bufs) == serialize_bytes(msg)
        assert conn.state is want


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_receive(case: tuple[Role, State, str]) -> None:
    """The other side's Connection: legal -> event + next state, illegal -> RemoteProtocolError."""
    sender, state, kind = case
    receiver_role = S if sender is C else C
    conn = reach(receiver_role, state)
    msg = SAMPLES[kind]()
    want = EXPECTED[sender].get((state, kind))
    conn.receive_data(serialize_bytes(msg))
    if want is None:
        with pytest.raises(
            RemoteProtocolError, match=f"{sender.value} sent .* in state {state.value}"
        ):
            conn.next_event()
        assert conn.state is state
        # refused on its header: the body was never buffered
        assert conn.receiver.allocated == 0
    else:
        got = conn.next_event()
        assert got is not None and message_type(got) == message_type(msg)
        assert serialize_bytes(got) == serialize_bytes(msg)
        assert conn.state is want


def test_illegal_message_refused_after_header_only() -> None:
    """A PACKET claiming 64 MiB before CONFIGURE is refused on its 12 header bytes."""
    conn = reach(S, State.READY)
    header = serialize_bytes(Packet(0, 0, 0, 0, b""))[:8] + (64 * 1024 * 1024).to_bytes(4, "big")
    view = conn.get_buffer()
    view[:12] = header
    conn.buffer_updated(12)  # the verdict comes from next_event, where messages are handled
    assert conn.receiver.allocated == 0
    with pytest.raises(RemoteProtocolError, match="client sent PACKET in state ready"):
        conn.next_event()
    with pytest.raises(RemoteProtocolError, match="client sent PACKET"):  # the failure sticks
        conn.get_buffer()
    with pytest.raises(RemoteProtocolError, match="client sent PACKET"):
        conn.next_event()


def test_bytes_after_done_surface_only_in_next_event() -> None:
    """A server that sent DONE may still recv_into a repeated FLUSH of the reference encoder;
    buffer_updated accepts it quietly and next_event reports it."""
    srv = reach(S, State.DONE)
    flush = serialize_bytes(Flush())
    view = srv.get_buffer()
    view[:12] = flush
    srv.buffer_updated(12)
    with pytest.raises(RemoteProtocolError, match="client sent FLUSH in state done"):
        srv.next_event()
    # the receive_data path gives the same verdict
    srv2 = reach(S, State.DONE)
    srv2.receive_data(flush * 2)
    with pytest.raises(RemoteProtocolError, match="client sent FLUSH in state done"):
        srv2.next_event()


def test_error_after_refusal_then_nothing() -> None:
    """HELLO_ACK busy, then ERROR code 2: the client sees both, then the session is over."""
    conn = reach(C, State.HELLO)
    conn.receive_data(
        serialize_bytes(HelloAck(status=1)) + serialize_bytes(Error(2, "server busy"))
    )
    ack = conn.next_event()
    assert isinstance(ack, HelloAck) and conn.state is State.REFUSED
    err = conn.next_event()
    assert isinstance(err, Error) and err.code == 2 and conn.state is State.FAILED
    assert conn.finished


def test_send_error_only_while_open() -> None:
    srv = reach(S, State.ENCODING)
    bufs = srv.send_error(5, "engine failed")
    assert bufs is not None and srv.state is State.FAILED
    assert srv.send_error(5, "again") is None  # finished: nothing more to send
    cli = reach(C, State.ENCODING)
    assert cli.send_error(5, "clients never send ERROR") is None


def test_repeated_flush_then_done() -> None:
    """Client flushes three times (the reference encoder can); the server still ends with DONE."""
    srv = reach(S, State.ENCODING)
    cli = reach(C, State.ENCODING)
    for _ in range(3):
        srv.receive_data(b"".join(bytes(b) for b in cli.send(Flush())))
        assert isinstance(srv.next_event(), Flush)
    assert srv.state is cli.state is State.DRAINING_ENCODE
    cli.receive_data(b"".join(bytes(b) for b in srv.send(Done())))
    assert isinstance(cli.next_event(), Done)
    assert srv.state is cli.state is State.DONE


def test_unknown_type_ignored_when_streaming_keeps_payload() -> None:
    conn = reach(S, State.ENCODING)
    conn.receive_data(serialize_bytes(Unknown(0x1234, b"abc")))
    got = conn.next_event()
    assert got == Unknown(0x1234, b"abc")
    assert conn.state is State.ENCODING


# --- check_frame_geometry -----------------------------------------------------------------


def _frame_with_planes(planes: list[tuple[int, int]]) -> Frame:
    return Frame(0, 0, 0, tuple(Plane(s, h, b"") for s, h in planes))


@pytest.mark.parametrize(
    ("planes", "message"),
    [
        ([(320, 180)], "FRAME has 1 planes, NV12 needs 2"),
        ([(320, 180), (320, 90), (320, 90)], "FRAME has 3 planes, NV12 needs 2"),
        ([(320, 181), (320, 90)], "plane 0 has 181 rows, configured 320x180 NV12 allows 180"),
        ([(320, 179), (320, 90)], "plane 0 has 179 rows, configured 320x180 NV12 allows 180"),
        ([(320, 180), (320, 91)], "plane 1 has 91 rows, configured 320x180 NV12 allows 90"),
        (
            [(319, 180), (320, 90)],
            r"plane 0 stride 319 is outside 320\.\.4416 for configured 320x180 NV12",
        ),
        (
            [(320, 180), (4417, 90)],
            r"plane 1 stride 4417 is outside 320\.\.4416 for configured 320x180 NV12",
        ),
        ([(0, 180), (320, 90)], r"plane 0 stride 0 is outside 320\.\.4416"),
    ],
)
def test_check_frame_geometry_messages(planes: list[tuple[int, int]], message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        check_frame_geometry(_frame_with_planes(planes), 320, 180, 1)


def test_check_frame_geometry_accepts() -> None:
    check_frame_geometry(_frame_with_planes([(320, 180), (320, 90)]), 320, 180, 1)
    check_frame_geometry(
        _frame_with_planes([(384, 180), (384, 90)]), 320, 180, 1
    )  # padded linesize
    check_frame_geometry(
        _frame_with_planes([(4416, 180), (4416, 90)]), 320, 180, 1
    )  # largest stride
    # odd height: chroma rows floor (reference client) or ceil (CoreVideo, FFmpeg)
    check_frame_geometry(_frame_with_planes([(320, 181), (320, 90)]), 320, 181, 1)
    check_frame_geometry(_frame_with_planes([(320, 181), (320, 91)]), 320, 181, 1)
    # P010: two bytes per sample
    check_frame_geometry(_frame_with_planes([(640, 180), (640, 90)]), 320, 180, 2)
    with pytest.raises(
        RemoteProtocolError, match=r"stride 320 is outside 640\.\.4736 for configured 320x180 P010"
    ):
        check_frame_geometry(_frame_with_planes([(320, 180), (640, 90)]), 320, 180, 2)
    with pytest.raises(RemoteProtocolError, match="pix_fmt 7"):
        check_frame_geometry(_frame_with_planes([(320, 180), (320, 90)]), 320, 180, 7)


def test_received_frame_geometry_checked_by_connection() -> None:
    """A decode client refuses a FRAME with more rows than it configured (VTR1.md §13.4)."""
    cli = reach(C, State.DECODING)
    big = Frame(0, 0, 0, (Plane(W, H + 2, bytes(W * (H + 2))), Plane(W, H // 2, bytes(W * H // 2))))
    cli.receive_data(serialize_bytes(big))
    with pytest.raises(
        RemoteProtocolError, match=f"plane 0 has {H + 2} rows, configured {W}x{H} NV12 allows {H}"
    ):
        cli.next_event()
