"""What a job is, as plain data: inputs, one output, stream maps, remote options.

The command line builds a :class:`JobSpec` from argv (``cli/options.py``); a
Python program can build one directly and hand it to
:class:`vtremote.pipeline.Job`. Nothing here opens a file or a socket.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from vtremote.client.options import ConnectionOptions, tls_options_for
from vtremote.errors import UsageError

#: Codec names that mean "this codec runs on a vtremoted" (the reference's names).
REMOTE_CODECS = {
    "h264_videotoolbox_remote": "h264",
    "hevc_videotoolbox_remote": "hevc",
    # An extension codec: only servers that offer it (wire/extensions.py ext:codecs).
    "av1_remote": "av1",
}


def asked_wire_format(pix_fmt: str | None, remote_codec: str) -> str | None:
    """The wire format (``nv12`` / ``p010le``) that ``-pix_fmt`` names, if the remote codec
    takes it (P010 is HEVC only); None when ``-pix_fmt`` names none it can take."""
    if pix_fmt in ("nv12", "p010le", "p010") and not (
        pix_fmt.startswith("p010") and remote_codec == "h264"
    ):
        return "p010le" if pix_fmt.startswith("p010") else "nv12"
    return None


@dataclass(frozen=True)
class MapSpec:
    """``-map [-]INPUT[:TYPE][:INDEX][?]`` (ffmpeg's common forms)."""

    input: int
    type: str | None = None  # "v", "a", "s", "d" or None (every stream)
    index: int | None = None  # n-th stream of that type, or absolute stream index if type is None
    negative: bool = False
    optional: bool = False

    @classmethod
    def parse(cls, text: str) -> MapSpec:
        spec = text.strip()
        negative = spec.startswith("-")
        optional = spec.endswith("?")
        spec = spec.lstrip("-").rstrip("?")
        parts = spec.split(":")
        if not parts[0].isdigit():
            raise UsageError(f"-map {text!r}: expected INPUT[:TYPE][:INDEX] like 0:v or 0:a:1")
        stype: str | None = None
        index: int | None = None
        rest = parts[1:]
        if rest and rest[0] in ("v", "V", "a", "s", "d"):
            stype = rest.pop(0).lower()
        if rest:
            if len(rest) > 1 or not rest[0].isdigit():
                raise UsageError(
                    f"-map {text!r}: stream specifier {':'.join(parts[1:])!r} is not supported"
                )
            index = int(rest[0])
        return cls(int(parts[0]), stype, index, negative, optional)


# --- the parsed command -------------------------------------------------------------------------


@dataclass
class RemoteOptions:
    """The ``-vt_remote_*`` options of one remote codec (VTR1.md §3.2, client-only)."""

    host: str | None = None
    token: str = ""
    compression: str = "auto"
    inflight: int = 16
    timeout_ms: int = 5000
    tls: bool = False
    tls_fingerprint: str = ""
    tls_ca: str = ""
    #: "local": encode on this machine when no server can be had; None: the config file's choice.
    fallback: str | None = None
    #: Segments encoded on this many servers at once (0/1: one session).
    parallel: int = 0

    def merged(self, other: RemoteOptions) -> RemoteOptions:
        """These options, with ``other``'s host, token and TLS settings when this side names
        no host."""
        if self.host is not None:
            return self
        return dataclasses.replace(
            self,
            host=other.host,
            token=self.token or other.token,
            fallback=self.fallback or other.fallback,
            tls=self.tls or other.tls,
            tls_fingerprint=self.tls_fingerprint or other.tls_fingerprint,
            tls_ca=self.tls_ca or other.tls_ca,
        )

    def connection(self) -> ConnectionOptions:
        """These options as every client session takes them (one object, passed whole)."""
        return ConnectionOptions(
            token=self.token,
            timeout=self.timeout_ms / 1000,
            compression=self.compression,
            window=self.inflight,
            tls=tls_options_for(self.tls, self.tls_fingerprint, self.tls_ca),
        )


@dataclass
class InputSpec:
    url: str
    format: str | None = None
    seek: float = 0.0
    duration: float | None = None
    #: ``-to``: where reading ends, on the input's clock (``-t`` wins when both are given).
    to: float | None = None
    #: ``-noaccurate_seek`` clears it: video starts at the keyframe at or before ``-ss``
    #: instead of the first frame at ``-ss`` (ffmpeg's default is accurate).
    accurate_seek: bool = True
    video_codec: str | None = None  # decoder: *_videotoolbox_remote = remote decode
    audio_codec: str | None = None
    remote: RemoteOptions = field(default_factory=RemoteOptions)
    options: dict[str, str] = field(
        default_factory=dict
    )  # demuxer options (-framerate, -video_size)
    #: -re / -readrate: read no faster than this many times real time (None: as fast as it can).
    read_rate: float | None = None
    #: -readrate_initial_burst: seconds read at full speed before the rate applies.
    read_burst: float = 0.5
    #: -skip_frame nokey: decode the keyframes only (thumbnails, trickplay).
    keyframes_only: bool = False

    @property
    def remote_codec(self) -> str | None:
        return REMOTE_CODECS.get(self.video_codec or "")

    @property
    def recording_time(self) -> float | None:
        return recording_time(self.seek, self.duration, self.to)


def recording_time(seek: float, duration: float | None, to: float | None) -> float | None:
    """How long a file is read or written (ffmpeg's recording time): ``-t``, else ``-to``
    less ``-ss``, else None."""
    if duration is not None:
        return duration
    return max(to - seek, 0.0) if to is not None else None


@dataclass
class OutputSpec:
    url: str
    format: str | None = None
    maps: list[MapSpec] = field(default_factory=list)
    codecs: dict[str, str] = field(default_factory=dict)  # "v" / "a" / "s" -> codec name or "copy"
    no_video: bool = False
    no_audio: bool = False
    no_subtitles: bool = False
    no_data: bool = False
    seek: float = 0.0
    duration: float | None = None
    #: ``-to``: where writing ends, in output time (``-t`` wins when both are given).
    to: float | None = None
    max_frames: int | None = None
    video_filter: str | None = None
    pix_fmt: str | None = None
    rate: Fraction | None = None
    size: tuple[int, int] | None = None
    force_key_frames: str | None = None
    audio_bitrate: int | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None
    #: Video codec options, already converted: remote encoders read the fields of
    #: EncoderSettings from here; local encoders get ``codec_options`` too.
    video: dict[str, Any] = field(default_factory=dict)
    #: Options handed verbatim to a local PyAV encoder (preset, crf, x264-params, ...).
    codec_options: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    remote: RemoteOptions = field(default_factory=RemoteOptions)
    #: On failure keep what was written as ``NAME.partial.EXT`` instead of removing it.
    keep_partial: bool = False
    #: Packet transcode (the server decodes, filters and encodes): "auto" when the chain
    #: and the server allow it, "on" required (an error says why not), "off" raw frames.
    transcode: str = "auto"
    #: Muxer options (``-movflags``, ``-hls_time``, ``-avoid_negative_ts``...), passed to FFmpeg
    #: as they are.
    format_options: dict[str, str] = field(default_factory=dict)
    #: ``-copyts``: keep the input's timestamps (``-ss`` does not move output time 0);
    #: with ``start_at_zero`` they are shifted so that the input starts at 0.
    copyts: bool = False
    start_at_zero: bool = False
    #: ``-af``: an audio filter chain for re-encoded audio (volume=2, aresample...).
    audio_filter: str | None = None
    #: ``-tag:v``: the video stream's codec tag in the container (hvc1, avc1...).
    video_tag: str | None = None
    #: Write under the output's own name from the start (a media server streams the file
    #: while it grows); a failed run still removes it, or marks it with ``keep_partial``.
    in_place: bool = False

    @property
    def video_codec(self) -> str | None:
        return self.codecs.get("v")

    @property
    def recording_time(self) -> float | None:
        return recording_time(self.seek, self.duration, self.to)

    @property
    def remote_codec(self) -> str | None:
        return REMOTE_CODECS.get(self.video_codec or "")


@dataclass
class JobSpec:
    """One job: inputs, one output, and how the command line wants it reported."""

    inputs: list[InputSpec]
    output: OutputSpec
    overwrite: bool | None = None  # -y True, -n False, neither None
    json: bool = False
    stats: bool = True
    loglevel: str = "warning"
