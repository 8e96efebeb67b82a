"""The receive-buffer reuse that the wire benchmark asked for (wire/framing.py SPARE_BODIES).

Large message bodies are reused once nothing views them any more. These tests
pin down the two halves of that: a message still held is never overwritten,
and a dropped one's buffer does get reused (no fresh map per FRAME).
"""

from __future__ import annotations

import gc

from vtremote.wire.framing import LAZY_BODY_THRESHOLD, SPARE_BODIES, Receiver
from vtremote.wire.messages import Packet, serialize_bytes

SIZE = LAZY_BODY_THRESHOLD * 2


def packet(i: int, size: int = SIZE) -> bytes:
    return serialize_bytes(Packet(i, i, 1, 0, bytes([i % 256]) * size))


def receive(r: Receiver, data: bytes) -> Packet:
    # The zero-copy path a transport uses: recv_into get_buffer(), then buffer_updated().
    view = memoryview(data)
    while True:
        msg = r.next_message()
        if msg is not None:
            assert isinstance(msg, Packet)
            return msg
        buf = r.get_buffer()
        n = min(len(buf), len(view), 65536)
        buf[:n] = view[:n]
        view = view[n:]
        r.buffer_updated(n)


def test_held_messages_are_never_overwritten() -> None:
    r = Receiver()
    held = [receive(r, packet(i)) for i in range(3 * SPARE_BODIES)]
    for i, msg in enumerate(held):
        assert msg.pts == i
        assert bytes(msg.data) == bytes([i % 256]) * SIZE
    assert len({id(m.data.obj) for m in held}) == len(held)  # every one in its own buffer


def test_dropped_bodies_are_reused() -> None:
    r = Receiver()
    first = receive(r, packet(1))
    body = first.data.obj
    del first
    gc.collect()
    second = receive(r, packet(2))
    assert second.data.obj is body  # the same buffer, without a new map
    assert bytes(second.data) == b"\x02" * SIZE
    # A shorter body fits in a longer spare; the message still has exactly its bytes.
    del second
    shorter = receive(r, packet(3, SIZE - 1000))
    assert shorter.data.obj is body
    assert bytes(shorter.data) == b"\x03" * (SIZE - 1000)


def test_previous_message_held_while_next_arrives() -> None:
    """A reader that keeps the last message while reading the next (as a loop
    variable does) alternates between two buffers and corrupts nothing."""
    r = Receiver()
    prev = receive(r, packet(0))
    buffers = {id(prev.data.obj)}
    for i in range(1, 20):
        cur = receive(r, packet(i))
        assert bytes(prev.data[:1]) == bytes([(i - 1) % 256])
        assert bytes(cur.data) == bytes([i % 256]) * SIZE
        buffers.add(id(cur.data.obj))
        prev = cur
    assert len(buffers) <= 2
