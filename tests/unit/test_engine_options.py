"""Every option every engine passes is one its encoder takes, in every mode.

The engines map CONFIGURE settings onto FFmpeg options; PyAV would leave an option
the codec does not know unused without a word, so the engines check them before
opening (engines/option_check.py). Here the mapping of each engine x codec runs for
every mode (plain encode, realtime, low delay, B-frames, GOP, each level, each
profile, each rate control, colour tags, ...) and its options are checked against
the encoder's table: the running codec's when PyAV's wheel has the encoder (NVENC,
QSV), the checked-in one of engines/option_table.py otherwise (VA-API,
VideoToolbox), and both where both exist. No device is needed: only the mapping runs.
"""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import av
import pytest

from vtremote.engines import StreamConfig, registry
from vtremote.engines.levels import LEVELS, level_idc
from vtremote.engines.option_check import (
    check_options,
    options_table,
    problems,
    running_options,
    value_problem,
)
from vtremote.engines.option_table import GENERIC_OPTIONS, PRIVATE_OPTIONS
from vtremote.engines.options import parse_encode_options
from vtremote.errors import EngineError
from vtremote.wire.constants import PixelFormat
from vtremote.wire.settings import FLAG_LOW_DELAY, FLAG_QSCALE, PROFILES

ENGINES = ("x264", "nvenc", "qsv", "vaapi", "videotoolbox")


def _in_wheel(encoder: str) -> bool:
    try:
        av.codec.Codec(encoder, "w")
    except Exception:
        return False
    return True


def _level_options(codec: str) -> list[dict[str, str]]:
    return [{"level": str(major * 10 + minor)} for major, minor in sorted(LEVELS[codec])]


def modes(codec: str) -> list[dict[str, str]]:
    """CONFIGURE option sets covering each kind of setting the engines map."""
    out: list[dict[str, str]] = [
        {},
        {"realtime": "1"},
        {"flags": str(FLAG_LOW_DELAY)},
        {"realtime": "1", "max_b_frames": "2", "prio_speed": "1"},
        {"max_b_frames": "3", "gop": "48"},
        {"max_b_frames": "1", "gop": "1"},
        {"gop": "250", "prio_speed": "0"},
        {"bitrate": "3000000"},
        {"bitrate": "3000000", "constant_bit_rate": "1"},
        {"bitrate": "3000000", "maxrate": "4000000"},
        {"global_quality": str(70 * 118)},
        {"flags": str(FLAG_QSCALE), "global_quality": str(30 * 118)},
        {"qmin": "10", "qmax": "40"},
        {"entropy": "1"},
        {"entropy": "2"},
        {"spatial_aq": "1"},
        {"spatial_aq": "0"},
        {"max_ref_frames": "3"},
        {"color_range": "1", "color_primaries": "9", "color_trc": "16", "colorspace": "9"},
        {"sar_num": "4", "sar_den": "3"},
        {"allow_sw": "1", "require_sw": "1", "frames_before": "1", "frames_after": "1"},
        {"power_efficient": "1", "max_slice_bytes": "1200"},
        {"level": "99"},
    ]
    out += _level_options(codec)
    out += [{"profile": str(number)} for number in sorted(set(PROFILES[codec].values()))]
    return out


def cases() -> list[Any]:
    found = []
    for name in ENGINES:
        cls = registry.engine_class(name)
        for codec in cls.encoders:
            for i, options in enumerate(modes(codec)):
                tag = ",".join(f"{k}={v}" for k, v in options.items()) or "defaults"
                found.append(pytest.param(name, codec, options, id=f"{name}-{codec}-{i}-{tag}"))
    return found


def mapped(name: str, codec: str, options: dict[str, str], pix_fmt: PixelFormat = PixelFormat.NV12):
    """(encoder, context, options, warnings) as the engine maps ``options`` for ``codec``."""
    cls = registry.engine_class(name)
    engine = cls()
    config = StreamConfig(
        mode="encode",
        codec=codec,
        width=128,
        height=72,
        pix_fmt=pix_fmt,
        time_base=Fraction(1, 30),
        framerate=Fraction(30),
        options={"mode": "encode", **options},
    )
    engine.config = config
    settings, warnings = parse_encode_options(config.options)
    engine.settings = settings
    encoder = cls.encoders[codec]
    engine.codec_name = encoder
    # The real encoder's context where PyAV has it, else a stand-in (only fields are set).
    ctx = av.CodecContext.create(encoder if _in_wheel(encoder) else "libx264", "w")
    opts = engine.configure_encoder(ctx, config, settings)
    return encoder, ctx, opts, warnings + engine.warnings


@pytest.mark.parametrize(("name", "codec", "options"), cases())
def test_every_option_is_one_the_encoder_takes(
    name: str, codec: str, options: dict[str, str]
) -> None:
    encoder, ctx, opts, _ = mapped(name, codec, options)
    assert problems(options_table(encoder, ctx), opts) == []
    if encoder in PRIVATE_OPTIONS and ctx.name == encoder:
        # The checked-in table takes them too (it is what a build without PyAV's table uses).
        standin = av.CodecContext.create("libx264", "w")
        assert problems(options_table(encoder, standin), opts) == []


@pytest.mark.parametrize("encoder", sorted(e for e in PRIVATE_OPTIONS if _in_wheel(e)))
def test_checked_in_table_agrees_with_the_running_ffmpeg(encoder: str) -> None:
    ctx = av.CodecContext.create(encoder, "w")
    if not hasattr(ctx, "supported_options"):
        pytest.skip("this PyAV lists no codec options (18.1 and later do)")
    live = running_options(ctx)[1]
    for option, spec in PRIVATE_OPTIONS[encoder].items():
        assert option in live, f"{encoder} has no {option}"
        got = live[option]
        assert (got.kind, got.min, got.max) == (spec.kind, spec.min, spec.max), option
        assert spec.consts <= got.consts, option


def test_checked_in_generic_options_agree_with_the_running_ffmpeg() -> None:
    ctx = av.CodecContext.create("libx264", "w")
    if not hasattr(ctx, "supported_options"):
        pytest.skip("this PyAV lists no codec options (18.1 and later do)")
    generic = running_options(ctx)[0]
    for option, spec in GENERIC_OPTIONS.items():
        got = generic[option]
        assert (got.kind, got.min, got.max) == (spec.kind, spec.min, spec.max), option
        assert spec.consts <= got.consts, option


def test_a_pyav_without_supported_options_checks_with_the_checked_in_tables() -> None:
    old_pyav = SimpleNamespace(name="libx264", codec=SimpleNamespace(descriptor=None))
    table = options_table("hevc_qsv", old_pyav)  # type: ignore[arg-type]
    assert problems(table, {"maxrate": "4000000", "level": "123", "forced_idr": "1"}) == []
    assert problems(table, {"look_ahead": "0"}) == ["look_ahead=0: no such option"]


def test_option_values_are_checked_as_ffmpeg_parses_them() -> None:
    vaapi_level = PRIVATE_OPTIONS["h264_vaapi"]["level"]
    assert value_problem(vaapi_level, "41") is None and value_problem(vaapi_level, "4.1") is None
    assert "neither an integer" in (value_problem(vaapi_level, "4.0") or "")
    forced = PRIVATE_OPTIONS["h264_qsv"]["forced_idr"]
    assert value_problem(forced, "1") is None and value_problem(forced, "true") is None
    assert "outside 0..1" in (value_problem(forced, "2") or "")
    cq = PRIVATE_OPTIONS["av1_nvenc"]["cq"]
    assert value_problem(cq, "63") is None and "outside" in (value_problem(cq, "64") or "")
    sei = PRIVATE_OPTIONS["h264_vaapi"]["sei"]
    assert value_problem(sei, "+identifier+timing") is None
    assert "bogus" in (value_problem(sei, "identifier+bogus") or "")


def test_an_option_the_encoder_lacks_is_an_error_naming_it() -> None:
    ctx = av.CodecContext.create("libx264", "w")
    with pytest.raises(EngineError, match=r"hevc_qsv.*look_ahead=0: no such option") as info:
        check_options("hevc_qsv", ctx, {"look_ahead": "0", "async_depth": "1"})
    assert int(info.value.code) == 5  # ERROR code internal: vtremote's bug, not the client's
    with pytest.raises(EngineError, match=r"level=4\.1: is neither an integer"):
        check_options("h264_qsv", av.CodecContext.create("h264_qsv", "w"), {"level": "4.1"})


def test_an_engine_that_passes_a_wrong_option_fails_to_open() -> None:
    from vtremote.engines.software import SoftwareEngine

    class Misspelt(SoftwareEngine):
        def configure_encoder(self, ctx, config, s):  # type: ignore[no-untyped-def]
            return {**super().configure_encoder(ctx, config, s), "forced_idr": "1"}

    engine = Misspelt()
    config = StreamConfig(
        mode="encode", codec="h264", width=128, height=72, pix_fmt=PixelFormat.NV12
    )
    with pytest.raises(EngineError, match="libx264 does not take .*forced_idr=1: no such option"):
        engine.open(config)


# --- the mappings FFmpeg's sources call for ----------------------------------------------------


@pytest.mark.parametrize("engine", ["nvenc", "qsv", "vaapi"])
@pytest.mark.parametrize(("codec", "level"), [("h264", 41), ("h264", 40), ("hevc", 51)])
def test_levels_travel_as_level_idc(engine: str, codec: str, level: int) -> None:
    _, _, opts, warnings = mapped(engine, codec, {"level": str(level)})
    assert opts["level"] == str(level_idc(codec, level)) and warnings == []


def test_qsv_level_is_the_generic_option_with_mfx_numbers() -> None:
    encoder, ctx, opts, _ = mapped("qsv", "h264", {"level": "41"})
    assert opts["level"] == "41" and "level" not in PRIVATE_OPTIONS[encoder]
    _, _, opts, _ = mapped("qsv", "hevc", {"level": "41", "realtime": "1"})
    assert opts["level"] == "123" and "look_ahead" not in opts and opts["async_depth"] == "1"


def test_videotoolbox_h264_levels_and_hevc_options() -> None:
    _, _, opts, warnings = mapped("videotoolbox", "h264", {"level": "40"})
    assert opts["level"] == "4.0" and warnings == []
    _, _, opts, warnings = mapped("videotoolbox", "h264", {"level": "21"})
    assert "level" not in opts and "level=2.1 is not available" in " ".join(warnings)
    _, _, opts, warnings = mapped("videotoolbox", "hevc", {"profile": "4", "level": "41"})
    assert "a53cc" not in opts and "level" not in opts and opts["profile"] == "main"
    assert any("4:2:2" in w for w in warnings)
    _, _, opts, _ = mapped("videotoolbox", "hevc", {}, PixelFormat.P010)
    assert opts["profile"] == "main10"


@pytest.mark.parametrize("engine", ["nvenc", "vaapi"])
def test_av1_hardware_levels_are_seq_level_idx(engine: str) -> None:
    _, _, opts, warnings = mapped(engine, "av1", {"level": "51", "global_quality": "0"})
    assert opts["level"] == "13" and warnings == []


def test_live_hardware_encoders_get_options_they_take() -> None:
    from vtremote.live import codec as live_codec

    standin = av.CodecContext.create("libx264", "w")
    for entries in live_codec._HARDWARE.values():
        for encoder, opts in entries:
            ctx = av.CodecContext.create(encoder, "w") if _in_wheel(encoder) else standin
            assert problems(options_table(encoder, ctx), opts) == [], encoder


def test_level_numbers_per_codec() -> None:
    from vtremote.engines.levels import level_parts, level_text

    assert level_idc("h264", 9) == 9 and level_text("h264", 9) == "1b"
    assert level_idc("hevc", 51) == 153 and level_idc("hevc", 153) == 153  # x10 or x30
    assert level_parts("hevc", 60) == (6, 0)  # x10 first: 6.0, not general_level_idc 2
    assert level_idc("av1", 51) == 13 and level_idc("av1", 20) == 0
    assert level_idc("av1", 19) is None and level_idc("h264", 14) is None
