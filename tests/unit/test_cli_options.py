"""ffmpeg-style parsing of the ``vtremote`` command line (no files, no server)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from vtremote.cli import main as cli_main
from vtremote.cli.options import (
    MapSpec,
    UsageError,
    parse_bitrate,
    parse_command,
    parse_force_key_frames,
    parse_rate,
    parse_size,
    parse_time,
)
from vtremote.client.encoder import EncoderSettings
from vtremote.pipeline.filters import chain_rate, split_filter_chain
from vtremote.wire.constants import WireCompression

SEED = (
    "-i input.mkv -c:v h264_videotoolbox_remote -vt_remote_host H:5555 -b:v 6000k -g 240 "
    "-c:a copy -c:s copy output.mkv"
)


def parse(line: str):  # type: ignore[no-untyped-def]
    cmd, _ = parse_command(line.split())
    assert cmd is not None
    return cmd


def test_seed_command() -> None:
    cmd = parse(SEED)
    (inp,) = cmd.inputs
    assert inp.url == "input.mkv" and inp.remote_codec is None and inp.remote.host is None
    out = cmd.output
    assert out.url == "output.mkv"
    assert out.codecs == {"v": "h264_videotoolbox_remote", "a": "copy", "s": "copy"}
    assert out.remote_codec == "h264" and out.remote.host == "H:5555"
    assert out.video == {"bitrate": 6_000_000, "gop": 240}
    opts = dict(
        EncoderSettings.from_kwargs(**out.video).configure_options("h264", WireCompression.ZSTD)
    )
    assert opts["bitrate"] == "6000000" and opts["gop"] == "240"


def test_position_decides_input_or_output() -> None:
    cmd = parse(
        "-y -vt_remote_host a:1 -vt_remote_wire_compression lz4 -c:v hevc_videotoolbox_remote "
        "-ss 2 -i in.mp4 "
        "-c:v h264_videotoolbox_remote -vt_remote_host b:2 -vt_remote_inflight 32 "
        "-ss 1 -t 3 out.mp4"
    )
    inp, out = cmd.inputs[0], cmd.output
    assert cmd.overwrite is True
    assert (
        inp.remote_codec == "hevc"
        and inp.remote.host == "a:1"
        and inp.remote.compression == "lz4"
        and inp.seek == 2
    )
    assert out.remote_codec == "h264" and out.remote.host == "b:2" and out.remote.inflight == 32
    assert (out.seek, out.duration) == (1, 3)


def test_lavfi_and_video_options() -> None:
    cmd = parse(
        "-f lavfi -i testsrc2=size=640x360:rate=30 -t 2 -c:v h264_videotoolbox_remote "
        "-b:v 2M -maxrate 3M -bf 2 -profile:v high -level 4.1 -pix_fmt nv12 -r 30000/1001 "
        "-s 320x180 -vf hflip -realtime 1 -force_key_frames 0,1 -coder cabac -color_range tv "
        "-colorspace bt709 -color_primaries bt709 -color_trc bt709 -an -sn -f mp4 out.mp4"
    )
    inp, out = cmd.inputs[0], cmd.output
    assert inp.format == "lavfi" and out.format == "mp4"
    assert (
        out.rate == Fraction(30000, 1001) and out.size == (320, 180) and out.video_filter == "hflip"
    )
    assert out.no_audio and out.no_subtitles and out.duration == 2
    s = EncoderSettings.from_kwargs(**out.video)
    opts = dict(s.configure_options("h264", WireCompression.NONE))
    assert opts == {
        "mode": "encode",
        "bitrate": "2000000",
        "maxrate": "3000000",
        "gop": "12",
        "max_b_frames": "2",
        "profile": "100",
        "level": "41",
        "entropy": "2",
        "realtime": "1",
        "color_range": "1",
        "colorspace": "1",
        "color_primaries": "1",
        "color_trc": "1",
        "a53_cc": "1",
    }


def test_qscale_sets_global_quality_and_flag() -> None:
    out = parse("-i a -q:v 50 -flags +cgop o.mp4").output
    opts = dict(
        EncoderSettings.from_kwargs(**out.video).configure_options("h264", WireCompression.NONE)
    )
    assert opts["global_quality"] == str(50 * 118)
    assert int(opts["flags"]) == (2 | (1 << 31)) - (1 << 32)  # QSCALE | CLOSED_GOP as a signed int


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-i a -bogus 1 o.mp4", "unrecognized option '-bogus'"),
        ("-i a -top:v 1 o.mp4", "unrecognized option '-top:v'"),  # not "-t op:v"
        ("-i a -vt_remote_h x o.mp4", "unrecognized option '-vt_remote_h'"),  # no abbreviations
        ("-i a o1.mp4 o2.mp4", "more than one output"),
        ("-i a", "no output file"),
        ("-c:v libx264 o.mp4", "no input"),
        ("-b:v 1M -i a o.mp4", "cannot be applied to input 'a'"),
        ("-i a -framerate 30 o.mp4", "is an input option"),
        ("-i a -b:v fast o.mp4", "bitrate 'fast'"),
        ("-i a -vt_remote_inflight 500 o.mp4", "outside 1..128"),
        ("-i a -vt_remote_timeout_ms 10 o.mp4", "outside 100..60000"),
        ("-i a -vt_remote_wire_compression gzip o.mp4", "not none, lz4, zstd or auto"),
        ("-i a -ss 1:xx o.mp4", "is not a time"),
        ("-i a -map v o.mp4", "-map 'v'"),
        ("-i a -i", "needs a value"),
    ],
)
def test_usage_errors(line: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_command(line.split())


def test_values_starting_with_dash() -> None:
    cmd = parse("-ss -1 -i a -map 0 -map -0:s -map 0:a:1? o.mkv")
    assert cmd.inputs[0].seek == -1
    assert cmd.output.maps == [
        MapSpec(0),
        MapSpec(0, "s", None, negative=True),
        MapSpec(0, "a", 1, optional=True),
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("6000k", 6_000_000),
        ("6M", 6_000_000),
        ("1.5M", 1_500_000),
        ("300000", 300_000),
        ("1Mi", 1 << 20),
        ("1kB", 8000),
    ],
)
def test_parse_bitrate(text: str, value: int) -> None:
    assert parse_bitrate(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10.0),
        ("2.5", 2.5),
        ("01:23.5", 83.5),
        ("00:01:02", 62.0),
        ("-1.5", -1.5),
        ("500ms", 0.5),
        ("1:00:00", 3600.0),
    ],
)
def test_parse_time(text: str, value: float) -> None:
    assert parse_time(text) == pytest.approx(value)


def test_parse_rate_and_size() -> None:
    assert parse_rate("29.97") == Fraction(30000, 1001)
    assert parse_rate("ntsc") == Fraction(30000, 1001)
    assert parse_rate("25") == 25
    assert parse_size("hd720") == (1280, 720) and parse_size("640x360") == (640, 360)
    with pytest.raises(UsageError):
        parse_size("640:360")


def test_force_key_frames() -> None:
    assert parse_force_key_frames("5,0,00:00:02.5") == ([0.0, 2.5, 5.0], None)
    assert parse_force_key_frames("expr:gte(t,n_forced*2)") == ([], 2.0)
    with pytest.raises(UsageError, match="not a time list or gte"):
        parse_force_key_frames("expr:eq(n,3)")  # an expression only a per-frame clock follows
    spec, _ = parse_command(
        ["-i", "a.mkv", "-force_key_frames", "expr:eq(n,3)", "-c:v", "libx264", "b.mkv"]
    )
    assert spec is not None and spec.output.force_key_frames == "expr:eq(n,3)"
    with pytest.raises(UsageError, match="unknown function"):
        parse_command(["-i", "a.mkv", "-force_key_frames", "expr:every(3)", "b.mkv"])


def test_filter_chain_split() -> None:
    assert split_filter_chain("scale=640:360,format=nv12") == [
        ("scale", "640:360"),
        ("format", "nv12"),
    ]
    assert split_filter_chain("drawtext=text='a,b':x=1,hflip") == [
        ("drawtext", "text='a,b':x=1"),
        ("hflip", None),
    ]
    assert split_filter_chain(r"select=eq(n\,0)") == [("select", r"eq(n\,0)")]
    with pytest.raises(UsageError, match="filter_complex"):
        split_filter_chain("[in]scale=2:2[out]")


def test_chain_rate() -> None:
    base = Fraction(30)
    assert chain_rate(split_filter_chain("scale=640:360"), base) == 30
    assert chain_rate(split_filter_chain("fps=60,scale=2:2"), base) == 60
    assert chain_rate(split_filter_chain("fps=fps=30000/1001:round=near"), base) == Fraction(
        30000, 1001
    )
    assert chain_rate(split_filter_chain("framerate=rate=50"), None) == 50


# --- main(): dispatch and exit codes --------------------------------------------------------------


def test_main_usage_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["-i", "a", "-nope", "o.mp4"]) == 2
    assert "unrecognized option '-nope'" in capsys.readouterr().err
    assert cli_main.main([]) == 2


def test_main_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["-h"]) == 0
    out = capsys.readouterr().out
    assert "-vt_remote_host" in out and "vtremote probe HOST:PORT" in out
    assert cli_main.main(["-version"]) == 0
    assert capsys.readouterr().out.startswith("vtremote ")


def test_missing_subcommand_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli_main.SUBCOMMANDS, "bench", "vtremote.cli.not_installed")
    assert cli_main.main(["bench", "wire"]) == 1
    assert "'vtremote bench' is not available" in capsys.readouterr().err


def test_subcommand_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake(module: str):  # type: ignore[no-untyped-def]
        assert module == "vtremote.cli.bench"
        return lambda argv: seen.append(argv) or 7

    monkeypatch.setattr(cli_main, "_subcommand", fake)
    assert cli_main.main(["bench", "wire", "--json"]) == 7
    assert seen == [["wire", "--json"]]


def test_ctrl_c_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vtremote import pipeline

    def interrupted(self: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.Job, "run", interrupted)
    assert cli_main.main(["-f", "lavfi", "-i", "testsrc2", "-f", "null", "-"]) == 130
    assert "interrupted" in capsys.readouterr().err
