"""ffmpeg-style command lines, parsed verbatim with argparse.

``vtremote [global] [input options] -i INPUT ... [output options] OUTPUT``

As in ffmpeg, where an option stands decides what it applies to: options before
an ``-i`` belong to that input (``-f lavfi``, ``-ss``, a decoder chosen with
``-c:v h264_videotoolbox_remote`` = remote decode, ``-vt_remote_host`` of that
decoder), options after the last ``-i`` belong to the output (``-c:v
h264_videotoolbox_remote`` = remote encode, ``-b:v 6000k``...). One argparse
parser (``allow_abbrev=False``, so ``-vt_remote_h`` is not ``-vt_remote_host``)
reads the whole line in order; each option's action records how many inputs
had been seen, which is exactly ffmpeg's rule.

The result is a :class:`~vtremote.pipeline.spec.JobSpec`: plain data, validated, with values already
converted (bitrates, times, sizes, rates, colour names). Nothing here opens a
file or a socket.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from vtremote.errors import UsageError
from vtremote.pipeline.spec import (
    REMOTE_CODECS,
    InputSpec,
    JobSpec,
    MapSpec,
    OutputSpec,
    RemoteOptions,
)
from vtremote.pipeline.values import (
    COLOR_PRIMARIES,
    COLOR_RANGES,
    COLOR_SPACES,
    COLOR_TRCS,
    parse_bitrate,
    parse_bool,
    parse_enum,
    parse_force_key_frames,
    parse_int,
    parse_rate,
    parse_size,
    parse_time,
)

__all__ = [
    "REMOTE_CODECS",
    "InputSpec",
    "JobSpec",
    "MapSpec",
    "OutputSpec",
    "RemoteOptions",
    "UsageError",
    "build_parser",
    "parse_bitrate",
    "parse_command",
    "parse_force_key_frames",
    "parse_rate",
    "parse_size",
    "parse_time",
]

# --- argparse plumbing --------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # ffmpeg words: "unrecognized arguments: -foo" -> usage error, exit code 2.
        raise UsageError(message)


@dataclass
class _Event:
    dest: str
    option: str
    value: Any
    input_index: int  # inputs seen when the option appeared


class _Record(argparse.Action):
    """Store every occurrence with its position relative to the ``-i`` options."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        ns: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        value = True if self.nargs == 0 else values
        ns.events.append(_Event(self.dest, option_string or self.dest, value, len(ns.inputs)))


class _Input(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        ns: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        ns.inputs.append(values)


# dest -> (option strings, takes a value, where it may appear: "in", "out", "both", "global", help)
_OPTIONS: list[tuple[str, tuple[str, ...], bool, str, str]] = [
    (
        "format",
        ("-f",),
        True,
        "both",
        "container format (lavfi for filter sources, null for no output)",
    ),
    (
        "codec",
        (
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
        ),
        True,
        "both",
        "codec: h264_videotoolbox_remote / hevc_videotoolbox_remote, a local PyAV codec, or copy",
    ),
    (
        "seek",
        ("-ss",),
        True,
        "both",
        "start time (before -i: seek the input; after: discard output until then)",
    ),
    ("duration", ("-t",), True, "both", "duration to read / write"),
    ("map", ("-map",), True, "out", "stream selection, e.g. 0:v:0, 0:a, 0:s?"),
    ("vn", ("-vn",), False, "out", "no video"),
    ("an", ("-an",), False, "out", "no audio"),
    ("sn", ("-sn",), False, "out", "no subtitles"),
    ("dn", ("-dn",), False, "out", "no data streams"),
    ("bitrate", ("-b:v", "-b", "-vb"), True, "out", "video bitrate, e.g. 6000k"),
    ("audio_bitrate", ("-b:a", "-ab"), True, "out", "audio bitrate for a local audio encoder"),
    ("maxrate", ("-maxrate", "-maxrate:v"), True, "out", "maximum video bitrate"),
    ("bufsize", ("-bufsize", "-bufsize:v"), True, "out", "rate-control buffer (local encoders)"),
    ("gop", ("-g", "-g:v"), True, "out", "keyframe interval in frames"),
    ("bf", ("-bf", "-bf:v"), True, "out", "maximum B-frames"),
    (
        "profile",
        ("-profile:v", "-profile", "-vprofile"),
        True,
        "out",
        "codec profile (baseline, main, high, main10...)",
    ),
    ("level", ("-level", "-level:v"), True, "out", "codec level, e.g. 4.1"),
    (
        "pix_fmt",
        ("-pix_fmt", "-pix_fmt:v"),
        True,
        "out",
        "pixel format (nv12 / p010le for remote encoders)",
    ),
    ("rate", ("-r", "-r:v"), True, "both", "frame rate (before -i: of a raw input, as -framerate)"),
    ("size", ("-s", "-s:v"), True, "out", "output frame size WxH"),
    ("vf", ("-vf", "-filter:v"), True, "out", "video filter chain (PyAV filter graph)"),
    ("frames", ("-frames:v", "-vframes"), True, "out", "stop after this many video frames"),
    (
        "force_key_frames",
        ("-force_key_frames", "-force_key_frames:v"),
        True,
        "out",
        "times of forced keyframes: 0,2.5,10 or expr:gte(t,n_forced*N)",
    ),
    ("realtime", ("-realtime",), True, "out", "remote encoder real-time mode (0/1)"),
    ("global_quality", ("-global_quality", "-global_quality:v"), True, "out", "constant quality"),
    (
        "qscale",
        ("-q:v", "-qscale:v", "-q", "-qscale"),
        True,
        "out",
        "quality scale (global_quality = N x 118)",
    ),
    ("qmin", ("-qmin",), True, "out", "minimum QP"),
    ("qmax", ("-qmax",), True, "out", "maximum QP"),
    ("coder", ("-coder", "-entropy"), True, "out", "H.264 entropy coder: auto, cavlc, cabac"),
    ("a53cc", ("-a53cc",), True, "out", "keep A53 captions (0/1)"),
    (
        "allow_sw",
        ("-allow_sw",),
        True,
        "out",
        "let the server fall back to a software encoder (0/1)",
    ),
    ("require_sw", ("-require_sw",), True, "out", "ask the server for a software encoder (0/1)"),
    ("prio_speed", ("-prio_speed",), True, "out", "prioritise speed over quality (0/1)"),
    ("power_efficient", ("-power_efficient",), True, "out", "power-efficient mode (0/1)"),
    ("spatial_aq", ("-spatial_aq",), True, "out", "spatial adaptive quantisation (0/1)"),
    ("max_ref_frames", ("-max_ref_frames",), True, "out", "maximum reference frames"),
    ("max_slice_bytes", ("-max_slice_bytes",), True, "out", "H.264 maximum slice size"),
    ("constant_bit_rate", ("-constant_bit_rate",), True, "out", "constant bitrate mode (0/1)"),
    (
        "frames_before",
        ("-frames_before",),
        True,
        "out",
        "encoder hint: more frames before the first (0/1)",
    ),
    (
        "frames_after",
        ("-frames_after",),
        True,
        "out",
        "encoder hint: more frames after the last (0/1)",
    ),
    ("alpha_quality", ("-alpha_quality",), True, "out", "HEVC alpha quality 0..1"),
    ("color_range", ("-color_range",), True, "out", "colour range tag (tv, pc)"),
    ("colorspace", ("-colorspace",), True, "out", "colour matrix tag (bt709, bt2020nc...)"),
    ("color_primaries", ("-color_primaries",), True, "out", "colour primaries tag"),
    ("color_trc", ("-color_trc",), True, "out", "transfer characteristics tag"),
    (
        "flags",
        ("-flags", "-flags:v"),
        True,
        "out",
        "codec flags: +global_header, +low_delay, +cgop",
    ),
    ("preset", ("-preset", "-preset:v"), True, "out", "local encoder preset (passed to PyAV)"),
    ("tune", ("-tune", "-tune:v"), True, "out", "local encoder tune"),
    ("crf", ("-crf", "-crf:v"), True, "out", "local encoder CRF"),
    ("x264_params", ("-x264-params", "-x264opts"), True, "out", "libx264 options"),
    ("x265_params", ("-x265-params",), True, "out", "libx265 options"),
    ("threads", ("-threads",), True, "both", "codec threads for local codecs"),
    ("ar", ("-ar", "-ar:a"), True, "out", "audio sample rate for a local audio encoder"),
    ("ac", ("-ac", "-ac:a"), True, "out", "audio channels for a local audio encoder"),
    ("metadata", ("-metadata",), True, "out", "container metadata KEY=VALUE"),
    (
        "muxer_option",
        (
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
        ),
        True,
        "out",
        "muxer options passed to FFmpeg (HLS: -f hls -hls_time 4 ...; MP4: -movflags)",
    ),
    ("copyts", ("-copyts",), False, "out", "keep the input's timestamps"),
    (
        "start_at_zero",
        ("-start_at_zero",),
        False,
        "out",
        "with -copyts, shift so the input starts at 0",
    ),
    (
        "af",
        ("-af", "-filter:a"),
        True,
        "out",
        "audio filter chain for re-encoded audio (volume=2 ...)",
    ),
    (
        "video_tag",
        ("-tag:v", "-vtag"),
        True,
        "out",
        "video codec tag in the container (hvc1, avc1)",
    ),
    ("framerate", ("-framerate",), True, "in", "demuxer option: input frame rate"),
    ("video_size", ("-video_size",), True, "in", "demuxer option: input frame size"),
    (
        "vt_remote_host",
        ("-vt_remote_host",),
        True,
        "both",
        "server HOST:PORT, a list A:P,B:P, a pool name from the config file, or mdns (default: an embedded server on 127.0.0.1)",
    ),
    (
        "vt_remote_fallback",
        ("-vt_remote_fallback",),
        True,
        "both",
        "when no server can be had: local (encode here with libx264/libx265) or none",
    ),
    (
        "vt_remote_parallel",
        ("-vt_remote_parallel",),
        True,
        "out",
        "encode keyframe-aligned segments on N servers at once",
    ),
    ("vt_remote_token", ("-vt_remote_token",), True, "both", "server token (or $VTREMOTE_TOKEN)"),
    (
        "vt_remote_tls",
        ("-vt_remote_tls",),
        True,
        "both",
        "1: connect with TLS (unknown servers are trusted on first use)",
    ),
    (
        "vt_remote_tls_fingerprint",
        ("-vt_remote_tls_fingerprint",),
        True,
        "both",
        "SHA-256 fingerprint the server's certificate must have (implies TLS)",
    ),
    (
        "vt_remote_tls_ca",
        ("-vt_remote_tls_ca",),
        True,
        "both",
        "CA file the server's certificate must chain to (implies TLS)",
    ),
    (
        "vt_remote_wire_compression",
        ("-vt_remote_wire_compression",),
        True,
        "both",
        "none, lz4, zstd or auto",
    ),
    ("vt_remote_inflight", ("-vt_remote_inflight",), True, "both", "frames in flight, 1..128 (16)"),
    (
        "vt_remote_timeout_ms",
        ("-vt_remote_timeout_ms",),
        True,
        "both",
        "network timeout in ms, 100..60000 (5000)",
    ),
    (
        "vt_remote_log_level",
        ("-vt_remote_log_level",),
        True,
        "global",
        "client log level (0 error, 1 info, 2 debug)",
    ),
    (
        "vt_remote_transcode",
        ("-vt_remote_transcode",),
        True,
        "out",
        "packet transcode on the server: auto, 1 (required) or 0 (raw frames)",
    ),
    (
        "vt_remote_keep_partial",
        ("-vt_remote_keep_partial",),
        True,
        "out",
        "on failure keep the output as NAME.partial.EXT (0/1)",
    ),
    ("overwrite", ("-y",), False, "global", "overwrite the output"),
    ("no_overwrite", ("-n",), False, "global", "never overwrite the output"),
    (
        "loglevel",
        ("-loglevel", "-v"),
        True,
        "global",
        "quiet, error, warning, info, verbose, debug",
    ),
    ("nostats", ("-nostats",), False, "global", "no progress display"),
    ("stats", ("-stats",), False, "global", "progress display (default when stderr is a terminal)"),
    ("hide_banner", ("-hide_banner",), False, "global", "accepted for ffmpeg compatibility"),
    ("nostdin", ("-nostdin",), False, "global", "accepted for ffmpeg compatibility"),
    ("json", ("--json",), False, "global", "print the summary as JSON on stdout"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vtremote",
        allow_abbrev=False,
        add_help=False,
        usage="vtremote [options] [[input options] -i INPUT]... [output options] OUTPUT\n"
        "       vtremote probe HOST:PORT [--json]\n"
        "       vtremote bench ...",
        description="ffmpeg-style front end of vtremote: video encode/decode on a vtremoted server.",
    )
    parser.set_defaults(events=[], inputs=[])
    parser.add_argument(
        "-i", dest="inputs", action=_Input, metavar="INPUT", help="input file or lavfi graph"
    )
    for dest, flags, takes_value, _where, help_text in _OPTIONS:
        if takes_value:
            parser.add_argument(*flags, dest=dest, action=_Record, metavar="VALUE", help=help_text)
        else:
            parser.add_argument(*flags, dest=dest, action=_Record, nargs=0, help=help_text)
    parser.add_argument(
        "-h", "-help", "--help", dest="help", action="store_true", help="show this help"
    )
    parser.add_argument(
        "-version", "--version", dest="version", action="store_true", help="show the version"
    )
    parser.add_argument(
        "output", nargs="?", metavar="OUTPUT", help="output file, or - with -f null"
    )
    return parser


_WHERE = {dest: where for dest, _flags, _takes, where, _help in _OPTIONS}


def _stream_type(option: str) -> str:
    """The stream type an option's specifier names (``-c:a`` -> a, ``-vcodec`` -> v, ``-c`` -> *)."""
    if ":" in option:
        return option.split(":", 1)[1][:1]
    return {"-vcodec": "v", "-acodec": "a", "-scodec": "s"}.get(option, "*")


_TAKES_VALUE = {flag: takes for _d, flags, takes, _w, _h in _OPTIONS for flag in flags} | {
    "-i": True
}
_FLAGS_ONLY = {"-h", "-help", "--help", "-version", "--version"}


def _normalize(argv: Sequence[str]) -> list[str]:
    """Check every option name exactly and keep values that start with ``-`` attached.

    argparse alone would read an unknown ``-tag:v`` as ``-t ag:v`` (short option
    with an attached value) and ``-map -0:s`` as two options; ffmpeg does neither.
    """
    out: list[str] = []
    outputs: list[str] = []
    it = iter(argv)
    for token in it:
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0] if token.startswith("--") or "=" in token else token
            if name in _FLAGS_ONLY:
                out.append(token)
                continue
            if name not in _TAKES_VALUE:
                raise UsageError(f"unrecognized option '{name}'")
            if _TAKES_VALUE[name] and name == token:
                value = next(it, None)
                if value is None:
                    raise UsageError(f"option {token} needs a value")
                out.append(f"{token}={value}" if value.startswith("-") and value != "-" else token)
                if not (value.startswith("-") and value != "-"):
                    out.append(value)
                continue
            out.append(token)
        else:
            outputs.append(token)
            out.append(token)
    if len(outputs) > 1:
        raise UsageError(
            f"more than one output ({', '.join(outputs)}): vtremote writes exactly one"
        )
    return out


def parse_command(argv: Sequence[str]) -> tuple[JobSpec | None, argparse.Namespace]:
    """Parse a full command line. Returns (None, ns) for -h / -version."""
    parser = build_parser()
    ns = parser.parse_args(_normalize(argv))
    if ns.help or ns.version:
        return None, ns
    inputs = [InputSpec(url) for url in ns.inputs]
    if not inputs:
        raise UsageError(
            "no input: give at least one -i INPUT (a file, or -f lavfi -i testsrc2=...)"
        )
    if ns.output is None:
        raise UsageError("no output file: give OUTPUT last (or -f null -)")
    out = OutputSpec(ns.output)
    cmd = JobSpec(inputs, out)
    for ev in ns.events:
        where = _WHERE[ev.dest]
        is_input = ev.input_index < len(inputs) and where != "global"
        if where == "global":
            _apply_global(cmd, ev)
        elif is_input:
            if where == "out":
                raise UsageError(
                    f"option {ev.option} ({ev.value}) cannot be applied to input {inputs[ev.input_index].url!r}: put it after the last -i"
                )
            _apply_input(inputs[ev.input_index], ev)
        else:
            if where == "in":
                raise UsageError(f"option {ev.option} is an input option: put it before -i")
            _apply_output(out, ev)
    return cmd, ns


def _apply_global(cmd: JobSpec, ev: _Event) -> None:
    if ev.dest == "overwrite":
        cmd.overwrite = True
    elif ev.dest == "no_overwrite":
        cmd.overwrite = False
    elif ev.dest == "json":
        cmd.json = True
    elif ev.dest == "nostats":
        cmd.stats = False
    elif ev.dest == "stats":
        cmd.stats = True
    elif ev.dest == "loglevel":
        level = str(ev.value).split("+")[-1].lower()
        names = {"quiet", "panic", "fatal", "error", "warning", "info", "verbose", "debug", "trace"}
        numbers = {
            "-8": "quiet",
            "0": "panic",
            "8": "fatal",
            "16": "error",
            "24": "warning",
            "32": "info",
            "40": "verbose",
            "48": "debug",
            "56": "trace",
        }
        level = numbers.get(level, level)
        if level not in names:
            raise UsageError(f"-loglevel {ev.value!r} is not one of {', '.join(sorted(names))}")
        cmd.loglevel = level
    elif ev.dest == "vt_remote_log_level":
        # The reference's levels: 0 error, 1 info (default), 2 debug; AV_LOG_* numbers too.
        value = str(ev.value)
        cmd.loglevel = {"0": "error", "1": "info", "2": "debug"}.get(value, cmd.loglevel)
        if value not in ("0", "1", "2"):
            numbers = {
                "-8": "quiet",
                "16": "error",
                "24": "warning",
                "32": "info",
                "40": "verbose",
                "48": "debug",
                "56": "trace",
            }
            if value not in numbers:
                raise UsageError(
                    f"-vt_remote_log_level {value!r} is not 0, 1, 2 or an AV_LOG_* number"
                )
            cmd.loglevel = numbers[value]


def _apply_remote(remote: RemoteOptions, ev: _Event) -> bool:
    value = str(ev.value)
    if ev.dest == "vt_remote_host":
        remote.host = value
    elif ev.dest == "vt_remote_token":
        remote.token = value
    elif ev.dest == "vt_remote_tls":
        remote.tls = parse_bool(value, "-vt_remote_tls")
    elif ev.dest == "vt_remote_tls_fingerprint":
        remote.tls_fingerprint = value
    elif ev.dest == "vt_remote_tls_ca":
        remote.tls_ca = value
    elif ev.dest == "vt_remote_wire_compression":
        key = value.lower()
        if key not in ("none", "lz4", "zstd", "auto", "0", "1", "2"):
            raise UsageError(
                f"-vt_remote_wire_compression {value!r} is not none, lz4, zstd or auto"
            )
        remote.compression = key
    elif ev.dest == "vt_remote_inflight":
        remote.inflight = parse_int(value, "-vt_remote_inflight")
        if not 1 <= remote.inflight <= 128:
            raise UsageError(f"-vt_remote_inflight {value} is outside 1..128")
    elif ev.dest == "vt_remote_timeout_ms":
        remote.timeout_ms = parse_int(value, "-vt_remote_timeout_ms")
        if not 100 <= remote.timeout_ms <= 60000:
            raise UsageError(f"-vt_remote_timeout_ms {value} is outside 100..60000")
    elif ev.dest == "vt_remote_fallback":
        if value not in ("local", "none"):
            raise UsageError(f"-vt_remote_fallback {value!r} is not local or none")
        remote.fallback = value
    elif ev.dest == "vt_remote_parallel":
        remote.parallel = parse_int(value, "-vt_remote_parallel")
        if not 0 <= remote.parallel <= 64:
            raise UsageError(f"-vt_remote_parallel {value} is outside 0..64")
    else:
        return False
    return True


def _apply_input(spec: InputSpec, ev: _Event) -> None:
    value = str(ev.value)
    if _apply_remote(spec.remote, ev):
        return
    if ev.dest == "format":
        spec.format = value
    elif ev.dest == "seek":
        spec.seek = parse_time(value, "-ss")
    elif ev.dest == "duration":
        spec.duration = parse_time(value, "-t")
    elif ev.dest == "codec":
        kind = _stream_type(ev.option)
        if kind in ("v", "*"):
            spec.video_codec = value
        if kind in ("a", "*") and value not in REMOTE_CODECS:
            spec.audio_codec = value
    elif ev.dest in ("framerate", "video_size"):
        spec.options[ev.dest] = value
    elif ev.dest == "rate":
        spec.options["framerate"] = str(parse_rate(value))
    elif ev.dest == "threads":
        spec.options["threads"] = value
    else:  # pragma: no cover - _WHERE keeps output-only options away
        raise UsageError(f"option {ev.option} cannot be applied to an input")


_FLAG_BITS = {"global_header": 1 << 22, "low_delay": 1 << 19, "cgop": 1 << 31, "qscale": 1 << 1}


def _parse_flags(text: str, current: int) -> int:
    flags = current
    for token in re.findall(r"[+-]?[a-z_]+", text):
        sign, name = (token[0], token[1:]) if token[0] in "+-" else ("+", token)
        if name not in _FLAG_BITS:
            raise UsageError(
                f"-flags {text!r}: flag {name!r} is not one of {', '.join(_FLAG_BITS)}"
            )
        flags = flags | _FLAG_BITS[name] if sign == "+" else flags & ~_FLAG_BITS[name]
    return flags


def _apply_output(out: OutputSpec, ev: _Event) -> None:
    value = "" if ev.value is True else str(ev.value)
    v = out.video
    if _apply_remote(out.remote, ev):
        return
    dest = ev.dest
    if dest == "vt_remote_transcode":
        key = value.lower()
        choices = {"auto": "auto", "-1": "auto", "1": "on", "on": "on", "0": "off", "off": "off"}
        if key not in choices:
            raise UsageError(f"-vt_remote_transcode {value!r} is not auto, 1 or 0")
        out.transcode = choices[key]
    elif dest == "vt_remote_keep_partial":
        out.keep_partial = parse_bool(value, "-vt_remote_keep_partial")
    elif dest == "format":
        out.format = value
    elif dest == "codec":
        kind = _stream_type(ev.option)
        for t in ("v", "a", "s", "d") if kind == "*" else (kind,):
            if t != "v" and value in REMOTE_CODECS:
                continue  # -c NAME_remote sets the video codec only
            out.codecs[t] = value
    elif dest == "map":
        out.maps.append(MapSpec.parse(value))
    elif dest == "vn":
        out.no_video = True
    elif dest == "an":
        out.no_audio = True
    elif dest == "sn":
        out.no_subtitles = True
    elif dest == "dn":
        out.no_data = True
    elif dest == "seek":
        out.seek = parse_time(value, "-ss")
    elif dest == "duration":
        out.duration = parse_time(value, "-t")
        if out.duration <= 0:
            raise UsageError(f"-t {value} must be positive")
    elif dest == "frames":
        out.max_frames = parse_int(value, ev.option)
    elif dest == "vf":
        out.video_filter = value
    elif dest == "pix_fmt":
        out.pix_fmt = value
    elif dest == "rate":
        out.rate = parse_rate(value)
    elif dest == "size":
        out.size = parse_size(value)
    elif dest == "force_key_frames":
        out.force_key_frames = value
    elif dest == "bitrate":
        v["bitrate"] = parse_bitrate(value)
        out.codec_options["b"] = str(v["bitrate"])
    elif dest == "audio_bitrate":
        out.audio_bitrate = parse_bitrate(value)
    elif dest == "maxrate":
        v["maxrate"] = parse_bitrate(value)
        out.codec_options["maxrate"] = str(v["maxrate"])
    elif dest == "bufsize":
        out.codec_options["bufsize"] = str(parse_bitrate(value))
    elif dest == "gop":
        v["gop"] = parse_int(value, "-g")
        out.codec_options["g"] = str(v["gop"])
    elif dest == "bf":
        v["max_b_frames"] = parse_int(value, "-bf")
        out.codec_options["bf"] = str(v["max_b_frames"])
    elif dest == "profile":
        v["profile"] = value
        out.codec_options["profile"] = value
    elif dest == "level":
        v["level"] = value
        out.codec_options["level"] = value
    elif dest == "realtime":
        v["realtime"] = parse_int(value, "-realtime")
        if v["realtime"] not in (-1, 0, 1):
            raise UsageError(f"-realtime {value} is not -1, 0 or 1")
    elif dest == "global_quality":
        v["global_quality"] = parse_int(value, "-global_quality")
        out.codec_options["global_quality"] = value
    elif dest == "qscale":
        # ffmpeg: -q:v N sets global_quality = N * FF_QP2LAMBDA (118) and the QSCALE flag.
        q = float(value)
        v["global_quality"] = round(q * 118)
        v["flags"] = v.get("flags", 0) | _FLAG_BITS["qscale"]
        out.codec_options["q"] = value
    elif dest in (
        "qmin",
        "qmax",
        "max_ref_frames",
        "max_slice_bytes",
        "prio_speed",
        "power_efficient",
        "spatial_aq",
    ):
        v[dest] = parse_int(value, ev.option)
        if dest in ("qmin", "qmax"):
            out.codec_options[dest] = value
    elif dest == "coder":
        v["entropy"] = value if not value.isdigit() else int(value)
        out.codec_options["coder"] = value
    elif dest == "a53cc":
        v["a53_cc"] = parse_bool(value, "-a53cc")
    elif dest in ("allow_sw", "require_sw", "constant_bit_rate", "frames_before", "frames_after"):
        v[dest] = parse_bool(value, ev.option)
    elif dest == "alpha_quality":
        try:
            v["alpha_quality"] = float(value)
        except ValueError:
            raise UsageError(f"-alpha_quality {value!r} is not a number") from None
    elif dest == "color_range":
        v["color_range"] = parse_enum(value, COLOR_RANGES, "-color_range")
    elif dest == "colorspace":
        v["colorspace"] = parse_enum(value, COLOR_SPACES, "-colorspace")
    elif dest == "color_primaries":
        v["color_primaries"] = parse_enum(value, COLOR_PRIMARIES, "-color_primaries")
    elif dest == "color_trc":
        v["color_trc"] = parse_enum(value, COLOR_TRCS, "-color_trc")
    elif dest == "flags":
        v["flags"] = _parse_flags(value, v.get("flags", 0))
    elif dest in ("preset", "tune", "crf", "threads"):
        out.codec_options[dest] = value
    elif dest == "x264_params":
        out.codec_options["x264-params"] = value
    elif dest == "x265_params":
        out.codec_options["x265-params"] = value
    elif dest == "ar":
        out.audio_rate = parse_int(value, "-ar")
    elif dest == "ac":
        out.audio_channels = parse_int(value, "-ac")
    elif dest == "muxer_option":
        out.format_options[ev.option.lstrip("-")] = value
    elif dest in ("copyts", "start_at_zero"):
        setattr(out, dest, True)
    elif dest == "af":
        out.audio_filter = value
    elif dest == "video_tag":
        out.video_tag = value
    elif dest == "metadata":
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError(f"-metadata {value!r} is not KEY=VALUE")
        out.metadata[key] = val
    else:  # pragma: no cover - every output option is handled above
        raise UsageError(f"option {ev.option} cannot be applied to the output")
