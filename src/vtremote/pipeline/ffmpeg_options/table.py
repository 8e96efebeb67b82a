"""The ffmpeg options vtremote understands: each one once, with its spellings, place and setters.

An :class:`Option` says how ffmpeg spells it (aliases and stream specifiers: ``-c:v``,
``-vcodec``), whether it takes a value, where it may stand (before an ``-i``: that input; after
the last one: the output; anywhere: the whole job), its help text, and what it sets in the typed
job (:mod:`.setters`). Both front ends read their command lines with this table: ``vtremote``
(:mod:`vtremote.cli.options`, these spellings exactly) and ``vtremote-ffmpeg``
(:mod:`vtremote.mediaserver.dialect`, with ffmpeg's looser stream specifiers and the media
servers' own options on top).
"""

from __future__ import annotations

from vtremote.pipeline.ffmpeg_options import remote as r
from vtremote.pipeline.ffmpeg_options import setters as s
from vtremote.pipeline.ffmpeg_options.option import Option, Where, stream_of
from vtremote.pipeline.values import (
    COLOR_PRIMARIES,
    COLOR_RANGES,
    COLOR_SPACES,
    COLOR_TRCS,
    parse_bitrate,
)


def _remote(key: str, help_text: str, where: Where = "both") -> Option:
    return Option(
        key,
        (f"-{key}",),
        where,
        help_text,
        input=r.remote_of_input(key) if where == "both" else None,
        output=r.remote_of_output(key),
    )


def _switch(key: str, name: str, help_text: str, sets: tuple[str, bool] | None = None) -> Option:
    """A job-wide option without a value; ``sets`` is the JobSpec field and the value it sets."""
    job = r.job_field(*sets) if sets else None
    return Option(key, (name,), "global", help_text, flag=True, job=job)


def _video_flag(key: str, help_text: str) -> Option:
    return Option(key, (f"-{key}",), "out", help_text, output=s.video_bool(key))


def _video_number(key: str, help_text: str) -> Option:
    return Option(key, (f"-{key}",), "out", help_text, output=s.video_int(key))


_CODEC_NAMES = (
    "-c",
    "-codec",
    "-c:v",
    "-codec:v",
    "-vcodec",
    "-c:a",
    "-codec:a",
    "-acodec",
    "-c:s",
    "-codec:s",
    "-scodec",
    "-c:d",
)
_MUXER_NAMES = (
    "-hls_time",
    "-hls_segment_type",
    "-hls_segment_filename",
    "-hls_fmp4_init_filename",
    "-hls_playlist_type",
    "-hls_list_size",
    "-hls_base_url",
    "-hls_flags",
    "-hls_segment_options",
    "-start_number",
    "-movflags",
    "-avoid_negative_ts",
    "-max_delay",
)

#: Every option, in the order ``vtremote -h`` lists them.
OPTIONS: tuple[Option, ...] = (
    Option(
        "format",
        ("-f",),
        "both",
        "container format (lavfi for filter sources, null for no output)",
        input=s.set_input_format,
        output=s.output_field("format"),
    ),
    Option(
        "codec",
        _CODEC_NAMES,
        "both",
        "codec: h264_videotoolbox_remote / hevc_videotoolbox_remote, a local PyAV codec, or copy",
        input=s.set_input_codec,
        output=s.set_output_codec,
    ),
    Option(
        "seek",
        ("-ss",),
        "both",
        "start time (before -i: seek the input; after: discard output until then)",
        input=s.set_input_time("seek"),
        output=s.set_time("seek"),
    ),
    Option(
        "duration",
        ("-t",),
        "both",
        "duration to read / write",
        input=s.set_input_time("duration"),
        output=s.set_time("duration"),
    ),
    Option(
        "to",
        ("-to",),
        "both",
        "end time (before -i: on the input's clock; after: in output time); -t wins",
        input=s.set_input_time("to"),
        output=s.set_time("to"),
    ),
    Option(
        "accurate_seek",
        ("-accurate_seek",),
        "in",
        "-ss before -i starts at the first frame at that time (the default)",
        flag=True,
        input=s.input_switch("accurate_seek", True),
    ),
    Option(
        "noaccurate_seek",
        ("-noaccurate_seek",),
        "in",
        "-ss before -i starts video at the keyframe at or before that time",
        flag=True,
        input=s.input_switch("accurate_seek", False),
    ),
    Option("map", ("-map",), "out", "stream selection, e.g. 0:v:0, 0:a, 0:s?", output=s.set_map),
    Option("vn", ("-vn",), "out", "no video", flag=True, output=s.output_switch("no_video")),
    Option("an", ("-an",), "out", "no audio", flag=True, output=s.output_switch("no_audio")),
    Option(
        "sn", ("-sn",), "out", "no subtitles", flag=True, output=s.output_switch("no_subtitles")
    ),
    Option("dn", ("-dn",), "out", "no data streams", flag=True, output=s.output_switch("no_data")),
    Option(
        "bitrate",
        ("-b:v", "-b", "-vb"),
        "out",
        "video bitrate, e.g. 6000k",
        stream="v",
        output=s.video_bitrate("bitrate", "b"),
    ),
    Option(
        "audio_bitrate",
        ("-b:a", "-ab"),
        "out",
        "audio bitrate for a local audio encoder",
        stream="a",
        output=s.output_field("audio_bitrate", parse_bitrate),
    ),
    Option(
        "maxrate",
        ("-maxrate", "-maxrate:v"),
        "out",
        "maximum video bitrate",
        output=s.video_bitrate("maxrate", "maxrate"),
    ),
    Option(
        "bufsize",
        ("-bufsize", "-bufsize:v"),
        "out",
        "rate-control buffer (local encoders)",
        output=s.codec_option("bufsize", parse_bitrate),
    ),
    Option(
        "gop", ("-g", "-g:v"), "out", "keyframe interval in frames", output=s.video_int("gop", "g")
    ),
    Option(
        "bf", ("-bf", "-bf:v"), "out", "maximum B-frames", output=s.video_int("max_b_frames", "bf")
    ),
    Option(
        "profile",
        ("-profile:v", "-profile", "-vprofile"),
        "out",
        "codec profile (baseline, main, high, main10...)",
        stream="v",
        output=s.video_text("profile"),
    ),
    Option(
        "level",
        ("-level", "-level:v"),
        "out",
        "codec level, e.g. 4.1",
        stream="v",
        output=s.video_text("level"),
    ),
    Option(
        "pix_fmt",
        ("-pix_fmt", "-pix_fmt:v"),
        "out",
        "pixel format (nv12 / p010le for remote encoders)",
        output=s.output_field("pix_fmt"),
    ),
    Option(
        "rate",
        ("-r", "-r:v"),
        "both",
        "frame rate (before -i: of a raw input, as -framerate)",
        stream="v",
        input=s.set_input_rate,
        output=s.set_rate,
    ),
    Option("size", ("-s", "-s:v"), "out", "output frame size WxH", stream="v", output=s.set_size),
    Option(
        "vf",
        ("-vf", "-filter:v"),
        "out",
        "video filter chain (PyAV filter graph)",
        output=s.output_field("video_filter"),
    ),
    Option(
        "frames",
        ("-frames:v", "-vframes"),
        "out",
        "stop after this many video frames",
        stream="v",
        output=s.set_frames,
    ),
    Option(
        "force_key_frames",
        ("-force_key_frames", "-force_key_frames:v"),
        "out",
        "forced keyframes: times 0,2.5,10 or an ffmpeg expression expr:gte(t,n_forced*N)",
        output=s.set_force_key_frames,
    ),
    Option(
        "realtime",
        ("-realtime",),
        "out",
        "remote encoder real-time mode (0/1)",
        output=s.set_realtime,
    ),
    Option(
        "global_quality",
        ("-global_quality", "-global_quality:v"),
        "out",
        "constant quality",
        output=s.video_int("global_quality", "global_quality", raw=True),
    ),
    Option(
        "qscale",
        ("-q:v", "-qscale:v", "-q", "-qscale"),
        "out",
        "quality scale (global_quality = N x 118)",
        stream="v",
        output=s.set_qscale,
    ),
    Option("qmin", ("-qmin",), "out", "minimum QP", output=s.video_int("qmin", "qmin", raw=True)),
    Option("qmax", ("-qmax",), "out", "maximum QP", output=s.video_int("qmax", "qmax", raw=True)),
    Option(
        "coder",
        ("-coder", "-entropy"),
        "out",
        "H.264 entropy coder: auto, cavlc, cabac",
        output=s.set_coder,
    ),
    Option(
        "a53cc",
        ("-a53cc",),
        "out",
        "keep A53 captions (0/1)",
        output=s.video_bool("a53_cc"),
    ),
    _video_flag("allow_sw", "let the server fall back to a software encoder (0/1)"),
    _video_flag("require_sw", "ask the server for a software encoder (0/1)"),
    _video_number("prio_speed", "prioritise speed over quality (0/1)"),
    _video_number("power_efficient", "power-efficient mode (0/1)"),
    _video_number("spatial_aq", "spatial adaptive quantisation (0/1)"),
    _video_number("max_ref_frames", "maximum reference frames"),
    _video_number("max_slice_bytes", "H.264 maximum slice size"),
    _video_flag("constant_bit_rate", "constant bitrate mode (0/1)"),
    _video_flag("frames_before", "encoder hint: more frames before the first (0/1)"),
    _video_flag("frames_after", "encoder hint: more frames after the last (0/1)"),
    Option(
        "alpha_quality",
        ("-alpha_quality",),
        "out",
        "HEVC alpha quality 0..1",
        output=s.set_alpha_quality,
    ),
    Option(
        "color_range",
        ("-color_range",),
        "out",
        "colour range tag (tv, pc)",
        output=s.video_enum("color_range", COLOR_RANGES),
    ),
    Option(
        "colorspace",
        ("-colorspace",),
        "out",
        "colour matrix tag (bt709, bt2020nc...)",
        output=s.video_enum("colorspace", COLOR_SPACES),
    ),
    Option(
        "color_primaries",
        ("-color_primaries",),
        "out",
        "colour primaries tag",
        output=s.video_enum("color_primaries", COLOR_PRIMARIES),
    ),
    Option(
        "color_trc",
        ("-color_trc",),
        "out",
        "transfer characteristics tag",
        output=s.video_enum("color_trc", COLOR_TRCS),
    ),
    Option(
        "flags",
        ("-flags", "-flags:v"),
        "out",
        "codec flags: +global_header, +low_delay, +cgop",
        output=s.set_flags,
    ),
    Option(
        "preset",
        ("-preset", "-preset:v"),
        "out",
        "local encoder preset (passed to PyAV)",
        output=s.codec_option("preset"),
    ),
    Option(
        "tune", ("-tune", "-tune:v"), "out", "local encoder tune", output=s.codec_option("tune")
    ),
    Option("crf", ("-crf", "-crf:v"), "out", "local encoder CRF", output=s.codec_option("crf")),
    Option(
        "x264_params",
        ("-x264-params", "-x264opts"),
        "out",
        "libx264 options",
        output=s.codec_option("x264-params"),
    ),
    Option(
        "x265_params",
        ("-x265-params",),
        "out",
        "libx265 options",
        output=s.codec_option("x265-params"),
    ),
    Option(
        "threads",
        ("-threads",),
        "both",
        "codec threads for local codecs",
        input=s.demuxer_option(),
        output=s.codec_option("threads"),
    ),
    Option(
        "ar",
        ("-ar", "-ar:a"),
        "out",
        "audio sample rate for a local audio encoder",
        output=s.set_audio_int("audio_rate"),
    ),
    Option(
        "ac",
        ("-ac", "-ac:a"),
        "out",
        "audio channels for a local audio encoder",
        output=s.set_audio_int("audio_channels"),
    ),
    Option(
        "metadata", ("-metadata",), "out", "container metadata KEY=VALUE", output=s.set_metadata
    ),
    Option(
        "muxer_option",
        _MUXER_NAMES,
        "out",
        "muxer options passed to FFmpeg (HLS: -f hls -hls_time 4 ...; MP4: -movflags)",
        output=s.set_muxer_option,
    ),
    Option(
        "copyts",
        ("-copyts",),
        "out",
        "keep the input's timestamps",
        flag=True,
        output=s.output_switch("copyts"),
    ),
    Option(
        "start_at_zero",
        ("-start_at_zero",),
        "out",
        "with -copyts, shift so the input starts at 0",
        flag=True,
        output=s.output_switch("start_at_zero"),
    ),
    Option(
        "af",
        ("-af", "-filter:a"),
        "out",
        "audio filter chain for re-encoded audio (volume=2 ...)",
        output=s.output_field("audio_filter"),
    ),
    Option(
        "video_tag",
        ("-tag:v", "-vtag"),
        "out",
        "video codec tag in the container (hvc1, avc1)",
        stream="v",
        output=s.output_field("video_tag"),
    ),
    Option(
        "framerate",
        ("-framerate",),
        "in",
        "demuxer option: input frame rate",
        input=s.demuxer_option(),
    ),
    Option(
        "video_size",
        ("-video_size",),
        "in",
        "demuxer option: input frame size",
        input=s.demuxer_option(),
    ),
    Option(
        "re",
        ("-re",),
        "in",
        "read the input at its own speed (live inputs, streaming): -readrate 1",
        flag=True,
        input=s.set_read_rate,
    ),
    Option(
        "readrate",
        ("-readrate",),
        "in",
        "read the input at N x its own speed (0: as fast as possible)",
        input=s.set_read_rate,
    ),
    Option(
        "readrate_initial_burst",
        ("-readrate_initial_burst",),
        "in",
        "seconds of the input read at full speed before -re / -readrate apply (0.5)",
        input=s.set_read_burst,
    ),
    Option(
        "skip_frame",
        ("-skip_frame", "-skip_frame:v"),
        "in",
        "nokey: decode only the keyframes (thumbnails)",
        input=s.set_skip_frame,
    ),
    _remote(
        "vt_remote_host",
        "server HOST:PORT, a list A:P,B:P, a pool name from the config file, or mdns "
        "(default: an embedded server on 127.0.0.1)",
    ),
    _remote(
        "vt_remote_fallback",
        "when no server can be had: local (encode here with libx264/libx265) or none",
    ),
    _remote(
        "vt_remote_parallel", "encode keyframe-aligned segments on N servers at once", where="out"
    ),
    _remote("vt_remote_token", "server token (or $VTREMOTE_TOKEN)"),
    _remote("vt_remote_tls", "1: connect with TLS (unknown servers are trusted on first use)"),
    _remote(
        "vt_remote_tls_fingerprint",
        "SHA-256 fingerprint the server's certificate must have (implies TLS)",
    ),
    _remote("vt_remote_tls_ca", "CA file the server's certificate must chain to (implies TLS)"),
    _remote("vt_remote_wire_compression", "none, lz4, zstd or auto"),
    _remote("vt_remote_inflight", "frames in flight, 1..128 (16)"),
    _remote("vt_remote_timeout_ms", "network timeout in ms, 100..60000 (5000)"),
    Option(
        "vt_remote_log_level",
        ("-vt_remote_log_level",),
        "global",
        "client log level (0 error, 1 info, 2 debug)",
        job=r.set_reference_loglevel,
    ),
    Option(
        "vt_remote_transcode",
        ("-vt_remote_transcode",),
        "out",
        "packet transcode on the server: auto, 1 (required) or 0 (raw frames)",
        output=s.set_transcode,
    ),
    Option(
        "vt_remote_keep_partial",
        ("-vt_remote_keep_partial",),
        "out",
        "on failure keep the output as NAME.partial.EXT (0/1)",
        output=s.set_keep_partial,
    ),
    _switch("overwrite", "-y", "overwrite the output", ("overwrite", True)),
    _switch("no_overwrite", "-n", "never overwrite the output", ("overwrite", False)),
    Option(
        "loglevel",
        ("-loglevel", "-v"),
        "global",
        "quiet, error, warning, info, verbose, debug",
        job=r.set_loglevel,
    ),
    _switch("nostats", "-nostats", "no progress display", ("stats", False)),
    _switch(
        "stats", "-stats", "progress display (default when stderr is a terminal)", ("stats", True)
    ),
    _switch("hide_banner", "-hide_banner", "accepted for ffmpeg compatibility"),
    _switch("nostdin", "-nostdin", "accepted for ffmpeg compatibility"),
    _switch("json", "--json", "print the summary as JSON on stdout", ("json", True)),
)

#: Option key -> option.
BY_KEY = {o.key: o for o in OPTIONS}
#: Every spelling (``-c:v``) -> its option.
BY_SPELLING = {name: o for o in OPTIONS for name in o.names}


def find(name: str, spec: str, spellings: dict[str, Option] = BY_SPELLING) -> Option | None:
    """The option ffmpeg reads for ``-NAME[:SPEC]`` (``-codec:v:0`` is ``-codec:v``; ``-b:0`` is
    ``-b``, since an index selects every stream type), or None."""
    bare = f"-{name}"
    if spec:
        for spelling in (f"{bare}:{spec}", f"{bare}:{spec.split(':', 1)[0]}"):
            if spelling in spellings:
                return spellings[spelling]
    option = spellings.get(bare)
    if option is None or option.stream is None or stream_of(spec) in (option.stream, "*"):
        return option
    return None
