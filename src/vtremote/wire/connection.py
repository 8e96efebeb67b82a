"""The VTR1 session state machines (client and server role) and a sans-IO Connection.

One TCP connection is one session: HELLO / HELLO_ACK, CONFIGURE / CONFIGURE_ACK,
then an encode session (client sends FRAMEs, server answers PACKETs), a decode
session (client sends PACKETs, server answers FRAMEs) or, as our extension, a
transcode session (PACKETs both ways, ``mode=transcode``), FLUSH, the remaining
output, DONE. ERROR ends the session in any state (VTR1.md §1.3).

The legal orders are the tables below, one per role and direction: a
``(State, MessageType) -> State`` entry is a legal message and where it leads.
A pair missing from a table raises :class:`LocalProtocolError` when we send it
and :class:`RemoteProtocolError` when the peer does. Differences from the
reference, on purpose:

* The reference encoder client may send FLUSH more than once (VTR1.md §6.1):
  a FLUSH while draining is legal and changes nothing.
* PING/PONG are legal once streaming (CONFIGURE_ACK sent), in both directions;
  as in the reference, a PING during the handshake is an error.
* Message type ids v1 does not define are read and ignored once streaming
  (forward compatibility, as both reference peers do); during the handshake they
  are errors.
"""

from __future__ import annotations

import contextlib
import enum

from vtremote.errors import LocalProtocolError, RemoteProtocolError
from vtremote.wire.compression import parse_compression
from vtremote.wire.constants import HelloStatus, MessageType, PixelFormat, WireCompression
from vtremote.wire.framing import Limits, Receiver, max_stride, plane_row_bytes, plane_rows
from vtremote.wire.messages import (
    Buffer,
    Configure,
    ConfigureAck,
    Frame,
    HelloAck,
    Message,
    Raw,
    Unknown,
    message_type,
    nbytes,
    serialize,
)


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    START = "start"  # nothing exchanged yet
    HELLO = "hello"  # HELLO sent, HELLO_ACK pending
    REFUSED = "refused"  # HELLO_ACK with status != 0 (busy / auth); an ERROR may follow
    READY = "ready"  # HELLO accepted, CONFIGURE next
    CONFIGURING_ENCODE = "configuring-encode"  # CONFIGURE(mode=encode) sent, ACK pending
    CONFIGURING_DECODE = "configuring-decode"
    CONFIGURING_TRANSCODE = "configuring-transcode"  # extension ext:transcode
    ENCODING = "encoding"  # FRAMEs to the server, PACKETs back
    DECODING = "decoding"  # PACKETs to the server, FRAMEs back
    TRANSCODING = "transcoding"  # source PACKETs to the server, output PACKETs back
    DRAINING_ENCODE = "draining-encode"  # FLUSH sent; remaining PACKETs, then DONE
    DRAINING_DECODE = "draining-decode"
    DRAINING_TRANSCODE = "draining-transcode"
    DONE = "done"  # DONE sent: the session is over
    FAILED = "failed"  # ERROR sent: the session is over


S = State
T = MessageType

#: States after CONFIGURE_ACK in which keepalive and ignored messages are allowed.
STREAMING = (
    S.ENCODING,
    S.DECODING,
    S.TRANSCODING,
    S.DRAINING_ENCODE,
    S.DRAINING_DECODE,
    S.DRAINING_TRANSCODE,
)
#: States in which the server may still send ERROR (anything not finished).
OPEN = (
    S.START,
    S.HELLO,
    S.REFUSED,
    S.READY,
    S.CONFIGURING_ENCODE,
    S.CONFIGURING_DECODE,
    S.CONFIGURING_TRANSCODE,
    *STREAMING,
)


def _keepalive(table: dict[tuple[State, MessageType], State]) -> None:
    for st in STREAMING:
        table[(st, T.PING)] = st
        table[(st, T.PONG)] = st


# Messages the CLIENT sends (= the server receives).
CLIENT_SENDS: dict[tuple[State, MessageType], State] = {
    (S.START, T.HELLO): S.HELLO,
    (S.READY, T.CONFIGURE): S.CONFIGURING_ENCODE,  # or _DECODE / _TRANSCODE, by option mode
    (S.ENCODING, T.FRAME): S.ENCODING,
    (S.DECODING, T.PACKET): S.DECODING,
    (S.TRANSCODING, T.PACKET): S.TRANSCODING,
    (S.ENCODING, T.FLUSH): S.DRAINING_ENCODE,
    (S.DECODING, T.FLUSH): S.DRAINING_DECODE,
    (S.TRANSCODING, T.FLUSH): S.DRAINING_TRANSCODE,
    (S.DRAINING_ENCODE, T.FLUSH): S.DRAINING_ENCODE,  # repeated FLUSH of the reference encoder
    (S.DRAINING_DECODE, T.FLUSH): S.DRAINING_DECODE,
    (S.DRAINING_TRANSCODE, T.FLUSH): S.DRAINING_TRANSCODE,
}
_keepalive(CLIENT_SENDS)

# Messages the SERVER sends (= the client receives).
SERVER_SENDS: dict[tuple[State, MessageType], State] = {
    (S.HELLO, T.HELLO_ACK): S.READY,  # or REFUSED when status != 0
    (S.CONFIGURING_ENCODE, T.CONFIGURE_ACK): S.ENCODING,
    (S.CONFIGURING_DECODE, T.CONFIGURE_ACK): S.DECODING,
    (S.CONFIGURING_TRANSCODE, T.CONFIGURE_ACK): S.TRANSCODING,
    (S.ENCODING, T.PACKET): S.ENCODING,
    (S.DRAINING_ENCODE, T.PACKET): S.DRAINING_ENCODE,
    (S.DECODING, T.FRAME): S.DECODING,
    (S.DRAINING_DECODE, T.FRAME): S.DRAINING_DECODE,
    (S.TRANSCODING, T.PACKET): S.TRANSCODING,
    (S.DRAINING_TRANSCODE, T.PACKET): S.DRAINING_TRANSCODE,
    (S.DRAINING_ENCODE, T.DONE): S.DONE,
    (S.DRAINING_DECODE, T.DONE): S.DONE,
    (S.DRAINING_TRANSCODE, T.DONE): S.DONE,
}
_keepalive(SERVER_SENDS)
for _st in OPEN:
    SERVER_SENDS[(_st, T.ERROR)] = S.FAILED


def transition(sender: Role, state: State, msg: Message) -> State:
    """Where ``msg`` sent by ``sender`` in ``state`` leads; raises ``KeyError`` if illegal.

    Decides the data-dependent branches: HELLO_ACK status, CONFIGURE mode.
    Unknown type ids are ignored (no state change) once streaming.
    """
    raw = message_type(msg)
    if isinstance(msg, Unknown) or (isinstance(msg, Raw) and msg.type in (T.PING, T.PONG)):
        if state in STREAMING:
            return state
        if isinstance(msg, Unknown):
            raise KeyError((state, raw))
    table = CLIENT_SENDS if sender is Role.CLIENT else SERVER_SENDS
    nxt = table[(state, T(raw))]
    if isinstance(msg, HelloAck) and msg.status != HelloStatus.OK:
        return S.REFUSED
    if isinstance(msg, Configure):
        mode = session_mode(msg)
        if mode == "decode":
            return S.CONFIGURING_DECODE
        if mode == "transcode":
            return S.CONFIGURING_TRANSCODE
    return nxt


def type_allowed(sender: Role, state: State, raw_type: int) -> bool:
    """Whether a message of wire type ``raw_type`` from ``sender`` is legal in ``state``.

    Depends on the type only (the data-dependent branches of :func:`transition`
    choose the next state, never legality), so it can be asked as soon as a header
    is in, before the body is buffered.
    """
    try:
        mtype = T(raw_type)
    except ValueError:
        return state in STREAMING  # unknown ids: ignored once streaming, refused before
    table = CLIENT_SENDS if sender is Role.CLIENT else SERVER_SENDS
    return (state, mtype) in table


def session_mode(cfg: Configure) -> str:
    """``encode``, ``decode`` or ``transcode`` (our extension, sent only to a server that
    offers ``ext:transcode``); any other value of option ``mode`` means encode (as in v1)."""
    mode = cfg.option("mode", "encode")
    return mode if mode in ("decode", "transcode") else "encode"


def check_frame_geometry(frame: Frame, width: int, height: int, pix_fmt: PixelFormat | int) -> None:
    """Raise RemoteProtocolError unless the FRAME planes fit the configured picture.

    Two planes (Y, interleaved CbCr); luma rows == height; chroma rows floor or
    ceil of height/2 (the reference client sends floor, CoreVideo ceil); stride at
    least the row and at most :func:`max_stride` (VTR1.md §13.3/§13.4).
    """
    try:
        pf = PixelFormat(pix_fmt)
    except ValueError:
        raise RemoteProtocolError(
            f"FRAME for pix_fmt {pix_fmt}, which is neither NV12 (1) nor P010 (2)"
        ) from None
    if len(frame.planes) != 2:
        raise RemoteProtocolError(f"FRAME has {len(frame.planes)} planes, {pf.name} needs 2")
    rows = plane_rows(height)
    row_bytes = plane_row_bytes(width, pf)
    for i, plane in enumerate(frame.planes):
        lo_rows = rows[i] if i == 0 else height // 2
        if not lo_rows <= plane.height <= rows[i]:
            raise RemoteProtocolError(
                f"FRAME plane {i} has {plane.height} rows, configured {width}x{height} "
                f"{pf.name} allows {rows[i]}"
            )
        if not row_bytes[i] <= plane.stride <= max_stride(row_bytes[i]):
            raise RemoteProtocolError(
                f"FRAME plane {i} stride {plane.stride} is outside {row_bytes[i]}.."
                f"{max_stride(row_bytes[i])} for configured {width}x{height} {pf.name}"
            )


class Connection:
    """One side of a VTR1 session: legal order, framing limits, session parameters.

    Sans-IO: ``send`` returns the buffers to write; received bytes go in through
    ``receive_data`` or ``get_buffer``/``buffer_updated``; ``next_event`` returns
    the next received message or None.
    """

    def __init__(self, role: Role, limits: Limits | None = None) -> None:
        self.role = role
        self.peer = Role.SERVER if role is Role.CLIENT else Role.CLIENT
        self.state = State.START
        # The order is checked on each header, before its body is buffered (VTR1.md §13.1).
        self.receiver = Receiver(limits, check_header=self._check_header)
        self.configure: Configure | None = None
        self.compression = WireCompression.NONE
        self.capabilities: tuple[str, ...] = ()
        self.bytes_sent = 0
        self.messages_sent = 0

    # -- properties ------------------------------------------------------------------------

    @property
    def mode(self) -> str | None:
        return None if self.configure is None else session_mode(self.configure)

    @property
    def finished(self) -> bool:
        return self.state in (S.DONE, S.FAILED)

    @property
    def bytes_received(self) -> int:
        return self.receiver.bytes_received

    # -- bookkeeping shared by both directions ----------------------------------------------

    def _note(self, msg: Message) -> None:
        if isinstance(msg, Configure):
            self.configure = msg
            self.compression = parse_compression(msg.option("wire_compression"))
            try:
                pf = PixelFormat(msg.pix_fmt)
            except ValueError:
                return  # the server refuses it with an ERROR; no FRAME limit until then
            self.receiver.limits = self.receiver.limits.with_geometry(
                msg.width, msg.height, pf, self.compression
            )
        elif isinstance(msg, ConfigureAck) and self.configure is not None:
            # Decode sessions: the ACK says what pix_fmt really comes back (10-bit -> P010).
            if msg.pix_fmt in (PixelFormat.NV12, PixelFormat.P010):
                cfg = self.configure
                self.receiver.limits = self.receiver.limits.with_geometry(
                    cfg.width,
                    cfg.height,
                    max(PixelFormat(msg.pix_fmt), PixelFormat(cfg.pix_fmt)),
                    self.compression,
                )
        elif isinstance(msg, HelloAck):
            self.capabilities = msg.capabilities

    # -- sending -----------------------------------------------------------------------------

    def send(self, msg: Message) -> list[Buffer]:
        """Check that we may send ``msg`` now, advance the state, return its buffers."""
        try:
            nxt = transition(self.role, self.state, msg)
        except KeyError:
            raise LocalProtocolError(
                f"{self.role.value} may not send {_type_label(message_type(msg))} in state "
                f"{self.state.value}"
            ) from None
        try:
            self._note(msg)
        except ValueError as e:  # unsupported wire_compression in our own CONFIGURE
            raise LocalProtocolError(str(e)) from e
        bufs = serialize(msg)
        self.state = nxt
        self.messages_sent += 1
        self.bytes_sent += sum(nbytes(b) for b in bufs)
        return bufs

    def send_error(self, code: int, text: str) -> list[Buffer] | None:
        """An ERROR if the state still allows one (server role), else None."""
        from vtremote.wire.messages import Error

        if self.role is not Role.SERVER or self.state not in OPEN:
            return None
        return self.send(Error(code, text))

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: Buffer) -> None:
        self.receiver.receive_data(data)

    def receive_eof(self) -> None:
        self.receiver.receive_eof()

    def get_buffer(self) -> memoryview:
        return self.receiver.get_buffer()

    def buffer_updated(self, n: int) -> None:
        self.receiver.buffer_updated(n)

    def _check_header(self, raw_type: int, length: int) -> None:
        if not type_allowed(self.peer, self.state, raw_type):
            raise self._out_of_order(raw_type)

    def _out_of_order(self, raw_type: int) -> RemoteProtocolError:
        """The error for a message type the peer may not send in the current state."""
        return RemoteProtocolError(
            f"{self.peer.value} sent {_type_label(raw_type)} in state {self.state.value}"
        )

    def next_event(self) -> Message | None:
        """The next received message after checking its order, or None for "need data"."""
        msg = self.receiver.next_message()
        if msg is None:
            return None
        try:
            nxt = transition(self.peer, self.state, msg)
        except KeyError:
            raise self._out_of_order(message_type(msg)) from None
        if isinstance(msg, Frame) and self.configure is not None:
            pf = self.configure.pix_fmt
            if self.role is Role.CLIENT and self.state in (S.DECODING, S.DRAINING_DECODE):
                pf = self._ack_pix_fmt or pf
            check_frame_geometry(msg, self.configure.width, self.configure.height, pf)
        # An unsupported wire_compression is not a framing error: the server reads the
        # CONFIGURE and answers it with ERROR (VTR1.md §1.4 step 4).
        with contextlib.suppress(ValueError):
            self._note(msg)
        if isinstance(msg, ConfigureAck):
            self._ack_pix_fmt = msg.pix_fmt if msg.pix_fmt in (1, 2) else None
        self.state = nxt
        return msg

    _ack_pix_fmt: int | None = None


def _type_label(raw_type: int) -> str:
    try:
        return T(raw_type).name
    except ValueError:
        return f"message type {raw_type}"
