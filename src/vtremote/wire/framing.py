"""Receive-side framing: bytes in, whole messages out, limits enforced before buffering.

:class:`Receiver` is sans-IO. Feed it with :meth:`Receiver.receive_data` (any
chunking) or, on the hot path, let the transport ``recv_into`` the view that
:meth:`Receiver.get_buffer` returns and report the count with
:meth:`Receiver.buffer_updated`: body bytes then land in their final buffer and
are never copied again (FRAME planes and PACKET data are memoryview slices of it).

The header is validated (magic, version, per-type length limit and, when a
:class:`~vtremote.wire.connection.Connection` owns the receiver, the message
order) as soon as its 12 bytes are in, before a single body byte is buffered, so
a header that claims 4 GiB costs nothing (VTR1.md §13.1).

Bodies larger than :data:`LAZY_BODY_THRESHOLD` live in an anonymous memory map
rather than a ``bytearray``: the kernel hands out its pages as the bytes arrive,
so a peer that announces a large (but allowed) message and then stalls holds
memory in proportion to what it really sent, not to what it claimed.
"""

from __future__ import annotations

import mmap
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from vtremote.errors import LocalProtocolError, RemoteProtocolError
from vtremote.wire.compression import compress_bound
from vtremote.wire.constants import (
    FRAME_PREFIX,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    PLANE_HEADER,
    VERSION,
    MessageType,
    PixelFormat,
    WireCompression,
)
from vtremote.wire.messages import Buffer, Message, parse_payload

KiB = 1024
MiB = 1024 * 1024

#: Side data (A53 captions...) a FRAME may carry on top of its planes.
SIDE_DATA_ALLOWANCE = 1 * MiB

#: Largest width or height a FRAME limit is computed for. H.264 and HEVC level 6.2
#: top out at 8192 x 4352 (35,651,584 luma samples); 16384 leaves room for any
#: codec a server may add without letting a CONFIGURE of 4 billion rows turn into
#: a FRAME limit of terabytes. Outside 1..MAX_DIMENSION no FRAME is accepted.
MAX_DIMENSION = 16384

#: Message bodies above this size are received into an anonymous memory map
#: (pages are committed as bytes arrive); smaller ones into a ``bytearray``.
LAZY_BODY_THRESHOLD = 256 * KiB

#: Large bodies kept per receiver for reuse once no message views them any more.
#: A fresh map costs a page fault per 4 KiB as the bytes arrive and an munmap
#: afterwards: about 0.7 ms per 1080p NV12 FRAME here, more than the kernel's
#: copy of its 3 MB (docs/benchmarks.md). A message handled before the next one
#: arrives releases its body in time; three cover a reader that still holds the
#: previous message while receiving the next. Memory held: at most this many of
#: the largest bodies the session really received (never merely announced ones).
SPARE_BODIES = 3


def _unviewed(buf: mmap.mmap) -> bool:
    """True if no memoryview of ``buf`` is alive, i.e. no message uses it any more.

    A map with exported buffers refuses to be resized (BufferError); resizing to
    its own size is otherwise a no-op. Where the platform cannot resize anonymous
    maps at all (no mremap, e.g. macOS) this answers False: no reuse, as before.
    """
    try:
        buf.resize(len(buf))
    except (BufferError, OSError, SystemError, TypeError, ValueError):
        return False
    return True


def max_stride(row_bytes: int) -> int:
    """Largest plane stride accepted for rows of ``row_bytes`` meaningful bytes.

    FFmpeg pads linesizes and a cropped frame keeps its parent's linesize, so the
    stride may exceed the row; the bound keeps a peer from claiming huge planes.
    """
    return max(4 * row_bytes, row_bytes + 4096)


def plane_rows(height: int) -> tuple[int, int]:
    """Luma rows and the largest accepted chroma rows (ceil) for a picture height."""
    return height, (height + 1) // 2


def plane_row_bytes(width: int, pix_fmt: PixelFormat | int) -> tuple[int, int]:
    """Meaningful bytes per row of the luma and the interleaved chroma plane."""
    bps = PixelFormat(pix_fmt).bytes_per_sample
    return width * bps, ((width + 1) // 2) * 2 * bps


def frame_limit(
    width: int, height: int, pix_fmt: PixelFormat | int, compression: WireCompression | int
) -> int:
    """Largest FRAME payload a session of this geometry accepts.

    prefix + plane_count + side-data allowance + for each of the two planes a plane
    header and the compression bound of ``max_stride(row) * rows``. A geometry
    outside ``1..MAX_DIMENSION`` gives 0: no FRAME fits it.
    """
    if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION):
        return 0
    rows = plane_rows(height)
    total = FRAME_PREFIX.size + 1 + SIDE_DATA_ALLOWANCE
    for row, n in zip(plane_row_bytes(width, pix_fmt), rows, strict=True):
        total += PLANE_HEADER.size + compress_bound(compression, max_stride(row) * n)
    return total


@dataclass(frozen=True, slots=True)
class Limits:
    """Largest payload accepted per message type, in bytes."""

    control: int = 64 * KiB  # HELLO, HELLO_ACK, ERROR, FLUSH, DONE, PING, PONG, unknown ids
    configure: int = 1 * MiB  # CONFIGURE (decoder extradata), CONFIGURE_ACK
    packet: int = 64 * MiB
    frame: int = 0  # no FRAME before the geometry is known

    def for_type(self, raw_type: int) -> int:
        if raw_type == MessageType.FRAME:
            return self.frame
        if raw_type == MessageType.PACKET:
            return self.packet
        if raw_type in (MessageType.CONFIGURE, MessageType.CONFIGURE_ACK):
            return self.configure
        return self.control

    def with_geometry(
        self,
        width: int,
        height: int,
        pix_fmt: PixelFormat | int,
        compression: WireCompression | int,
    ) -> Limits:
        return replace(self, frame=frame_limit(width, height, pix_fmt, compression))


def type_name(raw_type: int) -> str:
    try:
        return MessageType(raw_type).name
    except ValueError:
        return f"type {raw_type}"


#: Called with ``(raw_type, length)`` once a header passed the magic and version
#: checks, before the length limit and before its body is buffered; raises
#: RemoteProtocolError to refuse the message. The refusal is raised by the next
#: ``next_message()`` (and by any later call), not by ``buffer_updated()``.
HeaderCheck = Callable[[int, int], None]


class Receiver:
    """Turns a byte stream into messages. One instance per connection direction.

    ``check_header`` (optional) vets each header before its body is buffered;
    :class:`~vtremote.wire.connection.Connection` uses it to refuse a message the
    session state does not allow right after its 12 header bytes.
    """

    def __init__(
        self, limits: Limits | None = None, check_header: HeaderCheck | None = None
    ) -> None:
        self.limits = limits or Limits()
        self.check_header = check_header
        self._hdr = bytearray(HEADER_SIZE)
        self._hdr_view = memoryview(self._hdr)
        self._have = 0  # bytes of the current header or body received
        self._body: bytearray | mmap.mmap | None = None  # None while reading a header
        self._spares: list[mmap.mmap] = []  # large bodies to reuse (SPARE_BODIES)
        self._type = 0
        self._length = 0
        self._ready: deque[Message] = deque()
        self._failed: RemoteProtocolError | None = None
        self._eof = False
        self._backlog = bytearray()
        self.bytes_received = 0
        self.messages_received = 0

    # -- state ----------------------------------------------------------------------------

    @property
    def mid_message(self) -> bool:
        return self._have > 0 or self._body is not None

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def allocated(self) -> int:
        """Bytes reserved for the body being received (0 between messages).

        Bodies above :data:`LAZY_BODY_THRESHOLD` are memory maps: reserved address
        space whose pages are only committed as bytes arrive."""
        return 0 if self._body is None else len(self._body)

    def _fail(self, err: RemoteProtocolError) -> RemoteProtocolError:
        self._failed = err
        return err

    def _check(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._eof:
            raise RemoteProtocolError("data received after end of stream")

    def _check_open(self) -> None:
        if self._failed is not None:
            raise self._failed

    # -- zero-copy input --------------------------------------------------------------------

    def get_buffer(self) -> memoryview:
        """Writable view where the next received bytes belong (never empty).

        Call only after :meth:`next_message` returned None (nothing is pending)."""
        self._check_open()
        if self._ready or self._backlog:
            raise LocalProtocolError("get_buffer() called while received messages are pending")
        return self._target()

    def _target(self) -> memoryview:
        if self._body is None:
            return self._hdr_view[self._have :]
        return memoryview(self._body)[self._have : self._length]  # a reused body may be longer

    def buffer_updated(self, n: int) -> None:
        """``n`` bytes were written at the start of the last :meth:`get_buffer` view."""
        if n <= 0:
            return
        self._check_open()
        room = (HEADER_SIZE if self._body is None else self._length) - self._have
        if n > room:
            raise LocalProtocolError(
                f"buffer_updated({n}) but the receive buffer had room for {room} bytes"
            )
        self.bytes_received += n
        self._have += n
        if self._body is None:
            if self._have == HEADER_SIZE:
                self._header_done()
        elif self._have == self._length:
            self._body_done()

    def _header_done(self) -> None:
        magic, version, raw_type, length = HEADER.unpack_from(self._hdr)
        if magic != MAGIC or version != VERSION:
            raise self._fail(RemoteProtocolError(f"bad header magic={magic:#x} version={version}"))
        if self.check_header is not None:
            try:
                self.check_header(raw_type, length)
            except RemoteProtocolError as e:
                # Refused before its body is buffered, but reported by next_message(), where
                # the caller handles messages: a server that stops reading after its DONE
                # must not trip over the reference client's repeated FLUSH in recv_into.
                self._failed = e
                return
        limit = self.limits.for_type(raw_type)
        if length > limit:
            raise self._fail(
                RemoteProtocolError(
                    f"{type_name(raw_type)} of {length} bytes exceeds the limit of {limit}"
                )
            )
        self._type = raw_type
        self._length = length
        self._have = 0
        if length == 0:
            self._emit(b"")
        elif length > LAZY_BODY_THRESHOLD:
            # The one buffer this message lives in; untouched pages cost nothing.
            self._body = self._reuse(length) or mmap.mmap(-1, length)
        else:
            self._body = bytearray(length)  # the one buffer this message lives in

    def _reuse(self, length: int) -> mmap.mmap | None:
        """A spare body of at least ``length`` bytes that no message views any more."""
        for i, buf in enumerate(self._spares):
            if len(buf) >= length and _unviewed(buf):
                del self._spares[i]
                return buf
        return None

    def _body_done(self) -> None:
        body = self._body
        assert body is not None
        self._body = None
        self._have = 0
        if isinstance(body, mmap.mmap):
            # Reusable once the message emitted below is dropped by its consumer.
            self._spares.append(body)
            if len(self._spares) > SPARE_BODIES:
                del self._spares[0]  # unmapped when its last view goes
        self._emit(body)

    def _emit(self, body: Buffer | mmap.mmap) -> None:
        try:
            msg = parse_payload(self._type, memoryview(body)[: self._length])
        except RemoteProtocolError as e:
            raise self._fail(e) from None
        self.messages_received += 1
        self._ready.append(msg)

    # -- convenience input ------------------------------------------------------------------

    def receive_data(self, data: Buffer) -> None:
        """Append received bytes (any chunking).

        The bytes are kept in a backlog and turned into messages one at a time by
        :meth:`next_message`, so each header is checked against the limits in force
        after the caller has handled the previous message (CONFIGURE sets the FRAME
        limit). Copies once into the message buffers.
        """
        self._check()
        self._backlog += data

    def _drain_backlog(self) -> None:
        if not self._backlog:
            return
        pos = 0
        with memoryview(self._backlog) as src:
            end = len(src)
            while pos < end and not self._ready and self._failed is None:
                dst = self._target()
                n = min(len(dst), end - pos)
                dst[:n] = src[pos : pos + n]
                pos += n
                self.buffer_updated(n)
        del self._backlog[:pos]

    def receive_eof(self) -> None:
        """The peer closed its side. EOF inside a message is a protocol error (raised by
        :meth:`next_message` once the bytes before it are consumed)."""
        if self._failed is not None:
            raise self._failed
        self._eof = True

    # -- output -----------------------------------------------------------------------------

    def next_message(self) -> Message | None:
        """The next whole message, or None if more bytes are needed (or at EOF)."""
        if not self._ready:
            if self._failed is not None:
                raise self._failed
            self._drain_backlog()
        if self._ready:
            return self._ready.popleft()
        if self._failed is not None:
            raise self._failed
        if self._eof and self.mid_message:
            where = f"{self._have} of {HEADER_SIZE} header bytes"
            if self._body is not None:
                where = f"{self._have} of {self._length} body bytes of {type_name(self._type)}"
            raise self._fail(RemoteProtocolError(f"connection closed mid-message after {where}"))
        return None

    @property
    def at_eof(self) -> bool:
        """EOF was received and every message before it has been returned."""
        return self._eof and not self._ready and not self._backlog and not self.mid_message

    @property
    def pending(self) -> int:
        return len(self._ready)
