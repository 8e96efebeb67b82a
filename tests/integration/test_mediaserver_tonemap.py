"""Jellyfin's HDR -> SDR lines through ``vtremote-ffmpeg``: tone-mapped on the server.

Each tone-mapping chain Jellyfin's EncodingHelper writes (software ``tonemapx``, the
older ``zscale``+``tonemap``, ``tonemap_opencl``, ``tonemap_vaapi``, ``libplacebo``)
must become the server's ``tonemap`` filter in a packet transcode, and the output
must be SDR: BT.709 tags in the bitstream, luma in SDR range and changed from the
untouched HDR pictures, every frame decoded.
"""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from hdr_media import PQ, check_tone_mapped, make_hdr_mkv

from mediaserver_helpers import counters, run_ffmpeg

pytestmark = pytest.mark.skipif(
    "libx265" not in av.codecs_available, reason="the HDR clips are written with libx265"
)

FRAMES = 24
TAGS = "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc,"
SCALE = (
    r"scale=trunc(min(max(iw\,ih*a)\,min(320\,180*a))/2)*2:"
    r"trunc(min(max(iw/a\,ih)\,min(320/a\,180))/2)*2,"
)
CHAINS = {
    "tonemapx": (
        "libx264",
        TAGS
        + SCALE
        + "tonemapx=tonemap=hable:desat=0:peak=100:t=bt709:m=bt709:p=bt709:format=yuv420p",
        "hable",
    ),
    "zscale": (
        "libx264",
        TAGS + SCALE + "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
        "tonemap=tonemap=hable:desat=0:peak=100,zscale=t=bt709:m=bt709:r=tv,format=yuv420p",
        "hable",
    ),
    "opencl": (
        "h264_qsv",
        TAGS + "hwupload=derive_device=opencl,tonemap_opencl=format=nv12:p=bt709:t=bt709:m=bt709:"
        "tonemap=bt2390:peak=100:desat=0,hwdownload,format=nv12",
        "bt2390",
    ),
    "vaapi": (
        "h264_vaapi",
        TAGS + "hwmap=derive_device=vaapi,procamp_vaapi=b=16:c=1,"
        "tonemap_vaapi=format=nv12:p=bt709:t=bt709:m=bt709:extra_hw_frames=32,"
        "hwdownload,format=nv12",
        "bt2390",
    ),
    "libplacebo": (
        "h264_nvenc",
        TAGS + "hwupload,libplacebo=format=yuv420p:upscaler=none:downscaler=none:w=320:h=180:"
        "tonemapping=hable:peak_detect=0:color_primaries=bt709:color_trc=bt709:colorspace=bt709,"
        "hwdownload,format=yuv420p",
        "hable",
    ),
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_jellyfin_tonemap_line_runs_on_the_server(  # type: ignore[no-untyped-def]
    tmp_path: Path, server, name: str
) -> None:
    encoder, chain, curve = CHAINS[name]
    src = make_hdr_mkv(tmp_path / "hdr10.mkv", FRAMES, 320, 180, PQ)
    with av.open(str(src)) as c:
        source = list(c.decode(video=0))
    out = tmp_path / "out.mkv"
    args = [
        "-analyzeduration",
        "200M",
        "-f",
        "matroska,webm",
        "-i",
        f"file:{src}",
        "-map_metadata",
        "-1",
        "-map",
        "0:0",
        "-codec:v:0",
        encoder,
        "-b:v",
        "1000000",
        "-maxrate",
        "1000000",
        "-bufsize",
        "2000000",
        "-vf",
        chain,
        "-f",
        "matroska",
        "-y",
        str(out),
    ]
    result = run_ffmpeg(
        tmp_path, args, host=server.addr, config='[ffmpeg]\nrate_control = "bitrate"\n'
    )
    assert result.returncode == 0, result.stderr
    # The whole chain ran on the server, in a packet transcode, with the tone curve asked for.
    server.wait_for_log(rf"transcode hevc 320x180 -> \[.*tonemap=algorithm={curve}:peak=")
    server.wait_for_log(r"SUMMARY mode=transcode .*frames_filtered=24")
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
    assert len(frames) == FRAMES
    assert (frames[0].width, frames[0].height) == (320, 180)
    check_tone_mapped(frames, source, curve, 100.0, darker=curve == "hable")


def test_without_a_server_the_same_tone_mapping_runs_here(tmp_path: Path) -> None:
    """No server reachable: the line runs on this machine (frame path, local encoder) with the
    same LUT, so the pictures and tags are the same as the server's."""
    src = make_hdr_mkv(tmp_path / "hdr10.mkv", 12, 320, 180, PQ)
    with av.open(str(src)) as c:
        source = list(c.decode(video=0))
    out = tmp_path / "out.mkv"
    chain = CHAINS["tonemapx"][1]
    args = ["-f", "matroska,webm", "-i", f"file:{src}", "-map", "0:0", "-codec:v:0", "libx264"]
    args += ["-crf", "18", "-vf", chain, "-f", "matroska", "-y", str(out)]
    result = run_ffmpeg(tmp_path, args, host="127.0.0.1:9")  # nothing listens on port 9
    assert result.returncode == 0, result.stderr
    assert counters(tmp_path)["local_fallback"] == 1
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 12
    check_tone_mapped(frames, source, "hable", 100.0, darker=True)
