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
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from typing import Any, TypeAlias

import av

from vtremote import frames as vframes
from vtremote.client.options import ConnectionOptions
from vtremote.client.session import RemoteSession, check_size, to_fraction
from vtremote.client.transport import Transport
from vtremote.errors import ConfigError, RemoteProtocolError
from vtremote.wire import annexb
from vtremote.wire import messages as m
from vtremote.wire.compression import compress_plane
from vtremote.wire.constants import PixelFormat, WireCompression

log = logging.getLogger(__name__)

#: Frames that may wait on the sender thread while the caller makes the next one (each
#: holds its ``av.VideoFrame`` until sent; two smooth out uneven frame and send times).
SEND_AHEAD = 2

#: What the encoder returns (PyAV packets are generic over their stream in the stubs).
Packet: TypeAlias = "av.Packet[Any]"

#: ``-profile:v`` names -> the numbers the reference sends (VTR1.md §3.2, FFmpeg AV_PROFILE_*).
PROFILES: dict[str, dict[str, int]] = {
    "h264": {
        "baseline": 66,
        "constrained_baseline": 578,
        "main": 77,
        "high": 100,
        "constrained_high": 612,
        "extended": 88,
    },
    "hevc": {"main": 1, "main10": 2, "main42210": 4, "rext": 4},
}
#: H.264 ``coder`` / ``entropy`` names (VTR1.md §3.2 row 13).
ENTROPY = {"auto": 0, "default": 0, "cavlc": 1, "vlc": 1, "cabac": 2, "ac": 2}
#: FFmpeg's "unspecified" values of the colour enums: the reference omits these keys.
UNSPECIFIED_RANGE = 0
UNSPECIFIED_COLOR = 2

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


def parse_profile(codec: str, value: str | int | None) -> int | None:
    """``high`` -> 100, ``main10`` -> 2, numbers as they are; None/"" -> not sent."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    key = value.strip().lower().replace("-", "_")
    if key.lstrip("-").isdigit():
        return int(key)
    try:
        return PROFILES[codec][key]
    except KeyError:
        names = ", ".join(PROFILES[codec])
        raise ConfigError(
            f"{codec} profile {value!r} is not one of {names} (or a number)"
        ) from None


def parse_level(value: str | int | float | None) -> int:
    """H.264 level as the reference's ``level`` option counts it: ``4.1`` / ``41`` -> 41."""
    if value is None or value == "" or value == "auto":
        return 0
    text = str(value).strip()
    try:
        if "." in text:
            level = round(float(text) * 10)
        else:
            level = int(text)
            if 0 < level < 10:  # "-level 4" means 4.0
                level *= 10
    except ValueError:
        raise ConfigError(f"level {value!r} is not a number like 4.1 or 41") from None
    if not 0 <= level <= 62:
        raise ConfigError(f"level {value!r} is outside 1.0..6.2")
    return level


def parse_entropy(value: str | int) -> int:
    if isinstance(value, int):
        if value not in (0, 1, 2):
            raise ConfigError(f"entropy {value} is not 0 (auto), 1 (cavlc) or 2 (cabac)")
        return value
    try:
        return ENTROPY[value.strip().lower()]
    except KeyError:
        raise ConfigError(f"entropy {value!r} is not one of auto, cavlc, cabac") from None


@dataclass(frozen=True)
class EncoderSettings:
    """The codec options of an encode session: the reference client's AVOptions.

    Defaults are the reference's (VTR1.md §3.2), so an encoder built with no
    settings sends the same CONFIGURE option list the FFmpeg client sends with
    no options. ``gop`` defaults to libavcodec's 12 for that reason.
    """

    bitrate: int = 0
    maxrate: int = 0
    gop: int = 12
    max_b_frames: int = 0
    flags: int = 0  # AVCodecContext flags: 1<<22 global header, 1<<19 low delay, 1<<31 closed GOP
    global_quality: int = 0
    qmin: int = -1
    qmax: int = -1
    profile: str | int | None = None
    level: str | int | float | None = None
    entropy: str | int = 0
    allow_sw: bool = False
    require_sw: bool = False
    realtime: int = 0
    frames_before: bool = False
    frames_after: bool = False
    prio_speed: int = -1
    power_efficient: int = -1
    spatial_aq: int = -1
    max_ref_frames: int = 0
    max_slice_bytes: int = -1
    constant_bit_rate: bool = False
    alpha_quality: float = 0.0
    color_range: int = UNSPECIFIED_RANGE
    colorspace: int = UNSPECIFIED_COLOR
    color_primaries: int = UNSPECIFIED_COLOR
    color_trc: int = UNSPECIFIED_COLOR
    sar: Fraction | tuple[int, int] | None = None
    a53_cc: bool = True

    def __post_init__(self) -> None:
        for name in ("bitrate", "maxrate", "gop", "max_b_frames", "max_ref_frames"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} {getattr(self, name)} must not be negative")
        if self.realtime not in (-1, 0, 1):
            raise ConfigError(f"realtime {self.realtime} is not -1, 0 or 1")
        if not 0.0 <= self.alpha_quality <= 1.0:
            raise ConfigError(f"alpha_quality {self.alpha_quality} is outside 0..1")
        if not -(1 << 31) <= self.flags < (1 << 32):
            raise ConfigError(f"flags {self.flags} do not fit 32 bits")
        parse_entropy(self.entropy)
        parse_level(self.level)

    @classmethod
    def given(cls, settings: EncoderSettings | None, options: dict[str, Any]) -> EncoderSettings:
        """The settings a session constructor was given: ``settings=`` or keywords, not both."""
        if settings is not None and options:
            raise ConfigError("give encoder options either as settings= or as keywords, not both")
        return settings if settings is not None else cls.from_kwargs(**options)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EncoderSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(f"unknown encoder option(s): {', '.join(unknown)}")
        return cls(**kwargs)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def configure_options(self, codec: str, compression: WireCompression) -> list[tuple[str, str]]:
        """CONFIGURE option pairs, keys in the reference's order and on its conditions
        (VTR1.md §3.2)."""
        h264 = codec == "h264"
        o: list[tuple[str, str]] = [("mode", "encode")]
        if compression > 0:
            o.append(("wire_compression", str(int(compression))))
        if self.bitrate > 0:
            o.append(("bitrate", str(self.bitrate)))
        if self.maxrate > 0:
            o.append(("maxrate", str(self.maxrate)))
        if self.gop > 0:
            o.append(("gop", str(self.gop)))
        if self.max_b_frames > 0:
            o.append(("max_b_frames", str(self.max_b_frames)))
        if self.flags != 0:
            flags = (
                self.flags - (1 << 32) if self.flags >= (1 << 31) else self.flags
            )  # %d of an int
            o.append(("flags", str(flags)))
        if self.global_quality > 0:
            o.append(("global_quality", str(self.global_quality)))
        if self.qmin >= 0:
            o.append(("qmin", str(self.qmin)))
        if self.qmax >= 0:
            o.append(("qmax", str(self.qmax)))
        profile = parse_profile(codec, self.profile)
        if profile is not None and profile != -99:
            o.append(("profile", str(profile)))
        level = parse_level(self.level)
        if h264 and level > 0:  # the HEVC encoder has no level option
            o.append(("level", str(level)))
        o.append(("entropy", str(parse_entropy(self.entropy) if h264 else 0)))  # always sent
        if self.allow_sw:
            o.append(("allow_sw", "1"))
        if self.require_sw:
            o.append(("require_sw", "1"))
        if self.realtime >= 0:
            o.append(("realtime", str(self.realtime)))
        if self.frames_before:
            o.append(("frames_before", "1"))
        if self.frames_after:
            o.append(("frames_after", "1"))
        if self.prio_speed >= 0:
            o.append(("prio_speed", str(self.prio_speed)))
        if self.power_efficient >= 0:
            o.append(("power_efficient", str(self.power_efficient)))
        if self.spatial_aq >= 0:
            o.append(("spatial_aq", str(self.spatial_aq)))
        if self.max_ref_frames > 0:
            o.append(("max_ref_frames", str(self.max_ref_frames)))
        if not h264:
            o.append(
                ("max_slice_bytes", "0")
            )  # the HEVC field is 0, so the reference always sends it
        elif self.max_slice_bytes >= 0:
            o.append(("max_slice_bytes", str(self.max_slice_bytes)))
        if self.constant_bit_rate:
            o.append(("constant_bit_rate", "1"))
        if not h264 and self.alpha_quality > 0.0:
            o.append(("alpha_quality", f"{self.alpha_quality:.6f}"))
        if self.color_range != UNSPECIFIED_RANGE:
            o.append(("color_range", str(self.color_range)))
        if self.colorspace != UNSPECIFIED_COLOR:
            o.append(("colorspace", str(self.colorspace)))
        if self.color_primaries != UNSPECIFIED_COLOR:
            o.append(("color_primaries", str(self.color_primaries)))
        if self.color_trc != UNSPECIFIED_COLOR:
            o.append(("color_trc", str(self.color_trc)))
        sar = to_fraction(self.sar, "sample aspect ratio") if self.sar is not None else None
        if sar is not None and sar.numerator > 0 and sar.denominator > 0:
            o.append(("sar_num", str(sar.numerator)))
            o.append(("sar_den", str(sar.denominator)))
        o.append(("a53_cc", "1" if h264 and self.a53_cc else "0"))  # always sent
        return o


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
        super().__init__(address, codec, connection)
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
        return packet_from_message(msg, self.time_base)

    def _count_result(self) -> None:
        self._received += 1
        self._stats.packets = self._received
