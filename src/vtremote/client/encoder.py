"""``RemoteEncoder``: encode ``av.VideoFrame``s on a vtremoted, get ``av.Packet``s back.

Usage::

    with RemoteEncoder("mac.local:5555", "h264", width=1920, height=1080,
                       time_base=Fraction(1, 30), framerate=30, bitrate=6_000_000, gop=240) as enc:
        for frame in frames:
            for packet in enc.encode(frame):
                ...
        for packet in enc.flush():
            ...

Frames travel as NV12/P010 planes straight out of the frame's own buffers (no
copy; compressed in parallel when wire compression is on). Up to ``inflight``
frames are on their way at once; packets are collected by a receiver thread as
they arrive and handed out by the next :meth:`RemoteEncoder.encode` call, so one
call may return zero, one or several packets. :meth:`RemoteEncoder.flush` sends
FLUSH once and returns every remaining packet (VTR1.md §10.2 without the tail
loss). Packet timestamps are the server's, untouched (VTR1.md §7.5).
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from typing import Any, TypeAlias

import av

from vtremote import frames as vframes
from vtremote.client.checks import PacketCheck
from vtremote.client.options import ConnectionOptions
from vtremote.client.session import RemoteSession, check_size, to_fraction
from vtremote.client.transport import Transport
from vtremote.errors import ConfigError, RemoteProtocolError
from vtremote.wire import annexb
from vtremote.wire import messages as m
from vtremote.wire.compression import compress_plane
from vtremote.wire.constants import PixelFormat, WireCompression

# The encoder settings are the wire's (one definition); re-exported under the client's names.
from vtremote.wire.settings import UNSPECIFIED_COLOR as UNSPECIFIED_COLOR
from vtremote.wire.settings import UNSPECIFIED_RANGE as UNSPECIFIED_RANGE
from vtremote.wire.settings import EncoderSettings as EncoderSettings
from vtremote.wire.settings import parse_profile as parse_profile

log = logging.getLogger(__name__)

#: Frames that may wait on the sender thread while the caller makes the next one (each
#: holds its ``av.VideoFrame`` until sent; two smooth out uneven frame and send times).
SEND_AHEAD = 2

#: What the encoder returns (PyAV packets are generic over their stream in the stubs).
Packet: TypeAlias = "av.Packet[Any]"

PIX_FMT_NAMES = {
    "nv12": PixelFormat.NV12,
    "p010": PixelFormat.P010,
    "p010le": PixelFormat.P010,
}


def packet_from_message(msg: m.Packet, time_base: Fraction) -> Packet:
    """An ``av.Packet`` of a received PACKET message, its timestamps in ``time_base``."""
    # The one copy: receive buffer -> AVPacket (PyAV's stubs take a buffer from 18.1 on).
    packet: Packet = av.Packet(msg.data)  # type: ignore[arg-type,unused-ignore]
    packet.pts = msg.pts
    packet.dts = msg.dts
    packet.duration = msg.duration
    packet.time_base = time_base
    packet.is_keyframe = msg.keyframe
    return packet


def parse_pix_fmt(value: str | int | PixelFormat) -> PixelFormat:
    if isinstance(value, int):
        try:
            return PixelFormat(value)
        except ValueError:
            raise ConfigError(f"pixel format {value} is not 1 (NV12) or 2 (P010)") from None
    try:
        return PIX_FMT_NAMES[value.lower()]
    except KeyError:
        raise ConfigError(
            f"pixel format {value!r} cannot travel on the wire; use nv12 or p010le"
        ) from None


def picture_format(
    codec: str,
    width: int,
    height: int,
    pix_fmt: str | int | PixelFormat,
    time_base: Fraction | int | str | tuple[int, int],
    framerate: Fraction | int | str | tuple[int, int] | None,
) -> tuple[PixelFormat, Fraction, Fraction | None]:
    """The checked pixel format, time base and frame rate of an encode session."""
    wire_format = parse_pix_fmt(pix_fmt)
    if codec == "h264" and wire_format is not PixelFormat.NV12:
        raise ConfigError("H.264 sessions take NV12 frames only (VTR1.md §5.1); use hevc for P010")
    check_size(width, height)
    tb = to_fraction(time_base, "time base")
    assert tb is not None
    if tb <= 0:
        raise ConfigError(f"time base {time_base} must be positive")
    return wire_format, tb, to_fraction(framerate, "frame rate")


def frame_ticks(framerate: Fraction | None, time_base: Fraction) -> int:
    """One frame at ``framerate`` in ``time_base`` ticks; 0 when unknown or under a tick."""
    if not framerate or framerate <= 0:
        return 0
    ticks = 1 / (framerate * time_base)
    return round(ticks) if ticks >= 1 else 0


class RemoteEncoder(RemoteSession["Packet"]):
    """An H.264/HEVC encoder running on a vtremoted.

    ``address`` is ``host:port`` (``[v6]:port`` and host names work) or a
    :class:`~vtremote.client.transport.Transport`. ``connection`` is a
    :class:`~vtremote.client.options.ConnectionOptions` (or give its loose
    keywords: ``token``, ``timeout``, ``compression``, ``inflight``, ``tls``...).
    ``time_base`` is the unit of the frames' pts and of the packets' pts/dts.
    Codec options are :class:`EncoderSettings` fields, given as keywords or as
    ``settings``.

    Raises, from the constructor: ConnectionLostError / TimeoutExpiredError
    ("cannot reach host:port: connection refused"), BusyError, AuthError, or the
    RemoteError the server sent for a CONFIGURE it cannot serve.
    """

    _kind = "encode"

    def __init__(
        self,
        address: str | Transport,
        codec: str = "h264",
        *,
        width: int,
        height: int,
        pix_fmt: str | int | PixelFormat = "nv12",
        time_base: Fraction | int | str | tuple[int, int] = Fraction(1, 30),
        framerate: Fraction | int | str | tuple[int, int] | None = None,
        connection: ConnectionOptions | None = None,
        settings: EncoderSettings | None = None,
        **options: Any,
    ) -> None:
        connection = ConnectionOptions.take(connection, options)
        self.settings = EncoderSettings.given(settings, options)
        self.pix_fmt, self.time_base, self.framerate = picture_format(
            codec, width, height, pix_fmt, time_base, framerate
        )
        self.width, self.height = width, height
        #: FRAME duration (time_base units) for frames that carry none: one frame at ``framerate``.
        self.default_duration = frame_ticks(self.framerate, self.time_base)
        self._next_pts = 0
        self._scratch: Any = None  # chroma interleaving buffer of frames.wire_views
        self._sender: ThreadPoolExecutor | None = None
        # Sends queued on the sender thread, oldest first.
        self._sending: deque[Future[None]] = deque()
        self._sent = 0
        self._received = 0
        #: False once the caller gave a pts not above the previous one: the server then
        #: keeps dts increasing and some dts end up above their pts (server/timestamps.py).
        self._pts_increasing = True
        self._last_pts: int | None = None
        super().__init__(address, codec, connection)
        self._check_packet = PacketCheck(codec, self.server)
        ack = self._configure(
            (width, height),
            int(self.pix_fmt),
            self.time_base,
            self.framerate,
            self.settings.configure_options(codec, self.compression) + self._extension_options(),
        )
        #: The CONFIGURE_ACK record as the server sent it (avcC / hvcC, VTR1.md §3.4).
        self.config_record = bytes(ack.extradata)
        with self._closed_on_error():
            #: Annex B parameter sets: what FFmpeg muxers want as codec extradata (VTR1.md §8.3).
            self.extradata = annexb.config_record_to_annexb(codec, self.config_record)
        self._log_opened(
            "%s %dx%d %s, compression %s, window %d",
            codec,
            width,
            height,
            self.pix_fmt.name,
            self.compression.name.lower(),
            self.inflight,
        )

    # -- public ----------------------------------------------------------------------------

    def _awaiting(self) -> int:
        return self._sent - self._received

    @property
    def in_flight(self) -> int:
        """Frames sent whose packet has not arrived yet."""
        return self._sent - self._received

    def encode(
        self, frame: av.VideoFrame | None = None, *, keyframe: bool | None = None
    ) -> list[Packet]:
        """Send one frame; return the packets that have arrived so far (maybe none).

        Blocks while ``inflight`` frames are already on their way. ``frame=None``
        is :meth:`flush`. ``keyframe`` forces (True) or not (False) an IDR; by
        default a frame whose ``pict_type`` is I is forced, as in the reference.
        A frame in another pixel format is converted first (one copy).
        """
        if frame is None:
            return self.flush()
        self._check_usable()
        if self._flushed:
            raise ConfigError(f"encode() after flush(): the session with {self.server} has ended")
        if frame.width != self.width or frame.height != self.height:
            raise ConfigError(
                f"frame is {frame.width}x{frame.height}, "
                f"the session was configured for {self.width}x{self.height}"
            )
        if keyframe is None:
            keyframe = frame.pict_type == av.video.frame.PictureType.I
        pts = frame.pts if frame.pts is not None else self._next_pts
        if self._last_pts is not None and pts <= self._last_pts:
            self._pts_increasing = False
        self._last_pts = pts
        duration = frame.duration or self.default_duration
        self._next_pts = pts + max(duration, 1)
        self._wait(
            lambda: self._sent - self._received < self.inflight,
            lambda: (
                f"{self.in_flight} frames were in flight (window {self.inflight}; a server whose "
                "encoder holds back more frames than the window cannot answer: raise inflight)"
            ),
        )
        self._finish_send(
            SEND_AHEAD - 1
        )  # earlier frames are on the wire (or their error is raised here)
        with self._cond:
            self._sent += 1
            self._stats.frames = self._sent
            self._stats.max_inflight = max(self._stats.max_inflight, self._sent - self._received)
        # Conversion, compression and the send run on the sender thread while the caller
        # produces the next frames (demux, decode, filters): one frame at a time, in order,
        # with up to SEND_AHEAD frames queued so that a slow send or a slow frame does not
        # stall the other side.
        if self._sender is None:
            self._sender = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="vtremote-encode-send"
            )
        self._sending.append(self._sender.submit(self._send_frame, frame, pts, duration, keyframe))
        return self._take()

    def _send_frame(self, frame: av.VideoFrame, pts: int, duration: int, keyframe: bool) -> None:
        # Only this thread uses the scratch, one frame at a time (frames.wire_views).
        views, self._scratch = vframes.wire_views(frame, self.pix_fmt, self._scratch)
        self._send(m.Frame(pts, duration, 1 if keyframe else 0, self._planes(views)))

    def sync(self) -> list[Packet]:
        """Wait until every frame given so far has its packet; return every packet ready.

        For real-time senders that need a frame's packet before the next frame exists
        (the server's encoder must then hold no frames: ``realtime``, no B-frames).
        Raises like :meth:`encode` on a timeout or a lost server.
        """
        self._check_usable()
        self._finish_send()
        self._wait(
            lambda: self.in_flight == 0,
            lambda: f"waiting for the packets of {self.in_flight} frame(s)",
        )
        return self._take()

    def _finish_send(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` frames are still queued to send; raise what went wrong
        sending one."""
        while len(self._sending) > keep:
            self._sending.popleft().result()

    def close(self) -> None:
        if self._sender is not None:
            # Closing the transport (super) unblocks a send stuck on a full socket.
            sender, self._sender = self._sender, None
            try:
                super().close()
            finally:
                sender.shutdown(wait=True)
            return
        super().close()

    def flush(self) -> list[Packet]:
        """Send FLUSH (once) and return every remaining packet, in order, up to DONE."""
        self._finish_send()
        out = self._flush()
        if self._received != self._sent:
            log.warning(
                "%s returned %d packets for %d frames", self.server, self._received, self._sent
            )
        return out

    # -- internals ---------------------------------------------------------------------------

    def _planes(self, views: list[tuple[int, int, memoryview]]) -> tuple[m.Plane, ...]:
        """The planes as they travel: as given (frames.wire_views), or compressed in parallel."""
        mode = self.compression
        if mode == WireCompression.NONE:
            return tuple(m.Plane(stride, rows, data) for stride, rows, data in views)
        assert self._pool is not None
        # zstd and lz4 release the GIL: the chroma plane compresses on the pool
        # while this thread compresses luma (the reference does them serially, §13.28).
        (s0, r0, d0), (s1, r1, d1) = views
        chroma = self._pool.submit(compress_plane, mode, d1)
        luma = compress_plane(mode, d0)
        return (m.Plane(s0, r0, luma), m.Plane(s1, r1, chroma.result()))

    def _on_result(self, msg: m.Message) -> Packet | None:
        if not isinstance(msg, m.Packet):
            return None  # the state machine lets nothing else through in an encode session
        if self._received >= self._sent:
            # One frame gives at most one packet: more is a server bug or a hostile one, and
            # accepting it would let the server fill our memory (the window bounds nothing else).
            raise RemoteProtocolError(
                f"{self.server} sent PACKET {self._received + 1} for {self._sent} frames sent"
            )
        self._check_packet(msg, strict_order=self._pts_increasing)
        return packet_from_message(msg, self.time_base)

    def _count_result(self) -> None:
        self._received += 1
        self._stats.packets = self._received
