"""The live wire format (VL1): message layouts and the TCP stream framing, sans-IO.

Byte tables and the session are in docs/live.md. This module never touches
sockets, clocks or threads: it turns bytes into message objects and back.

Over TCP every message is an 8-byte header (magic ``VL``, version, type,
payload length) and its payload. Over UDP the datagram header of
:mod:`vtremote.live.datagram` replaces it; the payloads are the same.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeAlias, TypeVar

from vtremote.errors import LocalProtocolError, RemoteProtocolError

Buffer: TypeAlias = bytes | bytearray | memoryview
E = TypeVar("E", bound=enum.IntEnum)

MAGIC = b"VL"
VERSION = 1
#: docs/live.md "Message header": magic, version, type, payload length.
HEADER = struct.Struct("!2sBBI")
HEADER_SIZE = HEADER.size

KiB = 1024
MiB = 1024 * 1024


class MessageType(enum.IntEnum):
    HELLO = 1
    HELLO_ACK = 2
    VIDEO = 3
    METADATA = 4
    AUDIO = 5
    KEYFRAME_REQUEST = 6
    STATS = 7
    BITRATE_HINT = 8
    CLOCK_REQUEST = 9
    CLOCK_REPLY = 10
    BYE = 11
    ERROR = 12
    NACK = 13
    CHALLENGE = 14
    AUTH = 15


class Codec(enum.IntEnum):
    H264 = 1
    HEVC = 2
    MJPEG = 3


class AudioCodec(enum.IntEnum):
    AAC = 1
    OPUS = 2


class Capability(enum.IntFlag):
    METADATA = 1
    AUDIO = 2
    KEYFRAME_REQUEST = 4
    BITRATE_HINT = 8
    RETRANSMIT = 16


class AckStatus(enum.IntEnum):
    OK = 0
    REFUSED = 1  # no key, or not this receiver's
    UNSUPPORTED = 2  # codec or geometry this receiver does not take
    BUSY = 3


class KeyframeReason(enum.IntEnum):
    JOIN = 1
    LOSS = 2
    DECODE_ERROR = 3
    USER = 4


class ByeReason(enum.IntEnum):
    END_OF_STREAM = 0
    SHUTDOWN = 1


#: Payload limit per type, checked from the header before any payload byte is kept.
LIMITS: dict[MessageType, int] = {
    MessageType.HELLO: 512,
    MessageType.HELLO_ACK: 512,
    MessageType.VIDEO: 8 * MiB,
    MessageType.METADATA: 64 * KiB,
    MessageType.AUDIO: 64 * KiB,
    MessageType.KEYFRAME_REQUEST: 64,
    MessageType.STATS: 64,
    MessageType.BITRATE_HINT: 64,
    MessageType.CLOCK_REQUEST: 64,
    MessageType.CLOCK_REPLY: 64,
    MessageType.BYE: 64,
    MessageType.ERROR: 1 * KiB,
    MessageType.NACK: 2 + 4 * 256,
    MessageType.CHALLENGE: 16,
    MessageType.AUTH: 64 + 512,
}
MAX_NAME = 256
MAX_NACK = 256
MAX_DIMENSION = 16384

_HELLO = struct.Struct("!IIBBHHIIIQ")
_HELLO_ACK = struct.Struct("!BII")
_VIDEO = struct.Struct("!BIqI")
_METADATA = struct.Struct("!Iq")
_AUDIO = struct.Struct("!BIq")
_KEYFRAME_REQUEST = struct.Struct("!BI")
_STATS = struct.Struct("!IIQIIH")
_BITRATE_HINT = struct.Struct("!I")
_CLOCK_REQUEST = struct.Struct("!Iq")
_CLOCK_REPLY = struct.Struct("!Iqqq")
_BYE = struct.Struct("!BII")
_ERROR = struct.Struct("!H")
_NACK = struct.Struct("!H")
_U32 = struct.Struct("!I")
_CHALLENGE = struct.Struct("!16s")
_AUTH = struct.Struct("!16s16s32s")

VIDEO_KEYFRAME = 0x01


@dataclass(frozen=True, slots=True)
class Hello:
    """Sender -> receiver: who is sending what (first message of a session)."""

    source_id: int
    nonce: int  # new per connection attempt: a repeated HELLO is the same attempt
    codec: Codec
    width: int
    height: int
    fps_num: int
    fps_den: int
    capabilities: Capability = Capability(0)
    reserved: int = 0  # 8 bytes, sent as 0 (a clear-text key once; never trusted)
    name: str = ""
    flags: int = 0  # HELLO_KEYED (vtremote.live.auth): a CHALLENGE will be answered


@dataclass(frozen=True, slots=True)
class HelloAck:
    status: AckStatus
    token: int  # session token every later datagram of this session carries
    capabilities: Capability = Capability(0)
    text: str = ""


@dataclass(frozen=True, slots=True)
class Video:
    """One compressed picture (a whole access unit, Annex B for H.264/HEVC)."""

    seq: int
    capture_ns: int  # sender's monotonic clock
    data: Buffer
    keyframe: bool = False
    sender_dropped: int = 0  # frames the sender dropped so far in this session


@dataclass(frozen=True, slots=True)
class Metadata:
    """JSON tied to the VIDEO with the same ``seq``; sent just before it."""

    seq: int
    capture_ns: int
    data: bytes  # UTF-8 JSON

    def value(self) -> Any:
        return json.loads(self.data)


@dataclass(frozen=True, slots=True)
class Audio:
    codec: AudioCodec
    seq: int
    capture_ns: int
    data: Buffer


@dataclass(frozen=True, slots=True)
class KeyframeRequest:
    reason: KeyframeReason
    last_seq: int = 0


@dataclass(frozen=True, slots=True)
class Stats:
    """Receiver -> sender, about twice a second: what arrives and how late."""

    frames: int
    lost: int
    bytes: int
    latency_p50_us: int
    latency_p99_us: int
    loss_permille: int  # datagrams missing before retransmission, per thousand


@dataclass(frozen=True, slots=True)
class BitrateHint:
    max_bps: int  # 0 = no limit


@dataclass(frozen=True, slots=True)
class ClockRequest:
    id: int
    t0: int  # receiver clock, ns, when sent


@dataclass(frozen=True, slots=True)
class ClockReply:
    id: int
    t0: int  # echoed
    t1: int  # sender clock when the request arrived
    t2: int  # sender clock when the reply left


@dataclass(frozen=True, slots=True)
class Bye:
    reason: ByeReason = ByeReason.END_OF_STREAM
    frames_sent: int = 0
    frames_dropped: int = 0


@dataclass(frozen=True, slots=True)
class Error:
    code: int
    text: str


@dataclass(frozen=True, slots=True)
class Challenge:
    """Receiver -> keyed sender: prove you hold the key (docs/live.md "Keyed handshake")."""

    cookie: bytes  # 16 bytes


@dataclass(frozen=True, slots=True)
class Auth:
    """Sender -> receiver: the cookie, a nonce, HMAC-SHA256 over them and the HELLO; the HELLO."""

    cookie: bytes  # 16
    nonce: bytes  # 16
    proof: bytes  # 32
    hello: bytes  # the HELLO payload, as proven


@dataclass(frozen=True, slots=True)
class Nack:
    seqs: tuple[int, ...] = field(default_factory=tuple)  # datagram sequence numbers


Message: TypeAlias = (
    Hello
    | HelloAck
    | Video
    | Metadata
    | Audio
    | KeyframeRequest
    | Stats
    | BitrateHint
    | ClockRequest
    | ClockReply
    | Bye
    | Error
    | Nack
    | Challenge
    | Auth
)

_TYPE_OF: dict[type, MessageType] = {
    Hello: MessageType.HELLO,
    HelloAck: MessageType.HELLO_ACK,
    Video: MessageType.VIDEO,
    Metadata: MessageType.METADATA,
    Audio: MessageType.AUDIO,
    KeyframeRequest: MessageType.KEYFRAME_REQUEST,
    Stats: MessageType.STATS,
    BitrateHint: MessageType.BITRATE_HINT,
    ClockRequest: MessageType.CLOCK_REQUEST,
    ClockReply: MessageType.CLOCK_REPLY,
    Bye: MessageType.BYE,
    Error: MessageType.ERROR,
    Nack: MessageType.NACK,
    Challenge: MessageType.CHALLENGE,
    Auth: MessageType.AUTH,
}

#: Types delivered in order with the pictures (sequenced over UDP); the rest are control.
ORDERED = frozenset({MessageType.VIDEO, MessageType.METADATA, MessageType.AUDIO, MessageType.BYE})


def message_type(msg: Message) -> MessageType:
    return _TYPE_OF[type(msg)]


def nbytes(buf: Buffer) -> int:
    return buf.nbytes if isinstance(buf, memoryview) else len(buf)


def _hello_payload(msg: Hello) -> list[Buffer]:
    name = msg.name.encode()
    if len(name) > MAX_NAME:
        raise LocalProtocolError(f"source name of {len(name)} bytes exceeds {MAX_NAME}")
    head = _HELLO.pack(
        msg.source_id,
        msg.nonce,
        msg.codec,
        msg.flags,
        msg.width,
        msg.height,
        msg.fps_num,
        msg.fps_den,
        int(msg.capabilities),
        msg.reserved,
    )
    return [head + name]


def _nack_payload(msg: Nack) -> list[Buffer]:
    if len(msg.seqs) > MAX_NACK:
        raise LocalProtocolError(f"NACK of {len(msg.seqs)} sequence numbers exceeds {MAX_NACK}")
    return [_NACK.pack(len(msg.seqs)) + b"".join(_U32.pack(s) for s in msg.seqs)]


#: Messages whose payload is exactly one layout of their dataclass fields, in order.
_FIXED: dict[MessageType, tuple[struct.Struct, type[Message]]] = {
    MessageType.KEYFRAME_REQUEST: (_KEYFRAME_REQUEST, KeyframeRequest),
    MessageType.STATS: (_STATS, Stats),
    MessageType.BITRATE_HINT: (_BITRATE_HINT, BitrateHint),
    MessageType.CLOCK_REQUEST: (_CLOCK_REQUEST, ClockRequest),
    MessageType.CLOCK_REPLY: (_CLOCK_REPLY, ClockReply),
    MessageType.BYE: (_BYE, Bye),
    MessageType.CHALLENGE: (_CHALLENGE, Challenge),
}

_SERIALIZERS: dict[type, Callable[[Any], list[Buffer]]] = {
    # Picture, audio and metadata bytes are passed through uncopied, after their prefix.
    Video: lambda m: [
        _VIDEO.pack(VIDEO_KEYFRAME if m.keyframe else 0, m.seq, m.capture_ns, m.sender_dropped),
        m.data,
    ],
    Metadata: lambda m: [_METADATA.pack(m.seq, m.capture_ns), m.data],
    Audio: lambda m: [_AUDIO.pack(m.codec, m.seq, m.capture_ns), m.data],
    Hello: _hello_payload,
    HelloAck: lambda m: [
        _HELLO_ACK.pack(m.status, m.token, int(m.capabilities)) + m.text.encode()[:400]
    ],
    Error: lambda m: [_ERROR.pack(m.code) + m.text.encode()[: LIMITS[MessageType.ERROR] - 2]],
    Nack: _nack_payload,
    Auth: lambda m: [_AUTH.pack(m.cookie, m.nonce, m.proof), m.hello],
}


def serialize_payload(msg: Message) -> list[Buffer]:
    """The payload of ``msg`` as buffers; picture data is passed through uncopied."""
    kind = _TYPE_OF.get(type(msg))
    try:
        if kind in _FIXED:
            layout, _ = _FIXED[kind]
            return [layout.pack(*(getattr(msg, f.name) for f in fields(msg)))]
        if kind is not None:
            return _SERIALIZERS[type(msg)](msg)
    except struct.error as e:
        raise LocalProtocolError(f"{type(msg).__name__}: {e}") from None
    raise LocalProtocolError(f"not a live message: {msg!r}")


def serialize(msg: Message) -> list[Buffer]:
    """Header + payload buffers for a stream transport (send them with one ``sendmsg``)."""
    parts = serialize_payload(msg)
    length = sum(nbytes(p) for p in parts)
    kind = message_type(msg)
    if length > LIMITS[kind]:
        raise LocalProtocolError(f"{kind.name} of {length} bytes exceeds {LIMITS[kind]}")
    return [HEADER.pack(MAGIC, VERSION, kind, length), *parts]


def _need(kind: MessageType, payload: Buffer, size: int) -> None:
    if nbytes(payload) < size:
        raise RemoteProtocolError(
            f"{kind.name} payload of {nbytes(payload)} bytes, needs at least {size}"
        )


def _exact(kind: MessageType, payload: Buffer, size: int) -> None:
    if nbytes(payload) != size:
        raise RemoteProtocolError(f"{kind.name} payload of {nbytes(payload)} bytes, must be {size}")


def _text(kind: MessageType, raw: Buffer) -> str:
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"{kind.name} text is not UTF-8") from None


def _enum(cls: type[E], value: int, what: str) -> E:
    """``cls(value)``; a value this side does not know is the peer's error."""
    try:
        return cls(value)
    except ValueError:
        raise RemoteProtocolError(f"{what} {value} unknown") from None


def _known(cls: type[E], value: int, default: E) -> E:
    """``cls(value)``, or ``default`` for a value a newer peer may send."""
    try:
        return cls(value)
    except ValueError:
        return default


def _parse_video(kind: MessageType, view: memoryview) -> Message:
    _need(kind, view, _VIDEO.size)
    flags, seq, ts, dropped = _VIDEO.unpack_from(view)
    return Video(seq, ts, view[_VIDEO.size :], bool(flags & VIDEO_KEYFRAME), dropped)


def _parse_metadata(kind: MessageType, view: memoryview) -> Message:
    _need(kind, view, _METADATA.size)
    seq, ts = _METADATA.unpack_from(view)
    data = bytes(view[_METADATA.size :])
    try:
        json.loads(data)
    except ValueError:
        raise RemoteProtocolError(f"METADATA for frame {seq} is not JSON") from None
    return Metadata(seq, ts, data)


def _parse_audio(kind: MessageType, view: memoryview) -> Message:
    _need(kind, view, _AUDIO.size)
    codec, seq, ts = _AUDIO.unpack_from(view)
    return Audio(_enum(AudioCodec, codec, "AUDIO codec"), seq, ts, view[_AUDIO.size :])


def _parse_hello(kind: MessageType, view: memoryview) -> Message:
    _need(kind, view, _HELLO.size)
    sid, nonce, codec, flags, w, h, fnum, fden, caps, reserved = _HELLO.unpack_from(view)
    vcodec = _enum(Codec, codec, "HELLO codec")
    if not (0 < w <= MAX_DIMENSION and 0 < h <= MAX_DIMENSION):
        raise RemoteProtocolError(f"HELLO size {w}x{h} outside 1..{MAX_DIMENSION}")
    if fnum == 0 or fden == 0:
        raise RemoteProtocolError(f"HELLO frame rate {fnum}/{fden} is not positive")
    name = _text(kind, view[_HELLO.size :])
    return Hello(
        sid, nonce, vcodec, w, h, fnum, fden, Capability(caps & 0x1F), reserved, name, flags
    )


def _parse_hello_ack(kind: MessageType, view: memoryview) -> Message:
    _need(kind, view, _HELLO_ACK.size)
    status, token, caps = _HELLO_ACK.unpack_from(view)
    st = _enum(AckStatus, status, "HELLO_ACK status")
    return HelloAck(st, token, Capability(caps & 0x1F), _text(kind, view[_HELLO_ACK.size :]))


def _parse_keyframe_request(kind: MessageType, view: memoryview) -> Message:
    _exact(kind, view, _KEYFRAME_REQUEST.size)
    reason, last = _KEYFRAME_REQUEST.unpack_from(view)
    return KeyframeRequest(_known(KeyframeReason, reason, KeyframeReason.USER), last)


def _parse_bye(kind: MessageType, view: memoryview) -> Message:
    _exact(kind, view, _BYE.size)
    reason, sent, dropped = _BYE.unpack_from(view)
    return Bye(_known(ByeReason, reason, ByeReason.SHUTDOWN), sent, dropped)


def _parse_fixed(kind: MessageType, view: memoryview) -> Message:
    """A message of one layout whose fields are plain numbers (see :data:`_FIXED`)."""
    layout, cls = _FIXED[kind]
    _exact(kind, view, layout.size)
    return cls(*layout.unpack_from(view))


def _parse_auth(kind: MessageType, view: memoryview) -> Message:
    _need(kind, view, _AUTH.size)
    cookie, nonce, proof = _AUTH.unpack_from(view)
    return Auth(cookie, nonce, proof, bytes(view[_AUTH.size :]))


def _parse_error(kind: MessageType, view: memoryview) -> Message:
    _need(kind, view, _ERROR.size)
    (code,) = _ERROR.unpack_from(view)
    return Error(code, bytes(view[_ERROR.size :]).decode(errors="replace"))


def _parse_nack(kind: MessageType, view: memoryview) -> Message:
    _need(kind, view, _NACK.size)
    (count,) = _NACK.unpack_from(view)
    if count > MAX_NACK:
        raise RemoteProtocolError(f"NACK of {count} sequence numbers exceeds {MAX_NACK}")
    _exact(kind, view, _NACK.size + 4 * count)
    return Nack(tuple(struct.unpack_from(f"!{count}I", view, _NACK.size)))


_PARSERS: dict[MessageType, Callable[[MessageType, memoryview], Message]] = {
    MessageType.HELLO: _parse_hello,
    MessageType.HELLO_ACK: _parse_hello_ack,
    MessageType.VIDEO: _parse_video,
    MessageType.METADATA: _parse_metadata,
    MessageType.AUDIO: _parse_audio,
    MessageType.KEYFRAME_REQUEST: _parse_keyframe_request,
    MessageType.STATS: _parse_fixed,
    MessageType.BITRATE_HINT: _parse_fixed,
    MessageType.CLOCK_REQUEST: _parse_fixed,
    MessageType.CLOCK_REPLY: _parse_fixed,
    MessageType.BYE: _parse_bye,
    MessageType.ERROR: _parse_error,
    MessageType.NACK: _parse_nack,
    MessageType.CHALLENGE: _parse_fixed,
    MessageType.AUTH: _parse_auth,
}


def parse_payload(raw_type: int, payload: Buffer) -> Message:
    """The message of type ``raw_type`` in ``payload``; :class:`RemoteProtocolError` if malformed.

    VIDEO and AUDIO data are views of ``payload`` (no copy).
    """
    try:
        kind = MessageType(raw_type)
    except ValueError:
        raise RemoteProtocolError(f"unknown message type {raw_type}") from None
    if nbytes(payload) > LIMITS[kind]:
        raise RemoteProtocolError(f"{kind.name} of {nbytes(payload)} bytes exceeds {LIMITS[kind]}")
    return _PARSERS[kind](kind, memoryview(payload))


class StreamParser:
    """Bytes of a TCP connection in (any chunking), whole messages out.

    The header is checked (magic, version, type, length limit) as soon as its 8
    bytes are in, before any payload byte is kept, so a header claiming 4 GiB
    costs nothing. ``feed(b"")`` means EOF; EOF inside a message is an error.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need: tuple[int, int] | None = None  # (type, length) of the message being read
        self.eof = False

    def feed(self, data: Buffer) -> list[Message]:
        if nbytes(data) == 0:
            self.eof = True
            if self._buf or self._need is not None:
                raise RemoteProtocolError(
                    f"connection closed inside a message ({len(self._buf)} bytes buffered)"
                )
            return []
        self._buf += data
        out: list[Message] = []
        while True:
            if self._need is None:
                if len(self._buf) < HEADER_SIZE:
                    return out
                magic, version, raw_type, length = HEADER.unpack_from(self._buf)
                if magic != MAGIC or version != VERSION:
                    raise RemoteProtocolError(
                        f"bad header magic={bytes(magic)!r} version={version}"
                    )
                try:
                    kind = MessageType(raw_type)
                except ValueError:
                    raise RemoteProtocolError(f"unknown message type {raw_type}") from None
                if length > LIMITS[kind]:
                    raise RemoteProtocolError(
                        f"{kind.name} of {length} bytes exceeds {LIMITS[kind]}"
                    )
                del self._buf[:HEADER_SIZE]
                self._need = (raw_type, length)
            raw_type, length = self._need
            if len(self._buf) < length:
                return out
            payload = bytes(self._buf[:length])  # the one copy out of the receive buffer
            del self._buf[:length]
            self._need = None
            out.append(parse_payload(raw_type, payload))

    @property
    def buffered(self) -> int:
        return len(self._buf)
