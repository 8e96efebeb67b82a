"""VTR1 messages: frozen dataclasses, ``parse_payload`` and ``serialize``.

Layouts follow the reference code byte for byte (docs/protocol.md). Parsing is
exactly as lenient as the reference where the reference is lenient (optional
tails of CONFIGURE, HELLO_ACK and CONFIGURE_ACK) and strict everywhere else:
a field that runs past the end of the payload is a :class:`RemoteProtocolError`,
never an ``IndexError`` or ``struct.error``.

Strings are UTF-8 decoded with ``surrogateescape`` so that any byte sequence
survives parse -> serialize unchanged.

Zero copy: the ``data`` of a :class:`Plane`, :class:`SideData` or
:class:`Packet` is kept as given (a ``memoryview`` slice of the received body
when parsed) and ``serialize`` returns those very objects in its buffer list.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TypeAlias

from vtremote.errors import LocalProtocolError, RemoteProtocolError
from vtremote.wire.constants import (
    CONFIGURE_FIXED,
    FRAME_PREFIX,
    HEADER,
    I64,
    MAGIC,
    MAX_STR,
    PACKET_PREFIX,
    PLANE_HEADER,
    SIDE_DATA_HEADER,
    U8,
    U16,
    U32,
    VERSION,
    HelloStatus,
    MessageType,
)

Buffer: TypeAlias = bytes | bytearray | memoryview

_U8_MAX = 0xFF


def nbytes(buf: Buffer) -> int:
    """Size in bytes of any buffer (a memoryview's len counts items, not bytes)."""
    return buf.nbytes if isinstance(buf, memoryview) else len(buf)


_U32_MAX = 0xFFFFFFFF


# --- low-level reading and writing ----------------------------------------------------------


class _Reader:
    """Cursor over one payload; every overrun is a RemoteProtocolError naming the field."""

    __slots__ = ("_buf", "_pos", "_what")

    def __init__(self, buf: memoryview, what: str) -> None:
        self._buf = buf
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._buf) - self._pos

    def _need(self, n: int, field_name: str) -> None:
        if n > len(self._buf) - self._pos:
            raise RemoteProtocolError(
                f"{self._what} truncated: {field_name} needs {n} bytes at offset "
                f"{self._pos}, payload has {len(self._buf)}"
            )

    def u8(self, name: str) -> int:
        self._need(1, name)
        v = self._buf[self._pos]
        self._pos += 1
        return v

    def u16(self, name: str) -> int:
        self._need(2, name)
        (v,) = U16.unpack_from(self._buf, self._pos)
        self._pos += 2
        return int(v)

    def u32(self, name: str) -> int:
        self._need(4, name)
        (v,) = U32.unpack_from(self._buf, self._pos)
        self._pos += 4
        return int(v)

    def i64(self, name: str) -> int:
        self._need(8, name)
        (v,) = I64.unpack_from(self._buf, self._pos)
        self._pos += 8
        return int(v)

    def unpack(self, st: struct.Struct, name: str) -> tuple[int, ...]:
        self._need(st.size, name)
        vals = st.unpack_from(self._buf, self._pos)
        self._pos += st.size
        return tuple(int(v) for v in vals)

    def view(self, n: int, name: str) -> memoryview:
        self._need(n, name)
        v = self._buf[self._pos : self._pos + n]
        self._pos += n
        return v

    def string(self, name: str) -> str:
        n = self.u16(f"{name} length")
        return bytes(self.view(n, name)).decode("utf-8", "surrogateescape")


def _str(s: str, name: str) -> bytes:
    raw = s.encode("utf-8", "surrogateescape")
    if len(raw) > MAX_STR:
        # VTR1.md §13.8: the reference clamps the length but writes every byte (desync).
        raise LocalProtocolError(
            f"{name} is {len(raw)} bytes, a VTR1 string holds at most {MAX_STR}"
        )
    return U16.pack(len(raw)) + raw


def _check_range(value: int, lo: int, hi: int, name: str) -> None:
    if not lo <= value <= hi:
        raise LocalProtocolError(f"{name}={value} does not fit the wire field ({lo}..{hi})")


# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """Client -> server, first message. Four strings; ``build`` is a string, not a u32."""

    token: str = ""
    codec: str = "h264"
    client_name: str = "vtremote"
    build: str = ""

    TYPE = MessageType.HELLO


@dataclass(frozen=True, slots=True)
class HelloAck:
    """Server -> client. The reference sends 22 bytes: status, two empty strings,
    the codec list ``h264, hevc`` and the constants 4 and 1. Our server fills the
    strings with its name and version, appends extension capabilities to the list
    (docs/protocol.md "Extensions") and reports real session counts."""

    status: int = HelloStatus.OK
    server_name: str = ""
    server_version: str = ""
    capabilities: tuple[str, ...] = ("h264", "hevc")
    max_sessions: int = 4
    active_sessions: int = 1

    TYPE = MessageType.HELLO_ACK


@dataclass(frozen=True, slots=True)
class Configure:
    """Client -> server. ``options`` keeps the wire order and duplicates (the
    server uses the last value of a key: :meth:`option_map`)."""

    width: int
    height: int
    pix_fmt: int
    time_base_num: int = 1
    time_base_den: int = 1
    framerate_num: int = 0
    framerate_den: int = 1
    options: tuple[tuple[str, str], ...] = ()
    extradata: Buffer = b""

    TYPE = MessageType.CONFIGURE

    def option_map(self) -> dict[str, str]:
        return dict(self.options)

    def option(self, key: str, default: str | None = None) -> str | None:
        value = default
        for k, v in self.options:
            if k == key:
                value = v
        return value


@dataclass(frozen=True, slots=True)
class ConfigureAck:
    """Server -> client. ``extradata`` is the avcC/hvcC record (encode) or empty."""

    status: int = 0
    extradata: Buffer = b""
    pix_fmt: int = 1
    warnings: tuple[str, ...] = ()

    TYPE = MessageType.CONFIGURE_ACK


@dataclass(frozen=True, slots=True)
class Plane:
    """One FRAME plane: uncompressed geometry plus the bytes as they travel
    (compressed per the session's wire_compression, or raw)."""

    stride: int
    height: int
    data: Buffer

    @property
    def size(self) -> int:
        """Uncompressed size: what ``data`` must decompress to."""
        return self.stride * self.height


@dataclass(frozen=True, slots=True)
class SideData:
    type: int
    data: Buffer


@dataclass(frozen=True, slots=True)
class Frame:
    """An uncompressed picture. ``side_data is None`` means the block is absent
    (the reference client omits it when empty; the server never sends it)."""

    pts: int
    duration: int
    flags: int
    planes: tuple[Plane, ...]
    side_data: tuple[SideData, ...] | None = None

    TYPE = MessageType.FRAME


@dataclass(frozen=True, slots=True)
class Packet:
    """A compressed bitstream unit (Annex B)."""

    pts: int
    dts: int
    duration: int
    flags: int
    data: Buffer

    TYPE = MessageType.PACKET

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class Flush:
    TYPE = MessageType.FLUSH


@dataclass(frozen=True, slots=True)
class Done:
    TYPE = MessageType.DONE


@dataclass(frozen=True, slots=True)
class Error:
    """Server -> client: ``u32 code`` + string. ``unframed`` marks a text received
    without its u16 length (the reference's test servers write it that way and the
    reference client accepts it); such an ERROR serializes back the same way."""

    code: int
    message: str = ""
    unframed: bool = False

    TYPE = MessageType.ERROR


@dataclass(frozen=True, slots=True)
class Ping:
    TYPE = MessageType.PING


@dataclass(frozen=True, slots=True)
class Pong:
    TYPE = MessageType.PONG


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message whose type id v1 does not define. Both reference peers read and
    ignore these once streaming; we keep the payload so it re-serializes."""

    raw_type: int
    payload: bytes = field(default=b"")


@dataclass(frozen=True, slots=True)
class Raw:
    """A payload kept as received because v1 ignores it (FLUSH/DONE/PING/PONG
    with a non-empty body). Lets every byte stream re-serialize identically."""

    type: MessageType
    payload: bytes


Message: TypeAlias = (
    Hello
    | HelloAck
    | Configure
    | ConfigureAck
    | Frame
    | Packet
    | Flush
    | Done
    | Error
    | Ping
    | Pong
    | Unknown
    | Raw
)


def message_type(msg: Message) -> int:
    """The wire type id of ``msg``."""
    if isinstance(msg, Unknown):
        return msg.raw_type
    if isinstance(msg, Raw):
        return int(msg.type)
    return int(msg.TYPE)


# --- parsing ---------------------------------------------------------------------------------


def _parse_hello(r: _Reader) -> Hello:
    # Trailing bytes are ignored, as the reference server does.
    return Hello(r.string("token"), r.string("codec"), r.string("client_name"), r.string("build"))


def _parse_hello_ack(r: _Reader) -> HelloAck:
    status = r.u8("status")
    # The reference client reads everything after the status best-effort; so do we:
    # a truncated tail leaves the defaults of a plain v1 server.
    if r.remaining == 0:
        return HelloAck(status=status, capabilities=(), max_sessions=0, active_sessions=0)
    name = r.string("server_name")
    version = r.string("server_version")
    count = r.u8("capability count")
    caps = tuple(r.string(f"capability {i}") for i in range(count))
    max_sessions = r.u16("max_sessions")
    active = r.u16("active_sessions")
    return HelloAck(status, name, version, caps, max_sessions, active)


def _parse_configure(r: _Reader) -> Configure:
    w, h, pf, tbn, tbd, frn, frd = r.unpack(CONFIGURE_FIXED, "CONFIGURE fixed fields")
    options: list[tuple[str, str]] = []
    extradata: Buffer = b""
    # VTR1.md §3.1: the option block is read only if >= 2 bytes remain, extradata if >= 4.
    if r.remaining >= 2:
        count = r.u16("option_count")
        for i in range(count):
            options.append((r.string(f"option {i} key"), r.string(f"option {i} value")))
        if r.remaining >= 4:
            n = r.u32("extradata_len")
            extradata = r.view(n, "extradata")
    return Configure(w, h, pf, tbn, tbd, frn, frd, tuple(options), extradata)


def _parse_configure_ack(r: _Reader) -> ConfigureAck:
    status = r.u8("status")
    if r.remaining == 0:  # the minimal ACK the reference client accepts
        return ConfigureAck(status=status, pix_fmt=0)
    n = r.u16("extradata_len")
    extradata = r.view(n, "extradata")
    pix_fmt = r.u8("pix_fmt")
    count = r.u8("warning_count")
    warnings = tuple(r.string(f"warning {i}") for i in range(count))
    return ConfigureAck(status, extradata, pix_fmt, warnings)


def _parse_frame(r: _Reader) -> Frame:
    pts, duration, flags, count = r.unpack(FRAME_PREFIX, "FRAME prefix")
    planes = []
    for i in range(count):
        stride, height, n = r.unpack(PLANE_HEADER, f"FRAME plane {i} header")
        planes.append(Plane(stride, height, r.view(n, f"FRAME plane {i} data")))
    side: tuple[SideData, ...] | None = None
    if r.remaining:
        n_side = r.u8("side_data_count")
        entries = []
        for i in range(n_side):
            typ, size = r.unpack(SIDE_DATA_HEADER, f"side data {i} header")
            entries.append(SideData(typ, r.view(size, f"side data {i}")))
        side = tuple(entries)
        if r.remaining:
            raise RemoteProtocolError(f"FRAME has {r.remaining} bytes after its side data")
    return Frame(pts, duration, flags, tuple(planes), side)


def _parse_packet(r: _Reader) -> Packet:
    pts, dts, duration, flags, n = r.unpack(PACKET_PREFIX, "PACKET prefix")
    data = r.view(n, "PACKET data")
    if r.remaining:
        raise RemoteProtocolError(f"PACKET has {r.remaining} bytes after its data")
    return Packet(pts, dts, duration, flags, data)


def _parse_error(r: _Reader) -> Error:
    code = r.u32("code")
    rest = r.view(r.remaining, "message")
    if len(rest) >= 2 and U16.unpack_from(rest)[0] == len(rest) - 2:
        return Error(code, bytes(rest[2:]).decode("utf-8", "surrogateescape"))
    # VTR1.md §6.2: the reference client logs such an ERROR without its text; we keep
    # whatever followed the code, so the session still ends with a RemoteError.
    return Error(code, bytes(rest).decode("utf-8", "surrogateescape"), unframed=True)


def parse_payload(raw_type: int, payload: Buffer) -> Message:
    """Turn one message body into a message object.

    ``payload`` is not copied: variable-length fields of FRAME, PACKET and
    CONFIGURE are memoryview slices of it. Raises only RemoteProtocolError.
    """
    view = payload if isinstance(payload, memoryview) else memoryview(payload)
    try:
        mtype = MessageType(raw_type)
    except ValueError:
        return Unknown(raw_type, bytes(view))
    r = _Reader(view, mtype.name)
    if mtype is MessageType.HELLO:
        return _parse_hello(r)
    if mtype is MessageType.HELLO_ACK:
        return _parse_hello_ack(r)
    if mtype is MessageType.CONFIGURE:
        return _parse_configure(r)
    if mtype is MessageType.CONFIGURE_ACK:
        return _parse_configure_ack(r)
    if mtype is MessageType.FRAME:
        return _parse_frame(r)
    if mtype is MessageType.PACKET:
        return _parse_packet(r)
    if mtype is MessageType.ERROR:
        return _parse_error(r)
    if len(view):  # FLUSH / DONE / PING / PONG: v1 ignores a body; keep it for round trips
        return Raw(mtype, bytes(view))
    return _EMPTY[mtype]


_EMPTY: dict[MessageType, Message] = {
    MessageType.FLUSH: Flush(),
    MessageType.DONE: Done(),
    MessageType.PING: Ping(),
    MessageType.PONG: Pong(),
}


# --- serializing -----------------------------------------------------------------------------


def _header(raw_type: int, length: int) -> bytes:
    if length > _U32_MAX:
        raise LocalProtocolError(f"message of {length} bytes exceeds the u32 length field")
    return HEADER.pack(MAGIC, VERSION, raw_type, length)


def _body_parts(msg: Message) -> list[Buffer]:
    if isinstance(msg, Frame):
        return _frame_parts(msg)
    if isinstance(msg, Packet):
        _check_range(msg.flags, 0, _U32_MAX, "PACKET flags")
        return [
            PACKET_PREFIX.pack(msg.pts, msg.dts, msg.duration, msg.flags, nbytes(msg.data)),
            msg.data,
        ]
    if isinstance(msg, Hello):
        return [
            _str(msg.token, "token")
            + _str(msg.codec, "codec")
            + _str(msg.client_name, "client_name")
            + _str(msg.build, "build")
        ]
    if isinstance(msg, HelloAck):
        _check_range(len(msg.capabilities), 0, _U8_MAX, "capability count")
        _check_range(msg.max_sessions, 0, 0xFFFF, "max_sessions")
        _check_range(msg.active_sessions, 0, 0xFFFF, "active_sessions")
        out = bytearray(U8.pack(msg.status))
        out += _str(msg.server_name, "server_name") + _str(msg.server_version, "server_version")
        out += U8.pack(len(msg.capabilities))
        for cap in msg.capabilities:
            out += _str(cap, "capability")
        out += U16.pack(msg.max_sessions) + U16.pack(msg.active_sessions)
        return [bytes(out)]
    if isinstance(msg, Configure):
        _check_range(msg.pix_fmt, 0, _U8_MAX, "pix_fmt")
        _check_range(len(msg.options), 0, 0xFFFF, "option_count")
        for name in (
            "width",
            "height",
            "time_base_num",
            "time_base_den",
            "framerate_num",
            "framerate_den",
        ):
            _check_range(getattr(msg, name), 0, _U32_MAX, name)
        out = bytearray(
            CONFIGURE_FIXED.pack(
                msg.width,
                msg.height,
                msg.pix_fmt,
                msg.time_base_num,
                msg.time_base_den,
                msg.framerate_num,
                msg.framerate_den,
            )
        )
        out += U16.pack(len(msg.options))
        for k, v in msg.options:
            out += _str(k, "option key") + _str(v, "option value")
        out += U32.pack(nbytes(msg.extradata))
        out += msg.extradata
        return [bytes(out)]
    if isinstance(msg, ConfigureAck):
        _check_range(nbytes(msg.extradata), 0, 0xFFFF, "CONFIGURE_ACK extradata_len")
        _check_range(len(msg.warnings), 0, _U8_MAX, "warning_count")
        out = bytearray(U8.pack(msg.status) + U16.pack(nbytes(msg.extradata)))
        out += msg.extradata
        out += U8.pack(msg.pix_fmt) + U8.pack(len(msg.warnings))
        for w in msg.warnings:
            out += _str(w, "warning")
        return [bytes(out)]
    if isinstance(msg, Error):
        _check_range(msg.code, 0, _U32_MAX, "ERROR code")
        if msg.unframed:
            return [U32.pack(msg.code) + msg.message.encode("utf-8", "surrogateescape")]
        return [U32.pack(msg.code) + _str(msg.message, "ERROR message")]
    if isinstance(msg, Unknown):
        return [msg.payload] if msg.payload else []
    if isinstance(msg, Raw):
        return [msg.payload] if msg.payload else []
    return []  # FLUSH, DONE, PING, PONG


def _frame_parts(msg: Frame) -> list[Buffer]:
    _check_range(len(msg.planes), 0, _U8_MAX, "plane_count")
    _check_range(msg.flags, 0, _U32_MAX, "FRAME flags")
    parts: list[Buffer] = [FRAME_PREFIX.pack(msg.pts, msg.duration, msg.flags, len(msg.planes))]
    for p in msg.planes:
        parts.append(PLANE_HEADER.pack(p.stride, p.height, nbytes(p.data)))
        parts.append(p.data)  # the caller's buffer itself: no copy
    if msg.side_data is not None:
        _check_range(len(msg.side_data), 0, _U8_MAX, "side_data_count")
        parts.append(U8.pack(len(msg.side_data)))
        for sd in msg.side_data:
            parts.append(SIDE_DATA_HEADER.pack(sd.type, nbytes(sd.data)))
            parts.append(sd.data)
    return parts


def serialize(msg: Message) -> list[Buffer]:
    """Header and payload of ``msg`` as a list of buffers for one ``sendmsg``.

    Plane, packet and side data buffers are returned as the same objects the
    message holds (no copy); small fixed fields are packed into new bytes.
    """
    try:
        body = _body_parts(msg)
        length = sum(nbytes(b) for b in body)
        return [_header(message_type(msg), length), *body]
    except (struct.error, OverflowError, UnicodeEncodeError) as e:
        # A field value that does not fit its wire width (negative stride, pts beyond
        # i64, status > 255, type id > 65535, a lone surrogate in a string...): our
        # bug, named with its message.
        raise LocalProtocolError(f"cannot serialize {type(msg).__name__}: {e}") from e


def serialize_bytes(msg: Message) -> bytes:
    """``serialize`` joined into one bytes object (tests, small messages)."""
    return b"".join(bytes(b) if isinstance(b, memoryview) else b for b in serialize(msg))
