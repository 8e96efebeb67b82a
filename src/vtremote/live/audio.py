"""Live audio: Opus (libopus) at 48 kHz stereo, 20 ms packets, on the video's capture clock.

The sender resamples whatever it gets (any rate, layout, sample format) to
48 kHz stereo and encodes 20 ms packets; each packet's capture time is the
capture time of its first sample (the first frame's capture time plus the
samples before it). Stereo always, so a recording can declare its audio track
before the first packet arrives.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from fractions import Fraction

import av

from vtremote.errors import EngineError, EngineUnavailableError
from vtremote.live.protocol import AudioCodec

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
LAYOUT = "stereo"
FRAME_SAMPLES = 960  # 20 ms
BITRATE = 64_000


@dataclass(frozen=True, slots=True)
class AudioPacket:
    data: bytes
    capture_ns: int


class LiveAudioEncoder:
    """Audio frames in, Opus packets with capture times out; driven by one thread."""

    codec = AudioCodec.OPUS

    def __init__(self, bitrate: int = BITRATE) -> None:
        if "libopus" not in av.codecs_available:
            raise EngineUnavailableError("libopus is not in this PyAV build")
        ctx = av.CodecContext.create("libopus", "w")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = LAYOUT
        ctx.format = "flt"
        ctx.bit_rate = bitrate
        ctx.time_base = Fraction(1, SAMPLE_RATE)
        ctx.options = {"application": "lowdelay", "frame_duration": "20"}
        ctx.open()
        self._ctx = ctx
        self._resampler = av.AudioResampler(
            format="flt", layout=LAYOUT, rate=SAMPLE_RATE, frame_size=FRAME_SAMPLES
        )
        self._base_ns: int | None = None

    def encode(self, frame: av.AudioFrame, capture_ns: int) -> list[AudioPacket]:
        """``frame`` captured (its first sample) at ``capture_ns``; the packets complete so far."""
        if self._base_ns is None:
            self._base_ns = capture_ns
        frame.pts = round((capture_ns - self._base_ns) * frame.sample_rate / 1e9)
        frame.time_base = Fraction(1, frame.sample_rate)
        try:
            return [p for f in self._resampler.resample(frame) for p in self._encode(f)]
        except av.FFmpegError as e:
            raise EngineError(f"libopus failed: {e}") from e

    def _encode(self, frame: av.AudioFrame | None) -> list[AudioPacket]:
        assert self._base_ns is not None or frame is None
        base = self._base_ns or 0
        return [
            AudioPacket(bytes(p), base + int((p.pts or 0) * 1e9 / SAMPLE_RATE))
            for p in self._ctx.encode(frame)
        ]

    def close(self) -> list[AudioPacket]:
        """What the encoder still holds."""
        if self._base_ns is None:
            return []
        out: list[AudioPacket] = []
        with contextlib.suppress(av.FFmpegError):
            for f in self._resampler.resample(None):
                out += self._encode(f)
            out += self._encode(None)
        return out
