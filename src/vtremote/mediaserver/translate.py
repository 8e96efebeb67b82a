"""A media server's ffmpeg command line -> a :class:`~vtremote.pipeline.spec.JobSpec`.

:func:`translate` reads the line once (:func:`~vtremote.mediaserver.line.read_command`, with
the shared ffmpeg option table and the media-server dialect of :mod:`.dialect`), then builds
the job for one *target*: a remote server (the video encoders named in the configuration
become ``*_videotoolbox_remote`` with the quality mapped to what the engine has) or this
machine (a PyAV encoder, for when no server can take the job). Anything it cannot run
faithfully raises :class:`~vtremote.mediaserver.filters.Unsupported` with the reason, and the
command line goes to a real ffmpeg instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

import av

from vtremote.errors import UsageError
from vtremote.mediaserver.argv import Command
from vtremote.mediaserver.config import MediaServerConfig
from vtremote.mediaserver.filters import (
    Geometry,
    Unsupported,
    translate_audio_chain,
    translate_chain,
)
from vtremote.mediaserver.line import read_command
from vtremote.mediaserver.media import MediaInfo, probe_media
from vtremote.pipeline.spec import InputSpec, JobSpec, OutputSpec, RemoteOptions

__all__ = ["MediaInfo", "Plan", "probe_media", "translate"]

REMOTE_NAMES = {
    "h264": "h264_videotoolbox_remote",
    "hevc": "hevc_videotoolbox_remote",
    "av1": "av1_remote",
}
#: The software encoder of each codec, for when no server takes the job.
LOCAL_ENCODERS = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}

#: Audio encoder names -> what PyAV's FFmpeg has.
AUDIO_ENCODERS = {
    "libfdk_aac": "aac",
    "aac_at": "aac",
    "aac": "aac",
    "libmp3lame": "libmp3lame",
    "mp3": "libmp3lame",
    "libopus": "libopus",
    "opus": "libopus",
    "ac3": "ac3",
    "eac3": "eac3",
    "flac": "flac",
    "libvorbis": "libvorbis",
    "vorbis": "libvorbis",
    "alac": "alac",
    "truehd": "truehd",
}
FAST_PRESETS = frozenset(
    {"ultrafast", "superfast", "veryfast", "faster", "fast", "p1", "p2", "p3", "speed", "balanced"}
)
SLOW_PRESETS = frozenset({"slow", "slower", "veryslow", "placebo", "p5", "p6", "p7", "quality"})
X26X_PRESETS = frozenset(
    {"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"}
)
#: -tune values of the hardware encoders that ask for low latency (NVENC ll/ull).
LOW_LATENCY_TUNES = frozenset({"ll", "ull", "zerolatency", "lowlatency", "ultralowlatency"})
#: Engine settings a media server's line may set directly (see VideoRequest.engine).
ENGINE_KEYS = ("a53_cc", "spatial_aq", "realtime", "prio_speed", "constant_bit_rate")


@dataclass
class Plan:
    """The job and what the translation decided on the way (logged by the command)."""

    spec: JobSpec
    remote: bool
    video_encoder: str | None = None
    notes: list[str] = field(default_factory=list)


def _quality_from_qp(q: float) -> int:
    """x264/x265 CRF or a QP-like global_quality (0..51) -> the engine's constant quality in percent
    (the software engine turns it back into the same CRF: crf = 51 x (1 - quality))."""
    return max(1, min(100, round(100 * (1 - q / 51))))


def _key_frame_times(text: str, shift: float, end: float | None) -> str | None:
    """Jellyfin's ``expr:gte(t,OFFSET+n_forced*N)`` -> a time list (``-force_key_frames``) at
    SHIFT+OFFSET, SHIFT+OFFSET+N, ... to the end of the input; other forms (time lists, any
    other expression: :mod:`vtremote.pipeline.keyframes` evaluates it per frame) are returned
    unchanged.

    SHIFT is the input's start time when timestamps keep the source's clock (-copyts): the
    segmenter cuts N seconds after the first packet, and Jellyfin's OFFSET (its -ss) counts
    from the start of the file, as -ss does. For MKV/MP4 (start 0) this is the expression as
    written; for MPEG-TS (start 1.4 s and more) it keeps the cuts and the keyframes together.
    """
    m = re.fullmatch(
        r"expr:\s*gte\(\s*t\s*,\s*(?:([0-9.]+)\s*\+\s*)?n_forced\s*\*\s*([0-9.]+)\s*\)",
        text.strip(),
    )
    if not m:
        return text
    base = shift + float(m.group(1) or 0.0)
    every = float(m.group(2))
    if every <= 0:
        raise Unsupported(f"-force_key_frames {text!r}: the interval must be positive")
    if base == 0.0:
        return f"expr:gte(t,n_forced*{every:g})"
    stop = end if end is not None else base + 6 * 3600
    count = min(int(math.ceil((stop - base) / every)) + 1, 200_000)
    return ",".join(f"{base + i * every:.6f}".rstrip("0").rstrip(".") for i in range(max(count, 1)))


@dataclass
class VideoRequest:
    """What the line asks of its video encoder, before it is mapped to the one that runs."""

    encoder: str | None
    bitrate: int | None = None
    maxrate: int | None = None
    bufsize: str | None = None
    #: -crf / -global_quality / -qp / -cq as written.
    qp: dict[str, str] = field(default_factory=dict)
    qscale: str | None = None
    preset: str | None = None
    gop: int | None = None
    bf: int | None = None
    profile: str | None = None
    level: str | None = None
    x264_params: str | None = None
    x265_params: str | None = None
    tune: str | None = None
    #: Engine settings written as they are (-sei -a53_cc, -spatial-aq, -realtime, -prio_speed).
    engine: dict[str, object] = field(default_factory=dict)

    @classmethod
    def take(cls, out: OutputSpec) -> VideoRequest:
        """Move the encoder settings the shared setters wrote into ``out`` to a request."""
        v, o = out.video, out.codec_options
        request = cls(
            out.codecs.pop("v", None),
            v.get("bitrate"),
            v.get("maxrate"),
            o.get("bufsize"),
            {k: o[k] for k in ("crf", "global_quality", "qp", "cq") if o.get(k)},
            o.get("q"),
            o.get("preset"),
            v.get("gop"),
            v.get("max_b_frames"),
            o.get("profile"),
            o.get("level"),
            o.get("x264-params"),
            o.get("x265-params"),
            o.get("tune"),
            {k: v[k] for k in ENGINE_KEYS if k in v},
        )
        out.video, out.codec_options = {}, {}
        return request


def translate(
    cmd: Command, config: MediaServerConfig, *, server: str | None, media: MediaInfo | None = None
) -> Plan:
    """The job for ``server`` (``None``: a local PyAV encoder). Raises Unsupported or UsageError."""
    line = read_command(cmd)
    notes = line.notes
    inputs, out = line.inputs, line.output
    first = inputs[0]
    if media is None:
        media = probe_media(first.url, first.format, first.options)
    spec = JobSpec(inputs, out, loglevel="warning")
    spec.overwrite = line.overwrite
    request = VideoRequest.take(out)
    out.audio_filter = translate_audio_chain(out.audio_filter)
    if out.format == "hls" or (out.format is None and out.url.endswith(".m3u8")):
        out.format = "hls"
    # A media server reads the output while it is written: no temporary name.
    out.in_place = True
    out.keep_partial = config.keep_partial
    geo = Geometry(media.width, media.height, media.sar) if media.width and media.height else None
    chain = translate_chain(out.video_filter, geo)
    notes += chain.notes
    out.video_filter = chain.chain
    out.codecs.update(_audio_codecs(out, notes))
    for k in ("s", "d"):
        if out.codecs.get(k, "copy") != "copy":
            raise Unsupported(
                f"-c:{k} {out.codecs[k]}: subtitle/data conversion runs only in ffmpeg"
            )
    remote = _video(out, request, config, media, server, notes)
    remote = _keyframe_decode(first, out, config, media, server, notes) or remote
    if not request.encoder and out.url.lower().endswith((".jpg", ".jpeg")) and not out.pix_fmt:
        out.pix_fmt = "yuvj420p"  # the default mjpeg encoder wants full range, as ffmpeg picks
    _key_frames(out, media, first)
    return Plan(spec, remote, out.codecs.get("v"), notes)


def _video(
    out: OutputSpec,
    request: VideoRequest,
    config: MediaServerConfig,
    media: MediaInfo,
    server: str | None,
    notes: list[str],
) -> bool:
    """Pick the video encoder for the target and map the request to it; True when remote."""
    encoder = request.encoder
    if not encoder or out.no_video or encoder == "copy":
        if encoder:
            out.codecs["v"] = encoder
        return False
    remote_codec = config.remote_codec(encoder)
    if server is None or not remote_codec:
        out.codecs["v"] = _local_encoder(encoder, config, remote_codec)
        _local_video(out, request, out.codecs["v"])
        return False
    out.codecs["v"] = REMOTE_NAMES[remote_codec]
    out.remote = RemoteOptions(
        host=server,
        token=config.token,
        compression=config.compression,
        timeout_ms=config.timeout_ms,
    )
    _remote_video(out, request, config, media, remote_codec, notes)
    return True


#: Local encoders of still images (trickplay tiles, thumbnails).
IMAGE_ENCODERS = frozenset({"mjpeg", "png", "webp", "libwebp", "bmp"})


def _keyframe_decode(
    first: InputSpec,
    out: OutputSpec,
    config: MediaServerConfig,
    media: MediaInfo,
    server: str | None,
    notes: list[str],
) -> bool:
    """Trickplay and thumbnail lines (``-skip_frame nokey ... -c:v mjpeg``): the keyframes
    are decoded on the server, the images encoded here. True when the server decodes."""
    if server is None or not first.keyframes_only or out.codecs.get("v") not in IMAGE_ENCODERS:
        return False
    codec = media.codec if media.codec in REMOTE_NAMES else None
    if codec is None:
        notes.append(f"keyframes of {media.codec or 'this input'} are decoded here")
        return False
    first.video_codec = REMOTE_NAMES[codec]
    first.remote = RemoteOptions(
        host=server,
        token=config.token,
        compression=config.compression,
        timeout_ms=config.timeout_ms,
    )
    notes.append(f"keyframes decoded on {server}, images encoded here")
    return True


def _audio_codecs(out: OutputSpec, notes: list[str]) -> dict[str, str]:
    name = out.codecs.get("a")
    if name is None or name == "copy":
        return {}
    mapped = AUDIO_ENCODERS.get(name, name)
    if mapped not in av.codecs_available:
        raise Unsupported(f"audio encoder {name} is not available in PyAV's FFmpeg")
    if mapped != name:
        notes.append(f"audio encoder {name} runs as {mapped} here")
    return {"a": mapped}


def _local_encoder(name: str, config: MediaServerConfig, remote_codec: str | None) -> str:
    """The PyAV encoder for a name when no server takes the job (hardware names ->
    libx264/libx265/libsvtav1)."""
    hardware = bool(re.search(r"_(qsv|vaapi|nvenc|amf|videotoolbox|v4l2m2m|rkmpp|mf|omx)$", name))
    if not hardware and name in av.codecs_available:
        return name
    if config.fallback_encoder != "auto":
        return config.fallback_encoder
    codec = remote_codec or next((c for c in LOCAL_ENCODERS if name.startswith(c)), None)
    if codec is None or LOCAL_ENCODERS[codec] not in av.codecs_available:
        raise Unsupported(
            f"video encoder {name} is not available here and has no software counterpart"
        )
    return LOCAL_ENCODERS[codec]


def _segment_seconds(out: OutputSpec) -> float | None:
    """The segment length of an HLS / segment output (``-hls_time``, ``-segment_time``)."""
    if out.format not in ("hls", "segment", "ssegment"):
        return None
    return float(out.format_options.get("hls_time" if out.format == "hls" else "segment_time", "2"))


def _remote_video(
    out: OutputSpec,
    q: VideoRequest,
    config: MediaServerConfig,
    media: MediaInfo,
    remote_codec: str,
    notes: list[str],
) -> None:
    v = out.video
    qp: float | None = None
    for key in ("crf", "global_quality", "qp", "cq"):
        if q.qp.get(key):
            qp = float(q.qp[key])
    rate = q.bitrate if q.bitrate is not None else q.maxrate
    if config.rate_control == "quality" and qp is not None:
        v["global_quality"] = _quality_from_qp(qp)
    elif rate is not None:
        v["bitrate"] = rate
    elif q.qscale:
        v["global_quality"] = round(float(q.qscale) * 118)
        v["flags"] = 1 << 1
    if q.maxrate is not None:
        v["maxrate"] = q.maxrate
    preset = (q.preset or "").lower()
    if preset in FAST_PRESETS:
        v["prio_speed"] = 1
    elif preset in SLOW_PRESETS:
        v["prio_speed"] = 0
    if q.gop is not None:
        v["gop"] = q.gop
    else:
        fps = out.rate or media.rate or Fraction(25)
        v["gop"] = max(1, min(600, round(float(fps) * (_segment_seconds(out) or 10.0))))
    if q.bf is not None:
        v["max_b_frames"] = q.bf
    if (q.tune or "").lower() in LOW_LATENCY_TUNES:
        v["realtime"] = 1
    v.update(q.engine)
    _remote_profile_level(v, q, remote_codec, notes)
    if out.pix_fmt:
        mapped = _REMOTE_PIX_FMTS.get(out.pix_fmt)
        if mapped is None:
            raise Unsupported(f"-pix_fmt {out.pix_fmt} cannot be encoded remotely (nv12 or p010le)")
        out.pix_fmt = mapped if not (remote_codec == "h264" and mapped == "p010le") else "nv12"


_REMOTE_PIX_FMTS = {
    "yuv420p": "nv12",
    "yuvj420p": "nv12",
    "nv12": "nv12",
    "yuv420p10le": "p010le",
    "p010le": "p010le",
    "p010": "p010le",
}
_REMOTE_PROFILES = {
    "h264": ("baseline", "constrained_baseline", "main", "high"),
    "hevc": ("main", "main10"),
    "av1": ("main",),
}


def _remote_profile_level(
    v: dict[str, object], q: VideoRequest, remote_codec: str, notes: list[str]
) -> None:
    profile = (q.profile or "").lower()
    if profile and profile in _REMOTE_PROFILES.get(remote_codec, ()):
        v["profile"] = profile
    elif profile:
        notes.append(f"profile {profile} is left to the engine")
    level = q.level
    if level and remote_codec == "h264":
        try:
            n = float(level)
        except ValueError:
            notes.append(f"level {level} ignored")
        else:
            v["level"] = f"{n / 10:.1f}" if n >= 10 else f"{n:.1f}"


def _local_video(out: OutputSpec, q: VideoRequest, encoder: str) -> None:
    o = out.codec_options
    x26x = encoder in ("libx264", "libx265")
    if q.preset and x26x and q.preset.lower() in X26X_PRESETS:
        o["preset"] = q.preset
    elif x26x:
        o["preset"] = "veryfast"
    qp = next((q.qp[k] for k in ("crf", "global_quality", "qp", "cq") if q.qp.get(k)), None)
    if qp is not None and x26x:
        o["crf"] = qp
    if q.bitrate is not None and not (qp and x26x):
        o["b"] = str(q.bitrate)
    if q.maxrate is not None:
        o["maxrate"] = str(q.maxrate)
    if q.bufsize is not None:
        o["bufsize"] = q.bufsize
    if q.gop is not None:
        o["g"] = str(q.gop)
    if q.profile and x26x:
        o["profile"] = q.profile
    if encoder == "libx264" and q.x264_params:
        o["x264-params"] = q.x264_params
    if encoder == "libx265" and q.x265_params:
        o["x265-params"] = q.x265_params
    if x26x:
        o["sc_threshold"] = "0"
    if q.qscale and not x26x:
        # ffmpeg's -q:v: global_quality = q x FF_QP2LAMBDA with the QSCALE flag.
        o["global_quality"] = str(round(float(q.qscale) * 118))
        o["flags"] = "+qscale"
    if encoder == "mjpeg" and not out.pix_fmt:
        out.pix_fmt = "yuvj420p"  # full range, as ffmpeg picks for JPEG


def _key_frames(out: OutputSpec, media: MediaInfo, first: InputSpec) -> None:
    """Keyframes at every segment start: translate Jellyfin's expression, or force one every
    hls_time / segment_time from the run's first output time."""
    shift = media.start if out.copyts and not out.start_at_zero else 0.0
    end = media.duration + media.start if media.duration else None
    if out.force_key_frames:
        try:
            out.force_key_frames = _key_frame_times(out.force_key_frames, shift, end)
        except UsageError as e:
            raise Unsupported(str(e)) from e
    elif (every := _segment_seconds(out)) is not None:
        seek = first.seek if out.copyts else 0.0
        out.force_key_frames = _key_frame_times(
            f"expr:gte(t,{seek:g}+n_forced*{every:g})", shift, end
        )
