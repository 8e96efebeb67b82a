"""Jellyfin 10.9+ AV1 lines: the AV1 encoders it writes become ``av1_remote`` jobs."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

from vtremote.errors import ConfigError
from vtremote.mediaserver.argv import parse_argv
from vtremote.mediaserver.config import MediaServerConfig
from vtremote.mediaserver.media import MediaInfo
from vtremote.mediaserver.translate import translate

MEDIA = MediaInfo(1920, 1080, 1.0, Fraction(24000, 1001), 60.0, 0.0, "h264", 8)


def line(encoder: str, *extra: str) -> list[str]:
    return [
        "-analyzeduration",
        "200M",
        "-i",
        "/media/m.mkv",
        "-map_metadata",
        "-1",
        "-map",
        "0:0",
        "-codec:v:0",
        encoder,
        *extra,
        "-b:v",
        "4000000",
        "-maxrate",
        "4000000",
        "-bufsize",
        "8000000",
        "-g:v:0",
        "72",
        "-keyint_min:v:0",
        "72",
        "-y",
        "/t/o.mp4",
    ]


@pytest.mark.parametrize(
    ("encoder", "extra"),
    [
        ("av1_nvenc", ("-preset", "p1", "-rc", "vbr")),
        ("av1_qsv", ("-preset", "veryfast", "-look_ahead", "0")),
        ("av1_vaapi", ("-rc_mode", "VBR")),
        ("libsvtav1", ("-preset", "8", "-svtav1-params", "tune=0")),
    ],
)
def test_jellyfin_av1_lines_become_av1_remote_jobs(encoder: str, extra: tuple[str, ...]) -> None:
    cmd = parse_argv(line(encoder, *extra))
    plan = translate(cmd, MediaServerConfig(), server="mac:5555", media=MEDIA)
    out = plan.spec.output
    assert plan.remote and out.codecs["v"] == "av1_remote"
    assert out.video["gop"] == 72 and out.video["maxrate"] == 4000000
    assert out.codec_options == {}


def test_av1_line_falls_back_to_svt_av1_here() -> None:
    if "libsvtav1" not in av.codecs_available:
        pytest.skip("PyAV without SVT-AV1")
    plan = translate(parse_argv(line("av1_nvenc")), MediaServerConfig(), server=None, media=MEDIA)
    assert not plan.remote and plan.spec.output.codecs["v"] == "libsvtav1"


def test_remote_encoders_accept_av1() -> None:
    MediaServerConfig(remote_encoders={"av1_nvenc": "av1"})
    with pytest.raises(ConfigError, match='"av1"'):
        MediaServerConfig(remote_encoders={"av1_nvenc": "vp9"})
