"""The layers read the same tables: colour names, codec names, encoder-setting keys.

Each fact is written once (wire/colours.py, wire/constants.py, wire/settings.py); these
tests walk what every layer accepts, by asking the layer itself, so a name or key added
to one side only shows up here.
"""

from __future__ import annotations

from fractions import Fraction

import av
import av.filter
import pytest

from vtremote.client.encoder import EncoderSettings
from vtremote.engines import options as engine_options
from vtremote.engines import registry
from vtremote.engines.base import CODECS as ENGINE_CODECS
from vtremote.engines.hardware import AV1_PROFILE_NAMES, H264_PROFILE_NAMES, HEVC_PROFILE_NAMES
from vtremote.errors import ConfigError, UsageError
from vtremote.pipeline import values
from vtremote.wire import colours, rates, settings
from vtremote.wire import filters as vf
from vtremote.wire.constants import ALL_CODECS, CODECS, WireCompression

# --- colours --------------------------------------------------------------------------------

#: option -> (the CLI's table, the wire filter layer's table, the engines' valid values).
LAYERS = {
    "color_range": (values.COLOR_RANGES, vf.RANGES, engine_options.COLOR_RANGES),
    "colorspace": (values.COLOR_SPACES, vf.SPACES, engine_options.COLOR_SPACES),
    "color_primaries": (values.COLOR_PRIMARIES, vf.PRIMARIES, engine_options.COLOR_PRIMARIES),
    "color_trc": (values.COLOR_TRCS, vf.TRCS, engine_options.COLOR_TRCS),
}


def _cli_value(option: str, name: str) -> int | None:
    """What the command line makes of ``-<option> <name>``; None if it refuses the name."""
    try:
        return values.parse_enum(name, LAYERS[option][0], f"-{option}")
    except UsageError:
        return None


def _wire_value(option: str, name: str) -> int | None:
    """What a transcode chain's setparams makes of the name (the encoder option it implies)."""
    key = colours.TABLES[option].filter_option
    try:
        chain = vf.parse(f"setparams={key}={name}")
    except ConfigError:
        return None
    return int(vf.color_options(chain)[option])


def _all_names(option: str) -> set[str]:
    cli, wire, _ = LAYERS[option]
    return set(cli) | set(wire) | set(colours.TABLES[option].names)


@pytest.mark.parametrize("option", list(LAYERS))
def test_every_colour_name_means_the_same_number_in_every_layer(option: str) -> None:
    engine_values = LAYERS[option][2]
    for name in sorted(_all_names(option)):
        cli, wire = _cli_value(option, name), _wire_value(option, name)
        assert cli is not None, f"-{option} {name} is refused by the command line"
        assert wire is not None, f"setparams {option}={name} is refused by the wire"
        assert cli == wire, f"{option} {name}: the command line says {cli}, the wire {wire}"
        assert cli in engine_values, f"{option} {name} = {cli} is refused by the engines"


@pytest.mark.parametrize("option", list(LAYERS))
def test_every_colour_value_the_engines_take_has_a_name_or_is_listed_unnamed(option: str) -> None:
    table = colours.TABLES[option]
    named = {_cli_value(option, name) for name in _all_names(option)}
    assert set(LAYERS[option][2]) == named | table.unnamed
    assert not named & table.unnamed


@pytest.mark.parametrize("option", list(LAYERS))
def test_ffmpeg_setparams_takes_the_spelling_the_server_writes(option: str) -> None:
    """graph_steps hands FFmpeg the setparams spelling of every accepted name."""
    source = vf.Geometry(16, 16, Fraction(1, 25))
    for name in sorted(_all_names(option)):
        steps, _ = vf.graph_steps(
            vf.parse(f"setparams={colours.TABLES[option].filter_option}={name}"), source
        )
        graph = av.filter.Graph()
        nodes = [graph.add("buffer", video_size="16x16", pix_fmt="yuv420p", time_base="1/25")]
        nodes += [graph.add(filter_name, args) for filter_name, args in steps]
        nodes.append(graph.add("buffersink"))
        graph.link_nodes(*nodes).configure()  # raises when setparams refuses the name


# --- named frame rates -------------------------------------------------------------------


def test_a_rate_name_means_one_rate_in_both_spellings() -> None:
    """``-r`` and a chain's ``fps`` spell some names differently (ntsc-film / ntsc_film);
    every name either takes gives the table's rate, and a name both take agrees."""
    for rate, option_names, filter_names in rates.RATES:
        for name in option_names:
            assert values.parse_rate(name) == rate, name
        for name in filter_names:
            (spec,) = vf.parse(f"fps={name}")
            assert isinstance(spec, vf.Fps) and spec.rate == rate, name
    option_names = {n for _, names, _ in rates.RATES for n in names}
    filter_names = {n for _, _, names in rates.RATES for n in names}
    for name in option_names & filter_names:
        assert rates.OPTION_NAMES[name] == rates.FILTER_NAMES[name]


# --- codecs ---------------------------------------------------------------------------------


def test_every_wire_codec_has_an_engine_and_profile_names_and_back() -> None:
    assert tuple(ENGINE_CODECS) == tuple(CODECS)
    assert set(settings.PROFILES) == set(ALL_CODECS)
    for name in registry.ENGINES:
        cls = registry.engine_class(name)
        for kind in ("encoders", "decoders"):
            mapping = getattr(cls, kind, None)
            if mapping is not None:  # the null engine codes nothing
                # Every engine serves v1's codecs; extension codecs where it has them.
                assert set(CODECS) <= set(mapping) <= set(ALL_CODECS), f"{name} {kind}"


def test_every_profile_number_the_client_sends_has_a_hardware_profile_name_and_back() -> None:
    assert set(H264_PROFILE_NAMES) == set(settings.PROFILES["h264"].values())
    # HEVC 4:2:2 (rext) becomes Main/Main 10 from 4:2:0 frames, with a warning.
    assert set(HEVC_PROFILE_NAMES) | {settings.HEVC_REXT} == set(settings.PROFILES["hevc"].values())
    assert set(AV1_PROFILE_NAMES) <= set(settings.PROFILES["av1"].values())


# --- encoder settings -----------------------------------------------------------------------

#: A value different from the default for every field, so every key is written.
NON_DEFAULT = {
    "bitrate": 1,
    "maxrate": 2,
    "gop": 3,
    "max_b_frames": 1,
    "flags": 1,
    "global_quality": 5,
    "qmin": 1,
    "qmax": 2,
    "profile": "main",
    "level": "4.1",
    "entropy": "cabac",
    "allow_sw": True,
    "require_sw": True,
    "realtime": 1,
    "frames_before": True,
    "frames_after": True,
    "prio_speed": 1,
    "power_efficient": 1,
    "spatial_aq": 1,
    "max_ref_frames": 1,
    "max_slice_bytes": 1,
    "constant_bit_rate": True,
    "alpha_quality": 0.5,
    "color_range": 1,
    "colorspace": 1,
    "color_primaries": 1,
    "color_trc": 1,
    "sar": Fraction(4, 3),
    "a53_cc": False,
}


def test_every_client_field_is_written_as_a_wire_key_and_read_back_by_the_engines() -> None:
    assert set(NON_DEFAULT) == set(settings.FIELDS)
    client = EncoderSettings.from_kwargs(**NON_DEFAULT)
    keys = set(settings.ENCODE_KEYS)
    written: set[str] = set()
    for codec in CODECS:
        options = dict(client.configure_options(codec, WireCompression.NONE))
        assert set(options) - {"mode"} <= keys
        written |= set(options) - {"mode"}
        parsed, warnings = engine_options.parse_encode_options(options)
        assert warnings == []
        assert parsed.sent("bitrate") and parsed.present == frozenset(options) - {"mode"}
    assert written == keys, f"keys the client never writes: {sorted(keys - written)}"
    assert keys == engine_options.ENCODE_KEYS


def test_settings_survive_the_wire() -> None:
    client = EncoderSettings.from_kwargs(**NON_DEFAULT)
    options = dict(client.configure_options("h264", WireCompression.NONE))
    parsed, _ = engine_options.parse_encode_options(options)
    for name in settings.FIELDS:
        if name in ("alpha_quality", "a53_cc"):  # HEVC-only / written as 1 only for H.264
            continue
        sent, read = getattr(client, name), getattr(parsed, name)
        if name == "profile":
            sent, read = client.profile_number("h264"), parsed.profile_number("h264")
        elif name == "level":
            sent, read = client.level_number(), parsed.level_number()
        elif name == "entropy":
            sent, read = client.entropy_number(), parsed.entropy_number()
        elif name == "sar":
            sent, read = (client.sar_num, client.sar_den), (parsed.sar_num, parsed.sar_den)
        assert sent == read, f"{name}: sent {sent!r}, read {read!r}"


def test_a_missing_key_reads_as_the_table_says() -> None:
    parsed, _ = engine_options.parse_encode_options({})
    defaults = EncoderSettings()
    for key in settings.KEYS:
        if key.name in ("sar_num", "sar_den"):
            continue
        expected = defaults.as_dict()[key.name] if key.absent is None else key.absent
        assert getattr(parsed, key.name) == expected, key.name
