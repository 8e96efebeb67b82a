"""The live sender: frames in (pushed or from a capture source), encoded pictures out on a link.

Threads: the caller's (``send`` puts a frame in a one-slot mailbox: a newer frame
replaces one the encoder has not taken yet, and the older one is counted as
dropped), one encoder thread (drops frames while the link is down or backed up,
encodes the rest, forces a keyframe after a (re)connect or a keyframe request,
adapts the bitrate) and the link's writer and reader threads.

Drop, don't queue: at most :data:`MAX_PENDING` pictures wait for the network. A
frame that would be the next one in a full queue is never encoded, so the
stream the receiver gets stays decodable and its latency stays bounded.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av

from vtremote.errors import ConfigError, VTRemoteError
from vtremote.live import protocol as p
from vtremote.live.audio import AudioPacket, LiveAudioEncoder
from vtremote.live.auth import HELLO_KEYED, check_key
from vtremote.live.codec import EncoderConfig, LiveEncoder
from vtremote.live.remote import RemoteLiveEncoder
from vtremote.live.transport import Link, LinkEvents, TcpLink, UdpLink, parse_address

log = logging.getLogger(__name__)

#: Pictures allowed to wait for the network before new frames are dropped.
MAX_PENDING = 2
#: Audio packets (20 ms each) that may wait for the next picture; older ones are dropped.
MAX_AUDIO_WAITING = 25
#: How often the bitrate is reconsidered.
RATE_INTERVAL_NS = 250_000_000
#: Receiver-side latency p50 this far above its lowest value means a queue on the path.
LATENCY_MARGIN_US = 80_000
#: Receiver-side latency p50 growing this much per STATS interval, twice in a row: a queue builds.
LATENCY_RISE_US = 30_000
#: Receiver-side latency p50 above this is a queue whatever the floor (a LAN has no such delay).
LATENCY_CEILING_US = 200_000


@dataclass(frozen=True)
class SenderConfig:
    width: int
    height: int
    fps: Fraction
    codec: p.Codec = p.Codec.H264
    transport: str = "tcp"
    bitrate: int = 4_000_000  # start and maximum, bits/s
    min_bitrate: int = 0  # 0 = bitrate / 8
    adaptive: bool = True
    keyint_s: float = 2.0
    preset: str = "ultrafast"
    mjpeg_quality: int = 5
    source_id: int = field(default_factory=lambda: random.getrandbits(31) or 1)
    name: str = ""
    #: The receiver's key (``vtremote live recv`` prints it); None: send without one, which
    #: only a receiver started with ``--no-key`` (``LiveReceiver(key=None)``) takes.
    key: str | None = None
    reconnect_s: float = 10.0
    threads: int = 0
    encoder: str = "local"  # "local" (hardware or x264/x265 here) or "remote" (a vtremoted)
    server: str = ""  # HOST:PORT of the vtremoted with encoder="remote"
    token: str = ""  # its token, if it asks for one
    audio: bool = False  # send_audio() frames go out as Opus (AUDIO messages)

    def __post_init__(self) -> None:
        if self.encoder not in ("local", "remote"):
            raise ConfigError(f"encoder {self.encoder!r} is not local or remote")
        if self.encoder == "remote" and not self.server:
            raise ConfigError("the remote encoder needs a server (HOST:PORT)")
        if self.encoder == "remote" and self.codec is p.Codec.MJPEG:
            raise ConfigError("a vtremoted encodes H.264 or HEVC, not MJPEG")
        if self.transport not in ("tcp", "udp"):
            raise ConfigError(f"transport {self.transport!r} is not tcp or udp")
        if self.min_bitrate < 0 or (self.min_bitrate and self.min_bitrate > self.bitrate):
            raise ConfigError(
                f"minimum bitrate {self.min_bitrate} above the maximum {self.bitrate}"
            )
        if self.key is not None:
            check_key(self.key)
        if not 0 <= self.source_id <= 0xFFFFFFFF:
            raise ConfigError(f"source id {self.source_id} does not fit in 32 bits")

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig(
            self.codec,
            self.width,
            self.height,
            self.fps,
            bitrate=self.bitrate,
            max_bitrate=self.bitrate,
            keyint_s=self.keyint_s,
            preset=self.preset,
            mjpeg_quality=self.mjpeg_quality,
            threads=self.threads,
        )


class RateController:
    """Adaptive bitrate between a minimum and a maximum (AIMD). Sans-IO: time is passed in.

    Congestion (pictures queued behind the network, frames dropped for it, or
    datagrams the receiver reports missing) cuts the target to 80 % of what the
    path really drained (50 % while a backlog stands on the path, so that it
    empties; by 15 % when nothing was measured); 80 % of the drained rate is
    remembered as the path's ceiling. After a quiet second the target grows 5 % per step
    up to the ceiling, and only 2 % per step beyond it (probing for more), up to
    the maximum.
    """

    def __init__(self, start: int, minimum: int, maximum: int) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.target = start
        self.ceiling = maximum
        self.starting = True
        self._quiet_since: int | None = None
        self.changes = 0

    def update(
        self, now_ns: int, *, congested: bool, drained_bps: float | None, backlog: bool = False
    ) -> int | None:
        """The new target, or None if it stays.

        ``backlog``: a queue already stands on the path; go to half the drained
        rate to empty it.
        """
        old = self.target
        if congested:
            self.starting = False
            cut = self.target * 0.85
            if drained_bps is not None and drained_bps > 0:
                # From the measured rate, not from the last target: repeated signals of the same
                # congestion converge on it instead of spiralling down to the minimum.
                cut = min(self.target, drained_bps * (0.5 if backlog else 0.8))
                self.ceiling = int(max(self.minimum, drained_bps * 0.8))
            self.target = int(max(self.minimum, cut))
            self._quiet_since = now_ns
        else:
            if self._quiet_since is None:
                self._quiet_since = now_ns
            if self.starting:  # no congestion seen yet: climb fast from the half-rate start
                self.target = int(min(self.maximum, self.target * 1.10))
            elif now_ns - self._quiet_since >= 1_000_000_000:
                step = 1.05 if self.target < self.ceiling else 1.02
                self.target = int(min(self.maximum, self.target * step))
        if self.target != old:
            self.changes += 1
            return self.target
        return None


@dataclass
class SenderStats:
    frames_in: int = 0
    frames_sent: int = 0
    dropped: int = 0  # frames never sent: encoder busy, link down or backed up
    keyframes: int = 0
    keyframe_requests: int = 0
    bytes: int = 0  # encoded bytes handed to the link
    metadata: int = 0
    bitrate: int = 0
    min_bitrate_seen: int = 0
    connections: int = 0
    retransmitted: int = 0
    encode_ms_total: float = 0.0
    audio_packets: int = 0
    audio_dropped: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Sender:
    """Encode and send frames to a receiver at ``to`` (``HOST:PORT``)."""

    def __init__(self, to: str, config: SenderConfig) -> None:
        self.config = config
        self.address = parse_address(to)
        self.stats = SenderStats(bitrate=config.bitrate, min_bitrate_seen=config.bitrate)
        self._encoder: LiveEncoder | RemoteLiveEncoder
        if config.encoder == "remote":
            self._encoder = RemoteLiveEncoder(
                config.encoder_config(), config.server, token=config.token
            )
        else:
            self._encoder = LiveEncoder(config.encoder_config())  # VBV sized for the maximum
        min_rate = config.min_bitrate or max(100_000, config.bitrate // 8)
        start = max(min_rate, config.bitrate // 2) if config.adaptive else config.bitrate
        if not self._encoder.set_bitrate(start):
            start = config.bitrate  # an encoder whose rate is fixed stays at it
        self._rate = RateController(start, min_rate, config.bitrate)
        self.stats.bitrate = self.stats.min_bitrate_seen = start
        hello = p.Hello(
            source_id=config.source_id,
            nonce=random.getrandbits(32),
            codec=config.codec,
            width=config.width,
            height=config.height,
            fps_num=config.fps.numerator,
            fps_den=config.fps.denominator,
            capabilities=p.Capability.METADATA
            | p.Capability.KEYFRAME_REQUEST
            | p.Capability.BITRATE_HINT
            | (p.Capability.RETRANSMIT if config.transport == "udp" else p.Capability(0))
            | (p.Capability.AUDIO if config.audio else p.Capability(0)),
            name=config.name,
            flags=HELLO_KEYED if config.key is not None else 0,
        )
        events = LinkEvents(
            self._on_connected, self._on_keyframe_request, self._on_stats, self._on_hint
        )
        link_class: type[Link] = TcpLink if config.transport == "tcp" else UdpLink
        secret = check_key(config.key) if config.key is not None else None
        self._link = link_class(
            self.address, hello, events, reconnect_s=config.reconnect_s, secret=secret
        )
        self._cond = threading.Condition()
        self._slot: tuple[av.VideoFrame, int, list[tuple[int, bytes]]] | None = None
        self._closing = False
        self._force_key = True
        self._hint_bps = 0
        self._congested = False
        self._last_lost = 0
        self._last_stats: tuple[int, int] | None = None
        self._delivered_bps = 0.0
        self._delivered: deque[float] = deque(maxlen=4)
        self._latency_floor_us = 1 << 62
        self._late = False
        self._recent_latency: list[int] = []
        self._pause_until = 0
        self._seq_base: int | None = None
        self._last_index = -1
        self._carry: list[p.Metadata] = []
        self._audio_encoder: LiveAudioEncoder | None = None
        self._audio: list[
            p.Audio
        ] = []  # packets waiting for the next picture (the same queue slot)
        self._audio_seq = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-encoder", daemon=True)
        self._started = False

    # --- public --------------------------------------------------------------------------

    def start(self) -> Sender:
        if not self._started:
            self._started = True
            self._link.start()
            self._thread.start()
        return self

    def __enter__(self) -> Sender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._link.connected

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._link.connected:
            self.check()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def check(self) -> None:
        """Raise what stopped the sender (the link gave up, the encoder failed)."""
        if self._link.failed is not None:
            raise self._link.failed
        if self._error is not None:
            if isinstance(self._error, VTRemoteError):
                raise self._error
            raise VTRemoteError(f"live sender failed: {self._error}") from self._error

    def send(
        self, frame: av.VideoFrame, metadata: Any = None, *, capture_ns: int | None = None
    ) -> None:
        """Hand over one captured frame (and JSON-able metadata tied to it).

        Never blocks for the network: if the encoder has not taken the previous
        frame yet, that one is dropped (and counted).
        """
        if capture_ns is None:
            capture_ns = time.monotonic_ns()
        self.check()
        metas: list[tuple[int, bytes]] = []
        if metadata is not None:
            for item in metadata if isinstance(metadata, list) else [metadata]:
                data = json.dumps(item, separators=(",", ":")).encode()
                limit = p.LIMITS[p.MessageType.METADATA] - 12
                if len(data) > limit:
                    raise ConfigError(f"metadata of {len(data)} bytes exceeds {limit}")
                metas.append((capture_ns, data))
        with self._cond:
            self.stats.frames_in += 1
            if self._slot is not None:
                self.stats.dropped += 1
                # The dropped frame's metadata still goes (with its own time), before the
                # next frame.
                metas = self._slot[2] + metas
            self._slot = (frame, capture_ns, metas)
            self._cond.notify_all()

    def count_skipped(self) -> None:
        """Count a captured frame that never reached :meth:`send` (the capture dropped it for
        being late) as a drop, so the BYE and every later VIDEO message include it."""
        with self._cond:
            self.stats.frames_in += 1
            self.stats.dropped += 1

    def send_audio(self, frame: av.AudioFrame, *, capture_ns: int | None = None) -> None:
        """Hand over captured audio (``capture_ns``: its first sample, same clock as the video).

        Encoded here (Opus, cheap) and sent with the next picture; dropped while
        the link is down, and beyond :data:`MAX_AUDIO_WAITING` packets waiting.
        """
        if not self.config.audio:
            raise ConfigError("this sender was configured without audio (SenderConfig(audio=True))")
        if capture_ns is None:
            capture_ns = time.monotonic_ns()
        self.check()
        if self._audio_encoder is None:
            self._audio_encoder = LiveAudioEncoder()
        self._queue_audio(self._audio_encoder.encode(frame, capture_ns))

    def _queue_audio(self, packets: list[AudioPacket]) -> None:
        with self._cond:
            for packet in packets:
                self._audio.append(
                    p.Audio(p.AudioCodec.OPUS, self._audio_seq, packet.capture_ns, packet.data)
                )
                self._audio_seq = (self._audio_seq + 1) & 0xFFFFFFFF
                self.stats.audio_packets += 1
            if not self._link.connected:
                self.stats.audio_dropped += len(self._audio)
                self._audio.clear()
            elif len(self._audio) > MAX_AUDIO_WAITING:
                self.stats.audio_dropped += len(self._audio) - MAX_AUDIO_WAITING
                del self._audio[:-MAX_AUDIO_WAITING]

    def _take_audio(self) -> list[p.Message]:
        with self._cond:
            out: list[p.Message] = [*self._audio]
            self._audio.clear()
        return out

    def request_keyframe(self) -> None:
        self._force_key = True

    def close(self, timeout: float = 5.0) -> SenderStats:
        """Encode what was handed over, send it, say BYE, close."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._started:
            self._thread.join(timeout)
            if self._audio_encoder is not None:
                self._queue_audio(self._audio_encoder.close())
            tail = self._take_audio()
            if tail and self._link.connected:
                self._link.send(tail)
            self._link.close(
                p.Bye(p.ByeReason.END_OF_STREAM, self.stats.frames_sent, self.stats.dropped),
                timeout,
            )
        self.stats.connections = self._link.connections
        self.stats.retransmitted = getattr(self._link, "retransmitted", 0)
        self._encoder.close()
        return self.stats

    # --- link events (link threads) ------------------------------------------------------

    def _on_connected(self) -> None:
        self._force_key = True

    def _on_keyframe_request(self, msg: p.KeyframeRequest) -> None:
        self.stats.keyframe_requests += 1
        self._force_key = True
        log.debug("live: keyframe requested (%s)", msg.reason.name)

    def _on_stats(self, msg: p.Stats) -> None:
        """The receiver's view, twice a second: losses, and latency growing over its floor.

        Latency is the signal that still works when the queue is not ours: a
        path that buffers seconds (a greedy relay, a bloated router) never pushes
        back on the socket, but the receiver sees every picture arrive later.
        Then what the receiver got per second is the rate the path really has.
        """
        now = time.monotonic_ns()
        if self._last_stats is not None:
            t, got = self._last_stats
            if now > t and msg.bytes >= got:
                # The best of the last two seconds: while the sender pauses, less arrives.
                self._delivered.append((msg.bytes - got) * 8e9 / (now - t))
                self._delivered_bps = max(self._delivered)
        self._last_stats = (now, msg.bytes)
        if msg.lost > self._last_lost or msg.loss_permille > 100:
            self._congested = True
        self._last_lost = msg.lost
        if msg.latency_p50_us:
            lat = msg.latency_p50_us
            self._latency_floor_us = min(self._latency_floor_us, lat)
            # Above the lowest latency seen, or rising interval after interval (a queue growing
            # on a path whose floor was never seen empty, as when a stream starts too fast).
            rising = len(self._recent_latency) == 2 and (
                self._recent_latency[0] + LATENCY_RISE_US
                < self._recent_latency[1] + LATENCY_RISE_US // 2
                < lat
            )
            if (
                lat > self._latency_floor_us + LATENCY_MARGIN_US
                or rising
                or lat > LATENCY_CEILING_US
            ):
                self._congested = self._late = True
                # Stop sending for a moment: the standing queue drains at the path's full rate
                # (frames are dropped before the encoder, so the stream stays decodable).
                excess = max(lat - self._latency_floor_us, lat - LATENCY_CEILING_US // 2)
                self._pause_until = now + min(500_000_000, excess * 1000 // 2)
            self._recent_latency = [*self._recent_latency[-1:], lat]

    def _on_hint(self, msg: p.BitrateHint) -> None:
        self._hint_bps = msg.max_bps

    # --- encoder thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # reported by check() in the caller's thread
            self._error = e
            log.debug("live encoder stopped", exc_info=True)

    def _loop(self) -> None:
        next_rate = time.monotonic_ns() + RATE_INTERVAL_NS
        sent_at_rate = self._link.bytes_sent
        while True:
            with self._cond:
                while self._slot is None and not self._closing:
                    self._cond.wait(0.1)
                    if self._link.failed is not None:
                        return
                if self._slot is None:
                    return
                frame, capture_ns, metas = self._slot
                self._slot = None
            now = time.monotonic_ns()
            if now >= next_rate:
                drained = (
                    (self._link.bytes_sent - sent_at_rate)
                    * 8e9
                    / max(1, now - next_rate + RATE_INTERVAL_NS)
                )
                sent_at_rate = self._link.bytes_sent
                self._adapt(now, drained)
                next_rate = now + RATE_INTERVAL_NS
            index = self._index(capture_ns)
            pausing = now < self._pause_until
            backed_up = self._link.pending() >= MAX_PENDING
            if not self._link.connected or backed_up or pausing:
                if not self._link.connected:
                    self._force_key = True
                elif backed_up:
                    self._congested = True
                self.stats.dropped += 1
                # Metadata is small: it goes (with its own frame number and time) before
                # the next picture.
                self._carry += [p.Metadata(self._meta_seq(t), t, m) for t, m in metas]
                continue
            key = self._force_key
            self._force_key = False
            t0 = time.perf_counter()
            units = self._encoder.encode(frame, index, keyframe=key)
            self.stats.encode_ms_total += (time.perf_counter() - t0) * 1000
            for unit in units:
                seq = unit.index & 0xFFFFFFFF
                audio = self._take_audio()
                msgs: list[p.Message] = [*audio, *self._carry]
                msgs += [
                    p.Metadata(seq if t == capture_ns else self._meta_seq(t), t, m)
                    for t, m in metas
                ]
                metas, self._carry = [], []
                msgs.append(
                    p.Video(
                        seq, capture_ns, unit.data, unit.keyframe, self.stats.dropped & 0xFFFFFFFF
                    )
                )
                self._link.send(msgs)
                self.stats.frames_sent += 1
                self.stats.keyframes += unit.keyframe
                self.stats.bytes += len(unit.data)
                self.stats.metadata += len(msgs) - 1 - len(audio)

    def _index(self, capture_ns: int) -> int:
        """Frame number from the capture time (gaps where frames were dropped)."""
        if self._seq_base is None:
            self._seq_base = capture_ns
        index = round((capture_ns - self._seq_base) * self.config.fps / 1_000_000_000)
        index = max(index, self._last_index + 1)
        self._last_index = index
        return int(index)

    def _meta_seq(self, capture_ns: int) -> int:
        base = capture_ns if self._seq_base is None else self._seq_base
        return int(round((capture_ns - base) * self.config.fps / 1_000_000_000)) & 0xFFFFFFFF

    def _adapt(self, now: int, drained_bps: float) -> None:
        if not self.config.adaptive:
            return
        congested, self._congested = self._congested, False
        late, self._late = self._late, False
        if late and self._delivered_bps > 0:
            drained_bps = self._delivered_bps  # the queue is beyond our socket: what got through
        new = self._rate.update(
            now, congested=congested, drained_bps=drained_bps if congested else None, backlog=late
        )
        target = self._rate.target
        if self._hint_bps:
            target = min(target, self._hint_bps)
        if (new is not None or self._hint_bps) and self._encoder.set_bitrate(target):
            if target != self.stats.bitrate:
                log.debug("live: bitrate %d -> %d b/s", self.stats.bitrate, target)
            self.stats.bitrate = target
            self.stats.min_bitrate_seen = min(self.stats.min_bitrate_seen, target)
