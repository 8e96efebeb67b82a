"""Sessions that survive the death of their server: :class:`FailoverEncoder` here,
:class:`~vtremote.client.failover_decoder.FailoverDecoder` and
:class:`~vtremote.client.failover_transcoder.FailoverTranscoder` beside it.

Both take a :class:`~vtremote.client.pool.Pool` and place their session with
:class:`~vtremote.client.pool.Placer`. When the server dies or stalls
(connection reset or closed, no reply within the timeout, an ERROR), the
session moves to the next server, once per failure, logged with one WARNING
and counted in :attr:`FailoverEncoder.failovers`.

**Encoder: no frame lost, none twice.** The encoder keeps every frame whose
packet it has not handed out yet (at most the in-flight window plus the
codec's reorder delay). Packets are handed out in decode order, but only in
batches that cover a contiguous run of frames from the oldest kept one, so
what was handed out is always a self-contained prefix of the stream (a P
packet whose B frames have not come back waits for them). On a switch, the
packets not handed out are dropped, the kept frames are sent to the new server
again with the first one forced to an IDR, and the stream goes on: exactly
one packet per frame, pts untouched, dts made strictly increasing across the
seam (they already are without B-frames; with B-frames a dts may be moved
forward by a tick or two at the seam).

*Parameter sets.* A server of the same engine and settings produces the same
SPS/PPS; the output's extradata stays the first server's. When a new server's
differ (another engine, or the local fallback), its parameter sets are put
in-band in front of its first IDR, which decoders follow (H.264/HEVC allow
parameter sets in-band; MP4 players that insist on ``avc1`` out-of-band
parameter sets only may not) and the switch is logged as such.

**Decoder: resume from the last keyframe.** The decoder keeps the packets
from the last keyframe whose predecessors' frames have all been returned; on
a switch it sends them to the new server again and drops the frames it
already returned (by pts: frames come back in presentation order).

**Local fallback.** With ``fallback="local"``, an encoder that can reach no
server (at the start or after a failure) encodes on this machine with
:class:`~vtremote.client.fallback.LocalEncoder`, logged and counted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol, Self, TypeAlias

import av

from vtremote.client.encoder import EncoderSettings, RemoteEncoder, picture_format
from vtremote.client.fallback import LOCAL_CODECS, LocalEncoder
from vtremote.client.options import ConnectionOptions
from vtremote.client.pool import Placer, Pool, resolve_pool
from vtremote.client.stats import ServedBy, SessionStats, describe_session
from vtremote.client.transport import Transport
from vtremote.errors import (
    ConfigError,
    ConnectionLostError,
    NoServerError,
    RemoteError,
    RemoteProtocolError,
    TimeoutExpiredError,
    VTRemoteError,
)
from vtremote.wire.constants import PixelFormat, WireCompression

log = logging.getLogger(__name__)

Packet: TypeAlias = "av.Packet[Any]"

#: What makes a session move to another server: the server is gone, silent or gave up.
FAILOVER_ERRORS = (ConnectionLostError, TimeoutExpiredError, RemoteError, RemoteProtocolError)


class Backend(ServedBy, Protocol):
    """What a failover session needs of the one-server session it runs on now (a
    RemoteEncoder, a RemoteDecoder, or a LocalEncoder)."""

    @property
    def pipelined(self) -> bool: ...
    @property
    def stats(self) -> SessionStats: ...
    def close(self) -> None: ...
    def _take(self) -> list[Any]: ...


class _EncodeBackend(Backend, Protocol):
    """What the failover encoder needs of a RemoteEncoder or a LocalEncoder."""

    extradata: bytes
    config_record: bytes

    @property
    def default_duration(self) -> int: ...
    def encode(self, frame: av.VideoFrame, *, keyframe: bool | None = None) -> list[Packet]: ...
    def flush(self) -> list[Packet]: ...
    def _take(self) -> list[Packet]: ...


@dataclass(frozen=True, slots=True)
class Switch:
    """One move from a failed server to the next, for stats and ``--json``."""

    failed: str
    reason: str
    to: str
    replayed: int
    at_pts: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "failed": self.failed,
            "reason": self.reason,
            "to": self.to,
            "replayed": self.replayed,
            "at_pts": self.at_pts,
        }


@dataclass(frozen=True, slots=True)
class EncodeFormat:
    """What every encoder session of one output stream opens with, on a server or here: the
    failover encoder's backends, the segments of a parallel encode."""

    codec: str
    width: int
    height: int
    pix_fmt: PixelFormat
    time_base: Fraction
    framerate: Fraction | None
    settings: EncoderSettings

    def remote(self, transport: Transport, connection: ConnectionOptions) -> RemoteEncoder:
        """A session on the server behind ``transport`` (placement greeted it already)."""
        return RemoteEncoder(
            transport,
            self.codec,
            width=self.width,
            height=self.height,
            pix_fmt=self.pix_fmt,
            time_base=self.time_base,
            framerate=self.framerate,
            connection=connection,
            settings=self.settings,
        )

    def local(self) -> LocalEncoder:
        """This machine's encoder (the local fallback)."""
        return LocalEncoder(
            self.codec,
            width=self.width,
            height=self.height,
            pix_fmt=self.pix_fmt,
            time_base=self.time_base,
            framerate=self.framerate,
            settings=self.settings,
        )


def as_pool(pool: Pool | str, token: str, fallback: str | None) -> Pool:
    return pool if isinstance(pool, Pool) else resolve_pool(pool, token=token, fallback=fallback)


class FailoverBase:
    """Bookkeeping both failover sessions share: placement, switch records, stats, and what
    they say of the server they run on now (:class:`~vtremote.client.stats.SessionReport`)."""

    _kind = "session"
    #: True once the local fallback encoder took over (decoders never fall back).
    fell_back = False
    _backend: Backend

    def __init__(
        self, pool: Pool, codec: str, connection: ConnectionOptions, max_switches: int | None
    ) -> None:
        self.pool = pool
        self.codec = codec
        #: The settings of every session on the pool (the HELLO carries the pool's token).
        self.connection = connection.replace(token=pool.token)
        self.timeout = connection.timeout
        self.inflight = connection.window
        self.placer = Placer(pool, codec, self.connection)
        #: Every switch so far, in order.
        self.switches: list[Switch] = []
        #: Servers this session has used, in order (a server may appear again after others).
        self.servers: list[str] = []
        self._failed: dict[str, str] = {}  # server -> why it was left
        self._max_switches = max_switches if max_switches is not None else 2 * len(pool.members) + 1
        self._done_stats = SessionStats()
        self._t0 = time.monotonic()
        self._closed = False
        self.frames = 0
        self.packets = 0

    @property
    def failovers(self) -> int:
        """How many times the session moved to another server."""
        return len(self.switches)

    # -- what the one-server session offers ------------------------------------------------

    @property
    def server(self) -> str:
        return self._backend.server

    @property
    def server_name(self) -> str:
        return self._backend.server_name

    @property
    def server_version(self) -> str:
        return self._backend.server_version

    @property
    def engine(self) -> str:
        return self._backend.engine

    @property
    def compression(self) -> WireCompression:
        return self._backend.compression

    @property
    def pipelined(self) -> bool:
        return self._backend.pipelined

    @property
    def stats(self) -> SessionStats:
        st = self._stats_now(self._backend.stats)
        st.frames, st.packets = self.frames, self.packets
        return st

    def describe(self) -> dict[str, Any]:
        """This session's ``remote_sessions`` entry of ``--json``, with the failover counters."""
        return describe_session(self._kind, self, self.stats, self.pipelined, self.pool_info())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- switching ----------------------------------------------------------------------------

    def _retire(self, error: BaseException) -> tuple[str, list[Any]]:
        """Give up the current backend after ``error``: returns its server and the results
        that had arrived before the failure (they are good); its counters are kept."""
        old = self._backend
        self._check_switches(error)
        arrived: list[Any] = []
        with contextlib.suppress(VTRemoteError):
            arrived = old._take()
        self._add_stats(old.stats)
        old.close()
        return old.server, arrived

    def _record(
        self, failed: str, error: BaseException, to: str, replayed: int, at_pts: int | None
    ) -> None:
        self.switches.append(Switch(failed, str(error), to, replayed, at_pts))
        log.warning(
            "%s session with %s failed (%s); continued on %s, %d %s sent again%s",
            self._kind,
            failed,
            error,
            to,
            replayed,
            "frames" if self._kind == "encode" else "packets",
            f" from pts {at_pts}" if at_pts is not None else "",
        )

    def _check_switches(self, error: BaseException) -> None:
        if len(self.switches) >= self._max_switches:
            raise NoServerError(
                f"{self._kind} session gave up after {len(self.switches)} server switches; "
                f"last failure: {error}"
            ) from error

    def _add_stats(self, st: SessionStats) -> None:
        acc = self._done_stats
        acc.bytes_sent += st.bytes_sent
        acc.bytes_received += st.bytes_received
        acc.max_inflight = max(acc.max_inflight, st.max_inflight)

    def _stats_now(self, current: SessionStats | None) -> SessionStats:
        acc = self._done_stats
        st = SessionStats(
            max_inflight=acc.max_inflight,
            bytes_sent=acc.bytes_sent,
            bytes_received=acc.bytes_received,
        )
        if current is not None:
            st.bytes_sent += current.bytes_sent
            st.bytes_received += current.bytes_received
            st.max_inflight = max(st.max_inflight, current.max_inflight)
        st.elapsed = time.monotonic() - self._t0
        return st

    def pool_info(self) -> dict[str, Any]:
        """Failover counters for ``--json``."""
        return {
            "pool": self.pool.name,
            "servers": list(self.servers),
            "failovers": self.failovers,
            "switches": [s.as_dict() for s in self.switches],
        }


class FailoverEncoder(FailoverBase):
    """A :class:`RemoteEncoder` on a pool that moves to another server without losing a frame.

    Takes the arguments of :class:`RemoteEncoder`, with ``pool`` (a
    :class:`Pool` or a ``-vt_remote_host`` string) instead of an address, plus
    ``fallback`` (``"local"`` to encode here when no server can be had) and
    ``max_switches`` (default: twice the pool size, plus one). Frame pts must
    increase (they name the frames across servers).
    """

    _kind = "encode"

    def __init__(
        self,
        pool: Pool | str,
        codec: str = "h264",
        *,
        width: int,
        height: int,
        pix_fmt: str | int | PixelFormat = "nv12",
        time_base: Fraction | int | str | tuple[int, int] = Fraction(1, 30),
        framerate: Fraction | int | str | tuple[int, int] | None = None,
        connection: ConnectionOptions | None = None,
        settings: EncoderSettings | None = None,
        fallback: str | None = None,
        max_switches: int | None = None,
        **options: Any,
    ) -> None:
        connection = ConnectionOptions.take(connection, options)
        pool = as_pool(pool, connection.token, fallback)
        if fallback is not None:
            pool = Pool(pool.name, pool.members, pool.token, fallback, pool.timeout_ms)
        super().__init__(pool, codec, connection, max_switches)
        self.settings = EncoderSettings.given(settings, options)
        self.pix_fmt, self.time_base, self.framerate = picture_format(
            codec, width, height, pix_fmt, time_base, framerate
        )
        self.width, self.height = width, height
        #: What each backend opens with.
        self.format = EncodeFormat(
            codec, width, height, self.pix_fmt, self.time_base, self.framerate, self.settings
        )
        #: Frames not handed out as packets yet: pts -> (frame, keyframe asked for), in send order.
        self._kept: dict[int, tuple[av.VideoFrame, bool]] = {}
        self._order: deque[int] = deque()
        self._held: list[Packet] = []  # arrived, in decode order, not handed out yet
        self._arrived: set[int] = set()
        self._dts = IncreasingDts()
        self._last_pts: int | None = None
        self._next_pts = 0
        self._inband = b""  # parameter sets to put in front of the next backend's first packet
        self._backend: _EncodeBackend = self._place()
        #: Annex B parameter sets of the first backend: the output's extradata.
        self.extradata = self._backend.extradata
        self.config_record = self._backend.config_record

    @property
    def default_duration(self) -> int:
        return self._backend.default_duration

    @property
    def in_flight(self) -> int:
        """Frames kept: sent and not yet handed out as packets."""
        return len(self._order)

    def encode(
        self, frame: av.VideoFrame | None = None, *, keyframe: bool | None = None
    ) -> list[Packet]:
        """Send one frame; return the packets that may be handed out so far (maybe none)."""
        if frame is None:
            return self.flush()
        if self._closed:
            raise ConfigError("encode() on a closed FailoverEncoder")
        if keyframe is None:
            keyframe = frame.pict_type == av.video.frame.PictureType.I
        if frame.pts is None:
            frame.pts = self._next_pts
        pts = int(frame.pts)
        if self._last_pts is not None and pts <= self._last_pts:
            raise ConfigError(
                f"frame pts {pts} does not follow {self._last_pts}: failover needs increasing pts"
            )
        self._last_pts = pts
        self._next_pts = pts + max(frame.duration or self.default_duration, 1)
        self._kept[pts] = (frame, keyframe)
        self._order.append(pts)
        self.frames += 1
        try:
            self._absorb(self._backend.encode(frame, keyframe=keyframe))
        except FAILOVER_ERRORS as e:
            self._switch(e)
        return self._release()

    def flush(self) -> list[Packet]:
        """Every remaining packet; a server failing now is replaced like any other time."""
        while True:
            try:
                self._absorb(self._backend.flush())
                missing = [p for p in self._order if p not in self._arrived]
                if missing:
                    raise ConnectionLostError(
                        f"{self._backend.server} ended without packets for {len(missing)} "
                        f"frames (first pts {missing[0]})"
                    )
                break
            except FAILOVER_ERRORS as e:
                self._switch(e)  # then flush the new backend
        out = self._release()
        if self._order:  # cannot happen: every kept frame has its packet now
            raise ConnectionLostError(f"{len(self._order)} frames have no packet after the flush")
        return out

    # -- placement ------------------------------------------------------------------------------

    def _open_remote(self, transport: Transport) -> RemoteEncoder:
        return self.format.remote(transport, self.connection)

    def _place(self) -> _EncodeBackend:
        """A new backend: the best server not failed yet, or the local fallback."""
        try:
            backend: _EncodeBackend
            backend, _address = self.placer.open(self._open_remote, exclude=self._failed)
        except NoServerError as e:
            if self.pool.fallback != "local":
                raise
            log.warning(
                "%s; encoding on this machine with %s (local fallback)", e, LOCAL_CODECS[self.codec]
            )
            backend = self.format.local()
            self.fell_back = True
        self.servers.append(backend.server)
        return backend

    # -- failover -------------------------------------------------------------------------------

    def _switch(self, error: BaseException) -> None:
        """Replace the failed backend and send it every kept frame again (loops while servers
        fail)."""
        while True:
            failed, arrived = self._retire(error)
            self._absorb(arrived)
            if not self.fell_back:
                self._failed[failed] = str(error)
            # Drop what was not handed out: those frames are encoded again from an IDR.
            self._held.clear()
            self._arrived.clear()
            replay = list(self._order)
            self._backend = self._place()
            if self._backend.extradata != self.extradata or not self.extradata:
                self._inband = self._backend.extradata
                if self.extradata and self._inband:
                    log.warning(
                        "%s has other parameter sets than %s: they go in-band with its first IDR",
                        self._backend.server,
                        self.servers[0],
                    )
            self._record(
                failed, error, self._backend.server, len(replay), replay[0] if replay else None
            )
            try:
                for i, pts in enumerate(replay):
                    frame, keyframe = self._kept[pts]
                    self._absorb(self._backend.encode(frame, keyframe=keyframe or i == 0))
                return
            except FAILOVER_ERRORS as e:
                error = e

    def _absorb(self, packets: list[Packet]) -> None:
        """Keep arrived packets until they can be handed out; drop any for no kept frame."""
        for pkt in packets:
            pts = pkt.pts
            if pts is None or pts not in self._kept or pts in self._arrived:
                log.warning(
                    "dropping a packet from %s for no frame waiting (pts %s)",
                    self._backend.server,
                    pts,
                )
                continue
            if self._inband:
                pkt = with_parameter_sets(pkt, self._inband)
                self._inband = b""
            self._arrived.add(pts)
            self._held.append(pkt)

    def _release(self) -> list[Packet]:
        """Hand out the longest decode-order run of held packets that covers the oldest kept
        frames exactly."""
        covered: set[int] = set()
        prefix = 0  # kept frames from the oldest on, all covered
        cut = 0
        order = self._order
        for i, pkt in enumerate(self._held):
            covered.add(int(pkt.pts))  # type: ignore[arg-type]  # absorb() let only pts through
            while prefix < len(order) and order[prefix] in covered:
                prefix += 1
            if prefix == len(covered):
                cut = i + 1
        if not cut:
            return []
        out = self._held[:cut]
        del self._held[:cut]
        for _ in range(cut):
            pts = order.popleft()
            del self._kept[pts]
            self._arrived.discard(pts)
        self._dts.apply(out)
        self.packets += len(out)
        return out

    def pool_info(self) -> dict[str, Any]:
        return super().pool_info() | {"fallback": self.fell_back}


def with_parameter_sets(pkt: Packet, prefix: bytes) -> Packet:
    """A copy of ``pkt`` with ``prefix`` (Annex B parameter sets) in front of its data: the
    first packet of a server whose parameter sets differ from the output's extradata."""
    if bytes(pkt)[: len(prefix)] == prefix:
        return pkt
    out: Packet = av.Packet(prefix + bytes(pkt))
    out.pts, out.dts, out.duration = pkt.pts, pkt.dts, pkt.duration
    out.time_base = pkt.time_base
    out.is_keyframe = pkt.is_keyframe
    return out


class IncreasingDts:
    """Keeps dts strictly increasing across the seams of a stream made by several sessions
    (with B-frames a dts may move forward by a tick or two at a seam)."""

    def __init__(self) -> None:
        self.last: int | None = None

    def apply(self, packets: list[Packet]) -> None:
        for pkt in packets:
            if pkt.dts is not None:
                if self.last is not None and pkt.dts <= self.last:
                    pkt.dts = self.last + 1
                self.last = pkt.dts
