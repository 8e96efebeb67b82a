"""``RemoteDecoder``: decode H.264/HEVC ``av.Packet``s on a vtremoted, get ``av.VideoFrame``s.

Usage::

    with av.open("in.mp4") as src:
        stream = src.streams.video[0]
        with RemoteDecoder.from_stream("mac.local:5555", stream) as dec:
            for packet in src.demux(stream):
                for frame in (dec.decode(packet) if packet.size else dec.flush()):
                    ...

Two ways to keep the server busy (VTR1.md §10.3 and wire.extensions):

* **pipelined**, when the server announces ``ext:decode-pipeline``: the client
  sets ``ext_decode_pipeline=1`` and keeps up to ``inflight`` PACKETs
  un-answered; FRAMEs are collected by the receiver thread as they come.
* **lock-step**, with a plain v1 server (or ``pipeline=False``): one PACKET at a
  time, as the reference client does. The reference then waits for a FRAME up to
  its timeout (5 s per packet that yields no frame, §13.18); this client sends a
  PING right behind each PACKET instead. A v1 server handles messages in order
  and sends a packet's FRAME before it reads the next message, so the PONG
  marks the end of that packet's output without any guessing.

In both modes each PACKET is followed by a PING and the window counts PACKETs
whose PONG has not arrived, so it never depends on how many frames a packet
yields (a decoder with reorder delay yields none for its first packets).

Packets from MP4/MKV carry length-prefixed NAL units; they are rewritten to
Annex B (what VTR1 carries, §5.2) using the NAL length size of the avcC/hvcC
extradata. Frames come back in the size configured, NV12 or P010 as the
CONFIGURE_ACK says, with the server's pts (= the packets' pts, §7.1).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av

from vtremote import frames as vframes
from vtremote.client.encoder import UNSPECIFIED_COLOR, UNSPECIFIED_RANGE, parse_pix_fmt
from vtremote.client.options import ConnectionOptions
from vtremote.client.session import RemoteSession, check_size, to_fraction
from vtremote.client.transport import Transport
from vtremote.errors import ConfigError, RemoteProtocolError
from vtremote.wire import annexb
from vtremote.wire import extensions as ext
from vtremote.wire import messages as m
from vtremote.wire.compression import decompress_plane
from vtremote.wire.constants import PixelFormat


def stream_arguments(
    stream: av.video.stream.VideoStream, kwargs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The codec and the keywords of a decoder for a demuxed PyAV video stream (codec, size,
    extradata, time base, colours), ``kwargs`` given by the caller winning."""
    ctx = stream.codec_context
    name = ctx.name
    # By the codec, not the decoder PyAV picked for it ("libdav1d" decodes "av1").
    codec = {"h264": "h264", "hevc": "hevc", "h265": "hevc", "av1": "av1"}.get(
        ctx.codec.canonical_name if ctx.codec is not None else name
    )
    if codec is None:
        raise ConfigError(
            f"stream {stream.index} is {name}; remote decoding takes h264, hevc or av1"
        )
    fmt = ctx.format.name if ctx.format is not None else ""
    deep = any(tag in fmt for tag in ("10", "12"))
    arguments = dict(kwargs)
    arguments.setdefault("pix_fmt", "p010le" if deep else "nv12")
    arguments.setdefault("time_base", stream.time_base)
    arguments.setdefault("framerate", stream.average_rate or stream.guessed_rate)
    for key in ("color_range", "colorspace", "color_primaries", "color_trc"):
        value = getattr(ctx, key, None)
        if isinstance(value, int):
            arguments.setdefault(key, value)
    arguments.update(width=ctx.width, height=ctx.height, extradata=bytes(ctx.extradata or b""))
    return codec, arguments


class RemoteDecoder(RemoteSession[av.VideoFrame]):
    """An H.264/HEVC decoder running on a vtremoted.

    ``extradata`` is the container's codec extradata as it is (avcC/hvcC or
    Annex B parameter sets); the server needs it (VTR1.md §8.3). ``pipeline``:
    None = pipelined if the server offers it, False = always lock-step (the
    reference's behaviour), True = require pipelining (ConfigError otherwise).
    """

    _kind = "decode"

    def __init__(
        self,
        address: str | Transport,
        codec: str = "h264",
        *,
        width: int,
        height: int,
        extradata: bytes = b"",
        pix_fmt: str | int | PixelFormat = "nv12",
        time_base: Fraction | int | str | tuple[int, int] | None = None,
        framerate: Fraction | int | str | tuple[int, int] | None = None,
        pipeline: bool | None = None,
        color_range: int = UNSPECIFIED_RANGE,
        colorspace: int = UNSPECIFIED_COLOR,
        color_primaries: int = UNSPECIFIED_COLOR,
        color_trc: int = UNSPECIFIED_COLOR,
        connection: ConnectionOptions | None = None,
        **keywords: Any,
    ) -> None:
        connection = ConnectionOptions.take(connection, keywords)
        if keywords:
            raise TypeError(f"RemoteDecoder got unexpected keyword(s): {', '.join(keywords)}")
        check_size(width, height)
        if not extradata:
            raise ConfigError(
                f"{codec} decoding needs the stream's extradata (SPS/PPS), none given"
            )
        self.width, self.height = width, height
        self.time_base = to_fraction(time_base, "time base")
        self.framerate = to_fraction(framerate, "frame rate")
        requested = parse_pix_fmt(pix_fmt)
        self.extradata = bytes(extradata)
        # avcC/hvcC extradata means length-prefixed packets (MP4, MKV); Annex B means Annex B.
        self._nal_length_size = 0
        if codec != "av1" and not annexb.is_annexb(self.extradata):  # AV1: OBUs as they are
            self._nal_length_size = annexb.parse_extradata(codec, self.extradata).nal_length_size
        self._sent = 0
        self._offered = 0  # PACKETs handed to the socket (counted before they leave)
        self._frames = 0
        super().__init__(address, codec, connection)
        with self._closed_on_error():
            self.pipelined = self._choose_pipelining(pipeline)
        self.window = self.inflight if self.pipelined else 1
        colors = (
            ("color_range", color_range, UNSPECIFIED_RANGE),
            ("colorspace", colorspace, UNSPECIFIED_COLOR),
            ("color_primaries", color_primaries, UNSPECIFIED_COLOR),
            ("color_trc", color_trc, UNSPECIFIED_COLOR),
        )
        opts: list[tuple[str, str]] = [("mode", "decode")]
        if self.compression > 0:
            opts.append(("wire_compression", str(int(self.compression))))
        opts += [(key, str(value)) for key, value, unset in colors if value != unset]
        if self.pipelined:
            opts.append((ext.OPT_DECODE_PIPELINE, "1"))
        opts += self._extension_options()
        ack = self._configure(
            (width, height), int(requested), self.time_base, self.framerate, opts, self.extradata
        )
        #: What the server really sends back (10-bit HEVC gives P010 even if NV12 was asked).
        self.pix_fmt = PixelFormat(ack.pix_fmt) if ack.pix_fmt in (1, 2) else requested
        self._log_opened(
            "%s %dx%d -> %s, compression %s, %s",
            codec,
            width,
            height,
            self.pix_fmt.name,
            self.compression.name.lower(),
            f"pipelined, window {self.window}" if self.pipelined else "lock-step",
        )

    def _choose_pipelining(self, pipeline: bool | None) -> bool:
        """Pipelined PACKETs when the server offers them (``pipeline``: None = if offered)."""
        offered = ext.CAP_DECODE_PIPELINE in self.extensions
        if pipeline and not offered:
            raise ConfigError(
                f"{self.server} does not offer pipelined decoding ({ext.CAP_DECODE_PIPELINE})"
            )
        #: True when PACKETs are pipelined; False in the reference's lock-step.
        return offered if pipeline is None else bool(pipeline)

    @classmethod
    def from_stream(
        cls, address: str | Transport, stream: av.video.stream.VideoStream, **kwargs: Any
    ) -> RemoteDecoder:
        """A decoder for a demuxed PyAV video stream (codec, size, extradata, time base,
        colours)."""
        codec, arguments = stream_arguments(stream, kwargs)
        return cls(address, codec, **arguments)

    # -- public ----------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """PACKETs sent that the server has not yet acknowledged."""
        return len(self._unacked)

    def decode(self, packet: av.Packet[Any] | None = None) -> list[av.VideoFrame]:
        """Send one packet; return the frames that have arrived so far (maybe none).

        In lock-step mode the frame of this packet, if any, is among them.
        ``None`` or an empty packet is :meth:`flush`.
        """
        if packet is None or packet.size == 0:
            return self.flush()
        self._check_usable()
        if self._flushed:
            raise ConfigError(f"decode() after flush(): the session with {self.server} has ended")
        data: m.Buffer = memoryview(packet)
        if self._nal_length_size:
            data = annexb.length_prefixed_to_annexb(data, self._nal_length_size)
        # A missing pts travels as the dts, or as 0 when both are missing (the reference
        # always sends 0, VTR1.md §5.2, which gives every frame of such a stream pts 0).
        pts = (
            packet.pts if packet.pts is not None else (packet.dts if packet.dts is not None else 0)
        )
        dts = packet.dts if packet.dts is not None else pts
        duration = packet.duration if packet.duration and packet.duration > 0 else 0
        self._send_answered(
            m.Packet(pts, dts, duration, 1 if packet.is_keyframe else 0, data),
            self.window,
            self._count_offered,
            self._count_sent,
        )
        if not self.pipelined:  # lock-step: this packet's output is complete at its PONG
            self._wait(self._all_acked, lambda: "waiting for the frame of the last packet")
        out = self._take()
        return out

    def flush(self) -> list[av.VideoFrame]:
        """Send FLUSH (once) and return every remaining frame, in order, up to DONE."""
        return self._flush()

    # -- internals ---------------------------------------------------------------------------

    def _count_offered(self) -> None:
        self._offered += 1

    def _count_sent(self) -> None:
        self._sent += 1
        self._stats.packets = self._sent

    def _all_acked(self) -> bool:
        return self._unanswered() == 0

    def _on_result(self, msg: m.Message) -> av.VideoFrame | None:
        if not isinstance(msg, m.Frame):
            return None
        if self._frames >= self._offered:
            # A packet decodes to at most one frame; more would let the server fill our memory.
            raise RemoteProtocolError(
                f"{self.server} sent FRAME {self._frames + 1} for {self._offered} packets sent"
            )
        mode = self.compression
        if len(msg.planes) != 2:  # checked by the wire layer already; keep the invariant local
            raise RemoteProtocolError(f"FRAME has {len(msg.planes)} planes, needs 2")
        p0, p1 = msg.planes
        if mode:
            assert self._pool is not None
            chroma_fut = self._pool.submit(decompress_plane, mode, p1.data, p1.size)
            luma = decompress_plane(mode, p0.data, p0.size)
            chroma = chroma_fut.result()
        else:
            luma = decompress_plane(mode, p0.data, p0.size)  # views into the receive buffer
            chroma = decompress_plane(mode, p1.data, p1.size)
        # The one copy of the picture: wire planes -> a new av.VideoFrame (frames.py).
        frame = vframes.frame_from_planes(
            self.width,
            self.height,
            self.pix_fmt,
            [(p0.stride, p0.height, luma), (p1.stride, p1.height, chroma)],
        )
        frame.pts = msg.pts
        frame.duration = msg.duration
        if self.time_base is not None:
            frame.time_base = self.time_base
        return frame

    def _count_result(self) -> None:
        self._frames += 1
        self._stats.frames = self._frames
