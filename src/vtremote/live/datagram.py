"""Live messages over UDP: fragmentation, retransmission history, bounded reassembly. Sans-IO.

docs/live.md "UDP". Every datagram is a 20-byte header and at most
:data:`MAX_FRAGMENT` bytes of one message payload, so a datagram never exceeds
:data:`MAX_DATAGRAM` (1200) bytes and passes any path MTU.

* Ordered messages (VIDEO, METADATA, AUDIO, BYE) carry a message sequence number
  and each of their datagrams a datagram sequence number. The receiver delivers
  them in message order, asks again for missing datagrams (NACK) and, when a
  message is still incomplete after ``give_up_ns``, skips it and reports the loss
  (the receiver then asks for a keyframe).
* Control messages (HELLO, CLOCK, STATS, NACK...) fit in one datagram, carry
  sequence numbers 0 and are delivered as they come.

Time is passed in (``now_ns``); nothing here reads a clock.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from vtremote.errors import LocalProtocolError, RemoteProtocolError
from vtremote.live.protocol import (
    LIMITS,
    MAGIC,
    MAX_NACK,
    ORDERED,
    VERSION,
    Buffer,
    Message,
    MessageType,
    message_type,
    nbytes,
    parse_payload,
    serialize_payload,
)

#: magic, version, type, token, datagram seq, message seq, fragment index, fragment count.
DATAGRAM_HEADER = struct.Struct("!2sBBIIIHH")
MAX_DATAGRAM = 1200
MAX_FRAGMENT = MAX_DATAGRAM - DATAGRAM_HEADER.size  # 1180

#: Messages ahead of the next one to deliver that the receiver keeps; beyond: dropped.
MESSAGE_WINDOW = 1024
#: Missing datagram numbers remembered for NACKs.
MISSING_WINDOW = 4096


@dataclass(frozen=True, slots=True)
class DatagramHeader:
    type: int
    token: int
    dgram_seq: int
    msg_seq: int
    index: int
    count: int


def parse_header(data: Buffer) -> DatagramHeader:
    """The header of a datagram; :class:`RemoteProtocolError` when it is not one of ours."""
    if nbytes(data) < DATAGRAM_HEADER.size:
        raise RemoteProtocolError(
            f"datagram of {nbytes(data)} bytes is shorter than "
            f"the {DATAGRAM_HEADER.size}-byte header"
        )
    if nbytes(data) > MAX_DATAGRAM:
        raise RemoteProtocolError(f"datagram of {nbytes(data)} bytes exceeds {MAX_DATAGRAM}")
    magic, version, kind, token, dseq, mseq, index, count = DATAGRAM_HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise RemoteProtocolError(f"bad datagram magic={bytes(magic)!r} version={version}")
    try:
        mtype = MessageType(kind)
    except ValueError:
        raise RemoteProtocolError(f"unknown message type {kind}") from None
    if count == 0 or index >= count:
        raise RemoteProtocolError(f"fragment {index} of {count}")
    if count * MAX_FRAGMENT > LIMITS[mtype] + MAX_FRAGMENT:
        raise RemoteProtocolError(
            f"{mtype.name} in {count} fragments exceeds {LIMITS[mtype]} bytes"
        )
    if mtype not in ORDERED and count != 1:
        raise RemoteProtocolError(f"{mtype.name} must fit in one datagram, came in {count}")
    return DatagramHeader(kind, token, dseq, mseq, index, count)


def control_datagram(msg: Message, token: int) -> bytes:
    """A control message (one datagram, sequence numbers 0)."""
    kind = message_type(msg)
    if kind in ORDERED:
        raise LocalProtocolError(f"{kind.name} is sequenced; use Packetizer")
    payload = b"".join(serialize_payload(msg))
    if len(payload) > MAX_FRAGMENT:
        raise LocalProtocolError(
            f"{kind.name} of {len(payload)} bytes does not fit in one datagram"
        )
    return DATAGRAM_HEADER.pack(MAGIC, VERSION, kind, token, 0, 0, 0, 1) + payload


class Packetizer:
    """Sender side: sequenced messages -> datagrams, and a bounded history for NACKs."""

    def __init__(self, token: int, *, history_bytes: int = 4 * 1024 * 1024) -> None:
        self.token = token
        self._msg_seq = 0
        self._dgram_seq = 0
        self._history: OrderedDict[int, tuple[bytes, memoryview]] = OrderedDict()
        self._history_bytes = 0
        self._history_limit = history_bytes
        self.retransmitted = 0

    def datagrams(self, msg: Message) -> list[list[Buffer]]:
        """Datagrams of ``msg`` as ``[header, fragment]`` pairs (fragments are views, no copy)."""
        kind = message_type(msg)
        if kind not in ORDERED:
            return [[control_datagram(msg, self.token)]]
        parts = serialize_payload(msg)
        # One copy: header and picture bytes into the payload the fragments slice.
        payload = memoryview(b"".join(parts))
        if payload.nbytes > LIMITS[kind]:
            raise LocalProtocolError(
                f"{kind.name} of {payload.nbytes} bytes exceeds {LIMITS[kind]}"
            )
        count = max(1, -(-payload.nbytes // MAX_FRAGMENT))
        out: list[list[Buffer]] = []
        mseq = self._msg_seq
        self._msg_seq = (self._msg_seq + 1) & 0xFFFFFFFF
        for i in range(count):
            frag = payload[i * MAX_FRAGMENT : (i + 1) * MAX_FRAGMENT]
            dseq = self._dgram_seq
            self._dgram_seq = (self._dgram_seq + 1) & 0xFFFFFFFF
            head = DATAGRAM_HEADER.pack(MAGIC, VERSION, kind, self.token, dseq, mseq, i, count)
            self._remember(dseq, head, frag)
            out.append([head, frag])
        return out

    @property
    def last_seq(self) -> int:
        """Datagram number of the last sequenced datagram made."""
        return (self._dgram_seq - 1) & 0xFFFFFFFF

    def _remember(self, dseq: int, head: bytes, frag: memoryview) -> None:
        self._history[dseq] = (head, frag)
        self._history_bytes += frag.nbytes
        while self._history_bytes > self._history_limit and self._history:
            _, (_, old) = self._history.popitem(last=False)
            self._history_bytes -= old.nbytes

    def retransmit(self, seqs: tuple[int, ...] | list[int]) -> list[list[Buffer]]:
        """The datagrams of ``seqs`` still in the history (older ones are gone: the loss stands)."""
        out: list[list[Buffer]] = []
        for s in seqs:
            hit = self._history.get(s)
            if hit is not None:
                out.append([hit[0], hit[1]])
        self.retransmitted += len(out)
        return out


@dataclass
class _Partial:
    count: int
    kind: int
    first_ns: int
    fragments: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


@dataclass(frozen=True, slots=True)
class Lost:
    """Sequenced messages ``first`` .. ``first + count - 1`` will never be delivered."""

    first: int
    count: int


def _ahead(a: int, b: int) -> int:
    """How far ``a`` is ahead of ``b`` in 32-bit sequence space (negative: behind)."""
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d


class Reassembler:
    """Receiver side of one session: datagrams in, messages out in order, bounded memory.

    Holds at most ``max_bytes`` of fragments and :data:`MESSAGE_WINDOW` messages
    ahead of the next one to deliver; anything else is dropped and counted.
    """

    def __init__(
        self,
        *,
        max_bytes: int = 16 * 1024 * 1024,
        nack_delay_ns: int = 3_000_000,
        nack_interval_ns: int = 25_000_000,
        give_up_ns: int = 150_000_000,
    ) -> None:
        self.max_bytes = max_bytes
        self.nack_delay_ns = nack_delay_ns
        self.nack_interval_ns = nack_interval_ns
        self.give_up_ns = give_up_ns
        self._partials: dict[int, _Partial] = {}
        self._bytes = 0
        self._next = 0  # next message sequence number to deliver (a session starts at 0)
        self._gap_since: int | None = None  # when the next message became overdue
        self._hi_dgram = 0xFFFFFFFF  # highest datagram number seen (none yet: -1)
        self._missing: OrderedDict[int, list[int]] = OrderedDict()  # seq -> [first_seen, last_nack]
        # counters
        self.datagrams = 0
        self.duplicates = 0
        self.dropped = 0  # outside the window or over the memory bound
        self.malformed = 0
        self.lost_messages = 0
        self.recovered = 0  # missing datagrams that arrived later (retransmitted or reordered)
        self.missing_total = 0

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def receive(self, head: DatagramHeader, fragment: Buffer, now_ns: int) -> None:
        """One sequenced datagram (control datagrams do not come here)."""
        self.datagrams += 1
        self._track_dgram(head.dgram_seq, now_ns)
        ahead = _ahead(head.msg_seq, self._next)
        if ahead < 0:
            self.duplicates += 1
            return
        if ahead >= MESSAGE_WINDOW:
            self.dropped += 1
            return
        size = nbytes(fragment)
        if head.index + 1 < head.count and size != MAX_FRAGMENT:
            self.malformed += 1  # only the last fragment may be short
            return
        part = self._partials.get(head.msg_seq)
        if part is None:
            part = self._partials[head.msg_seq] = _Partial(head.count, head.type, now_ns)
        elif part.count != head.count or part.kind != head.type:
            self.malformed += 1
            return
        if head.index in part.fragments:
            self.duplicates += 1
            return
        if self._bytes + size > self.max_bytes:
            self.dropped += 1
            return
        part.fragments[head.index] = bytes(fragment)
        part.size += size
        self._bytes += size
        if ahead > 0 and self._gap_since is None:
            self._gap_since = now_ns

    def _track_dgram(self, seq: int, now_ns: int) -> None:
        ahead = _ahead(seq, self._hi_dgram)
        if ahead > 0:
            for s in range(self._hi_dgram + 1, self._hi_dgram + min(ahead, MISSING_WINDOW)):
                self._missing[s & 0xFFFFFFFF] = [now_ns, 0]
                self.missing_total += 1
            self._hi_dgram = seq
            while len(self._missing) > MISSING_WINDOW:
                self._missing.popitem(last=False)
        elif self._missing.pop(seq, None) is not None:
            self.recovered += 1

    def nacks(self, now_ns: int) -> list[int]:
        """Datagram numbers to ask for again now (at most :data:`MAX_NACK`)."""
        out: list[int] = []
        expired = []
        for seq, times in self._missing.items():
            first, last = times
            if now_ns - first > self.give_up_ns:
                expired.append(seq)
                continue
            if now_ns - first >= self.nack_delay_ns and (
                last == 0 or now_ns - last >= self.nack_interval_ns
            ):
                times[1] = now_ns
                out.append(seq)
                if len(out) >= MAX_NACK:
                    break
        for seq in expired:
            del self._missing[seq]
        return out

    def poll(self, now_ns: int) -> list[Message | Lost]:
        """Messages ready in order, and :class:`Lost` for those given up on.

        A malformed reassembled message is dropped and counted (``malformed``) and
        reported as lost: a datagram stream has no connection to close.
        """
        out: list[Message | Lost] = []
        while True:
            part = self._partials.get(self._next)
            if part is not None and len(part.fragments) == part.count:
                del self._partials[self._next]
                self._bytes -= part.size
                payload = b"".join(part.fragments[i] for i in range(part.count))
                seq = self._next
                self._advance(now_ns)
                try:
                    out.append(parse_payload(part.kind, payload))
                except RemoteProtocolError:
                    self.malformed += 1
                    self._lost(out, seq)
                continue
            if not self._partials:
                self._gap_since = None
                break
            # Something later is waiting: the next one is overdue.
            if self._gap_since is None:
                self._gap_since = now_ns if part is None else part.first_ns
            if now_ns - self._gap_since < self.give_up_ns and self._bytes < self.max_bytes:
                break
            if part is not None:
                del self._partials[self._next]
                self._bytes -= part.size
            self._lost(out, self._next)
            self._next = (self._next + 1) & 0xFFFFFFFF
            following = self._partials.get(self._next)
            if following is not None and len(following.fragments) < following.count:
                # An incomplete message gets its own time from its first fragment.
                self._gap_since = following.first_ns
        return out

    def _lost(self, out: list[Message | Lost], seq: int) -> None:
        self.lost_messages += 1
        last = out[-1] if out else None
        if isinstance(last, Lost) and (last.first + last.count) & 0xFFFFFFFF == seq:
            out[-1] = Lost(last.first, last.count + 1)
        else:
            out.append(Lost(seq, 1))

    def _advance(self, now_ns: int) -> None:
        self._next = (self._next + 1) & 0xFFFFFFFF
        self._gap_since = None  # poll() restarts it if the new next one is overdue
