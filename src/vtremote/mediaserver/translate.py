"""A media server's ffmpeg command line -> a :class:`~vtremote.pipeline.spec.JobSpec`.

:func:`translate` builds the job for one *target*: a remote server (the video
encoders named in the configuration become ``*_videotoolbox_remote`` with the
quality mapped to what the engine has) or this machine (a PyAV encoder, for
when no server can take the job). Anything it cannot run faithfully raises
:class:`~vtremote.mediaserver.filters.Unsupported` with the reason, and the
command line goes to a real ffmpeg instead.

What is accepted and ignored, and why, is listed in :data:`IGNORED_INPUT` and
:data:`IGNORED_OUTPUT`: hardware set-up (the pictures are software frames
here), throttling, and encoder-private tuning the remote engine replaces.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

import av
import av.error

from vtremote.errors import UsageError
from vtremote.mediaserver.argv import Command, FileArgs, Opt, strip_file_url
from vtremote.mediaserver.config import MediaServerConfig
from vtremote.mediaserver.filters import (
    Geometry,
    Unsupported,
    translate_audio_chain,
    translate_chain,
)
from vtremote.pipeline.spec import InputSpec, JobSpec, MapSpec, OutputSpec, RemoteOptions
from vtremote.pipeline.values import parse_bitrate, parse_rate, parse_size, parse_time

log = logging.getLogger(__name__)

REMOTE_NAMES = {"h264": "h264_videotoolbox_remote", "hevc": "hevc_videotoolbox_remote"}

#: Input options accepted and ignored: hardware decoding set-up, throttling, rotation, probing hints
#: the demuxer does not need.
IGNORED_INPUT = frozenset(
    [
        "hwaccel",
        "hwaccel_output_format",
        "hwaccel_device",
        "hwaccel_flags",
        "init_hw_device",
        "filter_hw_device",
        "extra_hw_frames",
        "noaccurate_seek",
        "accurate_seek",
        "autorotate",
        "noautorotate",
        "canvas_size",
        "readrate",
        "re",
        "threads",
        "seek_timestamp",
        "noautoscale",
        "autoscale",
        "copyts",
        "start_at_zero",
        "readrate_initial_burst",
        "readrate_catchup",
    ]
)
#: Output options accepted and ignored: what the pipeline does anyway (bitstream filters the
#: muxers insert themselves, metadata it never copies), queue sizes, hardware encoders' private tuning.
IGNORED_OUTPUT = frozenset(
    [
        "map_metadata",
        "map_chapters",
        "max_muxing_queue_size",
        "vsync",
        "fps_mode",
        "bsf",
        "vbsf",
        "absf",
        "sc_threshold",
        "keyint_min",
        "threads",
        "noautoscale",
        "autoscale",
        "mbbrc",
        "rc_init_occupancy",
        "look_ahead",
        "look_ahead_depth",
        "async_depth",
        "low_power",
        "rc_mode",
        "rc",
        "b_ref_mode",
        "spatial-aq",
        "spatial_aq",
        "temporal-aq",
        "multipass",
        "cq",
        "qmin",
        "qmax",
        "coder",
        "tier",
        "strict",
        "metadata",
        "disposition",
        "sample_fmt",
        "cutoff",
        "write_tmcd",
        "extra_hw_frames",
        "allow_sw",
        "prio_speed",
        "realtime",
        "forced-idr",
        "forced_idr",
        "idr_interval",
        "compression_level",
        "quality",
        "usage",
        "profile:a",
        "level:a",
        "noautorotate",
        "autorotate",
        "flags",
        "i_qfactor",
        "b_qfactor",
        "qcomp",
        "subq",
        "refs",
        "aq-mode",
        "aq-strength",
        "deblock",
        "bluray-compat",
        "hwaccel_flags",
        "copyinkf",
        "shortest",
        "vbr",
        "afterburner",
        "profile:a",
    ]
)
#: Input options that are demuxer / protocol options, passed to FFmpeg as they are (live TV
#: inputs come over HTTP with a user agent, HLS inputs with extension rules).
DEMUXER_OPTIONS = frozenset(
    [
        "analyzeduration",
        "probesize",
        "fflags",
        "framerate",
        "video_size",
        "pixel_format",
        "sample_rate",
        "channels",
        "user_agent",
        "headers",
        "reconnect",
        "reconnect_streamed",
        "reconnect_on_network_error",
        "reconnect_delay_max",
        "rw_timeout",
        "timeout",
        "allowed_extensions",
        "allowed_segment_extensions",
        "extension_picky",
        "fpsprobesize",
        "max_reload",
        "live_start_index",
        "http_persistent",
        "seekable",
    ]
)
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
#: Muxer options passed on to FFmpeg as they are.
MUXER_OPTIONS = frozenset(
    [
        "hls_time",
        "hls_segment_type",
        "hls_fmp4_init_filename",
        "start_number",
        "hls_segment_filename",
        "hls_playlist_type",
        "hls_list_size",
        "hls_base_url",
        "hls_segment_options",
        "hls_flags",
        "hls_init_time",
        "avoid_negative_ts",
        "max_delay",
        "movflags",
        "hls_allow_cache",
        "hls_start_number_source",
        "frag_duration",
        "min_frag_duration",
        "segment_time",
        "segment_format",
        "segment_list",
        "segment_list_type",
        "segment_start_number",
        "segment_time_delta",
        "individual_header_trailer",
        "break_non_keyframes",
        "reset_timestamps",
        "segment_list_flags",
        "segment_list_size",
        "segment_wrap",
        "segment_list_entry_prefix",
    ]
)


@dataclass(frozen=True)
class MediaInfo:
    """What the translator needs to know of the main video input (read from its header)."""

    width: int = 0
    height: int = 0
    sar: float = 1.0
    rate: Fraction | None = None
    duration: float | None = None
    start: float = 0.0
    codec: str | None = None
    bits: int = 8


def probe_media(url: str, fmt: str | None, options: dict[str, str]) -> MediaInfo:
    """Open the input's header with PyAV; an input that does not open gives an empty MediaInfo
    (the job itself will then say why). Network inputs (live TV) are opened with a timeout."""
    try:
        container = av.open(
            url, format=fmt, options=options or None, timeout=10.0 if "://" in url else None
        )
    except (av.error.FFmpegError, ValueError, OSError):
        return MediaInfo()
    try:
        streams = [
            s
            for s in container.streams.video
            if not (s.disposition & av.stream.Disposition.attached_pic)
        ]
        duration = container.duration / 1_000_000 if container.duration else None
        start = container.start_time / 1_000_000 if container.start_time else 0.0
        if not streams:
            return MediaInfo(duration=duration, start=start)
        s = streams[0]
        ctx = s.codec_context
        sar = ctx.sample_aspect_ratio
        fmt_obj = ctx.format
        bits = max((c.bits for c in fmt_obj.components), default=8) if fmt_obj is not None else 8
        return MediaInfo(
            ctx.width,
            ctx.height,
            float(sar) if sar else 1.0,
            s.average_rate or s.guessed_rate or None,
            duration,
            start,
            ctx.name,
            bits,
        )
    finally:
        container.close()


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
    SHIFT+OFFSET, SHIFT+OFFSET+N, ... to the end of the input; other forms are returned unchanged.

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


def _stream_kind(opt: Opt, default: str = "*") -> str:
    if opt.name == "vcodec":
        return "v"
    if opt.name == "acodec":
        return "a"
    if opt.name in ("scodec",):
        return "s"
    if opt.name == "dcodec":
        return "d"
    return opt.spec.split(":")[0] if opt.spec else default


def input_spec(f: FileArgs, notes: list[str]) -> InputSpec:
    spec = InputSpec(strip_file_url(f.url))
    for o in f.options:
        v = o.value or ""
        if o.name == "f":
            spec.format = v
        elif o.name == "ss":
            spec.seek = parse_time(v, "-ss")
        elif o.name == "t":
            spec.duration = parse_time(v, "-t")
        elif o.name in DEMUXER_OPTIONS:
            spec.options[o.name] = v
        elif o.name == "r":
            spec.options["framerate"] = str(parse_rate(v))
        elif o.name in ("c", "codec", "vcodec", "acodec"):
            notes.append(
                f"input decoder {o.raw} {v} ignored: decoding runs in software here or on the server"
            )
        elif o.name in IGNORED_INPUT:
            continue
        else:
            raise Unsupported(f"input option {o} is not supported")
    return spec


def translate(
    cmd: Command, config: MediaServerConfig, *, server: str | None, media: MediaInfo | None = None
) -> Plan:
    """The job for ``server`` (``None``: a local PyAV encoder). Raises Unsupported or UsageError."""
    if not cmd.inputs:
        raise Unsupported("no input")
    if len(cmd.outputs) != 1:
        raise Unsupported(f"{len(cmd.outputs)} outputs: vtremote writes exactly one")
    if cmd.has_global("filter_complex", "lavfi") or any(
        f.has("filter_complex", "lavfi") for f in cmd.outputs
    ):
        raise Unsupported("-filter_complex (subtitle burn-in, overlays) runs only in ffmpeg")
    notes: list[str] = []
    inputs = [input_spec(f, notes) for f in cmd.inputs]
    first = inputs[0]
    if media is None:
        media = probe_media(first.url, first.format, first.options)
    out_args = cmd.outputs[0]
    out = OutputSpec(strip_file_url(out_args.url))
    spec = JobSpec(inputs, out, loglevel="warning")
    overwrite = cmd.global_value("y")
    spec.overwrite = True if overwrite is not None else (False if cmd.has_global("n") else None)

    video_encoder: str | None = None
    quality: dict[str, str] = {}
    local_opts: dict[str, str] = {}
    vf: str | None = None
    for o in out_args.options:
        v = o.value or ""
        name = o.name
        kind = _stream_kind(o)
        if name in ("c", "codec", "vcodec", "acodec", "scodec", "dcodec"):
            kinds = ("v", "a", "s") if kind == "*" else (kind,)
            for k in kinds:
                if k == "v":
                    video_encoder = v
                elif k == "a":
                    out.codecs["a"] = v
                elif k == "s":
                    out.codecs["s"] = v
                else:
                    out.codecs[k] = v
        elif name == "map":
            if v.startswith("[") or "[" in v:
                raise Unsupported(f"-map {v}: filter graph labels need -filter_complex")
            out.maps.append(MapSpec.parse(v))
        elif name == "f":
            out.format = v
        elif name in ("vn", "an", "sn", "dn"):
            setattr(
                out,
                {"vn": "no_video", "an": "no_audio", "sn": "no_subtitles", "dn": "no_data"}[name],
                True,
            )
        elif name == "ss":
            out.seek = parse_time(v, "-ss")
        elif name == "t":
            out.duration = parse_time(v, "-t")
        elif name == "to":
            raise Unsupported("-to is not supported")
        elif name in ("frames", "vframes") and kind in ("v", "*"):
            out.max_frames = int(v)
        elif name in ("vf",) or (name == "filter" and kind == "v"):
            vf = v
        elif name == "af" or (name == "filter" and kind == "a"):
            out.audio_filter = translate_audio_chain(v)
        elif name in ("b", "vb", "ab") and (name == "ab" or kind == "a"):
            out.audio_bitrate = parse_bitrate(v)
        elif name in ("b", "vb"):
            quality["bitrate"] = v
        elif name in ("maxrate", "bufsize", "crf", "global_quality", "qp", "preset", "tune", "cq"):
            quality[name] = v
        elif name in ("q", "qscale") and kind in ("v", "*"):
            quality["qscale"] = v
        elif name == "g":
            quality["gop"] = v
        elif name == "bf":
            quality["bf"] = v
        elif (name == "profile" and kind in ("v", "*")) or name == "vprofile":
            quality["profile"] = v
        elif name == "level" and kind in ("v", "*"):
            quality["level"] = v
        elif name in ("x264opts", "x264-params"):
            local_opts["x264-params"] = v
        elif name == "x265-params":
            local_opts["x265-params"] = v
        elif name == "pix_fmt":
            out.pix_fmt = v
        elif name == "r" and kind in ("v", "*"):
            out.rate = parse_rate(v)
        elif name == "s" and kind in ("v", "*"):
            out.size = parse_size(v)
        elif name == "force_key_frames":
            out.force_key_frames = v
        elif name in ("tag", "vtag") and kind in ("v", "*"):
            out.video_tag = v
        elif name == "ac":
            out.audio_channels = int(v)
        elif name == "ar":
            out.audio_rate = int(v)
        elif name == "copyts":
            out.copyts = True
        elif name == "start_at_zero":
            out.start_at_zero = True
        elif name in MUXER_OPTIONS:
            out.format_options[name] = v
        elif name in IGNORED_OUTPUT or name in IGNORED_INPUT:
            continue
        elif name in ("y", "n"):
            spec.overwrite = name == "y"
        else:
            raise Unsupported(f"output option {o} is not supported")

    # Global in ffmpeg wherever they stand on the line.
    out.copyts = out.copyts or cmd.has_global("copyts")
    out.start_at_zero = out.start_at_zero or cmd.has_global("start_at_zero")
    if out.format == "hls" or (out.format is None and out.url.endswith(".m3u8")):
        out.format = "hls"
    # A media server reads the output while it is written: no temporary name.
    out.in_place = True
    out.keep_partial = config.keep_partial
    geo = Geometry(media.width, media.height, media.sar) if media.width and media.height else None
    chain = translate_chain(vf, geo)
    notes += chain.notes
    out.video_filter = chain.chain
    out.codecs.update({k: v for k, v in _audio_codecs(out).items()})
    for k in ("s", "d"):
        if out.codecs.get(k, "copy") != "copy":
            raise Unsupported(
                f"-c:{k} {out.codecs[k]}: subtitle/data conversion runs only in ffmpeg"
            )

    remote = False
    if video_encoder and video_encoder != "copy" and not out.no_video:
        remote_codec = config.remote_codec(video_encoder)
        if server is not None and remote_codec:
            remote = True
            out.codecs["v"] = REMOTE_NAMES[remote_codec]
            out.remote = RemoteOptions(
                host=server,
                token=config.token,
                compression=config.compression,
                timeout_ms=config.timeout_ms,
            )
            _remote_video(out, quality, config, media, remote_codec, notes)
        else:
            out.codecs["v"] = _local_encoder(video_encoder, config, remote_codec)
            _local_video(out, quality, local_opts, out.codecs["v"])
    elif video_encoder:
        out.codecs["v"] = video_encoder
    if not video_encoder and out.url.lower().endswith((".jpg", ".jpeg")) and not out.pix_fmt:
        out.pix_fmt = "yuvj420p"  # the default mjpeg encoder wants full range, as ffmpeg picks
    _key_frames(out, media, inputs[0])
    return Plan(spec, remote, out.codecs.get("v"), notes)


def _audio_codecs(out: OutputSpec) -> dict[str, str]:
    name = out.codecs.get("a")
    if name is None or name == "copy":
        return {}
    mapped = AUDIO_ENCODERS.get(name, name)
    if mapped not in av.codecs_available:
        raise Unsupported(f"audio encoder {name} is not available in PyAV's FFmpeg")
    return {"a": mapped}


def _local_encoder(name: str, config: MediaServerConfig, remote_codec: str | None) -> str:
    """The PyAV encoder for a name when no server takes the job (hardware names -> libx264/libx265)."""
    hardware = bool(re.search(r"_(qsv|vaapi|nvenc|amf|videotoolbox|v4l2m2m|rkmpp|mf|omx)$", name))
    if not hardware and name in av.codecs_available:
        return name
    if config.fallback_encoder != "auto":
        return config.fallback_encoder
    codec = remote_codec or (
        "hevc" if name.startswith("hevc") else "h264" if name.startswith("h264") else None
    )
    if codec is None:
        raise Unsupported(
            f"video encoder {name} is not available here and has no software counterpart"
        )
    return "libx265" if codec == "hevc" else "libx264"


def _remote_video(
    out: OutputSpec,
    q: dict[str, str],
    config: MediaServerConfig,
    media: MediaInfo,
    remote_codec: str,
    notes: list[str],
) -> None:
    v = out.video
    qp: float | None = None
    for key in ("crf", "global_quality", "qp", "cq"):
        if q.get(key):
            qp = float(q[key])
    if config.rate_control == "quality" and qp is not None:
        v["global_quality"] = _quality_from_qp(qp)
        if q.get("maxrate"):
            v["maxrate"] = parse_bitrate(q["maxrate"])
    else:
        rate = q.get("bitrate") or q.get("maxrate")
        if rate:
            v["bitrate"] = parse_bitrate(rate)
        if q.get("maxrate"):
            v["maxrate"] = parse_bitrate(q["maxrate"])
        if not rate and q.get("qscale"):
            v["global_quality"] = round(float(q["qscale"]) * 118)
            v["flags"] = 1 << 1
    preset = (q.get("preset") or "").lower()
    if preset in FAST_PRESETS:
        v["prio_speed"] = 1
    elif preset in SLOW_PRESETS:
        v["prio_speed"] = 0
    if q.get("gop"):
        v["gop"] = int(q["gop"])
    else:
        fps = out.rate or media.rate or Fraction(25)
        seconds = (
            float(
                out.format_options.get("hls_time" if out.format == "hls" else "segment_time", "2")
            )
            if out.format in ("hls", "segment", "ssegment")
            else 10.0
        )
        v["gop"] = max(1, min(600, round(float(fps) * seconds)))
    if q.get("bf"):
        v["max_b_frames"] = int(q["bf"])
    profile = (q.get("profile") or "").lower()
    if profile:
        if (
            remote_codec == "h264"
            and profile in ("baseline", "constrained_baseline", "main", "high")
            or remote_codec == "hevc"
            and profile in ("main", "main10")
        ):
            v["profile"] = profile
        else:
            notes.append(f"profile {profile} is left to the engine")
    level = q.get("level")
    if level and remote_codec == "h264":
        try:
            n = float(level)
        except ValueError:
            notes.append(f"level {level} ignored")
        else:
            v["level"] = f"{n / 10:.1f}" if n >= 10 else f"{n:.1f}"
    if out.pix_fmt:
        mapped = {
            "yuv420p": "nv12",
            "yuvj420p": "nv12",
            "nv12": "nv12",
            "yuv420p10le": "p010le",
            "p010le": "p010le",
            "p010": "p010le",
        }.get(out.pix_fmt)
        if mapped is None:
            raise Unsupported(f"-pix_fmt {out.pix_fmt} cannot be encoded remotely (nv12 or p010le)")
        out.pix_fmt = mapped if not (remote_codec == "h264" and mapped == "p010le") else "nv12"


def _local_video(
    out: OutputSpec, q: dict[str, str], local_opts: dict[str, str], encoder: str
) -> None:
    o = out.codec_options
    x26x = encoder in ("libx264", "libx265")
    if q.get("preset") and (
        x26x and q["preset"].lower() in FAST_PRESETS | SLOW_PRESETS | {"medium"}
    ):
        o["preset"] = q["preset"] if not q["preset"].startswith("p") else "veryfast"
    elif x26x:
        o["preset"] = "veryfast"
    qp = next((q[k] for k in ("crf", "global_quality", "qp", "cq") if q.get(k)), None)
    if qp is not None and x26x:
        o["crf"] = qp
    if q.get("bitrate") and not (qp and x26x):
        o["b"] = str(parse_bitrate(q["bitrate"]))
    for key in ("maxrate", "bufsize"):
        if q.get(key):
            o[key] = str(parse_bitrate(q[key]))
    if q.get("gop"):
        o["g"] = q["gop"]
    if q.get("profile") and x26x:
        o["profile"] = q["profile"]
    if encoder == "libx264" and local_opts.get("x264-params"):
        o["x264-params"] = local_opts["x264-params"]
    if encoder == "libx265" and local_opts.get("x265-params"):
        o["x265-params"] = local_opts["x265-params"]
    if x26x:
        o["sc_threshold"] = "0"
    if q.get("qscale") and not x26x:
        # ffmpeg's -q:v: global_quality = q x FF_QP2LAMBDA with the QSCALE flag.
        o["global_quality"] = str(round(float(q["qscale"]) * 118))
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
        if (
            out.force_key_frames
            and out.force_key_frames.startswith("expr:")
            and "n_forced" not in out.force_key_frames
        ):
            raise Unsupported(
                f"-force_key_frames {out.force_key_frames}: only gte(t,[OFFSET+]n_forced*N) is supported"
            )
    elif out.format in ("hls", "segment", "ssegment"):
        every = float(
            out.format_options.get("hls_time" if out.format == "hls" else "segment_time", "2")
        )
        seek = first.seek if out.copyts else 0.0
        out.force_key_frames = _key_frame_times(
            f"expr:gte(t,{seek:g}+n_forced*{every:g})", shift, end
        )
