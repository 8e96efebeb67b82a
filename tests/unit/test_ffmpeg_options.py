"""The ffmpeg option table: both front ends read it, and they agree on every option.

``vtremote`` takes the table's spellings exactly; ``vtremote-ffmpeg`` takes each option of the
table, ignores it, or leaves it to ``vtremote`` with a reason (mediaserver/dialect.py), and what
it accepts beyond the table is listed there as the media servers' own. An option added to one
side only fails here.
"""

from __future__ import annotations

import pytest

from vtremote.cli.options import build_parser, parse_command
from vtremote.mediaserver import argv, dialect
from vtremote.mediaserver.line import read_command
from vtremote.pipeline.ffmpeg_options import BY_KEY, BY_SPELLING, OPTIONS, find

TABLE_KEYS = {o.key for o in OPTIONS}


def _cli_spellings() -> set[str]:
    parser = build_parser()
    return {
        s
        for action in parser._actions  # argparse keeps no public list of its options
        for s in action.option_strings
    } - {"-i", "-h", "-help", "--help", "-version", "--version"}


def test_the_cli_takes_exactly_the_table() -> None:
    assert _cli_spellings() == set(BY_SPELLING)
    assert len(BY_SPELLING) == sum(len(o.names) for o in OPTIONS), "a spelling is listed twice"
    assert len(BY_KEY) == len(OPTIONS), "a key is listed twice"


def test_every_option_has_a_setter_for_where_it_stands() -> None:
    for o in OPTIONS:
        assert o.help, o.key
        if o.where == "global":
            assert o.input is None and o.output is None, o.key
        if o.where in ("out", "both"):
            assert o.output is not None, o.key
        if o.where in ("in", "both"):
            assert o.input is not None, o.key
        if o.where == "in":
            assert o.output is None, o.key
        if o.where == "out":
            assert o.input is None, o.key


def test_the_media_server_dialect_places_every_option_of_the_table() -> None:
    groups = {
        "taken": set(dialect.TAKEN),
        "ignored": set(dialect.IGNORED_KEYS),
        "cli only": set(dialect.CLI_ONLY),
    }
    placed = set().union(*groups.values())
    assert placed == TABLE_KEYS, (
        f"not placed in mediaserver/dialect.py: {sorted(TABLE_KEYS - placed)}; "
        f"not in the table: {sorted(placed - TABLE_KEYS)}"
    )
    assert sum(map(len, groups.values())) == len(placed), "an option is placed twice"
    assert all(dialect.IGNORED_KEYS.values()) and all(dialect.CLI_ONLY.values())


def test_media_server_options_beyond_the_table_are_its_own() -> None:
    """Names vtremote-ffmpeg takes or ignores that the table does not have are listed as the
    media servers' own, never as a second entry for an option of the table."""
    base_names = {n[1:].split(":", 1)[0] for n in BY_SPELLING}
    own = {n for o in dialect.MEDIA_SERVER_OPTIONS for n in o.names}
    assert not own & set(BY_SPELLING)
    assert not {n[1:] for n in own} & base_names
    assert not (dialect.IGNORED_INPUT | dialect.IGNORED_OUTPUT) & base_names
    for spelling, key in dialect.ALIASES.items():
        assert spelling not in BY_SPELLING and key in dialect.TAKEN
    for key in dialect.OUTPUT_SETTERS.keys() | dialect.INPUT_NOTES.keys():
        assert key in dialect.TAKEN
    # The tokenizer knows which options it takes take a value.
    taken = [o for o in OPTIONS if o.key in dialect.TAKEN] + list(dialect.MEDIA_SERVER_OPTIONS)
    for o in taken:
        for n in o.names:
            if not n.startswith("--"):
                known = argv.FLAGS if o.flag else argv._VALUE_OPTIONS
                assert n[1:].split(":", 1)[0] in known, n
    ignored_keys = {n[1:] for k in dialect.IGNORED_KEYS for n in BY_KEY[k].names}
    ignored = dialect.IGNORED_INPUT | dialect.IGNORED_OUTPUT | ignored_keys
    assert dialect.IGNORED_WITH_VALUES.issubset(ignored)


@pytest.mark.parametrize("spelling", sorted(BY_SPELLING))
def test_both_front_ends_read_a_spelling_as_the_same_option(spelling: str) -> None:
    option = BY_SPELLING[spelling]
    name, _, spec = spelling[1:].partition(":")
    if option.key in dialect.CLI_ONLY or option.where == "global":
        return
    place = "in" if option.where == "in" else "out"
    found = dialect.option_for(name, spec, place)
    if option.key in dialect.IGNORED_KEYS:
        assert found is dialect.IGNORE
    else:
        assert found is option
    assert find(name, spec) is option


def test_stream_specifiers_as_ffmpeg_reads_them() -> None:
    assert find("codec", "v:0") is BY_KEY["codec"]
    assert find("b", "a") is BY_KEY["audio_bitrate"]
    assert find("b", "0") is BY_KEY["bitrate"]
    assert find("r", "a") is None
    assert find("x264opts", "0") is BY_KEY["x264_params"]
    assert dialect.option_for("frames", "", "out") is BY_KEY["frames"]
    assert dialect.option_for("frames", "a", "out") is None
    assert dialect.option_for("hwaccel", "", "in") is dialect.IGNORE
    assert dialect.option_for("vt_remote_host", "", "out") is None


def test_a_shared_option_sets_the_same_field_from_both_front_ends() -> None:
    line = "-ss 2 -f matroska -i /m -c:v libx264 -b:v 3M -g 48 -map 0:v -ac 2 -tag:v hvc1 /o.mkv"
    cli, _ = parse_command(line.split())
    assert cli is not None
    read = read_command(argv.parse_argv(line.split()))
    assert read.inputs == cli.inputs
    for field in ("codecs", "maps", "audio_channels", "video_tag", "video", "codec_options"):
        assert getattr(read.output, field) == getattr(cli.output, field), field
