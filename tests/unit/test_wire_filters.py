"""The server filter-chain language: parse, canonical text, sizes as FFmpeg computes them."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from vtremote.errors import ConfigError, UnsupportedConfigError
from vtremote.wire import filters as f

SRC = f.Geometry(1920, 1080, Fraction(1, 90000), Fraction(30))


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("scale=-2:720", "scale=w=-2:h=720"),
        (
            "scale=w=1280:h=-1:flags=lanczos+accurate_rnd",
            "scale=w=1280:h=-1:flags=lanczos+accurate_rnd",
        ),
        ("scale=width=640:height=360", "scale=w=640:h=360"),
        (
            "scale=1280:720:force_original_aspect_ratio=decrease",
            "scale=w=1280:h=720:force_original_aspect_ratio=1",
        ),
        ("fps=30000/1001", "fps=fps=30000/1001"),
        ("fps=fps=ntsc", "fps=fps=30000/1001"),
        ("fps=29.97", "fps=fps=2997/100"),
        ("format=yuv420p", "format=pix_fmts=yuv420p"),
        ("format=pix_fmts=nv12|yuv420p", "format=pix_fmts=nv12|yuv420p"),
        ("crop=1280:720", "crop=w=1280:h=720"),
        ("crop=out_w=100:out_h=50:x=2:y=4", "crop=w=100:h=50:x=2:y=4"),
        ("yadif", "yadif=mode=0:parity=-1:deint=0"),
        ("yadif=send_field:tff:interlaced", "yadif=mode=1:parity=0:deint=1"),
        ("bwdif", "bwdif=mode=1:parity=-1:deint=0"),
        (
            "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709",
            "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709",
        ),
        ("setsar=1", "setsar=sar=1/1"),
        ("setsar=16:11", "setsar=sar=16/11"),
        ("null", "null"),
        (" scale=-2:720 , fps=30 ", "scale=w=-2:h=720,fps=fps=30/1"),
        ("", ""),
    ],
)
def test_parse_and_canonical_text(text: str, canonical: str) -> None:
    chain = f.parse(text)
    assert f.serialize(chain) == canonical
    assert f.parse(canonical) == chain


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("drawtext=text=hello", "filter 'drawtext' is not supported"),
        ("drawtext=text='a, b'", "filter 'drawtext' is not supported"),
        ("hqdn3d", "filter 'hqdn3d'"),
        ("scale=iw/2:-2", "expressions are not supported"),
        ("scale=trunc(iw/2)*2:-2", "expressions are not supported"),
        ("[in]scale=2:2[out]", "labels or several chains"),
        ("scale=2:2;null", "labels or several chains"),
        ("scale=2:2:interl=1", "scale option 'interl' is not supported"),
        ("scale=2:2:flags=magic", "'magic' is not supported"),
        ("format=rgb24", "pixel format 'rgb24' is not supported"),
        ("fps=30:round=up", "fps option 'round' is not supported"),
    ],
)
def test_unsupported_names_what(text: str, needle: str) -> None:
    with pytest.raises(UnsupportedConfigError) as info:
        f.parse(text)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "scale",
        "scale=1:2:3:4",
        "scale=w=1:w=2",
        "fps=0",
        "fps=-3",
        "fps=abc/",
        "crop=0:10",
        "yadif=7",
        "setparams=range=wide",
        "setsar=0",
        "null=1",
        "scale=,",
        ",",
        "Scale=2:2",
        "scale=99999:2",
        "scale=-65:2",
    ],
)
def test_malformed_is_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        f.parse(text)


def test_limits() -> None:
    with pytest.raises(ConfigError, match="exceeds 1024"):
        f.parse("null," * 300)
    with pytest.raises(ConfigError, match="at most 16"):
        f.parse(",".join(["null"] * 17))
    assert len(f.parse(",".join(["null"] * 16))) == 16


@pytest.mark.parametrize(
    ("spec", "size", "expected"),
    [
        ("scale=-2:720", (1920, 1080), (1280, 720)),
        ("scale=-2:720", (1440, 1080), (960, 720)),
        ("scale=-2:480", (1920, 1080), (854, 480)),
        ("scale=-1:480", (1920, 1080), (853, 480)),
        ("scale=-4:480", (1920, 1080), (852, 480)),
        ("scale=1280:-2", (1920, 800), (1280, 534)),
        ("scale=0:360", (640, 480), (640, 360)),
        ("scale=-1:-1", (640, 480), (640, 480)),
        ("scale=1280:1280:force_original_aspect_ratio=decrease", (1920, 1080), (1280, 720)),
        ("scale=1280:1280:force_original_aspect_ratio=increase", (1920, 1080), (2276, 1280)),
        (
            "scale=1280:1280:force_original_aspect_ratio=decrease:force_divisible_by=16",
            (1920, 1080),
            (1280, 720),
        ),
    ],
)
def test_scale_sizes(spec: str, size: tuple[int, int], expected: tuple[int, int]) -> None:
    chain = f.parse(spec)
    g = f.output_geometry(chain, f.Geometry(size[0], size[1], Fraction(1, 25)))
    assert (g.width, g.height) == expected


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        ("scale=-2:720", (1920, 1080)),
        ("scale=-2:480", (1440, 1080)),
        ("scale=1280:-2", (1920, 800)),
        ("scale=-1:300", (704, 576)),
        ("scale=500:500:force_original_aspect_ratio=decrease", (1920, 1080)),
        ("crop=101:51:3:5", (320, 240)),
        ("crop=200:100", (320, 240)),
    ],
)
def test_sizes_match_ffmpeg(spec: str, size: tuple[int, int]) -> None:
    """Our own arithmetic and FFmpeg's (given the original text) agree."""
    ours = f.output_geometry(f.parse(spec), f.Geometry(size[0], size[1], Fraction(1, 25)))
    graph = av.filter.Graph()
    src = graph.add_buffer(
        width=size[0], height=size[1], format="yuv420p", time_base=Fraction(1, 25)
    )
    name, _, args = spec.partition("=")
    node = graph.add(name, args)
    sink = graph.add("buffersink")
    src.link_to(node)
    node.link_to(sink)
    graph.configure()
    frame = (
        av.VideoFrame.from_ndarray(
            np.zeros((size[1] * 3 // 2, size[0]), np.uint8), format="yuv420p"
        )
        if size[0] % 2 == 0 and size[1] % 2 == 0
        else av.VideoFrame(size[0], size[1], "yuv420p")
    )
    frame.pts = 0
    graph.vpush(frame)
    out = graph.vpull()
    if name == "crop":  # ours rounds down to even (what FFmpeg does for 4:2:0 without exact=1)
        assert (ours.width, ours.height) == (out.width & ~1, out.height & ~1)
    else:
        assert (ours.width, ours.height) == (out.width, out.height)


def test_geometry_time_base_and_rate() -> None:
    g = f.output_geometry(f.parse("fps=24000/1001"), SRC)
    assert g.time_base == Fraction(1001, 24000) and g.frame_rate == Fraction(24000, 1001)
    g = f.output_geometry(f.parse("yadif=1"), SRC)
    assert g.time_base == Fraction(1, 180000) and g.frame_rate == Fraction(60)
    g = f.output_geometry(f.parse("yadif=0"), SRC)
    assert g.time_base == Fraction(1, 180000) and g.frame_rate == Fraction(30)


def test_graph_steps_use_computed_numbers() -> None:
    steps, g = f.graph_steps(
        f.parse("crop=1000:700,scale=-2:360:flags=bicubic,null,format=nv12"), SRC
    )
    assert steps == [
        ("crop", "1000:700:460:190:exact=1"),
        ("scale", "514:360:flags=bicubic"),
        ("format", "pix_fmts=nv12"),
    ]
    assert (g.width, g.height) == (514, 360)


def test_crop_that_does_not_fit() -> None:
    with pytest.raises(ConfigError, match="does not fit"):
        f.output_geometry(f.parse("crop=2000:100"), SRC)
    with pytest.raises(ConfigError, match="runs past"):
        f.output_geometry(f.parse("crop=100:100:1900:0"), SRC)


def test_bit_depth_and_color_options() -> None:
    assert f.bit_depth(f.parse("scale=-2:720")) is None
    assert f.bit_depth(f.parse("format=p010le,format=yuv420p")) == 8
    assert f.bit_depth(f.parse("format=yuv420p10le")) == 10
    opts = f.color_options(
        f.parse(
            "setparams=range=pc:color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc,setsar=4/3"
        )
    )
    assert opts == {
        "color_range": "2",
        "color_primaries": "9",
        "color_trc": "16",
        "colorspace": "9",
        "sar_num": "4",
        "sar_den": "3",
    }


def test_coerce_takes_specs_or_text() -> None:
    chain = (f.Scale(640, -2), f.Fps(Fraction(25)))
    assert f.coerce(chain) == chain
    assert f.coerce("scale=640:-2,fps=25") == chain
    with pytest.raises(ConfigError):
        f.coerce((f.Scale(99999, 2),))


def test_scale_keeps_the_display_aspect_through_the_sar() -> None:
    dvd = f.Geometry(720, 480, Fraction(1, 25), None, Fraction(8, 9))  # 4:3 display
    g = f.output_geometry(f.parse("scale=640:480"), dvd)
    assert g.sar == 1 and g.width * g.sar / g.height == Fraction(4, 3)
    g = f.output_geometry(f.parse("scale=-2:240"), dvd)
    assert (g.width, g.height) == (360, 240) and g.sar == Fraction(8, 9)
    assert f.output_geometry(f.parse("scale=640:480,setsar=1/1"), dvd).sar == 1
    assert f.output_geometry(f.parse("crop=700:400"), dvd).sar == Fraction(8, 9)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("trim=start=0", "trim=start=0.000000"),
        ("trim=start=-0.96:end=5.04", "trim=start=-0.960000:end=5.040000"),
        ("trim=1.5:3", "trim=start=1.500000:end=3.000000"),
        ("trim=duration=2.5", "trim=duration=2.500000"),
        ("trim=end_frame=240", "trim=end_frame=240"),
    ],
)
def test_trim_round_trips(text: str, canonical: str) -> None:
    chain = f.parse(text)
    assert f.serialize(chain) == canonical
    assert f.parse(canonical) == chain


@pytest.mark.parametrize(
    "text",
    ["trim", "trim=start=1:end=1", "trim=start=1.1234567", "trim=end_frame=0", "trim=duration=0"],
)
def test_trim_refuses_what_keeps_nothing_or_is_not_exact(text: str) -> None:
    with pytest.raises(ConfigError):
        f.parse(text)


def test_trim_refuses_expressions() -> None:
    with pytest.raises(UnsupportedConfigError, match="expressions"):
        f.parse("trim=start=t*2")


def test_trim_runs_in_ffmpeg_as_ffmpeg_inserts_it() -> None:
    """Frames before start and from end on are dropped, timestamps unchanged; end_frame in a
    trim of its own counts the frames that reached it."""
    chain = f.parse("trim=start=-0.04:end=0.2,trim=end_frame=3")
    steps, _ = f.graph_steps(chain, f.Geometry(64, 64, Fraction(1, 25), Fraction(25)))
    graph = av.filter.Graph()
    nodes = [graph.add("buffer", video_size="64x64", pix_fmt="yuv420p", time_base="1/25")]
    nodes += [graph.add(name, args) for name, args in steps]
    nodes.append(graph.add("buffersink"))
    graph.link_nodes(*nodes).configure()
    kept = []
    for pts in range(-3, 8):
        frame = av.VideoFrame(64, 64, "yuv420p")
        frame.pts, frame.time_base = pts, Fraction(1, 25)
        graph.vpush(frame)
        while True:
            try:
                kept.append(graph.vpull().pts)
            except (av.error.BlockingIOError, av.error.EOFError):
                break
    assert kept == [-1, 0, 1]


def test_trim_is_announced_with_the_other_filters() -> None:
    assert "trim" in f.ALLOWED


def test_a_server_without_trim_is_refused_before_configure() -> None:
    """A server from before trim announces its filters without it: the client names that as
    the reason (the job then sends raw frames) instead of sending a chain it would refuse."""
    from vtremote.client.packet_transcoder import TranscodeOffer

    older = TranscodeOffer("s:1", ("h264",), tuple(n for n in f.ALLOWED if n != "trim"))
    chain = f.parse("trim=start=0,scale=-2:720")
    assert older.refusal("h264", chain) == "s:1 has no server-side filter trim"
    assert TranscodeOffer("s:1", ("h264",), f.ALLOWED).refusal("h264", chain) is None
