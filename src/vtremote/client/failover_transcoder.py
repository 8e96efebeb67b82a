"""``FailoverTranscoder``: a packet transcode on a pool that carries on elsewhere when its server
dies, stalls or errors, without a lost or repeated output frame.

The client sends source PACKETs and gets output PACKETs (:mod:`vtremote.client.packet_transcoder`);
what a new server needs to carry on is the source from a keyframe, so this side keeps:

* **Source packets** from the last source keyframe at or before the last output frame handed out
  (output frames after it are all decoded from that keyframe on): at most a GOP of the source
  plus the in-flight window and the codecs' delays. Compressed, so small; bounded anyway by
  :data:`MAX_KEPT_PACKETS` and :data:`MAX_KEPT_BYTES` (a longer GOP: see below).
* **Output packets** not handed out yet. They are handed out in decode order, in runs after
  which every later packet has a later pts (a run ends when the next packet's pts is above all
  of the run's), so what the caller holds always ends at one output pts ``P`` with every frame
  up to it: a self-contained prefix of the stream.

**How it moves.** The failed server's output that had not been handed out is dropped; the
session is placed on the best server not failed yet (or the local fallback,
:class:`~vtremote.client.fallback.LocalTranscoder`); its CONFIGURE asks for an IDR at the first
output frame after ``P`` (``ext_force_key_times``, which any ``ext:transcode`` server takes, so
no new option is needed); the kept source packets are sent again; output frames at or before
``P`` are dropped by pts. The output is then the undisturbed run's frames and pts; dts are
made strictly increasing at the seam (:class:`~vtremote.client.failover.IncreasingDts`).

**Very long GOPs.** Past :data:`MAX_KEPT_PACKETS` or :data:`MAX_KEPT_BYTES` since the resume
keyframe, the kept packets are let go (one WARNING); packets are kept again from the next
source keyframe, which becomes a resume point once every output frame before it was handed out.
A server failing in between ends the job with :class:`~vtremote.errors.NoServerError` that says
so, rather than resuming at a later keyframe with frames missing.

**Not moved:** ERROR 4 (:class:`~vtremote.errors.BadRequestError`, a source packet the decoder
rejects): every server would refuse it the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction
from typing import Any, Protocol, TypeAlias

import av

from vtremote.client.encoder import EncoderSettings, parse_pix_fmt
from vtremote.client.failover import (
    FAILOVER_ERRORS,
    Backend,
    FailoverBase,
    IncreasingDts,
    as_pool,
    with_parameter_sets,
)
from vtremote.client.fallback import GLOBAL_HEADER, LOCAL_CODECS, LocalTranscoder
from vtremote.client.options import ConnectionOptions
from vtremote.client.packet_transcoder import RemoteTranscoder, stream_arguments
from vtremote.client.pool import Pool
from vtremote.client.session import to_fraction
from vtremote.client.transport import Transport
from vtremote.errors import BadRequestError, NoServerError, RemoteProtocolError
from vtremote.wire import filters as vf
from vtremote.wire.constants import PixelFormat

log = logging.getLogger(__name__)

Packet: TypeAlias = "av.Packet[Any]"

#: Most source packets kept for a resume (a GOP of 2000 frames plus the window).
MAX_KEPT_PACKETS = 2048
#: The arguments of RemoteTranscoder that describe the source and the output (not encoder options).
SOURCE_ARGS = (
    "input_codec",
    "input_extradata",
    "input_time_base",
    "input_width",
    "input_height",
    "input_pix_fmt",
    "input_sar",
    "codec",
    "filters",
    "framerate",
    "pix_fmt",
)
#: Most output packets held back waiting for their reorder group to end.
MAX_HELD = 512
#: Most source bytes kept for a resume.
MAX_KEPT_BYTES = 256 * 1024 * 1024


class _TranscodeBackend(Backend, Protocol):
    """What the failover needs of a RemoteTranscoder or a LocalTranscoder."""

    extradata: bytes
    config_record: bytes
    width: int
    height: int
    time_base: Fraction
    output_framerate: Fraction | None

    def transcode(self, packet: Packet) -> list[Packet]: ...
    def flush(self) -> list[Packet]: ...


class FailoverTranscoder(FailoverBase):
    """A :class:`RemoteTranscoder` on a pool that moves to another server (or this machine)
    without losing or repeating an output frame.

    Takes the arguments of :class:`RemoteTranscoder` with ``pool`` (a :class:`Pool` or a
    ``-vt_remote_host`` string) instead of an address, plus ``fallback`` (``"local"``: transcode
    here when no server can be had) and ``max_switches``. Source packets must have pts.
    """

    _kind = "transcode"

    def __init__(
        self,
        pool: Pool | str,
        *,
        connection: ConnectionOptions | None = None,
        fallback: str | None = None,
        max_switches: int | None = None,
        force_key_frames: Sequence[float | Fraction] | None = None,
        force_key_every: float | Fraction | None = None,
        **kwargs: Any,
    ) -> None:
        connection = ConnectionOptions.take(connection, kwargs)
        pool = as_pool(pool, connection.token, fallback)
        if fallback is not None:
            pool = Pool(pool.name, pool.members, pool.token, fallback, pool.timeout_ms)
        super().__init__(pool, kwargs.setdefault("codec", "h264"), connection, max_switches)
        #: RemoteTranscoder's own arguments; the rest are encoder options.
        self._kwargs = {k: kwargs.pop(k) for k in SOURCE_ARGS if k in kwargs}
        self._source_tb = to_fraction(
            self._kwargs.get("input_time_base"), "input time base"
        ) or Fraction(1)
        self.settings = EncoderSettings.given(kwargs.pop("settings", None), kwargs)
        self._key_times = [Fraction(t) for t in force_key_frames or ()]
        self._key_every = Fraction(force_key_every) if force_key_every is not None else None
        self._kept: list[Packet] = []  # source packets from the resume keyframe on
        self._kept_bytes = 0
        self._gap = False  # True after kept packets were let go, until a keyframe can resume
        self._held: list[Packet] = []  # output packets arrived, not handed out yet
        self._handed: int | None = None  # pts P: every output frame up to P was handed out
        self._dts = IncreasingDts()
        self._inband = b""  # parameter sets to put in front of a new backend's first IDR
        self._need_key = False  # True after a switch until the new backend's first IDR
        self.dropped = 0  # output frames a new server made again and that were not handed out
        self._backend: _TranscodeBackend = self._place(None)
        first = self._backend
        #: The output as the first session announced it (every later one makes the same).
        self.width, self.height = first.width, first.height
        self.time_base = first.time_base
        self.output_framerate = first.output_framerate
        self.pix_fmt: PixelFormat = getattr(first, "pix_fmt", PixelFormat.NV12)
        self.sample_aspect_ratio = getattr(first, "sample_aspect_ratio", Fraction(1))
        self.extradata = first.extradata
        self.config_record = first.config_record

    @classmethod
    def from_stream(cls, pool: Pool | str, stream: Any, **kwargs: Any) -> FailoverTranscoder:
        """Like :meth:`RemoteTranscoder.from_stream`."""
        return cls(pool, **stream_arguments(stream, kwargs))

    @property
    def in_flight(self) -> int:
        """Source packets kept for a resume."""
        return len(self._kept)

    # -- the calls of RemoteTranscoder ----------------------------------------------------------

    def transcode(self, packet: Packet | None = None) -> list[Packet]:
        """Send one source packet; return the output packets that may be handed out so far."""
        if packet is None or packet.size == 0:
            return self.flush()
        self._keep(packet)
        try:
            self._absorb(self._backend.transcode(packet))
        except FAILOVER_ERRORS as e:
            self._switch(e)
        return self._release(end=False)

    def flush(self) -> list[Packet]:
        """Every remaining output packet; a server failing now is replaced like any other time."""
        while True:
            try:
                self._absorb(self._backend.flush())
                break
            except FAILOVER_ERRORS as e:
                self._switch(e)
        return self._release(end=True)

    # -- source side ----------------------------------------------------------------------------

    def _keep(self, packet: Packet) -> None:
        if packet.is_keyframe:
            self._trim()
        if len(self._kept) >= MAX_KEPT_PACKETS or self._kept_bytes >= MAX_KEPT_BYTES:
            log.warning(
                "%d source packets (%d bytes) since the resume keyframe: they are let go, and a "
                "server failing before the next keyframe can be resumed from ends the job",
                len(self._kept),
                self._kept_bytes,
            )
            self._kept.clear()
            self._kept_bytes = 0
            self._gap = True
        if self._kept or not self._gap or packet.is_keyframe:  # after a gap: from a keyframe
            self._kept.append(packet)
            self._kept_bytes += packet.size

    def _seconds(self, pkt: Packet) -> Fraction:
        return int(pkt.pts or 0) * (pkt.time_base or self._source_tb)

    def _trim(self) -> None:
        """Forget the kept packets before the last keyframe at or before the last output frame
        handed out: every output frame still to come is decoded from it on."""
        if self._handed is None or not self._kept:
            return
        limit = self._handed * self.time_base
        start = 0
        for i, pkt in enumerate(self._kept):
            if i and pkt.is_keyframe and pkt.pts is not None:
                if self._seconds(pkt) > limit:
                    break
                start = i
        if start:
            self._kept_bytes -= sum(p.size for p in self._kept[:start])
            del self._kept[:start]
        if self._gap and self._kept[0].is_keyframe and self._seconds(self._kept[0]) <= limit:
            self._gap = False  # a keyframe after the gap is a resume point now

    def _resumable(self) -> bool:
        """True when the kept packets start where every output frame not handed out can be
        made again from."""
        if self._gap:
            self._trim()
        return not self._gap

    # -- output side ----------------------------------------------------------------------------

    def _absorb(self, packets: list[Packet]) -> None:
        for pkt in packets:
            if pkt.pts is None or (self._handed is not None and pkt.pts <= self._handed):
                self.dropped += 1  # made again by a new server from the resume keyframe
                continue
            if self._need_key:
                if not pkt.is_keyframe:
                    self.dropped += 1  # a new server's output starts at its IDR
                    continue
                self._need_key = False
                if self._inband:
                    pkt = with_parameter_sets(pkt, self._inband)
                    self._inband = b""
            self._held.append(pkt)
        if len(self._held) > MAX_HELD:
            # A reorder group is a few packets; a server whose pts never let a run end would
            # make this side hold its whole output.
            raise RemoteProtocolError(
                f"{self._backend.server} sent {len(self._held)} packets in an order that lets "
                "none of them be handed out (pts never above the earlier ones)"
            )

    def _release(self, *, end: bool) -> list[Packet]:
        """Hand out the longest decode-order run after which every held packet has a later pts
        (all of them at the end)."""
        held = self._held
        cut = len(held) if end else 0
        top: int | None = None
        if not end:
            for i, pkt in enumerate(held[:-1]):
                top = int(pkt.pts) if top is None else max(top, int(pkt.pts))  # type: ignore[arg-type]
                if int(held[i + 1].pts) > top:  # type: ignore[arg-type]
                    cut = i + 1
        if not cut:
            return []
        out = held[:cut]
        del held[:cut]
        last = max(int(p.pts) for p in out)  # type: ignore[arg-type]  # absorb() let only pts through
        self._handed = last if self._handed is None else max(self._handed, last)
        self._dts.apply(out)
        self.packets += len(out)
        self.frames += len(out)
        return out

    # -- placement and failover -----------------------------------------------------------------

    def _resume_keys(self, resume: Fraction | None) -> list[Fraction]:
        """The key times of a session that starts emitting after ``resume`` (seconds): the job's,
        plus an IDR at the first output frame not handed out."""
        if resume is None:
            return list(self._key_times)
        return sorted([t for t in self._key_times if t > resume] + [resume])

    def _place(self, resume: Fraction | None) -> _TranscodeBackend:
        """A new backend: the best server not failed yet, or the local fallback."""
        keys = self._resume_keys(resume)
        kwargs = self._kwargs

        def opener(transport: Transport) -> RemoteTranscoder:
            return RemoteTranscoder(
                transport,
                connection=self.connection,
                settings=self.settings,
                force_key_frames=keys or None,
                force_key_every=self._key_every,
                **kwargs,
            )

        backend: _TranscodeBackend
        try:
            backend, _address = self.placer.open(opener, exclude=self._failed)
        except NoServerError as e:
            if self.pool.fallback != "local":
                raise
            log.warning(
                "%s; transcoding on this machine with %s (local fallback)",
                e,
                LOCAL_CODECS[self.codec],
            )
            backend = self._local(keys)
            self.fell_back = True
        self.servers.append(backend.server)
        return backend

    def _local(self, keys: list[Fraction]) -> LocalTranscoder:
        kw = self._kwargs
        tb = to_fraction(kw["input_time_base"], "input time base")
        assert tb is not None
        rate = to_fraction(kw.get("framerate"), "frame rate")
        sar = Fraction(kw.get("input_sar") or 1)
        source = vf.Geometry(kw["input_width"], kw["input_height"], tb, rate, sar)
        first = getattr(self, "_backend", None)
        return LocalTranscoder(
            self.codec,
            input_codec=kw["input_codec"],
            input_extradata=bytes(kw.get("input_extradata") or b""),
            source=source,
            chain=vf.coerce(kw.get("filters", "")),
            pix_fmt=getattr(first, "pix_fmt", None) or self._local_pix_fmt(),
            # Parameter sets out of band: the seam puts them in front of the first IDR kept.
            settings=replace(self.settings, flags=self.settings.flags | GLOBAL_HEADER),
            key_times=keys,
            key_every=self._key_every,
        )

    def _local_pix_fmt(self) -> PixelFormat:
        given = self._kwargs.get("pix_fmt")
        return PixelFormat.NV12 if given is None else parse_pix_fmt(given)

    def _switch(self, error: BaseException) -> None:
        """Replace the failed backend and send it the kept source packets (loops while servers
        fail)."""
        while True:
            if isinstance(error, BadRequestError):
                raise error  # the source or the request is at fault: every server would refuse it
            failed, _arrived = self._retire(error)  # not handed out: made again after the seam
            if not self.fell_back:
                self._failed[failed] = str(error)
            if not self._resumable():
                raise NoServerError(
                    f"transcode session with {failed} failed ({error}) more than "
                    f"{MAX_KEPT_PACKETS} packets after the last source keyframe: no resume point"
                ) from error
            self._held.clear()  # not handed out: made again from the resume keyframe
            handed = self._handed
            resume = (handed + 1) * self.time_base if handed is not None else None
            self._backend = self._place(resume)
            self._need_key = True
            self._inband = b""
            if self._backend.extradata != self.extradata:
                self._inband = self._backend.extradata
                log.warning(
                    "%s has other parameter sets than %s: they go in-band with its first IDR",
                    self._backend.server,
                    self.servers[0],
                )
            replay = list(self._kept)
            self._record(
                failed,
                error,
                self._backend.server,
                len(replay),
                handed + 1 if handed is not None else None,
            )
            try:
                self._check_output(self._backend)
                for pkt in replay:
                    self._absorb(self._backend.transcode(pkt))
                return
            except FAILOVER_ERRORS as e:
                error = e

    def _check_output(self, backend: _TranscodeBackend) -> None:
        """A new backend must make the output the first one announced (pts name the frames)."""
        got = (backend.width, backend.height, backend.time_base)
        want = (self.width, self.height, self.time_base)
        if got != want:
            raise RemoteProtocolError(
                f"{backend.server} announces output {got[0]}x{got[1]} tb={got[2]}, "
                f"not {want[0]}x{want[1]} tb={want[2]} as the session began"
            )

    def pool_info(self) -> dict[str, Any]:
        """Failover counters for ``--json``, with the output frames made again and dropped."""
        return super().pool_info() | {"fallback": self.fell_back, "dropped": self.dropped}


__all__ = ["FailoverTranscoder"]
