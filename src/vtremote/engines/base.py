"""The engine interface: one codec backend serving one session, driven by one thread.

An engine wraps one PyAV codec context (an encoder or a decoder). PyAV's
``encode``/``decode`` calls release the GIL, so every session's engine runs in
parallel with the others on its own thread; an engine object itself is never
touched by two threads (STYLE.md §1.3, §6).

Contract of an engine, whatever the backend:

* ``open(config)`` returns the extradata for CONFIGURE_ACK: the avcC/hvcC record
  of an encoder, opened with global headers so it exists before the first frame
  (no warm-up frame, VTR1.md §7.4), or ``b""`` for a decoder. Options it cannot
  honour end up in :attr:`Engine.warnings`.
* ``encode(frame)`` takes frames whose ``pts`` is the session's frame index
  (0, 1, 2, ...; the session maps client timestamps, see server/timestamps.py)
  with ``pict_type`` I to force an IDR, and returns the packets that became
  ready, in decode order; ``encode(None)`` drains. One packet comes out per
  frame in total, and the encoder holds at most ``StreamConfig.max_delay``
  (by default :data:`MAX_FRAME_DELAY`) frames.
* ``decode(packet)`` returns the frames that became ready, in presentation
  order; ``decode(None)`` drains.
* Failures raise :class:`EngineError` ``from`` the ``av.FFmpegError``; an engine
  that cannot run here raises :class:`EngineUnavailableError` naming what is
  missing. A hardware engine never falls back to software silently.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar, Literal

import av
import av.logging

from vtremote.errors import ConfigError, EngineUnavailableError, UnsupportedConfigError

# The codecs and the largest picture side are the wire's (VTR1.md §3.1), shared here.
from vtremote.wire.constants import ALL_CODECS as ALL_CODECS
from vtremote.wire.constants import CODECS as CODECS
from vtremote.wire.constants import PixelFormat
from vtremote.wire.framing import MAX_DIMENSION as MAX_DIMENSION
from vtremote.wire.messages import Configure

log = logging.getLogger(__name__)

Mode = Literal["encode", "decode"]
MODES: tuple[Mode, ...] = ("encode", "decode")

#: Largest number of frames an encoder may hold before its first packet. The
#: reference client keeps at most ``vt_remote_inflight`` (default 16) frames in
#: flight and blocks when its window is full; the reference server caps
#: VideoToolbox at MaxFrameDelayCount=8 (VTR1.md §9.5 step 4, §10.1).
MAX_FRAME_DELAY = 8


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """What a session asks of its engine: the CONFIGURE of VTR1.md §3.1 plus the codec from
    HELLO."""

    mode: Mode
    codec: str
    width: int
    height: int
    pix_fmt: PixelFormat
    #: Client time base, clamped to >= 1/1 as the reference does (§3.3); opaque to decoders.
    time_base: Fraction = Fraction(1, 30)
    #: Client frame rate, None when the client sent 0.
    framerate: Fraction | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    extradata: bytes = b""
    #: Decode: the client pipelines (ext_decode_pipeline=1), so decoder delay costs
    #: nothing; a lock-step v1 client pays every frame of delay as a timeout.
    pipelined: bool = False
    #: Encode: frames the encoder may hold back before a packet comes out (lookahead,
    #: B-frames, frame threads together). A client that stops sending when ``window``
    #: frames are unanswered needs fewer than ``window``; 0 means one packet per frame
    #: before the next frame arrives (no lookahead, no B-frames, slice threads).
    max_delay: int = MAX_FRAME_DELAY
    #: Encode: hold back no more frames than the B-frames asked for need (none without
    #: B-frames), within ``max_delay``: for a client whose window is unknown and may be
    #: as small as one frame (a plain v1 client).
    least_delay: bool = False

    def __post_init__(self) -> None:
        if self.codec not in ALL_CODECS:
            raise UnsupportedConfigError(
                f"unsupported codec {self.codec!r}; supported: {', '.join(ALL_CODECS)}"
            )
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r} is neither encode nor decode")
        limit = MAX_DIMENSION
        if self.mode == "encode" and not (0 < self.width <= limit and 0 < self.height <= limit):
            raise ConfigError(
                f"picture size {self.width}x{self.height} is outside 1x1..{limit}x{limit}"
            )
        if self.mode == "decode" and not (0 <= self.width <= limit and 0 <= self.height <= limit):
            raise ConfigError(
                f"picture size {self.width}x{self.height} is outside 0x0..{limit}x{limit}"
            )
        if not 0 <= self.max_delay <= MAX_FRAME_DELAY:
            raise ConfigError(f"max_delay={self.max_delay} is outside 0..{MAX_FRAME_DELAY}")

    @classmethod
    def from_configure(
        cls,
        codec: str,
        msg: Configure,
        *,
        pipelined: bool = False,
        max_delay: int = MAX_FRAME_DELAY,
        least_delay: bool = False,
    ) -> StreamConfig:
        """Build from a parsed CONFIGURE; raises ConfigError/UnsupportedConfigError."""
        try:
            pix_fmt = PixelFormat(msg.pix_fmt)
        except ValueError:
            raise UnsupportedConfigError(
                f"unsupported pix_fmt={msg.pix_fmt}; supported: 1 (NV12), 2 (P010LE)"
            ) from None
        mode: Mode = "decode" if msg.option("mode", "encode") == "decode" else "encode"
        tb = Fraction(max(msg.time_base_num, 1), max(msg.time_base_den, 1))
        fr = None
        if msg.framerate_num > 0 and msg.framerate_den > 0:
            fr = Fraction(msg.framerate_num, msg.framerate_den)
        return cls(
            mode=mode,
            codec=codec,
            width=msg.width,
            height=msg.height,
            pix_fmt=pix_fmt,
            time_base=tb,
            framerate=fr,
            options=msg.option_map(),
            extradata=bytes(msg.extradata),
            pipelined=pipelined,
            max_delay=max_delay,
            least_delay=least_delay,
        )

    @property
    def rate(self) -> Fraction:
        """Frame rate used for rate control: the client's frame rate, else 1/time_base
        when that is a plausible rate, else 30 (the encoder is fed frame indices)."""
        if self.framerate is not None and 0 < self.framerate <= 1000:
            return self.framerate
        inv = 1 / self.time_base
        if 1 <= inv <= 240:
            return inv
        return Fraction(30)

    @property
    def frame_ticks(self) -> Fraction:
        """Duration of one frame in client time-base ticks, at :attr:`rate`."""
        return 1 / (self.rate * self.time_base)

    def describe(self) -> str:
        return f"{self.mode} {self.codec} {self.width}x{self.height} {self.pix_fmt.name}"


class Engine(abc.ABC):
    """A blocking codec driven by exactly one thread (see the module docstring)."""

    #: Registry name: "x264", "nvenc", "videotoolbox", ...
    name: ClassVar[str]
    #: True when the engine needs a device; such engines never fall back to software.
    hardware: ClassVar[bool] = False
    #: Sessions the engine runs at full speed at once (a device's session limit); None: one
    #: per CPU core (software). Announced in ``ext:capacity`` for pool placement.
    session_capacity: ClassVar[int | None] = None
    #: One line for --list-engines.
    description: ClassVar[str] = ""

    _probe_cache: ClassVar[dict[tuple[str, str, str], str | None]] = {}
    _probe_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        #: Strings for CONFIGURE_ACK's warning list (options not honoured as asked).
        self.warnings: list[str] = []
        #: The pixel format decoded frames are delivered in (decode sessions).
        self.output_pix_fmt: PixelFormat = PixelFormat.NV12
        #: The FFmpeg codec that does the work, for logs ("libx264", "hevc_nvenc").
        self.codec_name: str = ""
        self.config: StreamConfig | None = None

    # -- probing -------------------------------------------------------------------------

    @classmethod
    def probe(cls, codec: str, mode: Mode = "encode") -> bool:
        """True if this engine really works here for ``codec``/``mode``; cached."""
        return cls.probe_error(codec, mode) is None

    @classmethod
    def probe_error(cls, codec: str, mode: Mode = "encode") -> str | None:
        """None if the engine works, else why not. The first call really opens a
        tiny codec (and encodes or decodes one frame); later calls are cached."""
        key = (cls.name, codec, mode)
        with Engine._probe_lock:
            if key in Engine._probe_cache:
                return Engine._probe_cache[key]
            try:
                cls._probe(codec, mode)
                reason: str | None = None
            except EngineUnavailableError as e:
                reason = str(e)
            except Exception as e:  # a probe must report, never crash the server
                reason = f"{type(e).__name__}: {e}"
            Engine._probe_cache[key] = reason
            if reason is None:
                log.debug("engine %s: %s %s works", cls.name, codec, mode)
            else:
                log.debug("engine %s: %s %s unavailable: %s", cls.name, codec, mode, reason)
            return reason

    @classmethod
    def require(cls, codec: str, mode: Mode) -> None:
        """Raise EngineUnavailableError unless the engine probes OK for codec/mode."""
        reason = cls.probe_error(codec, mode)
        if reason is not None:
            raise EngineUnavailableError(f"engine {cls.name} cannot {mode} {codec} here: {reason}")

    @classmethod
    @abc.abstractmethod
    def _probe(cls, codec: str, mode: Mode) -> None:
        """Open a tiny codec for codec/mode; raise EngineUnavailableError naming what is missing."""

    # -- the codec -----------------------------------------------------------------------

    @abc.abstractmethod
    def open(self, config: StreamConfig) -> bytes:
        """Open the codec; returns the avcC/hvcC record (encode) or b"" (decode)."""

    @abc.abstractmethod
    def encode(self, frame: av.VideoFrame | None) -> list[av.Packet[Any]]:
        """Encode one frame (pts = frame index); None drains the encoder."""

    @abc.abstractmethod
    def decode(self, packet: av.Packet[Any] | None) -> list[av.VideoFrame]:
        """Decode one Annex B packet; None drains the decoder."""

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing here
        """Free the codec (idempotent)."""

    def warn(self, text: str) -> None:
        self.warnings.append(text)


@contextmanager
def capture_ffmpeg_errors() -> Iterator[list[tuple[int, str, str]]]:
    """Collect this thread's FFmpeg error log lines while a probe runs: they name
    what is missing ("Cannot load libcuda.so.1") where the exception only says EPERM.

    Yields the live list of ``(level, component, message)`` for :func:`ffmpeg_reason`.
    """
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        av.logging.set_level(previous)


def av_error_text(exc: BaseException) -> str:
    """``av.FFmpegError`` as "Operation not permitted ([h264_nvenc] Cannot load
    libcuda.so.1)": the errno text and FFmpeg's last log line, without the call dump."""
    full = str(exc)
    if not isinstance(exc, av.FFmpegError):
        return full
    text = exc.strerror or full
    _, sep, last = full.partition("; last error log: ")
    return f"{text} ({last.strip()})" if sep else str(text)


def ffmpeg_reason(exc: BaseException | str, logs: list[tuple[int, str, str]]) -> str:
    """A one-line reason from an exception and the captured FFmpeg log lines."""
    text = str(exc)
    seen: list[str] = []
    for level, name, message in logs:
        line = f"[{name}] {message.strip()}" if name else message.strip()
        if level <= av.logging.ERROR and line not in seen and line not in text:
            seen.append(line)
    if seen:
        return f"{text} ({'; '.join(seen[-3:])})"
    return text
