"""What media servers write on ffmpeg's command line, on top of the shared option table.

vtremote-ffmpeg reads each option of a Jellyfin/Emby line with the table of
:mod:`vtremote.pipeline.ffmpeg_options` (the one ``vtremote`` itself reads), with ffmpeg's
looser stream specifiers (``-codec:v:0`` is ``-c:v``). This module says, once, how the
media-server dialect differs:

* which options of the shared table it takes (:data:`TAKEN`), accepts and ignores
  (:data:`IGNORED_KEYS`) or leaves to vtremote's own command line (:data:`CLI_ONLY`), each
  with the reason;
* the options only media servers send (:data:`MEDIA_SERVER_OPTIONS`): demuxer and muxer
  options passed to FFmpeg, encoders' quality knobs the translator maps, spellings ffmpeg
  accepts that ``vtremote`` does not list, and what only a real ffmpeg can run;
* the options it accepts and ignores by name (:data:`IGNORED_INPUT`, :data:`IGNORED_OUTPUT`):
  hardware set-up (the pictures are software frames here), throttling, and encoder-private
  tuning the remote engine replaces.
"""

from __future__ import annotations

from typing import Literal

from vtremote.mediaserver.filters import Unsupported
from vtremote.pipeline.ffmpeg_options import BY_KEY, BY_SPELLING, OPTIONS, Occurrence, Option, find
from vtremote.pipeline.ffmpeg_options import setters as s
from vtremote.pipeline.ffmpeg_options.option import OutputSetter
from vtremote.pipeline.spec import OutputSpec

#: Options of the shared table that vtremote-ffmpeg takes from media servers as vtremote does.
TAKEN = frozenset(
    {
        "format",
        "codec",
        "seek",
        "duration",
        "to",
        "accurate_seek",
        "noaccurate_seek",
        "map",
        "vn",
        "an",
        "sn",
        "dn",
        "bitrate",
        "audio_bitrate",
        "maxrate",
        "bufsize",
        "gop",
        "bf",
        "profile",
        "level",
        "pix_fmt",
        "rate",
        "size",
        "vf",
        "frames",
        "force_key_frames",
        "global_quality",
        "qscale",
        "preset",
        "tune",
        "crf",
        "x264_params",
        "x265_params",
        "ar",
        "ac",
        "muxer_option",
        "copyts",
        "start_at_zero",
        "af",
        "video_tag",
        "framerate",
        "video_size",
        "overwrite",
        "no_overwrite",
        "loglevel",
        "nostats",
        "stats",
        "hide_banner",
        "nostdin",
        "realtime",
        "prio_speed",
        "spatial_aq",
        "a53cc",
        "constant_bit_rate",
        "re",
        "readrate",
        "readrate_initial_burst",
        "skip_frame",
    }
)
#: Options of the shared table that media servers send and vtremote-ffmpeg ignores, and why.
IGNORED_KEYS = {
    "threads": "thread counts of the hardware encoders media servers think they drive",
    "qmin": "QP bounds of a hardware encoder: the remote engine has its own rate control",
    "qmax": "QP bounds of a hardware encoder: the remote engine has its own rate control",
    "coder": "entropy coder of a hardware encoder: the remote engine picks it from the profile",
    "flags": "codec flags written for ffmpeg's encoders; the muxer asks for what it needs",
    "metadata": "the pipeline never copies container metadata",
    "allow_sw": "VideoToolbox tuning written for a local Mac: the server decides",
}
#: Options of the shared table that only vtremote's own command line takes, and why.
CLI_ONLY = {
    **{
        o.key: "servers, tokens and transports come from vtremote-ffmpeg's configuration file"
        for o in OPTIONS
        if o.key.startswith("vt_remote_")
    },
    "json": "vtremote's summary; a media server reads ffmpeg's progress lines",
    **dict.fromkeys(
        (
            "require_sw",
            "power_efficient",
            "max_ref_frames",
            "max_slice_bytes",
            "frames_before",
            "frames_after",
            "alpha_quality",
        ),
        "remote-engine settings no media server writes",
    ),
    **dict.fromkeys(
        ("color_range", "colorspace", "color_primaries", "color_trc"),
        "media servers tag colours with setparams in the filter chain",
    ),
}

#: Input options accepted and ignored: hardware decoding set-up, throttling, rotation, probing
#: hints the demuxer does not need. (The first set always takes a value.)
_IGNORED_INPUT_VALUES = frozenset(
    [
        "hwaccel",
        "hwaccel_output_format",
        "hwaccel_device",
        "hwaccel_flags",
        "init_hw_device",
        "filter_hw_device",
        "extra_hw_frames",
        "canvas_size",
    ]
)
IGNORED_INPUT = _IGNORED_INPUT_VALUES | frozenset(
    [
        "autorotate",
        "noautorotate",
        "seek_timestamp",
        "noautoscale",
        "autoscale",
        "readrate_catchup",
    ]
)
#: Output options accepted and ignored: what the pipeline does anyway (bitstream filters the
#: muxers insert themselves), queue sizes, hardware encoders' private tuning. (The first set
#: always takes a value.)
_IGNORED_OUTPUT_VALUES = frozenset(
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
        "disposition",
        "svtav1-params",
    ]
)
_RATE = (
    "rate-control detail of a hardware encoder: the engine's own rate control follows "
    "-b:v, -maxrate or the quality"
)
_DEVICE = "device set-up of a hardware encoder: the server picks its engine"
_GOP = "GOP detail of a hardware encoder: the engine follows -g, -bf and the forced keyframes"
_STREAM = "bitstream detail of a hardware encoder: the engine writes what the muxer needs"
_TUNING = "private tuning of a hardware encoder: the engine has its own"
_AUDIO = "an option of an audio encoder not run here: the local one keeps its defaults"
#: Encoder options media servers write for the hardware encoders (VAAPI, QSV, NVENC, AMF,
#: VideoToolbox) and audio encoders this machine lacks, accepted and ignored with one log line
#: each, and why. (Those the engine has a setting for are translated: -preset / -quality,
#: -tune ll, -sei, -spatial-aq, -realtime, -prio_speed, -qp / -cq.)
ENCODER_KNOBS: dict[str, str] = {
    **dict.fromkeys(
        (
            "rc_mode",
            "rc",
            "mbbrc",
            "extbrc",
            "rc_init_occupancy",
            "look_ahead",
            "look_ahead_depth",
            "rc-lookahead",
            "multipass",
            "2pass",
            "qvbr_quality_level",
            "vbaq",
            "preanalysis",
            "enforce_hrd",
            "filler_data",
            "frame_skipping",
            "i_qfactor",
            "b_qfactor",
            "qcomp",
            "aq-mode",
            "aq-strength",
            "temporal-aq",
            "temporal_aq",
            "zerolatency",
            "vbr",
        ),
        _RATE,
    ),
    **dict.fromkeys(
        ("low_power", "async_depth", "gpu", "delay", "surfaces", "usage", "scenario"), _DEVICE
    ),
    **dict.fromkeys(
        (
            "b_ref_mode",
            "b_strategy",
            "adaptive_i",
            "adaptive_b",
            "no-scenecut",
            "strict_gop",
            "forced-idr",
            "forced_idr",
            "idr_interval",
            "gops_per_idr",
            "refs",
            "subq",
        ),
        _GOP,
    ),
    **dict.fromkeys(
        ("aud", "header_insertion_mode", "tier", "bluray-compat", "deblock", "compression_level"),
        _STREAM,
    ),
    **dict.fromkeys(("cutoff", "afterburner", "aac_at_mode", "aac_at_quality"), _AUDIO),
}
IGNORED_OUTPUT = (
    _IGNORED_OUTPUT_VALUES
    | ENCODER_KNOBS.keys()
    | frozenset(["strict", "sample_fmt", "write_tmcd", "copyinkf", "shortest"])
)


#: Options of the shared table ignored with a log line: hardware encoders' own.
_NOTED_KEYS = frozenset({"allow_sw", "qmin", "qmax", "coder"})


def ignored_note(name: str, spec: str, written: str) -> str | None:
    """The log line for an encoder option accepted and ignored (None for the others)."""
    reason = ENCODER_KNOBS.get(name)
    if reason is None:
        option = find(name, spec, _SPELLINGS)
        if option is None or option.key not in _NOTED_KEYS:
            return None
        reason = IGNORED_KEYS[option.key]
    return f"{written} ignored: {reason}"


#: Of the options ignored, those that always take a value, even one starting with '-'
#: (``-map_metadata -1``); the others take the next token only when it looks like a value.
IGNORED_WITH_VALUES = (
    _IGNORED_INPUT_VALUES
    | _IGNORED_OUTPUT_VALUES
    | ENCODER_KNOBS.keys()
    | frozenset(["threads", "flags", "metadata"])
)


def _only_in_ffmpeg(what: str) -> OutputSetter:
    def refuse(out: OutputSpec, occ: Occurrence) -> None:
        raise Unsupported(what)

    return refuse


def _map_without_labels(out: OutputSpec, occ: Occurrence) -> None:
    if "[" in occ.value:
        raise Unsupported(f"-map {occ.value}: filter graph labels need -filter_complex")
    s.set_map(out, occ)


def _quality_text(out: OutputSpec, occ: Occurrence) -> None:
    """``-qp 23`` / ``-cq 28`` as written (the translator maps them with ``-crf``)."""
    out.codec_options[occ.spelling[1:].split(":", 1)[0]] = occ.value


def _sei(out: OutputSpec, occ: Occurrence) -> None:
    """VAAPI/QSV ``-sei -a53_cc`` (Jellyfin 10.10 on a new ffmpeg): no caption SEI."""
    flags = occ.value.replace(" ", "")
    if "-a53_cc" in flags:
        out.video["a53_cc"] = False
    elif "a53_cc" in flags:
        out.video["a53_cc"] = True


def _amf_quality(out: OutputSpec, occ: Occurrence) -> None:
    """AMF's ``-quality speed|balanced|quality``: the speed/quality balance -preset gives."""
    out.codec_options.setdefault("preset", occ.value)


FILTER_COMPLEX = "-filter_complex (subtitle burn-in, overlays) runs only in ffmpeg"

#: Options only media servers send (vtremote's command line does not take them).
MEDIA_SERVER_OPTIONS: tuple[Option, ...] = (
    Option(
        "demuxer_option",
        tuple(
            f"-{n}"
            for n in (
                "analyzeduration",
                "probesize",
                "fflags",
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
            )
        ),
        "in",
        "demuxer / protocol options passed to FFmpeg as they are (live TV over HTTP with a "
        "user agent, HLS inputs with extension rules)",
        input=s.demuxer_option(),
    ),
    Option(
        "more_muxer_options",
        tuple(
            f"-{n}"
            for n in (
                "hls_init_time",
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
            )
        ),
        "out",
        "muxer options of the segment muxers media servers use, passed to FFmpeg as they are",
        output=s.set_muxer_option,
    ),
    Option(
        "quality_qp",
        ("-qp", "-cq"),
        "out",
        "hardware encoders' constant QP / quality: mapped to the engine's quality",
        output=_quality_text,
    ),
    Option(
        "sei",
        ("-sei",),
        "out",
        "SEI messages of VAAPI/QSV encoders: -a53_cc drops caption SEI on the engine",
        output=_sei,
    ),
    Option(
        "amf_quality",
        ("-quality",),
        "out",
        "AMF's speed/quality balance: mapped as -preset",
        output=_amf_quality,
    ),
    Option(
        "filter_complex",
        ("-filter_complex", "-lavfi"),
        "out",
        "filter graphs with several inputs or outputs",
        output=_only_in_ffmpeg(FILTER_COMPLEX),
    ),
)
#: Spellings ffmpeg accepts for options of the shared table that ``vtremote`` does not list.
ALIASES = {
    "-dcodec": "codec",
    "-frames": "frames",
    "-tag": "video_tag",
    "-spatial-aq": "spatial_aq",
    "-a53_cc": "a53cc",
}
#: How the media-server dialect sets an option of the shared table differently.
OUTPUT_SETTERS: dict[str, OutputSetter] = {"map": _map_without_labels}
#: Options of the shared table taken at an input with a note instead of their effect.
INPUT_NOTES = {
    "codec": "input decoder {spelling} {value} ignored: decoding runs in software here or on the "
    "server"
}

_SPELLINGS = (
    BY_SPELLING
    | {n: o for o in MEDIA_SERVER_OPTIONS for n in o.names}
    | {n: BY_KEY[key] for n, key in ALIASES.items()}
)
IGNORE = Option("ignored", (), "both", "accepted and ignored")

Place = Literal["in", "out"]


def option_for(name: str, spec: str, place: Place) -> Option | None:
    """The option a media server's ``-NAME[:SPEC]`` is at ``place`` (:data:`IGNORE` for one
    accepted and ignored), or None when vtremote-ffmpeg cannot take it."""
    if name in IGNORED_INPUT or (place == "out" and name in IGNORED_OUTPUT):
        return IGNORE
    option = find(name, spec, _SPELLINGS)
    if option is None or option.key in CLI_ONLY:
        return None
    return IGNORE if option.key in IGNORED_KEYS else option


def value_names() -> frozenset[str]:
    """Names (no dash, no specifier) of the options vtremote-ffmpeg takes that take a value."""
    spellings = [
        n
        for n, o in _SPELLINGS.items()
        if not o.flag and not n.startswith("--") and o.key not in IGNORED_KEYS | CLI_ONLY.keys()
    ]
    return frozenset(n[1:].split(":", 1)[0] for n in spellings)


def flag_names() -> frozenset[str]:
    """Names of the options in these tables that take none."""
    return frozenset(n[1:] for n, o in _SPELLINGS.items() if o.flag and not n.startswith("--"))
