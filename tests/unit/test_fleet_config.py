"""The client config file (pools, weights, fallback) and how -vt_remote_host names a pool."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from vtremote.cli.options import parse_command
from vtremote.client.config import ClientConfig, PoolMember, load_config, parse_config
from vtremote.client.pool import Pool, is_pool, resolve_pool
from vtremote.errors import ConfigError, UsageError
from vtremote.server.advertise import txt_record
from vtremote.server.speed import SpeedMeter

DOC = """
fallback = "local"
[pools.studio]
hosts = ["a:5555", { host = "b:5555", weight = 2.5 }, "c:5555"]
weights = { "c:5555" = 3 }
token = "t"
timeout_ms = 1500
"""


def test_pools_weights_and_defaults() -> None:
    cfg = parse_config(tomllib.loads(DOC), "test.toml")
    studio = cfg.pools["studio"]
    assert studio.members == (
        PoolMember("a:5555"),
        PoolMember("b:5555", 2.5),
        PoolMember("c:5555", 3.0),
    )
    assert (studio.token, studio.timeout_ms, cfg.fallback) == ("t", 1500, "local")
    pool = resolve_pool("studio", config=cfg)
    assert (
        pool.token == "t"
        and pool.fallback == "local"
        and pool.addresses == ["a:5555", "b:5555", "c:5555"]
    )
    assert resolve_pool("studio", token="cli", fallback="none", config=cfg).token == "cli"
    assert resolve_pool("studio", fallback="none", config=cfg).fallback == "none"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ('[pools.x]\nhosts = "a:1"\n', "pools.x.hosts must be a list"),
        ("[pools.x]\nhosts = []\n", "pool 'x' has no hosts"),
        ('[pools.x]\nhosts = [{ host = "a:1", weight = 0 }]\n', "weight 0.0 must be positive"),
        (
            '[pools.x]\nhosts = ["a:1"]\nfallback = "cloud"\n',
            "fallback 'cloud' is not one of none, local",
        ),
        ('fallback = "maybe"\n', "fallback 'maybe'"),
        ("[pools.x]\nhosts = [3]\n", "entry 3 is not HOST:PORT"),
        ('pools = "x"\n', "[pools] must be a table"),
    ],
)
def test_config_errors_name_the_key(doc: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(tomllib.loads(doc), "test.toml")
    assert message in str(err.value)


def test_file_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VTREMOTE_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config().pools == {} or Path("/etc/vtremote/config.toml").exists()
    user = tmp_path / ".config" / "vtremote" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('[pools.home]\nhosts = ["h:1"]\n')
    assert set(load_config().pools) == {"home"} and load_config().path == str(user)
    user.write_text("[pools.home\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config()


def test_what_names_a_pool() -> None:
    cfg = ClientConfig(pools=parse_config(tomllib.loads(DOC)).pools)
    assert is_pool("a:1,b:2", cfg) and is_pool("mdns", cfg) and is_pool("studio", cfg)
    assert (
        not is_pool("mac.local:5555", cfg) and not is_pool("other", cfg) and not is_pool(None, cfg)
    )
    with pytest.raises(ConfigError, match="empty entry"):
        resolve_pool("a:1,,b:2", config=cfg)
    with pytest.raises(ConfigError, match="no servers"):
        Pool("empty", ())


def test_command_line_options() -> None:
    spec, _ = parse_command(
        [
            "-i",
            "in.mp4",
            "-c:v",
            "h264_videotoolbox_remote",
            "-vt_remote_host",
            "a:1,b:2",
            "-vt_remote_fallback",
            "local",
            "-vt_remote_parallel",
            "3",
            "out.mp4",
        ]
    )
    assert spec is not None and spec.output.remote.host == "a:1,b:2"
    assert spec.output.remote.fallback == "local" and spec.output.remote.parallel == 3
    with pytest.raises(UsageError, match="is not local or none"):
        parse_command(["-i", "in.mp4", "-vt_remote_fallback", "cloud", "out.mp4"])
    with pytest.raises(UsageError, match="outside 0..64"):
        parse_command(["-i", "in.mp4", "-vt_remote_parallel", "100", "out.mp4"])


def test_txt_record() -> None:
    txt = txt_record(
        codecs={"h264": "nvenc", "hevc": "nvenc"}, max_sessions=3, token=True, tls=False
    )
    assert txt["codecs"] == "h264,hevc" and txt["engines"] == "h264=nvenc,hevc=nvenc"
    assert (txt["max"], txt["token"], txt["tls"], txt["proto"]) == ("3", "1", "0", "VTR1")
    assert int(txt["capacity"]) >= 1 and txt["fps"] == "0.0"
    txt = txt_record(codecs={"h264": "x264"}, max_sessions=0, token=False, tls=True, capacity=5)
    assert (txt["capacity"], txt["tls"]) == ("5", "1")


def test_speed_meter_rolls_over_sessions() -> None:
    meter = SpeedMeter()
    assert meter.fps == 0.0
    meter.record(5, 1.0)  # too few pictures to say anything
    assert meter.fps == 0.0
    meter.record(100, 1.0)
    assert meter.fps == 100.0
    meter.record(200, 1.0)  # one fast session moves it part of the way
    assert 100.0 < meter.fps < 200.0


MEMBERS = """
[pools.secure]
token = "pool-token"
tls = true
tls_fingerprint = "{fp}"
wake_timeout_s = 90
broadcast = "192.168.1.255"
hosts = [
    "a:5555",
    {{ host = "b:5555", token = "b-token", tls = false }},
    {{ host = "c:5555", tls_ca = "{ca}", mac = "3C-22-FB-01-02-03", wake = "background" }},
]
"""


def test_members_carry_token_tls_and_wake(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection\n")
    fp = "ab" * 32
    cfg = parse_config(tomllib.loads(MEMBERS.format(fp=fp, ca=ca)), "test.toml")
    a, b, c = cfg.pools["secure"].members
    assert (a.token, b.token, c.token) == (None, "b-token", None)
    assert cfg.pools["secure"].token == "pool-token"
    assert a.tls and a.tls.fingerprint == fp and not a.tls.ca and a.wake is None
    assert b.tls is False and b.tls_for(a.tls or None) is None
    # a host's own key overrides the pool's one by one: c keeps the pool's pin and adds a CA
    assert c.tls and (c.tls.fingerprint, c.tls.ca) == (fp, str(ca))
    assert c.wake is not None
    assert (c.wake.mac, c.wake.mac_text) == (bytes.fromhex("3c22fb010203"), "3c:22:fb:01:02:03")
    assert (c.wake.broadcast, c.wake.port, c.wake.timeout_s, c.wake.background) == (
        "192.168.1.255",
        9,
        90.0,
        True,
    )
    assert PoolMember("x:1").tls_for(None) is None
    pool = resolve_pool("secure", token="cli", config=cfg)
    assert pool.token == "cli" and pool.members[1].token == "b-token"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('{ host = "a:1", tls = "yes" }', "hosts entry 1 (a:1): tls must be true or false"),
        ('{ host = "a:1", token = 5 }', "(a:1): token must be a string, not 5"),
        ('{ host = "a:1", weight = true }', "weight must be a number, not True"),
        ('{ host = "a:1", tls = false, tls_fingerprint = "ab" }', "tls = false contradicts"),
        ('{ host = "a:1", tls_ca = "/nonexistent.pem" }', "TLS file /nonexistent.pem does not"),
        ('{ host = "a:1", tls_fingerprint = "zz" }', "(a:1): "),
        ('{ host = "a:1", mac = "3c:22:fb" }', "MAC address '3c:22:fb' does not have 6 bytes"),
        ('{ host = "a:1", mac = "3c:22:fb:01:02:zz" }', "is not hexadecimal"),
        ('{ host = "a:1", mac = "3c22fb010203", wake = "now" }', "wake 'now' is not one of"),
        ('{ host = "a:1", mac = "3c22fb010203", wake_port = 0 }', "wake_port 0 is outside"),
        ('{ host = "a:1", wake_timeout_s = 5 }', "wake_timeout_s without mac"),
        ('{ host = "a:1", tsl = true }', "unknown key(s) tsl (known: host, weight, token"),
    ],
)
def test_member_errors_name_the_host_and_key(entry: str, message: str) -> None:
    doc = f"[pools.x]\nhosts = [{entry}]\n"
    with pytest.raises(ConfigError) as err:
        parse_config(tomllib.loads(doc), "test.toml")
    assert "test.toml: pools.x.hosts entry 1 (a:1): " in str(err.value)
    assert message in str(err.value)


def test_pool_level_host_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"pools.x.mac belongs in a host table"):
        parse_config(tomllib.loads('[pools.x]\nhosts = ["a:1"]\nmac = "3c22fb010203"\n'))
