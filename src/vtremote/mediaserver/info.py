"""Answers to ffmpeg's information options, in ffmpeg's own layout.

Media servers run ``ffmpeg -version``, ``-encoders``, ``-decoders``,
``-hwaccels``, ``-filters`` and ``-h filter=NAME`` at start-up and parse the
text to decide what they may ask for (Jellyfin: a version regex on the first
line, ``lib\\w+ MAJOR. MINOR`` library lines, and one codec or filter name per
line after a fixed-width flag column). What is listed is what really runs:
PyAV's FFmpeg codecs and filters, plus the encoder names the configuration
sends to a vtremoted (``h264_nvenc``, ``hevc_videotoolbox``...), described as
remote. No hardware acceleration method is listed: decoding runs in software
here or on the server, so media servers keep to software decode lines.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Literal

import av

from vtremote import __version__
from vtremote.mediaserver.config import MediaServerConfig

_LIBS = (
    "avutil",
    "avcodec",
    "avformat",
    "avdevice",
    "avfilter",
    "swscale",
    "swresample",
    "postproc",
)


def _lib_lines() -> list[str]:
    lines = []
    for name in _LIBS:
        v = av.library_versions.get(f"lib{name}")
        if v is None:
            continue
        # ffmpeg's layout: "lib%-11s %2d.%3d.%3d / %2d.%3d.%3d" (built against / running).
        lines.append(f"lib{name:<11} {v[0]:2d}.{v[1]:3d}.{v[2]:3d} / {v[0]:2d}.{v[1]:3d}.{v[2]:3d}")
    return lines


def version_text(config: MediaServerConfig) -> str:
    """``ffmpeg -version``: the FFmpeg version of PyAV's libraries, marked as vtremote's."""
    year = datetime.date.today().year
    suffix = f"-{config.version_suffix}" if config.version_suffix else ""
    servers = ",".join(config.servers) or "embedded"
    lines = [
        f"ffmpeg version {av.ffmpeg_version_info}{suffix} Copyright (c) 2000-{year} the FFmpeg "
        "developers",
        f"built with vtremote {__version__} (PyAV {av.__version__})",
        f"configuration: --enable-vtremote --vtremote-servers={servers} --enable-gpl "
        "--enable-libx264 --enable-libx265",
        *_lib_lines(),
    ]
    return "\n".join(lines) + "\n"


_CODEC_LEGEND = [
    " V..... = Video",
    " A..... = Audio",
    " S..... = Subtitle",
    " .F.... = Frame-level multithreading",
    " ..S... = Slice-level multithreading",
    " ...X.. = Codec is experimental",
    " ....B. = Supports draw_horiz_band",
    " .....D = Supports direct rendering method 1",
    " ------",
]
_TYPE_FLAG = {"video": "V", "audio": "A", "subtitle": "S", "data": "D", "attachment": "T"}
# AV_CODEC_CAP_* bits used in the flag column.
_CAP_DR1, _CAP_FRAME_THREADS, _CAP_SLICE_THREADS, _CAP_EXPERIMENTAL, _CAP_DRAW_HORIZ_BAND = (
    1 << 1,
    1 << 12,
    1 << 13,
    1 << 9,
    1 << 0,
)

#: What ``-encoders`` calls each remote codec (FFmpeg's long names).
_CODEC_LONG_NAMES = {"h264": "H.264 / AVC", "hevc": "H.265 / HEVC", "av1": "AV1"}


def _codec_line(
    name: str, type_: str, caps: int, long_name: str, codec_name: str | None = None
) -> str:
    flags = (
        _TYPE_FLAG.get(type_, "D")
        + ("F" if caps & _CAP_FRAME_THREADS else ".")
        + ("S" if caps & _CAP_SLICE_THREADS else ".")
        + ("X" if caps & _CAP_EXPERIMENTAL else ".")
        + ("B" if caps & _CAP_DRAW_HORIZ_BAND else ".")
        + ("D" if caps & _CAP_DR1 else ".")
    )
    tail = f" (codec {codec_name})" if codec_name and codec_name != name else ""
    return f" {flags} {name:<20} {long_name}{tail}"


#: Hardware codecs of PyAV's build: they need devices this machine may not have, so they are
#: listed only when the configuration sends them to a server.
_HARDWARE = re.compile(
    r"_(qsv|vaapi|nvenc|amf|videotoolbox|v4l2m2m|rkmpp|mf|cuvid|mediacodec|vulkan|d3d12va|mmal|omx|oh)$"
)


def codecs_text(config: MediaServerConfig, encoders: bool) -> str:
    """``-encoders`` / ``-decoders``: PyAV's software codecs, and the remote encoder names
    (encoders only)."""
    lines = ["Encoders:" if encoders else "Decoders:", *_CODEC_LEGEND]
    mode: Literal["r", "w"] = "w" if encoders else "r"
    remote_names = {n: c for n, c in config.remote_encoders.items() if c} if encoders else {}
    rows: list[tuple[str, str]] = []
    for name in sorted(av.codecs_available):
        if name in remote_names or _HARDWARE.search(name):
            continue
        try:
            codec = av.codec.Codec(name, mode)
        except (ValueError, av.error.FFmpegError):
            continue
        rows.append(
            (
                f"{_TYPE_FLAG.get(codec.type, 'D')}{name}",
                _codec_line(
                    name, codec.type, int(codec.capabilities), codec.long_name, codec.canonical_name
                ),
            )
        )
    for name, remote in sorted(remote_names.items()):
        long_name = f"{_CODEC_LONG_NAMES.get(remote, remote)} encoded on a vtremoted server"
        rows.append((f"V{name}", _codec_line(name, "video", _CAP_DR1, long_name, remote)))
    order = {"V": 0, "A": 1, "S": 2}
    rows.sort(key=lambda r: (order.get(r[0][0], 3), r[0][1:]))
    lines += [line for _key, line in rows]
    return "\n".join(lines) + "\n"


def formats_text(kind: str) -> str:
    """``-formats`` / ``-muxers`` / ``-demuxers``: PyAV's container formats in ffmpeg's layout."""
    title = {"formats": "Formats:", "muxers": "Muxers:", "demuxers": "Demuxers:"}[kind]
    lines = [title, " D. = Demuxing supported", " .E = Muxing supported", " --"]
    rows: dict[str, tuple[bool, bool, str]] = {}
    for name in sorted(av.formats_available):
        try:
            fmt = av.ContainerFormat(name)
        except (ValueError, av.error.FFmpegError):
            continue
        demux, mux = bool(fmt.is_input), bool(fmt.is_output)
        if (kind == "muxers" and not mux) or (kind == "demuxers" and not demux):
            continue
        rows[name] = (demux and kind != "muxers", mux and kind != "demuxers", fmt.long_name or "")
    for name, (demux, mux, long_name) in sorted(rows.items()):
        lines.append(f" {'D' if demux else ' '}{'E' if mux else ' '} {name:<15} {long_name}")
    return "\n".join(lines) + "\n"


def hwaccels_text() -> str:
    return "Hardware acceleration methods:\n\n"


def _filter_io(f: Any) -> str:
    def side(pads: list[Any], dynamic: bool) -> str:
        if dynamic and not pads:
            return "N"
        if not pads:
            return "|"
        kind = (
            "A"
            if f.name.startswith("a") and not f.name.startswith(("alpha", "atadenoise", "avgblur"))
            else "V"
        )
        return kind * len(pads)

    flags = int(f.flags)
    # AVFILTER_FLAG_DYNAMIC_INPUTS / OUTPUTS
    return f"{side(list(f.inputs), bool(flags & 1))}->{side(list(f.outputs), bool(flags & 2))}"


def filters_text() -> str:
    lines = [
        "Filters:",
        "  T.. = Timeline support",
        "  .S. = Slice threading",
        "  ..C = Command support",
        "  A = Audio input/output",
        "  V = Video input/output",
        "  N = Dynamic number and/or type of input/output",
        "  | = Source or sink filter",
    ]
    for name in sorted(av.filter.filters_available):
        try:
            f: Any = av.filter.Filter(name)
        except (ValueError, av.error.FFmpegError):
            continue
        flags = int(f.flags)
        col = (
            ("T" if flags & (1 << 16 | 1 << 17) else ".") + ("S" if flags & (1 << 2) else ".") + "."
        )
        lines.append(f" {col} {name:<16} {_filter_io(f):<10} {f.description or ''}")
    # Jellyfin tone-maps in software only when -filters lists tonemapx (EncodingHelper's
    # IsSwTonemapAvailable); its lines become the server's tonemap (mediaserver/filters.py).
    lines.append(f" .S. {'tonemapx':<16} {'V->V':<10} {TONEMAPX_DESCRIPTION}")
    return "\n".join(lines) + "\n"


TONEMAPX_DESCRIPTION = "HDR to SDR tonemapping (on the vtremoted server)"


def help_text(config: MediaServerConfig, topic: str | None) -> tuple[str, bool]:
    """``-h encoder=NAME`` / ``decoder=`` / ``filter=``: (text, known)."""
    if not topic or "=" not in topic:
        return (
            "usage: ffmpeg [options] [[infile options] -i infile]... {[outfile options] "
            "outfile}...\n"
            "This is vtremote-ffmpeg: see `vtremote-ffmpeg -h encoder=NAME` or "
            "docs/mediaservers.md\n",
            True,
        )
    kind, _, name = topic.partition("=")
    if kind in ("encoder", "decoder"):
        mode: Literal["r", "w"] = "w" if kind == "encoder" else "r"
        remote = config.remote_codec(name) if kind == "encoder" else None
        try:
            codec = av.codec.Codec(name, mode)
        except (ValueError, av.error.FFmpegError):
            if remote:
                return (
                    f"Encoder {name} [{'H.264' if remote == 'h264' else 'HEVC'} on a vtremoted "
                    "server]:\n"
                    "    General capabilities: dr1 delay\n"
                    "    Threading capabilities: none\n"
                    "    Supported pixel formats: nv12 "
                    f"{'p010le ' if remote == 'hevc' else ''}yuv420p\n",
                    True,
                )
            return (f"Codec '{name}' is not recognized by FFmpeg.\n", False)
        label = "Encoder" if kind == "encoder" else "Decoder"
        text = (
            f"{label} {codec.name} [{codec.long_name}]:\n"
            f"    General capabilities: dr1 {'delay ' if codec.delay else ''}threads \n"
        )
        if codec.video_formats:
            text += (
                "    Supported pixel formats: "
                + " ".join(f.name for f in codec.video_formats)
                + "\n"
            )
        if codec.audio_formats:
            text += (
                "    Supported sample formats: "
                + " ".join(f.name for f in codec.audio_formats)
                + "\n"
            )
        if remote:
            servers = ", ".join(config.servers) or "an embedded server"
            text += f"    vtremote: encoded as {remote} on {servers}\n"
        return text, True
    if kind == "filter":
        if name == "tonemapx":
            return (f"Filter tonemapx\n  {TONEMAPX_DESCRIPTION}\n", True)
        if name not in av.filter.filters_available:
            return (f"Unknown filter '{name}'.\n", False)
        filt: Any = av.filter.Filter(name)
        text = f"Filter {name}\n  {filt.description or ''}\n    Inputs:\n"
        text += (
            "".join(f"       #{i}: {p.name}\n" for i, p in enumerate(filt.inputs))
            or "        dynamic (depending on the options)\n"
        )
        text += "    Outputs:\n" + (
            "".join(f"       #{i}: {p.name}\n" for i, p in enumerate(filt.outputs))
            or "        dynamic (depending on the options)\n"
        )
        return text, True
    return (f"Unknown help option '{topic}'.\n", False)
