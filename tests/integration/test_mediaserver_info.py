"""What media servers read back from ``vtremote-ffmpeg`` at start-up, parsed as Jellyfin parses it
(EncoderValidator: a version regex on the first line, ``lib\\w+ MAJOR. MINOR`` library lines,
one codec / filter name per line after a fixed-width flag column), and the progress lines
it reads while a job runs (JobLogger: tokens split on spaces)."""

from __future__ import annotations

import re
from pathlib import Path

from mediaserver_helpers import make_movie, run_ffmpeg

VERSION_RE = re.compile(r"^ffmpeg version n?((?:[0-9]+\.?)+)")
LIBRARY_RE = re.compile(
    r"((?P<name>lib\w+)\s+(?P<major>[0-9]+)\.\s*(?P<minor>[0-9]+))", re.MULTILINE
)
CODEC_RE = re.compile(r"^\s\S{6}\s(?P<codec>[\w|-]+)\s+.+$", re.MULTILINE)
FILTER_RE = re.compile(r"^\s\S{3}\s(?P<filter>[\w|-]+)\s+.+$", re.MULTILINE)
#: Jellyfin's minimum library versions (those of FFmpeg 4.4).
MINIMUM = {
    "libavutil": (56, 70),
    "libavcodec": (58, 134),
    "libavformat": (58, 76),
    "libavfilter": (7, 110),
    "libswscale": (5, 9),
    "libswresample": (3, 9),
}


def test_version_is_accepted_by_jellyfins_validator(tmp_path: Path) -> None:
    result = run_ffmpeg(tmp_path, ["-version"])
    assert result.returncode == 0
    m = VERSION_RE.match(result.stdout)
    assert m is not None, result.stdout
    version = tuple(int(p) for p in m.group(1).rstrip(".").split("."))
    assert version >= (4, 4)
    libs = {
        x.group("name"): (int(x.group("major")), int(x.group("minor")))
        for x in LIBRARY_RE.finditer(result.stdout)
    }
    for name, minimum in MINIMUM.items():
        assert libs[name] >= minimum, (name, libs)
    assert "configuration:" in result.stdout.splitlines()[2]


def test_encoders_list_software_and_remote_names(tmp_path: Path) -> None:
    result = run_ffmpeg(
        tmp_path, ["-encoders"], config='[ffmpeg]\n[ffmpeg.remote_encoders]\nh264_amf = ""\n'
    )
    assert result.returncode == 0
    found = set(CODEC_RE.findall(result.stdout))
    assert {"libx264", "libx265", "aac", "libmp3lame", "libopus", "flac"} <= found
    assert {
        "h264_qsv",
        "h264_vaapi",
        "h264_nvenc",
        "h264_videotoolbox",
        "hevc_qsv",
        "hevc_vaapi",
        "hevc_nvenc",
        "hevc_videotoolbox",
    } <= found
    assert "h264_amf" not in found  # configured to stay local, and PyAV's own AMF needs a device
    # AV1 encoders become the server's AV1 encoder (an extension codec), named as such.
    assert re.search(
        r"^ V....D av1_nvenc\s+AV1 encoded on a vtremoted server", result.stdout, re.MULTILINE
    )
    assert re.search(
        r"^ V....D h264_nvenc\s+H\.264 / AVC encoded on a vtremoted server",
        result.stdout,
        re.MULTILINE,
    )


def test_decoders_hwaccels_filters_and_help(tmp_path: Path) -> None:
    decoders = run_ffmpeg(tmp_path, ["-decoders"])
    assert {"h264", "hevc", "vp9", "av1", "aac", "ac3", "flac"} <= set(
        CODEC_RE.findall(decoders.stdout)
    )
    hwaccels = run_ffmpeg(tmp_path, ["-hwaccels"])
    lines = [ln for ln in hwaccels.stdout.splitlines() if ln]
    assert lines == ["Hardware acceleration methods:"]  # Jellyfin skips the first line: none
    filters = run_ffmpeg(tmp_path, ["-filters"])
    found = set(FILTER_RE.findall(filters.stdout))
    assert {"scale", "yadif", "bwdif", "setparams", "format", "volume", "fps"} <= found
    assert "scale_cuda" not in found and "tonemap_opencl" not in found
    scale = run_ffmpeg(tmp_path, ["-h", "filter=scale"])
    assert scale.returncode == 0 and "Filter scale" in scale.stdout
    cuda = run_ffmpeg(tmp_path, ["-h", "filter=scale_cuda"])
    assert cuda.returncode == 1 and "Filter scale_cuda" not in cuda.stdout
    formats = run_ffmpeg(tmp_path, ["-formats"]).stdout
    assert re.search(r"^ DE matroska\s+Matroska$", formats, re.MULTILINE)
    assert re.search(r"^ DE hls\s+Apple HTTP Live Streaming$", formats, re.MULTILINE)
    enc = run_ffmpeg(tmp_path, ["-hide_banner", "-h", "encoder=h264_videotoolbox"])
    assert enc.returncode == 0 and enc.stdout.startswith("Encoder h264_videotoolbox [")


def parse_like_joblogger(line: str) -> dict[str, str]:
    """Jellyfin's JobLogger: split on ' ', ``fps=`` followed by its value, ``time=``/``size=``
    tokens."""
    parts = line.split(" ")
    found: dict[str, str] = {}
    for i, part in enumerate(parts):
        if part == "fps=" and i + 1 < len(parts):
            found["fps"] = parts[i + 1]
        elif part.startswith("time="):
            found["time"] = part.split("=", 1)[1]
        elif part.startswith("size=") and "kb" in part.lower():
            found["size"] = part.split("=", 1)[1]
    return found


def test_progress_lines_read_like_ffmpegs(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    movie = make_movie(tmp_path / "m.mkv", 1.0, 160, 96)
    result = run_ffmpeg(
        tmp_path,
        ["-i", str(movie), "-map", "0:0", "-c:v", "libx264", "-f", "null", "-"],
        host=server.addr,
    )
    assert result.returncode == 0, result.stderr
    lines = [ln for ln in re.split(r"[\r\n]", result.stderr) if ln.startswith("frame=")]
    assert lines, result.stderr
    last = lines[-1]
    assert re.fullmatch(
        r"frame=\s*30 fps=\s*\d+(\.\d)? q=-1\.0 size=\s*\d+kB time=00:00:01\.00 "
        r"bitrate=\s*[\d.]+kbits/s speed=\s*[\d.e+]+x",
        last,
    ), last
    parsed = parse_like_joblogger(last)
    assert parsed["time"] == "00:00:01.00"
    assert "fps" in parsed or re.search(
        r"fps=\d{3,}", last
    )  # ffmpeg's own layout: no space from 100 fps on


def test_lavfi_capability_probes_are_answered_here(tmp_path: Path) -> None:
    """Jellyfin's start-up checks on a lavfi source run here (not in the configured ffmpeg), so it
    learns that this command has no runtime keys and accepts -hwaccel_flags."""
    script = tmp_path / "ffmpeg"
    script.write_text(f'#!/bin/sh\ntouch "{tmp_path / "ran"}"\nexit 0\n')
    script.chmod(0o755)
    flag = run_ffmpeg(
        tmp_path,
        [
            "-loglevel",
            "quiet",
            "-hwaccel_flags",
            "+unsafe_output",
            "-hide_banner",
            "-f",
            "lavfi",
            "-i",
            "nullsrc=s=1x1:d=1",
            "-f",
            "null",
            "-",
        ],
        env={"VTREMOTE_FFMPEG": str(script)},
    )
    assert flag.returncode == 0 and flag.stderr == ""
    assert not (tmp_path / "ran").exists()
