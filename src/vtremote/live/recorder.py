"""Record received pictures to a file without re-encoding (MKV, MP4, ...), metadata beside.

The compressed pictures go into the container as they came (Annex B H.264/HEVC
with the parameter sets of the first keyframe as extradata, or JPEGs), stamped
with their capture times relative to the first recorded picture, in
milliseconds. Recording starts at a keyframe and skips pictures the receiver
could not decode, so the file has exactly the frames that were shown.

Metadata goes to a JSON Lines sidecar, ``NAME.metadata.jsonl``: one line per
metadata message, with the recorded frame it belongs to and its time in the file.
"""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av

from vtremote.errors import EngineError
from vtremote.live.audio import FRAME_SAMPLES, LAYOUT, SAMPLE_RATE
from vtremote.live.codec import parameter_sets
from vtremote.live.protocol import Codec

log = logging.getLogger(__name__)

_STREAM_CODEC = {Codec.H264: "h264", Codec.HEVC: "hevc", Codec.MJPEG: "mjpeg"}
TIME_BASE = Fraction(1, 1000)


def path_for_source(path: str | Path, index: int, source_id: int) -> Path:
    """The first source records to ``path``; each further one to ``STEM-SOURCEID.EXT``."""
    path = Path(path)
    return path if index == 0 else path.with_name(f"{path.stem}-{source_id}{path.suffix}")


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.metadata.jsonl")


class Recorder:
    """One source into one file; driven by the source's decode thread only."""

    def __init__(
        self,
        path: str | Path,
        codec: Codec,
        width: int,
        height: int,
        fps: Fraction,
        *,
        audio: bool = False,
    ) -> None:
        self.path = Path(path)
        self.has_audio = (
            audio  # an Opus track beside the video (48 kHz stereo, as the sender makes it)
        )
        self._audio_stream: Any = None
        self._last_audio_pts = -1
        self.audio_packets = 0
        self.codec = codec
        self.width, self.height, self.fps = width, height, fps
        self._container: Any = None
        self._stream: Any = None
        self._first_ns: int | None = None
        self._last_pts = -1
        self._sidecar: IO[str] | None = None
        self.frames = 0

    def _open(self, keyframe_data: bytes) -> None:
        try:
            self._container = av.open(str(self.path), "w")
            stream = self._container.add_stream(_STREAM_CODEC[self.codec], rate=self.fps)
            stream.width = self.width
            stream.height = self.height
            stream.time_base = TIME_BASE
            if self.codec is Codec.MJPEG:
                stream.pix_fmt = "yuvj420p"
            extradata = parameter_sets(self.codec, keyframe_data)
            if extradata:
                stream.codec_context.extradata = extradata  # Annex B; the muxer converts
            self._stream = stream
            if self.has_audio:
                audio = self._container.add_stream("libopus", rate=SAMPLE_RATE)
                audio.layout = LAYOUT
                audio.format = "flt"
                audio.time_base = TIME_BASE
                self._audio_stream = audio
        except (av.FFmpegError, ValueError) as e:
            raise EngineError(f"cannot record to {self.path}: {e}") from e

    def write(self, data: bytes, keyframe: bool, capture_ns: int) -> int | None:
        """Add one picture; returns its time in the file (ms), None while waiting for a keyframe."""
        if self._container is None:
            if not keyframe:
                return None
            self._open(data)
            self._first_ns = capture_ns
        assert self._first_ns is not None
        pts = round((capture_ns - self._first_ns) / 1_000_000)
        pts = max(pts, self._last_pts + 1)  # strictly increasing even if capture times collide
        self._last_pts = pts
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        packet.stream = self._stream
        packet.is_keyframe = keyframe
        try:
            self._container.mux(packet)
        except av.FFmpegError as e:
            raise EngineError(f"recording to {self.path} failed: {e}") from e
        self.frames += 1
        return pts

    def audio(self, data: bytes, capture_ns: int) -> None:
        """One Opus packet, on the video's clock.

        Audio before the first recorded picture is left out.
        """
        if self._audio_stream is None or self._first_ns is None or capture_ns < self._first_ns:
            return
        pts = max(round((capture_ns - self._first_ns) / 1_000_000), self._last_audio_pts + 1)
        self._last_audio_pts = pts
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.duration = FRAME_SAMPLES * 1000 // SAMPLE_RATE
        packet.time_base = TIME_BASE
        packet.stream = self._audio_stream
        try:
            self._container.mux(packet)
        except av.FFmpegError as e:
            raise EngineError(f"recording audio to {self.path} failed: {e}") from e
        self.audio_packets += 1

    def metadata(self, entry: dict[str, Any]) -> None:
        if self._sidecar is None:
            self._sidecar = sidecar_path(self.path).open("w", encoding="utf-8")
        self._sidecar.write(json.dumps(entry, separators=(",", ":")) + "\n")

    @property
    def last_pts(self) -> int | None:
        return self._last_pts if self._last_pts >= 0 else None

    def close(self) -> None:
        if self._sidecar is not None:
            self._sidecar.close()
            self._sidecar = None
        if self._container is not None:
            try:
                self._container.close()
            except av.FFmpegError as e:
                log.warning("closing %s: %s", self.path, e)
            self._container = None
            log.info("recorded %d frames to %s", self.frames, self.path)
