"""Values a peer or a host picks: log strings, CONFIGURE numbers, the descriptor limit."""

from __future__ import annotations

import logging
import resource

import pytest

from vtremote.errors import ConfigError
from vtremote.server import fdlimit
from vtremote.server.config import ServerConfig
from vtremote.server.logs import PrintableFilter, printable
from vtremote.wire.settings import KEYS, _read_bool, _read_int_bool, parse_configure


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain name é", "plain name é"),
        ("a\nb", r"a\nb"),
        ("a\r\nb\tc", r"a\r\nb\tc"),
        ("\x1b[31mred", r"\x1b[31mred"),
        ("line\u2028sep", r"line\u2028sep"),
        ("\x00\x7f", r"\x00\x7f"),
    ],
)
def test_printable_escapes_what_a_terminal_would_act_on(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(text).isprintable()


def test_the_filter_escapes_the_formatted_message() -> None:
    record = logging.LogRecord(
        "vtremote.server.session",
        logging.INFO,
        __file__,
        1,
        "HELLO client=%s n=%d",
        ("x\ny", 3),
        None,
    )
    assert PrintableFilter().filter(record)
    assert record.getMessage() == r"HELLO client=x\ny n=3"


def test_every_numeric_key_has_a_range() -> None:
    on_off = {_read_bool, _read_int_bool}
    assert [k.name for k in KEYS if k.read not in on_off and k.limits is None] == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("bitrate", str(10**26)),
        ("bitrate", "-1"),
        ("maxrate", str(1 << 31)),
        ("gop", "-5"),
        ("max_b_frames", "-1"),
        ("flags", str(1 << 32)),
        ("qmin", "-2"),
        ("profile", str(1 << 40)),
        ("max_slice_bytes", str(-(1 << 40))),
        ("color_trc", "256"),
        ("sar_den", "-1"),
        ("alpha_quality", "nan"),
        ("alpha_quality", "1e999"),
    ],
)
def test_out_of_range_numbers_name_the_key_and_the_range(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}=.* is outside the allowed range") as info:
        parse_configure({key: value})
    assert info.value.code == 4


def test_numbers_at_the_edges_and_closed_gop_flags_still_read() -> None:
    settings, warnings = parse_configure(
        {"bitrate": str((1 << 31) - 1), "flags": str(-(1 << 31)), "qmin": "-1", "gop": "0"}
    )
    assert warnings == []
    assert settings.bitrate == (1 << 31) - 1 and settings.flags == 1 << 31
    # Text that is no number stays a warning, as before.
    _, warnings = parse_configure({"bitrate": "fast"})
    assert warnings == ["bitrate='fast' is not an integer; ignored"]


def test_the_caps_decide_the_descriptors_needed() -> None:
    small = fdlimit.needed(ServerConfig(max_sessions=4, max_handshakes=64))
    assert small < 1024 <= fdlimit.SERVICE_LIMIT
    big = fdlimit.needed(ServerConfig(max_sessions=0, max_handshakes=4000, metrics="127.0.0.1:0"))
    assert big > small + 4000


def test_a_short_soft_limit_is_raised_or_reported(caplog: pytest.LogCaptureFixture) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    config = ServerConfig(max_sessions=4, max_handshakes=64)
    resource.setrlimit(resource.RLIMIT_NOFILE, (fdlimit.needed(config) - 1, hard))
    try:
        with caplog.at_level(logging.INFO, logger="vtremote.server.fdlimit"):
            outcome = fdlimit.check(config)
        now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if hard == resource.RLIM_INFINITY or hard >= outcome.needed:
        assert outcome.raised and now >= outcome.needed
        assert "file descriptor limit raised" in caplog.text
    else:
        assert f"below the {outcome.needed} the caps need" in caplog.text
