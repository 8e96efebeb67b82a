"""``FailoverDecoder``: a remote decoder on a pool that resumes on another server from the last
keyframe.

It keeps the packets from the last keyframe all of whose predecessors' frames
have been returned; when its server dies or stalls it sends them to the next
server (placed like every pool session, :mod:`vtremote.client.pool`) and drops
the frames it had already returned, by pts (frames come back in presentation
order). See :mod:`vtremote.client.failover` for the encoder and what both share.
"""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

import av

from vtremote.client.decoder import RemoteDecoder, stream_arguments
from vtremote.client.failover import FAILOVER_ERRORS, FailoverBase, as_pool
from vtremote.client.options import ConnectionOptions
from vtremote.client.pool import Pool
from vtremote.client.transport import Transport
from vtremote.wire.constants import PixelFormat

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
        connection: ConnectionOptions | None = None,
        max_switches: int | None = None,
        **kwargs: Any,
    ) -> None:
        connection = ConnectionOptions.take(connection, kwargs)
        super().__init__(as_pool(pool, connection.token, None), codec, connection, max_switches)
        self._kwargs = kwargs
        self._kept: list[Packet] = []  # from the last keyframe that is safe to resume from
        self._last_pts: int | None = None  # pts of the last frame returned
        self.dropped = 0  # frames a new server gave again and that were not returned twice
        self._backend: RemoteDecoder = self._place()

    @classmethod
    def from_stream(cls, pool: Pool | str, stream: Any, **kwargs: Any) -> FailoverDecoder:
        """Like :meth:`RemoteDecoder.from_stream`."""
        codec, arguments = stream_arguments(stream, kwargs)
        return cls(pool, codec, **arguments)

    @property
    def pix_fmt(self) -> PixelFormat:
        return self._backend.pix_fmt

    def _place(self) -> RemoteDecoder:
        kwargs = self._kwargs

        def opener(transport: Transport) -> RemoteDecoder:
            return RemoteDecoder(transport, self.codec, connection=self.connection, **kwargs)

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

    def _trim(self) -> None:
        """Forget kept packets before the last keyframe whose predecessors have all been
        returned."""
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
            failed, arrived = self._retire(error)
            frames += arrived
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
