"""``FailoverDecoder``: a remote decoder on a pool that resumes on another server from the last keyframe.

It keeps the packets from the last keyframe all of whose predecessors' frames
have been returned; when its server dies or stalls it sends them to the next
server (placed like every pool session, :mod:`vtremote.client.pool`) and drops
the frames it had already returned, by pts (frames come back in presentation
order). See :mod:`vtremote.client.failover` for the encoder and what both share.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, TypeAlias

import av

from vtremote.client.decoder import RemoteDecoder
from vtremote.client.failover import FAILOVER_ERRORS, FailoverBase, as_pool
from vtremote.client.pool import Pool
from vtremote.client.session import SessionStats
from vtremote.client.transport import Transport
from vtremote.errors import VTRemoteError
from vtremote.wire.constants import PixelFormat, WireCompression

log = logging.getLogger(__name__)

Packet: TypeAlias = "av.Packet[Any]"
#: Most packets kept for a resume (several GOPs of any usual stream; compressed, so small).
MAX_KEPT_PACKETS = 2048


class FailoverDecoder(FailoverBase):
    """A :class:`RemoteDecoder` on a pool that resumes on another server from the last keyframe.

    Takes the arguments of :class:`RemoteDecoder` with ``pool`` instead of an
    address. Frames already returned are not returned again (by pts).
    """

    _kind = "decode"

    def __init__(
        self,
        pool: Pool | str,
        codec: str = "h264",
        *,
        token: str = "",
        timeout: float = 5.0,
        max_switches: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(as_pool(pool, token, None), codec, timeout, max_switches)
        self._kwargs = kwargs
        self._kept: list[Packet] = []  # from the last keyframe that is safe to resume from
        self._last_pts: int | None = None  # pts of the last frame returned
        self.frames = 0
        self.packets = 0
        self.dropped = 0  # frames a new server gave again and that were not returned twice
        self._backend: RemoteDecoder = self._place()

    @classmethod
    def from_stream(cls, pool: Pool | str, stream: Any, **kwargs: Any) -> FailoverDecoder:
        """Like :meth:`RemoteDecoder.from_stream`."""
        probe: dict[str, Any] = {}

        class _Capture(RemoteDecoder):
            # from_stream() works out the arguments and calls cls(...): keep them, connect nowhere.
            def __init__(self, address: Any, codec: str = "h264", **kw: Any) -> None:
                probe.update(kw, codec=codec)

        _Capture.from_stream("unused:0", stream, **kwargs)
        codec = probe.pop("codec")
        return cls(pool, codec, **probe)

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
    def pix_fmt(self) -> PixelFormat:
        return self._backend.pix_fmt

    @property
    def stats(self) -> SessionStats:
        st = self._stats_now(self._backend.stats)
        st.frames, st.packets = self.frames, self.packets
        return st

    def _place(self) -> RemoteDecoder:
        kwargs = self._kwargs

        def opener(transport: Transport) -> RemoteDecoder:
            return RemoteDecoder(
                transport, self.codec, token=self.pool.token, timeout=self.timeout, **kwargs
            )

        backend, _ = self.placer.open(opener, exclude=self._failed)
        self.servers.append(backend.server)
        return backend

    def decode(self, packet: Packet | None = None) -> list[av.VideoFrame]:
        if packet is None or packet.size == 0:
            return self.flush()
        if packet.is_keyframe:
            self._trim()
            if not self._kept or self._kept[0].is_keyframe is False:
                self._kept.clear()  # nothing before the first keyframe can be resumed from
        if len(self._kept) >= MAX_KEPT_PACKETS:
            # A stream with (almost) no keyframes: stop keeping rather than grow without bound.
            log.warning(
                "%d packets since the last keyframe: a failover before the next keyframe "
                "would resume there, and frames in between would be lost",
                len(self._kept),
            )
            self._kept.clear()
        self._kept.append(packet)
        self.packets += 1
        try:
            frames = self._backend.decode(packet)
        except FAILOVER_ERRORS as e:
            frames = self._switch(e)
        return self._filter(frames)

    def flush(self) -> list[av.VideoFrame]:
        frames: list[av.VideoFrame] = []
        while True:
            try:
                frames += self._backend.flush()
                break
            except FAILOVER_ERRORS as e:
                frames += self._switch(e)
        return self._filter(frames)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._backend.close()

    def __enter__(self) -> FailoverDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _trim(self) -> None:
        """Forget kept packets before the last keyframe whose predecessors have all been returned."""
        last = self._last_pts
        if last is None:
            return
        start = 0
        for i, pkt in enumerate(self._kept):
            if pkt.is_keyframe and i:
                if all(p.pts is not None and p.pts <= last for p in self._kept[start:i]):
                    start = i
                else:
                    break
        if start:
            del self._kept[:start]

    def _filter(self, frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        out = []
        for f in frames:
            if f.pts is not None and self._last_pts is not None and f.pts <= self._last_pts:
                self.dropped += 1
                continue
            if f.pts is not None:
                self._last_pts = int(f.pts)
            out.append(f)
        self.frames += len(out)
        return out

    def _switch(self, error: BaseException) -> list[av.VideoFrame]:
        frames: list[av.VideoFrame] = []
        while True:
            old = self._backend
            failed = old.server
            self._check_switches(error)
            with contextlib.suppress(VTRemoteError):
                frames += old._take()
            self._add_stats(old.stats)
            old.close()
            self._failed[failed] = str(error)
            self._backend = self._place()
            replay = list(self._kept)
            self._record(
                failed, error, self._backend.server, len(replay), replay[0].pts if replay else None
            )
            try:
                for pkt in replay:
                    frames += self._backend.decode(pkt)
                return frames
            except FAILOVER_ERRORS as e:
                error = e
