"""What each ffmpeg option does to typed job data: one small setter per option or per kind.

A setter takes the spec it writes into (:class:`~vtremote.pipeline.spec.InputSpec`,
:class:`~vtremote.pipeline.spec.OutputSpec` or :class:`~vtremote.pipeline.spec.JobSpec`) and one
:class:`Occurrence` of the option; it converts the value with :mod:`vtremote.pipeline.values`,
whose :class:`~vtremote.errors.UsageError` texts name the option as written on the line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from vtremote.errors import UsageError
from vtremote.pipeline.ffmpeg_options.option import InputSetter, Occurrence, OutputSetter
from vtremote.pipeline.keyframes import parse_key_frames
from vtremote.pipeline.spec import REMOTE_CODECS, InputSpec, MapSpec, OutputSpec
from vtremote.pipeline.values import (
    parse_bitrate,
    parse_bool,
    parse_enum,
    parse_int,
    parse_rate,
    parse_size,
    parse_time,
)

# --- factories ------------------------------------------------------------------------------------


def output_field(name: str, parse: Callable[[str], Any] | None = None) -> OutputSetter:
    """Set ``OutputSpec.<name>`` to the value, converted by ``parse``."""

    def set_field(out: OutputSpec, occ: Occurrence) -> None:
        setattr(out, name, parse(occ.value) if parse else occ.value)

    return set_field


def output_switch(name: str) -> OutputSetter:
    """Set the boolean ``OutputSpec.<name>``."""

    def set_flag(out: OutputSpec, occ: Occurrence) -> None:
        setattr(out, name, True)

    return set_flag


def codec_option(key: str, parse: Callable[[str], Any] | None = None) -> OutputSetter:
    """Pass the value to a local encoder as ``key`` (PyAV codec options)."""

    def set_codec_option(out: OutputSpec, occ: Occurrence) -> None:
        out.codec_options[key] = str(parse(occ.value)) if parse else occ.value

    return set_codec_option


def video_int(key: str, codec_key: str | None = None, *, raw: bool = False) -> OutputSetter:
    """An integer encoder setting for the remote engine (``OutputSpec.video``), also passed to a
    local encoder as ``codec_key``: the number, or the text as written when ``raw``."""

    def set_video_int(out: OutputSpec, occ: Occurrence) -> None:
        out.video[key] = parse_int(occ.value, occ.label)
        if codec_key:
            out.codec_options[codec_key] = occ.value if raw else str(out.video[key])

    return set_video_int


def video_bitrate(key: str, codec_key: str) -> OutputSetter:
    def set_video_bitrate(out: OutputSpec, occ: Occurrence) -> None:
        out.video[key] = parse_bitrate(occ.value)
        out.codec_options[codec_key] = str(out.video[key])

    return set_video_bitrate


def video_text(key: str) -> OutputSetter:
    """A text encoder setting for the remote engine and a local encoder alike."""

    def set_video_text(out: OutputSpec, occ: Occurrence) -> None:
        out.video[key] = occ.value
        out.codec_options[key] = occ.value

    return set_video_text


def video_bool(key: str) -> OutputSetter:
    def set_video_bool(out: OutputSpec, occ: Occurrence) -> None:
        out.video[key] = parse_bool(occ.value, occ.label)

    return set_video_bool


def video_enum(key: str, table: dict[str, int]) -> OutputSetter:
    def set_video_enum(out: OutputSpec, occ: Occurrence) -> None:
        out.video[key] = parse_enum(occ.value, table, occ.label)

    return set_video_enum


# --- outputs --------------------------------------------------------------------------------------


def set_output_codec(out: OutputSpec, occ: Occurrence) -> None:
    kind = occ.stream
    for t in ("v", "a", "s", "d") if kind == "*" else (kind,):
        if t != "v" and occ.value in REMOTE_CODECS:
            continue  # -c NAME_remote sets the video codec only
        out.codecs[t] = occ.value


def set_map(out: OutputSpec, occ: Occurrence) -> None:
    out.maps.append(MapSpec.parse(occ.value))


def set_frames(out: OutputSpec, occ: Occurrence) -> None:
    out.max_frames = parse_int(occ.value, occ.spelling)


def set_realtime(out: OutputSpec, occ: Occurrence) -> None:
    out.video["realtime"] = parse_int(occ.value, "-realtime")
    if out.video["realtime"] not in (-1, 0, 1):
        raise UsageError(f"-realtime {occ.value} is not -1, 0 or 1")


def set_qscale(out: OutputSpec, occ: Occurrence) -> None:
    # ffmpeg: -q:v N sets global_quality = N * FF_QP2LAMBDA (118) and the QSCALE flag.
    q = float(occ.value)
    out.video["global_quality"] = round(q * 118)
    out.video["flags"] = out.video.get("flags", 0) | FLAG_BITS["qscale"]
    out.codec_options["q"] = occ.value


def set_force_key_frames(out: OutputSpec, occ: Occurrence) -> None:
    """Checked here (a bad expression is a usage error on the line), evaluated per frame later."""
    parse_key_frames(occ.value)
    out.force_key_frames = occ.value


def set_coder(out: OutputSpec, occ: Occurrence) -> None:
    value = occ.value
    out.video["entropy"] = value if not value.isdigit() else int(value)
    out.codec_options["coder"] = value


def set_alpha_quality(out: OutputSpec, occ: Occurrence) -> None:
    try:
        out.video["alpha_quality"] = float(occ.value)
    except ValueError:
        raise UsageError(f"-alpha_quality {occ.value!r} is not a number") from None


FLAG_BITS = {"global_header": 1 << 22, "low_delay": 1 << 19, "cgop": 1 << 31, "qscale": 1 << 1}


def set_flags(out: OutputSpec, occ: Occurrence) -> None:
    """``-flags +global_header-cgop``: codec flag bits on top of those set so far."""
    flags = out.video.get("flags", 0)
    for token in re.findall(r"[+-]?[a-z_]+", occ.value):
        sign, name = (token[0], token[1:]) if token[0] in "+-" else ("+", token)
        if name not in FLAG_BITS:
            raise UsageError(
                f"-flags {occ.value!r}: flag {name!r} is not one of {', '.join(FLAG_BITS)}"
            )
        flags = flags | FLAG_BITS[name] if sign == "+" else flags & ~FLAG_BITS[name]
    out.video["flags"] = flags


def set_muxer_option(out: OutputSpec, occ: Occurrence) -> None:
    out.format_options[occ.spelling.lstrip("-")] = occ.value


def set_metadata(out: OutputSpec, occ: Occurrence) -> None:
    key, sep, val = occ.value.partition("=")
    if not sep or not key:
        raise UsageError(f"-metadata {occ.value!r} is not KEY=VALUE")
    out.metadata[key] = val


_TRANSCODE = {"auto": "auto", "-1": "auto", "1": "on", "on": "on", "0": "off", "off": "off"}


def set_transcode(out: OutputSpec, occ: Occurrence) -> None:
    key = occ.value.lower()
    if key not in _TRANSCODE:
        raise UsageError(f"-vt_remote_transcode {occ.value!r} is not auto, 1 or 0")
    out.transcode = _TRANSCODE[key]


def set_keep_partial(out: OutputSpec, occ: Occurrence) -> None:
    out.keep_partial = parse_bool(occ.value, "-vt_remote_keep_partial")


def set_time(name: str) -> OutputSetter:
    def set_output_time(out: OutputSpec, occ: Occurrence) -> None:
        setattr(out, name, parse_time(occ.value, occ.label))

    return set_output_time


def set_rate(out: OutputSpec, occ: Occurrence) -> None:
    out.rate = parse_rate(occ.value)


def set_size(out: OutputSpec, occ: Occurrence) -> None:
    out.size = parse_size(occ.value)


def set_audio_int(name: str) -> OutputSetter:
    def set_audio(out: OutputSpec, occ: Occurrence) -> None:
        setattr(out, name, parse_int(occ.value, occ.label))

    return set_audio


# --- inputs ---------------------------------------------------------------------------------------


def set_input_format(spec: InputSpec, occ: Occurrence) -> None:
    spec.format = occ.value


def set_input_time(name: str) -> InputSetter:
    def set_time_of_input(spec: InputSpec, occ: Occurrence) -> None:
        setattr(spec, name, parse_time(occ.value, occ.label))

    return set_time_of_input


def input_switch(name: str, value: bool) -> InputSetter:
    """Set the boolean ``InputSpec.<name>`` to ``value`` (``-accurate_seek 0``: the opposite)."""

    def set_flag(spec: InputSpec, occ: Occurrence) -> None:
        setattr(spec, name, value if occ.value != "0" else not value)

    return set_flag


def set_input_codec(spec: InputSpec, occ: Occurrence) -> None:
    """A decoder: ``*_videotoolbox_remote`` decodes on the server."""
    kind = occ.stream
    if kind in ("v", "*"):
        spec.video_codec = occ.value
    if kind in ("a", "*") and occ.value not in REMOTE_CODECS:
        spec.audio_codec = occ.value


def demuxer_option(key: str | None = None) -> InputSetter:
    """Pass the value to the demuxer as ``key`` (default: the option's name as written)."""

    def set_demuxer_option(spec: InputSpec, occ: Occurrence) -> None:
        spec.options[key or occ.spelling[1:].split(":", 1)[0]] = occ.value

    return set_demuxer_option


def set_read_rate(spec: InputSpec, occ: Occurrence) -> None:
    """``-re`` (real time) or ``-readrate N`` (N x real time; 0 is no limit)."""
    rate = 1.0 if occ.option.flag else float(_positive(occ, allow_zero=True))
    spec.read_rate = rate or None


def set_read_burst(spec: InputSpec, occ: Occurrence) -> None:
    spec.read_burst = _positive(occ, allow_zero=True)


def set_skip_frame(spec: InputSpec, occ: Occurrence) -> None:
    """``-skip_frame nokey`` (decode keyframes only); ``default``/``none`` decode everything."""
    value = occ.value.strip().lower()
    if value not in ("nokey", "default", "none"):
        raise UsageError(f"{occ.label} {occ.value!r}: only nokey, default and none are supported")
    spec.keyframes_only = value == "nokey"


def _positive(occ: Occurrence, *, allow_zero: bool = False) -> float:
    try:
        value = float(occ.value)
    except ValueError:
        raise UsageError(f"{occ.label} {occ.value!r} is not a number") from None
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise UsageError(f"{occ.label} {occ.value} must be a positive number")
    return value


def set_input_rate(spec: InputSpec, occ: Occurrence) -> None:
    spec.options["framerate"] = str(parse_rate(occ.value))
