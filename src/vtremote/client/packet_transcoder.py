"""``RemoteTranscoder``: send a source's compressed packets, get an encoded rendition back.

Usage::

    with av.open("in.mkv") as src:
        stream = src.streams.video[0]
        with RemoteTranscoder.from_stream("gpu.local:5555", stream, codec="h264",
                                          filters="scale=-2:720", bitrate=4_000_000, gop=120) as tc:
            out = mux.add_stream("h264")  # tc.width, tc.height, tc.time_base, tc.extradata
            for packet in src.demux(stream):
                for p in (tc.transcode(packet) if packet.size else tc.flush()):
                    ...

The server decodes, runs the filter chain (an allowlist, :mod:`vtremote.wire.filters`)
and encodes: only bitstreams cross the network, so the wire carries about the
source bitrate one way and the output bitrate the other, and this side only
demuxes and muxes (extension ``ext:transcode``, docs/protocol.md "Packet
transcode"). Check what a server offers first with :func:`transcode_capabilities`:
None means it cannot transcode and the caller should encode raw frames instead.

Packets travel as the demuxer gives them (length-prefixed with avcC/hvcC
extradata, Annex B without): no conversion, no copy. Each PACKET is followed by
a PING; the window counts PACKETs whose PONG has not come back, so it never
depends on how many output packets a source packet yields (decoder and encoder
delays, an ``fps`` filter). Output packets are Annex B with the server's
pts/dts in :attr:`RemoteTranscoder.time_base`, exactly one per output frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from vtremote.client.checks import NOPTS, PacketCheck
from vtremote.client.encoder import (
    EncoderSettings,
    Packet,
    packet_from_message,
    parse_pix_fmt,
    parse_profile,
)
from vtremote.client.options import ConnectionOptions, client_hello
from vtremote.client.session import RemoteSession, check_size, to_fraction
from vtremote.client.stats import SessionStats
from vtremote.client.transport import Transport
from vtremote.errors import ConfigError, RemoteProtocolError, UnsupportedConfigError
from vtremote.wire import annexb
from vtremote.wire import extensions as ext
from vtremote.wire import filters as vf
from vtremote.wire import messages as m
from vtremote.wire.constants import PixelFormat, WireCompression

#: Output packets allowed beyond one per source packet (times the rate ratio): a decoder
#: that shows a frame the source packets only implied, the encoder's flush.
MAX_EXTRA_OUTPUT = 64
#: Output packets per source packet when an fps filter's rate cannot be compared with the source's.
MAX_RATE_RATIO = 16
#: Ten-bit pixel formats a source may decode to (they make HEVC output P010 by default).
_DEEP = ("10le", "10be", "12le", "p010", "p016")


@dataclass(frozen=True, slots=True)
class TranscodeOffer:
    """What a server's ``ext:transcode`` capability says it can do."""

    server: str
    decoders: tuple[str, ...]
    filters: tuple[str, ...]
    engine: str = ""

    def refusal(self, input_codec: str, chain: Sequence[vf.FilterSpec] = ()) -> str | None:
        """Why this server cannot run the job, or None if it can (one line, for logs)."""
        if input_codec not in self.decoders:
            return (
                f"{self.server} cannot decode {input_codec} (it decodes {', '.join(self.decoders)})"
            )
        for spec in chain:
            if spec.name not in self.filters:
                return f"{self.server} has no server-side filter {spec.name}"
        return None


def transcode_capabilities(
    address: str, *, token: str = "", timeout: float = 5.0
) -> TranscodeOffer | None:
    """Ask a server what it can transcode: one HELLO, no session. None for a server without
    ``ext:transcode`` (a plain v1 server, or ours with --no-extensions).

    Raises what a connection raises (ConnectionLostError, BusyError, AuthError, ...).
    """
    transport = Transport.connect(address, timeout=timeout)
    try:
        ack = transport.hello(client_hello(token, "h264"))
    finally:
        transport.close()
    offer = ext.transcode_offer(ack.capabilities)
    if offer is None:
        return None
    engine = ext.capability_value(ack.capabilities, ext.CAP_ENGINE_PREFIX.rstrip("=")) or ""
    return TranscodeOffer(transport.name, offer[0], offer[1], engine)


@dataclass
class TranscodeStats(SessionStats):
    """SessionStats of a transcode: ``packets_sent`` source packets, ``packets`` output packets."""

    packets_sent: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {**super().as_dict(), "packets_sent": self.packets_sent}


class RemoteTranscoder(RemoteSession["Packet"]):
    """Decode -> filters -> encode on a vtremoted, fed with the source's packets.

    ``input_*`` describe the source stream: FFmpeg codec name (``h264``, ``hevc``,
    ``mpeg2video``, ``vp9``, ``av1``, ...), its extradata as the container has it,
    the time base of the packets' pts/dts, the coded size. ``codec`` is the output
    (h264/hevc), ``filters`` a chain as text or specs. Encoder options are
    :class:`EncoderSettings` fields as keywords or ``settings``. ``pix_fmt`` is
    the encoder's input: NV12 (8-bit) or P010 (10-bit HEVC); by default P010 only
    for HEVC whose chain ends in a 10-bit format, or that has no format filter and
    a 10-bit ``input_pix_fmt``. ``force_key_frames`` (seconds) and
    ``force_key_every`` (seconds) make IDR frames at those output times.

    Raises, from the constructor: UnsupportedConfigError (the server offers no
    transcode, or not this codec or filter: fall back to raw frames), ConfigError,
    or what RemoteEncoder raises (connection, busy, auth, the server's ERROR).
    """

    _kind = "transcode"

    def __init__(
        self,
        address: str | Transport,
        *,
        input_codec: str,
        input_extradata: bytes | None = None,
        input_time_base: Fraction | int | str | tuple[int, int],
        input_width: int,
        input_height: int,
        input_pix_fmt: str | None = None,
        input_sar: Fraction | None = None,
        codec: str = "h264",
        filters: str | Sequence[vf.FilterSpec] = "",
        framerate: Fraction | int | str | tuple[int, int] | None = None,
        pix_fmt: str | int | PixelFormat | None = None,
        force_key_frames: Sequence[float | Fraction] | None = None,
        force_key_every: float | Fraction | None = None,
        connection: ConnectionOptions | None = None,
        settings: EncoderSettings | None = None,
        **options: Any,
    ) -> None:
        # Packets are compressed already: the wire compresses nothing of a transcode.
        connection = ConnectionOptions.take(connection, options).replace(compression="none")
        self.settings = EncoderSettings.given(settings, options)
        self.chain = vf.coerce(filters)
        check_size(input_width, input_height)
        tb = to_fraction(input_time_base, "input time base")
        if tb is None or tb <= 0:
            raise ConfigError(f"input time base {input_time_base} must be positive")
        self.input_codec = input_codec
        self.input_time_base = tb
        self.input_extradata = bytes(input_extradata or b"")
        self.input_sar = Fraction(input_sar) if input_sar else Fraction(1)
        self.framerate = to_fraction(framerate, "frame rate")
        #: Output frame rate when constant and known (fps filter or the source's rate), else None.
        self.output_framerate: Fraction | None = None
        self.pix_fmt = self._choose_pix_fmt(codec, pix_fmt, input_pix_fmt)
        if codec == "h264" and self.pix_fmt is not PixelFormat.NV12:
            raise ConfigError("H.264 output is 8-bit (NV12); use hevc for 10-bit output")
        # Validate the output size here, so a bad chain fails before connecting.
        vf.output_geometry(
            self.chain, vf.Geometry(input_width, input_height, tb, self.framerate, self.input_sar)
        )
        self.time_base = tb  # until CONFIGURE_ACK says the output's
        self._sent = 0
        self._received = 0
        super().__init__(address, codec, connection)
        self._check_packet = PacketCheck(codec, self.server)
        self._stats = TranscodeStats()
        with self._closed_on_error():
            self.offer = self._check_offer()
            opts = self._options(codec, force_key_frames, force_key_every)
        ack = self._configure(
            (input_width, input_height),
            int(self.pix_fmt),
            tb,
            self.framerate,
            opts,
            self.input_extradata,
        )
        with self._closed_on_error():
            self._read_output(codec, ack)
        self._log_opened(
            "%s %dx%d -> [%s] -> %s %dx%d tb=%s, window %d",
            input_codec,
            input_width,
            input_height,
            vf.serialize(self.chain) or "no filters",
            codec,
            self.width,
            self.height,
            self.time_base,
            self.inflight,
        )

    def _read_output(self, codec: str, ack: m.ConfigureAck) -> None:
        """The output the server announced in CONFIGURE_ACK (ext output note, extradata)."""
        notes = ext.split_notes(ack.warnings)[1]
        note = next((n for n in notes if n.startswith(ext.NOTE_OUTPUT + "=")), None)
        if note is None:
            raise RemoteProtocolError(
                f"{self.server} accepted the transcode without saying the output geometry"
            )
        out = ext.OutputNote.parse(note)
        #: Output picture size and the time base of the output packets' pts/dts.
        self.width, self.height = out.width, out.height
        self.time_base = out.time_base
        self.output_framerate = out.frame_rate
        #: Sample aspect ratio of the output (scale keeps the display aspect, setsar sets it).
        self.sample_aspect_ratio = out.sar
        #: The CONFIGURE_ACK record as the server sent it (avcC / hvcC).
        self.config_record = bytes(ack.extradata)
        #: Annex B parameter sets: what FFmpeg muxers want as codec extradata.
        self.extradata = annexb.config_record_to_annexb(codec, self.config_record)

    @classmethod
    def from_stream(
        cls, address: str | Transport, stream: av.video.stream.VideoStream, **kwargs: Any
    ) -> RemoteTranscoder:
        """A transcoder for a demuxed PyAV video stream (codec, size, extradata, time base,
        rate)."""
        return cls(address, **stream_arguments(stream, kwargs))

    # -- set-up ------------------------------------------------------------------------------

    def _choose_pix_fmt(
        self, codec: str, pix_fmt: str | int | PixelFormat | None, input_pix_fmt: str | None
    ) -> PixelFormat:
        if pix_fmt is not None:
            return parse_pix_fmt(pix_fmt)
        if codec != "hevc":
            return PixelFormat.NV12
        if parse_profile(codec, self.settings.profile) == 2:  # main10
            return PixelFormat.P010
        depth = vf.bit_depth(self.chain)
        if depth is None and input_pix_fmt:
            depth = 10 if any(tag in input_pix_fmt for tag in _DEEP) else 8
        return PixelFormat.P010 if depth == 10 else PixelFormat.NV12

    def _check_offer(self) -> TranscodeOffer:
        offer = ext.transcode_offer(self.hello_ack.capabilities)
        if offer is None:
            raise UnsupportedConfigError(
                f"{self.server} does not offer packet transcode ({ext.CAP_TRANSCODE})"
            )
        result = TranscodeOffer(self.server, offer[0], offer[1], self.engine)
        reason = result.refusal(self.input_codec, self.chain)
        if reason is not None:
            raise UnsupportedConfigError(reason)
        return result

    def _options(
        self, codec: str, times: Sequence[float | Fraction] | None, every: float | Fraction | None
    ) -> list[tuple[str, str]]:
        opts = self.settings.configure_options(codec, WireCompression.NONE)
        opts = [(k, v) for k, v in opts if k not in ("mode", "a53_cc")]
        opts.insert(0, ("mode", ext.MODE_TRANSCODE))
        opts.append((ext.OPT_INPUT_CODEC, self.input_codec))
        if self.input_sar != 1:
            opts.append(("ext_in_sar", f"{self.input_sar.numerator}/{self.input_sar.denominator}"))
        if self.chain:
            opts.append((ext.OPT_FILTERS, vf.serialize(self.chain)))
        if times:
            opts.append(("ext_force_key_times", ",".join(_decimal(t) for t in sorted(times))))
        if every is not None:
            if every <= 0:
                raise ConfigError(f"force_key_every={every} must be positive")
            opts.append(("ext_force_key_every", _decimal(every)))
        return opts + self._extension_options()

    # -- public ----------------------------------------------------------------------------

    @property
    def stats(self) -> TranscodeStats:
        st = super().stats
        assert isinstance(st, TranscodeStats)
        return st

    @property
    def in_flight(self) -> int:
        """Source PACKETs sent whose output the server has not finished."""
        return len(self._unacked)

    def transcode(self, packet: av.Packet[Any] | None = None) -> list[Packet]:
        """Send one source packet; return the output packets that have arrived (maybe none).

        Blocks while ``inflight`` packets are unanswered. None or an empty packet is
        :meth:`flush`.
        """
        if packet is None or packet.size == 0:
            return self.flush()
        self._check_usable()
        if self._flushed:
            raise ConfigError(
                f"transcode() after flush(): the session with {self.server} has ended"
            )
        data = memoryview(packet)  # as the demuxer gave it: no conversion, no copy
        pts = packet.pts if packet.pts is not None else NOPTS
        dts = packet.dts if packet.dts is not None else NOPTS
        duration = packet.duration if packet.duration and packet.duration > 0 else 0
        self._send_answered(
            m.Packet(pts, dts, duration, 1 if packet.is_keyframe else 0, data),
            self.inflight,
            lambda: None,
            self._count_sent,
        )
        return self._take()

    def flush(self) -> list[Packet]:
        """Send FLUSH (once) and return every remaining output packet, in order, up to DONE."""
        return self._flush()

    # -- internals ---------------------------------------------------------------------------

    def _count_sent(self) -> None:
        self._sent += 1
        self.stats.packets_sent = self._sent

    def _on_result(self, msg: m.Message) -> Packet | None:
        if not isinstance(msg, m.Packet):
            return None
        if self._received >= self._max_output():
            # Decoder and encoder delays shift packets but never multiply them; only an fps
            # filter raising the rate does. Past that bound the server is broken or hostile,
            # and accepting more would let it fill our memory.
            raise RemoteProtocolError(
                f"{self.server} sent PACKET {self._received + 1} for {self._sent} source packets"
            )
        self._check_packet(msg)
        return packet_from_message(msg, self.time_base)

    def _max_output(self) -> int:
        """The most output packets the source packets sent so far can yield."""
        ratio = 1
        if self.output_framerate and self.framerate:
            ratio = max(1, math.ceil(self.output_framerate / self.framerate))
        elif vf.names(self.chain).count("fps"):
            ratio = MAX_RATE_RATIO
        return ratio * (self._sent + 1) + MAX_EXTRA_OUTPUT

    def _count_result(self) -> None:
        self._received += 1
        self._stats.packets = self._received


def stream_arguments(stream: av.video.stream.VideoStream, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The source arguments of a transcoder for a demuxed PyAV video stream, with ``kwargs``."""
    ctx = stream.codec_context
    kwargs.setdefault("framerate", stream.average_rate or stream.guessed_rate)
    kwargs.setdefault("input_pix_fmt", ctx.format.name if ctx.format is not None else None)
    kwargs.setdefault("input_sar", stream.sample_aspect_ratio or ctx.sample_aspect_ratio or None)
    if stream.time_base is None:
        raise ConfigError(f"stream {stream.index} has no time base")
    return {
        "input_codec": ctx.codec.canonical_name,  # "av1", not the decoder "libdav1d"
        "input_extradata": bytes(ctx.extradata or b""),
        "input_time_base": stream.time_base,
        "input_width": ctx.width,
        "input_height": ctx.height,
        **kwargs,
    }


def _decimal(value: float | Fraction) -> str:
    f = Fraction(value).limit_denominator(1_000_000)
    return f"{f.numerator}/{f.denominator}" if f.denominator != 1 else str(f.numerator)


__all__ = [
    "NOPTS",
    "RemoteTranscoder",
    "TranscodeOffer",
    "TranscodeStats",
    "stream_arguments",
    "transcode_capabilities",
]
