"""vtremote-ffmpeg's parts on their own: configuration, argv, filter chains and scale
expressions, the translation into a JobSpec, and the HLS output's failure handling."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from vtremote.errors import ConfigError
from vtremote.mediaserver.argv import parse_argv, strip_file_url
from vtremote.mediaserver.config import MediaServerConfig, load_config
from vtremote.mediaserver.filters import (
    Geometry,
    Unsupported,
    evaluate,
    scale_size,
    translate_chain,
)
from vtremote.mediaserver.translate import MediaInfo, translate
from vtremote.pipeline.hls import HlsOutput

JELLYFIN_W = r"trunc(min(max(iw\,ih*a)\,min(1920\,1080*a))/2)*2"
JELLYFIN_H = r"trunc(min(max(iw/a\,ih)\,min(1920/a\,1080))/2)*2"

# --- configuration --------------------------------------------------------------------------------


def test_config_files_then_environment(tmp_path: Path) -> None:
    system = tmp_path / "system.toml"
    system.write_text('[ffmpeg]\nservers = ["a:5555"]\nrate_control = "bitrate"\ntoken = "x"\n')
    user = tmp_path / "user.toml"
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    user.write_text(
        f'[ffmpeg]\ntoken_file = "{token}"\nffmpeg_path = "/usr/bin/ffmpeg"\n'
        '[ffmpeg.remote_encoders]\nh264_amf = ""\nmpeg4 = "h264"\n'
    )
    cfg = load_config({"VTREMOTE_HOST": "b:1, c:2"}, [system, user, tmp_path / "missing.toml"])
    assert cfg.servers == ("b:1", "c:2")
    assert (
        cfg.token == "s3cret"
        and cfg.rate_control == "bitrate"
        and cfg.ffmpeg_path == "/usr/bin/ffmpeg"
    )
    assert cfg.remote_codec("h264_amf") is None and cfg.remote_codec("mpeg4") == "h264"
    assert cfg.remote_codec("hevc_vaapi") == "hevc"
    assert cfg.sources == (str(system), str(user), "$VTREMOTE_HOST")


def test_config_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[ffmpeg]\non_unavailable = "retry"\n')
    with pytest.raises(
        ConfigError, match="on_unavailable 'retry' is not one of local, ffmpeg, fail"
    ):
        load_config({}, [bad])
    bad.write_text("[ffmpeg]\nservrs = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: unknown key 'servrs'"):
        load_config({}, [bad])
    bad.write_text("[ffmpeg\n")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML"):
        load_config({}, [bad])


# --- argv -----------------------------------------------------------------------------------------


def test_argv_positions_and_specifiers() -> None:
    cmd = parse_argv(
        [
            "-hide_banner",
            "-ss",
            "00:01:00",
            "-noaccurate_seek",
            "-autorotate",
            "0",
            "-i",
            'file:"/m/a b.mkv"',
            "-map",
            "-0:s",
            "-codec:v:0",
            "libx264",
            "-x264opts:0",
            "subme=0",
            "-avoid_negative_ts",
            "disabled",
            "-vsync",
            "-1",
            "-y",
            "/t/o.m3u8",
        ]
    )
    assert [o.name for o in cmd.globals] == ["hide_banner", "vsync", "y"]
    assert [o.name for o in parse_argv(["-copyts", "-i", "a", "-start_at_zero", "o"]).globals] == [
        "copyts",
        "start_at_zero",
    ]
    assert strip_file_url(cmd.inputs[0].url) == "/m/a b.mkv"
    assert [(o.name, o.value) for o in cmd.inputs[0].options] == [
        ("ss", "00:01:00"),
        ("noaccurate_seek", None),
        ("autorotate", "0"),
    ]
    out = cmd.outputs[0]
    assert out.url == "/t/o.m3u8"
    assert [(o.name, o.spec, o.value) for o in out.options] == [
        ("map", "", "-0:s"),
        ("codec", "v:0", "libx264"),
        ("x264opts", "0", "subme=0"),
        ("avoid_negative_ts", "", "disabled"),
    ]
    assert parse_argv(["-encoders"]).info == "encoders"
    help_cmd = parse_argv(["-h", "filter=scale_cuda"])
    assert (help_cmd.info, help_cmd.help_topic) == ("help", "filter=scale_cuda")


# --- filters and expressions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "sar", "expected"),
    [
        ((3840, 2160), 1.0, (1920, 1080)),
        ((1920, 800), 1.0, (1920, 800)),
        ((720, 576), 1.0, (720, 576)),
        ((1440, 1080), 1.0, (1440, 1080)),
        ((4096, 1716), 1.0, (1920, 804)),
    ],
)
def test_jellyfin_scale_expression(
    size: tuple[int, int], sar: float, expected: tuple[int, int]
) -> None:
    assert scale_size(JELLYFIN_W, JELLYFIN_H, Geometry(*size, sar)) == expected


def test_scale_minus_n_and_zero() -> None:
    assert scale_size("-2", "720", Geometry(1920, 1080)) == (1280, 720)
    assert scale_size("1280", "-1", Geometry(1920, 800)) == (1280, 533)
    assert scale_size("0", "0", Geometry(640, 360)) == (640, 360)
    assert scale_size("trunc(iw*sar/2)*2", "ih", Geometry(720, 480, 32 / 27)) == (852, 480)
    assert evaluate("if(gte(iw,1000),1,2)+2^3", {"iw": 1920}) == 9.0
    with pytest.raises(Unsupported, match="variable 'foo'"):
        evaluate("foo*2", {})


def test_hardware_chains_become_software() -> None:
    geo = Geometry(3840, 2160)
    vaapi = translate_chain(
        "setparams=color_primaries=bt709,hwupload=extra_hw_frames=64,"
        "scale_vaapi=w=1280:h=720:format=nv12:extra_hw_frames=24,hwdownload,format=nv12|vaapi",
        geo,
    )
    assert vaapi.chain == "setparams=color_primaries=bt709,scale=1280:720,format=nv12"
    cuda = translate_chain(
        "yadif_cuda=0:-1:0,scale_cuda=format=yuv420p:w=1920:h=1080,tonemap_cuda=format=yuv420p:"
        "tonemap=bt2390",
        geo,
    )
    assert cuda.chain == (
        "yadif,scale=1920:1080,format=yuv420p,tonemap=algorithm=bt2390:peak=0:desat=0,"
        "format=yuv420p"
    )
    assert cuda.tone_mapped and not cuda.notes
    qsv = translate_chain(
        "vpp_qsv=deinterlace=2:w=1280:h=720:format=p010,transpose_vaapi=dir=clock", geo
    )
    assert qsv.chain == "bwdif,scale=1280:720,format=p010le,transpose=dir=clock"
    assert qsv.geometry == Geometry(720, 1280)
    with pytest.raises(Unsupported, match="overlay"):
        translate_chain("overlay_vaapi=eof_action=pass", geo)
    with pytest.raises(Unsupported, match="not available"):
        translate_chain("nosuchfilter=1", geo)


# --- translation ----------------------------------------------------------------------------------

JELLYFIN = [
    "-analyzeduration",
    "200M",
    "-probesize",
    "1G",
    "-ss",
    "00:02:18.000",
    "-f",
    "matroska,webm",
    "-autorotate",
    "0",
    "-i",
    'file:"/media/m.mkv"',
    "-map_metadata",
    "-1",
    "-map_chapters",
    "-1",
    "-threads",
    "0",
    "-map",
    "0:0",
    "-map",
    "0:1",
    "-map",
    "-0:s",
    "-codec:v:0",
    "libx264",
    "-preset",
    "veryfast",
    "-crf",
    "23",
    "-maxrate",
    "3331600",
    "-bufsize",
    "6663200",
    "-profile:v:0",
    "high",
    "-level",
    "51",
    "-x264opts:0",
    "subme=0:me_range=4",
    "-force_key_frames:0",
    "expr:gte(t,138+n_forced*3)",
    "-sc_threshold:v:0",
    "0",
    "-vf",
    f"setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709,scale={JELLYFIN_W}:{JELLYFIN_H},format=yuv420p",
    "-codec:a:0",
    "libfdk_aac",
    "-ac",
    "2",
    "-ab",
    "256000",
    "-af",
    "volume=2",
    "-copyts",
    "-avoid_negative_ts",
    "disabled",
    "-max_muxing_queue_size",
    "2048",
    "-f",
    "hls",
    "-max_delay",
    "5000000",
    "-hls_time",
    "3",
    "-hls_segment_type",
    "mpegts",
    "-start_number",
    "46",
    "-hls_segment_filename",
    "/t/x%d.ts",
    "-hls_playlist_type",
    "vod",
    "-hls_list_size",
    "0",
    "-y",
    "/t/x.m3u8",
]
MEDIA = MediaInfo(3840, 2160, 1.0, Fraction(24000, 1001), 150.0, 0.0, "hevc", 10)


def test_jellyfin_line_to_remote_job() -> None:
    plan = translate(parse_argv(JELLYFIN), MediaServerConfig(), server="mac:5555", media=MEDIA)
    spec, out = plan.spec, plan.spec.output
    assert plan.remote and spec.overwrite is True
    inp = spec.inputs[0]
    assert (inp.url, inp.format, inp.seek) == ("/media/m.mkv", "matroska,webm", 138.0)
    assert inp.options == {"analyzeduration": "200M", "probesize": "1G"}
    assert out.codecs == {"v": "h264_videotoolbox_remote", "a": "aac"}
    assert out.remote.host == "mac:5555"
    assert out.video == {
        "global_quality": 55,
        "maxrate": 3331600,
        "prio_speed": 1,
        "gop": 72,
        "profile": "high",
        "level": "5.1",
    }
    assert out.codec_options == {}  # nothing local-only travels to the remote encoder
    assert out.video_filter == (
        "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709,"
        "scale=1920:1080,format=yuv420p"
    )
    assert (out.audio_bitrate, out.audio_channels, out.audio_filter) == (256000, 2, "volume=2")
    assert out.copyts and not out.start_at_zero
    assert out.format == "hls"
    assert out.format_options == {
        "avoid_negative_ts": "disabled",
        "max_delay": "5000000",
        "hls_time": "3",
        "hls_segment_type": "mpegts",
        "start_number": "46",
        "hls_segment_filename": "/t/x%d.ts",
        "hls_playlist_type": "vod",
        "hls_list_size": "0",
    }
    assert [m.negative for m in out.maps] == [False, False, True]
    # copyts: keyframes on the source's clock from the seek point to the end of the input.
    times = (out.force_key_frames or "").split(",")
    assert times[:3] == ["138", "141", "144"] and float(times[-1]) >= 150.0


def test_jellyfin_line_to_local_fallback_job() -> None:
    plan = translate(parse_argv(JELLYFIN), MediaServerConfig(), server=None, media=MEDIA)
    out = plan.spec.output
    assert not plan.remote and out.codecs["v"] == "libx264"
    assert out.codec_options == {
        "preset": "veryfast",
        "crf": "23",
        "maxrate": "3331600",
        "bufsize": "6663200",
        "profile": "high",
        "x264-params": "subme=0:me_range=4",
        "sc_threshold": "0",
    }
    hw = [
        "-i",
        "/m.mkv",
        "-c:v",
        "hevc_nvenc",
        "-preset",
        "p1",
        "-b:v",
        "2M",
        "-maxrate",
        "2M",
        "-rc",
        "vbr",
        "/o.mp4",
    ]
    plan = translate(parse_argv(hw), MediaServerConfig(), server=None, media=MEDIA)
    assert plan.spec.output.codecs["v"] == "libx265"
    assert plan.spec.output.codec_options == {
        "preset": "veryfast",
        "b": "2000000",
        "maxrate": "2000000",
        "sc_threshold": "0",
    }


def test_rate_control_bitrate_and_unsupported_lines() -> None:
    line = [
        "-i",
        "/m.mkv",
        "-c:v",
        "h264_qsv",
        "-global_quality",
        "25",
        "-b:v",
        "4M",
        "-maxrate",
        "5M",
        "/o.mkv",
    ]
    plan = translate(
        parse_argv(line), MediaServerConfig(rate_control="bitrate"), server="s:1", media=MEDIA
    )
    assert (
        plan.spec.output.video["bitrate"] == 4_000_000
        and "global_quality" not in plan.spec.output.video
    )
    with pytest.raises(Unsupported, match="filter_complex"):
        translate(
            parse_argv(["-i", "/m", "-filter_complex", "[0:0]null[v]", "-map", "[v]", "/o.mkv"]),
            MediaServerConfig(),
            server="s:1",
            media=MEDIA,
        )
    with pytest.raises(Unsupported, match="output option -hls_key_info_file keys.txt"):
        translate(
            parse_argv(
                [
                    "-i",
                    "/m",
                    "-c:v",
                    "libx264",
                    "-f",
                    "hls",
                    "-hls_key_info_file",
                    "keys.txt",
                    "/o.m3u8",
                ]
            ),
            MediaServerConfig(),
            server="s:1",
            media=MEDIA,
        )
    with pytest.raises(Unsupported, match="2 outputs"):
        translate(
            parse_argv(["-i", "/m", "/a.mkv", "/b.mkv"]),
            MediaServerConfig(),
            server="s:1",
            media=MEDIA,
        )


# --- HLS output on failure ------------------------------------------------------------------------


def _write_segments(hls: HlsOutput, seconds: int) -> None:
    stream = hls.container.add_stream("mpeg2video", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    for i in range(seconds * 25):
        frame = av.VideoFrame(64, 64, "yuv420p")
        frame.pts = i
        frame.time_base = Fraction(1, 25)
        frame.pict_type = (
            av.video.frame.PictureType.I if i % 25 == 0 else av.video.frame.PictureType.NONE
        )
        for p in stream.encode(frame):
            hls.container.mux(p)


def test_failed_hls_run_removes_what_it_wrote(tmp_path: Path) -> None:
    (tmp_path / "other5.ts").write_bytes(b"not ours")
    hls = HlsOutput(
        str(tmp_path / "p.m3u8"),
        {"hls_time": "1", "hls_segment_filename": str(tmp_path / "p%d.ts")},
        overwrite=True,
    )
    _write_segments(hls, 3)
    assert (tmp_path / "p0.ts").exists() and (tmp_path / "p1.ts").exists()
    hls.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other5.ts"]


def test_failed_hls_run_keep_partial_marks_the_playlist(tmp_path: Path) -> None:
    hls = HlsOutput(
        str(tmp_path / "p.m3u8"),
        {
            "hls_time": "1",
            "hls_segment_type": "fmp4",
            "hls_fmp4_init_filename": str(tmp_path / "p-1.mp4"),
        },
        overwrite=True,
        keep_partial=True,
    )
    _write_segments(hls, 3)
    hls.abort()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "p.m3u8" not in names and "p.partial.m3u8" in names
    assert "p-1.mp4" in names and "p0.m4s" in names
    assert not [n for n in names if n.endswith(".tmp")]


# Hardware-acceleration lines laid out as Jellyfin writes them (VAAPI, CUDA, QSV), translated
# for a server: the hardware set-up is dropped, the chains become software ones.
HW_LINES = {
    "vaapi": (
        "-analyzeduration 200M -ss 00:13:15.000 -init_hw_device vaapi=va:/dev/dri/renderD128 "
        "-filter_hw_device va -hwaccel vaapi -hwaccel_output_format vaapi -autorotate 0 "
        "-i file:/m/a.mkv -autoscale 0 -map_metadata -1 -map_chapters -1 -threads 0 -map 0:0 "
        "-map 0:1 -map -0:s -codec:v:0 h264_vaapi -rc_mode VBR -b:v 7616000 -maxrate 7616000 "
        "-bufsize 15232000 -profile:v:0 high -force_key_frames:0 expr:gte(t,795+n_forced*3) "
        "-vf setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709,"
        "scale_vaapi=format=nv12:extra_hw_frames=24 -codec:a:0 libfdk_aac -ac 2 -ab 384000 "
        "-af volume=2 -copyts -avoid_negative_ts disabled -max_muxing_queue_size 2048 -f hls "
        "-max_delay 5000000 -hls_time 3 -hls_segment_type mpegts -start_number 265 "
        "-hls_segment_filename /t/x%d.ts -hls_playlist_type vod -hls_list_size 0 -y /t/x.m3u8",
        "h264_videotoolbox_remote",
        "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709,format=nv12",
    ),
    "cuda": (
        "-analyzeduration 200M -probesize 1G -ss 00:27:33.000 -f mov,mp4,m4a,3gp,3g2,mj2 "
        "-init_hw_device cuda=cu:0 -filter_hw_device cu -hwaccel cuda -hwaccel_output_format cuda "
        "-noautorotate -hwaccel_flags +unsafe_output -threads 1 -i file:/m/b.mp4 -noautoscale "
        "-map_metadata -1 -map_chapters -1 -threads 0 -map 0:0 -map 0:1 -map -0:s "
        "-codec:v:0 h264_nvenc -preset p1 -b:v 1321304 -maxrate 1321304 -bufsize 2642608 "
        "-profile:v:0 high -g:v:0 75 -keyint_min:v:0 75 -vf "
        "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709,scale_cuda=w=1280:h=720:"
        "format=yuv420p -codec:a:0 copy -copyts -avoid_negative_ts disabled "
        "-max_muxing_queue_size 2048 -f hls -max_delay 5000000 -hls_time 3 "
        "-hls_segment_type mpegts -start_number 551 -hls_segment_filename /t/y%d.ts "
        "-hls_playlist_type vod -hls_list_size 0 -y /t/y.m3u8",
        "h264_videotoolbox_remote",
        "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709,scale=1280:720,"
        "format=yuv420p",
    ),
    "cuda_tonemap": (
        "-analyzeduration 200M -init_hw_device cuda=cu:0 -filter_hw_device cu -hwaccel cuda "
        "-hwaccel_output_format cuda -threads 1 -autorotate 0 -i file:/m/c.mkv -autoscale 0 "
        "-map_metadata -1 -map_chapters -1 -threads 0 -map 0:0 -map 0:1 -map -0:s "
        "-codec:v:0 h264_nvenc -preset p4 -b:v 41773063 -maxrate 41773063 -bufsize 83546126 "
        "-profile:v:0 high -g:v:0 72 -keyint_min:v:0 72 -vf "
        "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc,"
        "tonemap_cuda=format=yuv420p:p=bt709:t=bt709:m=bt709:tonemap=bt2390:peak=100:desat=0 "
        "-codec:a:0 libfdk_aac -ac 2 -ab 384000 -af volume=2 -copyts -avoid_negative_ts disabled "
        "-max_muxing_queue_size 2048 -f hls -max_delay 5000000 -hls_time 3 "
        "-hls_segment_type mpegts -start_number 0 -hls_segment_filename /t/z%d.ts "
        "-hls_playlist_type vod -hls_list_size 0 -y /t/z.m3u8",
        "h264_videotoolbox_remote",
        "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc,"
        "tonemap=algorithm=bt2390:peak=100:desat=0,format=yuv420p",
    ),
    "qsv_hevc_fmp4": (
        "-analyzeduration 200M -probesize 1G -init_hw_device "
        "vaapi=va:,kernel_driver=i915,driver=iHD -init_hw_device qsv=qs@va "
        "-init_hw_device opencl=ocl@va -filter_hw_device qs -hwaccel qsv "
        "-hwaccel_output_format qsv -c:v hevc_qsv -noautorotate -i file:/m/d.mkv -noautoscale "
        "-map_metadata -1 -map_chapters -1 -threads 0 -map 0:0 -map 0:1 -map -0:s "
        "-codec:v:0 hevc_qsv -preset veryfast -b:v 8406205 -maxrate 8406205 -bufsize 16812410 "
        "-g:v:0 72 -keyint_min:v:0 72 -tag:v:0 hvc1 -vf "
        "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc,"
        "hwmap=derive_device=vaapi,procamp_vaapi=b=16:c=1,tonemap_vaapi=format=nv12:p=bt709:"
        "t=bt709:m=bt709:extra_hw_frames=32,hwmap=derive_device=qsv -codec:a:0 libfdk_aac -ac 2 "
        "-ab 256000 -af volume=2 -copyts -avoid_negative_ts disabled -max_muxing_queue_size 2048 "
        "-f hls -max_delay 5000000 -hls_time 3 -hls_segment_type fmp4 -hls_fmp4_init_filename "
        "e0-1.mp4 -start_number 0 -hls_segment_filename /t/e0%d.mp4 -hls_playlist_type vod "
        "-hls_list_size 0 -y /t/e0.m3u8",
        "hevc_videotoolbox_remote",
        "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc,"
        "tonemap=algorithm=bt2390:peak=0:desat=0,format=nv12",
    ),
}


@pytest.mark.parametrize("name", sorted(HW_LINES))
def test_hardware_lines_translate_for_a_server(name: str) -> None:
    line, codec, chain = HW_LINES[name]
    plan = translate(
        parse_argv(line.split(" ")),
        MediaServerConfig(rate_control="bitrate"),
        server="s:1",
        media=MEDIA,
    )
    out = plan.spec.output
    assert plan.remote and out.codecs["v"] == codec
    assert out.video_filter == chain
    assert out.video["bitrate"] > 0 and out.format == "hls" and out.copyts
    assert out.force_key_frames  # a keyframe at every segment start
    assert ("tonemap=algorithm=" in (out.video_filter or "")) == ("tonemap" in line)


# Hardware encoders' options: translated to the engine's settings, or ignored with a note each.
HW_OPTIONS = {
    "-sei -a53_cc -rc_mode VBR": ({"a53_cc": False}, ["-rc_mode VBR ignored"]),
    "-preset p1 -tune ll -spatial-aq 1 -multipass qres": (
        {"prio_speed": 1, "realtime": 1, "spatial_aq": 1},
        ["-multipass qres ignored"],
    ),
    "-quality quality -usage transcoding -header_insertion_mode gop": (
        {"prio_speed": 0},
        ["-usage transcoding ignored", "-header_insertion_mode gop ignored"],
    ),
    "-realtime 1 -prio_speed 1 -allow_sw 1 -constant_bit_rate 1": (
        {"realtime": 1, "prio_speed": 1, "constant_bit_rate": True},
        ["-allow_sw 1 ignored"],
    ),
    "-look_ahead 0 -extbrc 1 -async_depth 1 -low_power 1": (
        {},
        ["-look_ahead 0", "-extbrc 1", "-async_depth 1", "-low_power 1"],
    ),
}


@pytest.mark.parametrize("options", sorted(HW_OPTIONS))
def test_hardware_encoder_options_are_translated_or_noted(options: str) -> None:
    settings, ignored = HW_OPTIONS[options]
    line = f"-i /m/a.mkv -map 0:0 -c:v h264_qsv -b:v 2M {options} -c:a aac_at -f mp4 -y /t/o.mp4"
    plan = translate(parse_argv(line.split()), MediaServerConfig(), server="s:1", media=MEDIA)
    video = plan.spec.output.video
    assert {k: video[k] for k in settings} == settings
    for text in ignored:
        assert sum(n.startswith(text) for n in plan.notes) == 1, plan.notes
    assert "audio encoder aac_at runs as aac here" in plan.notes
    assert plan.spec.output.codecs == {"v": "h264_videotoolbox_remote", "a": "aac"}
    # The local fallback takes none of them, and no preset libx264 lacks.
    local = translate(parse_argv(line.split()), MediaServerConfig(), server=None, media=MEDIA)
    assert local.spec.output.codec_options.get("preset") == "veryfast"
    assert not set(settings) & set(local.spec.output.video)


def test_trickplay_line_decodes_keyframes_remotely_or_here() -> None:
    line = (
        "-loglevel error -an -sn -dn -skip_frame nokey -threads 1 -i file:/m/a.mkv -an -sn -dn "
        "-vf fps=1/10,scale=320:-2 -threads 1 -c:v mjpeg -qscale:v 4 -f image2 /t/tp/%08d.jpg"
    )
    plan = translate(parse_argv(line.split()), MediaServerConfig(), server="s:1", media=MEDIA)
    first = plan.spec.inputs[0]
    assert plan.remote and first.keyframes_only and first.remote.host == "s:1"
    assert first.video_codec == f"{MEDIA.codec}_videotoolbox_remote"
    assert plan.spec.output.codecs == {"v": "mjpeg"} and plan.spec.output.no_audio
    local = translate(parse_argv(line.split()), MediaServerConfig(), server=None, media=MEDIA)
    assert not local.remote and local.spec.inputs[0].video_codec is None
    assert local.spec.inputs[0].keyframes_only
