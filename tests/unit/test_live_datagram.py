"""UDP fragmentation, reassembly in order, NACK/retransmission, loss reports, bounded memory."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vtremote.errors import RemoteProtocolError
from vtremote.live import protocol as p
from vtremote.live.datagram import (
    DATAGRAM_HEADER,
    MAX_DATAGRAM,
    MAX_FRAGMENT,
    Lost,
    Packetizer,
    Reassembler,
    control_datagram,
    parse_header,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MS = 1_000_000


def _joined(parts: list[p.Buffer]) -> bytes:
    return b"".join(bytes(x) for x in parts)


def _receive_datagram(reasm: Reassembler, datagram: bytes, now: int) -> None:
    head = parse_header(datagram)
    reasm.receive(head, memoryview(datagram)[DATAGRAM_HEADER.size :], now)


def _messages(n: int, size: int = 3000) -> list[p.Message]:
    out: list[p.Message] = []
    for i in range(n):
        out.append(p.Metadata(i, i * 33 * MS, b'{"i":%d}' % i))
        out.append(p.Video(i, i * 33 * MS, bytes([i % 256]) * (size + i), keyframe=i == 0))
    return out


def _comparable(msgs: list[p.Message | Lost]) -> list[object]:
    return [(type(m).__name__, bytes(m.data)) if isinstance(m, p.Video) else m for m in msgs]


def test_datagrams_stay_under_the_mtu_budget_and_carry_the_token() -> None:
    pk = Packetizer(token=0xABCD)
    dgrams = pk.datagrams(p.Video(1, 2, bytes(10_000)))
    assert len(dgrams) == -(-(10_000 + 17) // MAX_FRAGMENT)
    for i, parts in enumerate(dgrams):
        data = _joined(parts)
        assert len(data) <= MAX_DATAGRAM
        head = parse_header(data)
        assert (head.token, head.index, head.count, head.dgram_seq, head.msg_seq) == (
            0xABCD,
            i,
            len(dgrams),
            i,
            0,
        )


@SETTINGS
@given(st.integers(1, 6), st.randoms(use_true_random=False), st.booleans())
def test_any_order_and_duplicates_deliver_each_message_once_in_order(
    n: int, rnd: random.Random, dup: bool
) -> None:
    msgs = _messages(n)
    pk = Packetizer(1)
    dgrams = [_joined(d) for m in msgs for d in pk.datagrams(m)]
    if dup:
        dgrams += rnd.sample(dgrams, len(dgrams) // 2)
    rnd.shuffle(dgrams)
    reasm = Reassembler()
    out: list[p.Message | Lost] = []
    for d in dgrams:
        _receive_datagram(reasm, d, 0)
        out += reasm.poll(0)
    assert _comparable(out) == _comparable(msgs)  # type: ignore[arg-type]
    assert reasm.buffered_bytes == 0


def test_a_lost_datagram_is_nacked_and_its_retransmission_completes_the_message() -> None:
    pk = Packetizer(1)
    msgs = _messages(3)
    dgrams = [_joined(d) for m in msgs for d in pk.datagrams(m)]
    victim = 2  # inside the first VIDEO
    reasm = Reassembler(nack_delay_ns=2 * MS, give_up_ns=100 * MS)
    out: list[p.Message | Lost] = []
    for d in dgrams[:victim] + dgrams[victim + 1 :]:
        _receive_datagram(reasm, d, 0)
        out += reasm.poll(0)
    assert len(out) == 1  # the METADATA before the gap only
    assert reasm.nacks(1 * MS) == []  # reordering tolerance first
    seqs = reasm.nacks(3 * MS)
    assert seqs == [victim]
    assert reasm.nacks(4 * MS) == []  # not again before the interval
    for d in pk.retransmit(seqs):
        _receive_datagram(reasm, _joined(d), 5 * MS)
    out += reasm.poll(5 * MS)
    assert _comparable(out) == _comparable(msgs)  # type: ignore[arg-type]
    assert reasm.recovered == 1 and reasm.lost_messages == 0


def test_a_message_never_completed_is_reported_lost_after_the_give_up_time() -> None:
    pk = Packetizer(1)
    msgs = _messages(4)
    all_d = [[_joined(d) for d in pk.datagrams(m)] for m in msgs]
    reasm = Reassembler(give_up_ns=100 * MS)
    out: list[p.Message | Lost] = []
    for i, ds in enumerate(all_d):
        for d in ds:
            if i in (3, 4) and d is ds[0]:
                continue  # first fragment of VIDEO 1 and METADATA 2 never arrive
            _receive_datagram(reasm, d, 10 * MS)
    out += reasm.poll(50 * MS)
    assert len(out) == 3  # META 0, VIDEO 0, META 1
    out += reasm.poll(200 * MS)
    assert Lost(3, 2) in out
    assert [m.seq for m in out if isinstance(m, p.Video)] == [0, 2, 3]
    assert reasm.lost_messages == 2 and reasm.buffered_bytes == 0


def test_memory_stays_bounded_under_a_flood_of_incomplete_messages() -> None:
    reasm = Reassembler(max_bytes=256 * 1024, give_up_ns=10**12)
    for mseq in range(5000):
        head = DATAGRAM_HEADER.pack(b"VL", 1, p.MessageType.VIDEO, 1, mseq, mseq + 1, 0, 7000)
        _receive_datagram(reasm, head + bytes(MAX_FRAGMENT), 0)
    reasm.poll(0)
    assert reasm.buffered_bytes <= 256 * 1024
    assert reasm.dropped > 0


def test_control_datagrams_are_one_piece_and_sequenced_ones_are_refused() -> None:
    data = control_datagram(p.ClockRequest(3, 4), 9)
    head = parse_header(data)
    assert (head.type, head.count, head.msg_seq, head.token) == (
        p.MessageType.CLOCK_REQUEST,
        1,
        0,
        9,
    )
    with pytest.raises(RemoteProtocolError, match="CLOCK_REQUEST in 2 fragments"):
        parse_header(
            DATAGRAM_HEADER.pack(b"VL", 1, p.MessageType.CLOCK_REQUEST, 9, 0, 0, 0, 2) + b"x"
        )


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"VL\x01", "shorter than the 20-byte header"),
        (b"XX" + bytes(30), "bad datagram magic"),
        (DATAGRAM_HEADER.pack(b"VL", 1, 3, 1, 0, 0, 5, 5), "fragment 5 of 5"),
        (DATAGRAM_HEADER.pack(b"VL", 1, 3, 1, 0, 0, 0, 60000), "VIDEO in 60000 fragments exceeds"),
        (DATAGRAM_HEADER.pack(b"VL", 1, 200, 1, 0, 0, 0, 1), "unknown message type 200"),
        (bytes(MAX_DATAGRAM + 1), "exceeds 1200"),
    ],
)
def test_bad_datagrams_name_the_fault(data: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        parse_header(data)


@SETTINGS
@given(st.lists(st.binary(min_size=0, max_size=MAX_DATAGRAM), max_size=40))
def test_garbage_datagrams_raise_only_protocol_errors_and_hold_little(garbage: list[bytes]) -> None:
    reasm = Reassembler(max_bytes=64 * 1024)
    for g in garbage:
        data = b"VL\x01\x03" + g[4:] if g[:1] == b"V" else g
        try:
            _receive_datagram(reasm, data, 0)
        except RemoteProtocolError:
            continue
        reasm.poll(0)
        reasm.nacks(0)
    assert reasm.buffered_bytes <= 64 * 1024


def test_history_is_bounded_and_old_datagrams_cannot_be_resent() -> None:
    pk = Packetizer(1, history_bytes=20 * MAX_FRAGMENT)
    for i in range(10):
        pk.datagrams(p.Video(i, 0, bytes(10 * MAX_FRAGMENT)))
    assert pk.retransmit([0, 1]) == []
    assert len(pk.retransmit([pk.last_seq])) == 1
