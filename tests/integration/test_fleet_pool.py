"""Pools: placement by free capacity and weight, busy and dead members, the config file, the CLI."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import testsrc_frames
from vtremote.cli.main import main
from vtremote.client import RemoteEncoder
from vtremote.client.config import PoolMember, load_config
from vtremote.client.failover import FailoverEncoder
from vtremote.client.pool import Placer, Pool, is_pool, resolve_pool
from vtremote.errors import BusyError, ConfigError, NoServerError

W, H = 160, 96
REMOTE_H264 = "h264_videotoolbox_remote"


def dead_address() -> str:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def hold(addr: str) -> RemoteEncoder:
    """An open encode session that occupies one slot of ``addr``."""
    return RemoteEncoder(
        addr, "h264", width=W, height=H, time_base=Fraction(1, 30), framerate=30, gop=10
    )


def free_again(addr: str) -> RemoteEncoder:
    """A session on ``addr`` once the slot a placement HELLO held is released (the server sees
    EOF)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return hold(addr)
        except BusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def placed(pool: Pool) -> str:
    with FailoverEncoder(
        pool, "h264", width=W, height=H, time_base=Fraction(1, 30), framerate=30, gop=10
    ) as enc:
        return enc.server


def test_placement_prefers_free_capacity_and_skips_busy_and_dead(start_server, caplog) -> None:
    busy = start_server("--engine", "x264", "--max-sessions", "1")
    loaded = start_server("--engine", "x264", "--max-sessions", "4")
    idle = start_server("--engine", "x264", "--max-sessions", "4")
    dead = dead_address()
    holders = [hold(busy.addr), hold(loaded.addr), hold(loaded.addr)]
    try:
        pool = Pool(
            "p",
            (
                PoolMember(dead),
                PoolMember(busy.addr),
                PoolMember(loaded.addr),
                PoolMember(idle.addr),
            ),
        )
        with caplog.at_level(logging.INFO, logger="vtremote.client.pool"):
            assert placed(pool) == idle.addr  # 4 free beat 2 free
        text = caplog.text
        assert f"skipping {dead}: connection refused" in text
        assert f"skipping {busy.addr}: server busy: 1 of 1 sessions in use" in text
        # a weight of 3 makes 2 free slots (score 6) beat 4 free slots (score 4)
        weighted = Pool("w", (PoolMember(loaded.addr, 3.0), PoolMember(idle.addr)))
        assert placed(weighted) == loaded.addr
    finally:
        for h in holders:
            h.close()


def test_every_member_failing_gives_one_error_naming_each(start_server) -> None:
    busy = start_server("--engine", "x264", "--max-sessions", "1")
    dead = dead_address()
    holder = hold(busy.addr)
    try:
        with pytest.raises(NoServerError) as err:
            placed(Pool("both", (PoolMember(dead), PoolMember(busy.addr))))
        text = str(err.value)
        assert f"{dead}: connection refused" in text
        assert f"{busy.addr}: server busy: 1 of 1 sessions in use" in text
    finally:
        holder.close()


def test_chosen_member_keeps_its_slot_others_release_theirs(start_server) -> None:
    a = start_server("--engine", "x264", "--max-sessions", "1")
    b = start_server("--engine", "x264", "--max-sessions", "1")
    placer = Placer(Pool("ab", (PoolMember(a.addr), PoolMember(b.addr))), "h264")
    enc, addr = placer.open(lambda t: RemoteEncoder(t, "h264", width=W, height=H, gop=10))
    other = b if addr == a.addr else a
    with enc:
        free_again(other.addr).close()  # the member not chosen is free again
        with pytest.raises(NoServerError):
            Placer(Pool("x", (PoolMember(addr),)), "h264").open(
                lambda t: RemoteEncoder(t, "h264", width=W, height=H)
            )


def test_config_file_pools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start_server) -> None:
    srv = start_server("--engine", "x264")
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        'fallback = "local"\n'
        "[pools.studio]\n"
        f'hosts = ["{dead_address()}", {{ host = "{srv.addr}", weight = 2 }}]\n'
        'token = ""\n'
        "[pools.quiet]\n"
        f'hosts = ["{srv.addr}"]\n'
        'fallback = "none"\n'
    )
    monkeypatch.setenv("VTREMOTE_CONFIG", str(cfg))
    config = load_config()
    assert config.fallback == "local" and set(config.pools) == {"studio", "quiet"}
    assert (
        is_pool("studio") and not is_pool("other") and not is_pool(srv.addr) and is_pool("a:1,b:2")
    )
    pool = resolve_pool("studio")
    assert pool.members[1] == PoolMember(srv.addr, 2.0) and pool.fallback == "local"
    assert resolve_pool("quiet").fallback == "none"
    assert resolve_pool("quiet", fallback="local").fallback == "local"
    assert placed(pool) == srv.addr
    cfg.write_text("[pools.bad]\nhosts = 3\n")
    with pytest.raises(ConfigError, match="pools.bad.hosts"):
        load_config()
    monkeypatch.setenv("VTREMOTE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_config()


def test_cli_host_list_with_a_dead_member_and_json(tmp_path: Path, capsys, start_server) -> None:
    srv = start_server("--engine", "x264")
    out = tmp_path / "out.mp4"
    rc = main(
        [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={W}x{H}:rate=30",
            "-frames:v",
            "20",
            "-c:v",
            REMOTE_H264,
            "-vt_remote_host",
            f"{dead_address()},{srv.addr}",
            "-g",
            "10",
            "-b:v",
            "300k",
            "--json",
            str(out),
        ]
    )
    stdout, _ = capsys.readouterr()
    assert rc == 0
    summary = json.loads(stdout)
    assert summary["failovers"] == 0 and summary["fallbacks"] == 0
    (session,) = summary["remote_sessions"]
    assert session["server"] == srv.addr and session["servers"] == [srv.addr]
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 20


def test_cli_falls_back_to_local_when_no_server_answers(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mp4"
    rc = main(
        [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={W}x{H}:rate=30",
            "-frames:v",
            "15",
            "-c:v",
            REMOTE_H264,
            "-vt_remote_host",
            dead_address(),
            "-vt_remote_fallback",
            "local",
            "-g",
            "10",
            "--json",
            str(out),
        ]
    )
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    summary = json.loads(stdout)
    assert summary["fallbacks"] == 1
    assert summary["remote_sessions"][0]["server"] == "local libx264"
    assert summary["remote_sessions"][0]["fallback"] is True
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 15 and frames[0].key_frame
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)


def test_cli_without_fallback_fails_naming_the_hosts(tmp_path: Path, capsys) -> None:
    a, b = dead_address(), dead_address()
    rc = main(
        [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={W}x{H}:rate=30",
            "-frames:v",
            "5",
            "-c:v",
            REMOTE_H264,
            "-vt_remote_host",
            f"{a},{b}",
            str(tmp_path / "out.mp4"),
        ]
    )
    _, err = capsys.readouterr()
    assert rc == 1
    assert f"{a}: connection refused" in err and f"{b}: connection refused" in err


def test_local_fallback_frames_match_the_library(tmp_path: Path) -> None:
    frames = testsrc_frames(12, W, H)
    with FailoverEncoder(
        Pool("none", (PoolMember(dead_address()),), fallback="local"),
        "h264",
        width=W,
        height=H,
        time_base=Fraction(1, 30),
        framerate=30,
        gop=6,
    ) as enc:
        packets = [p for f in frames for p in enc.encode(f)] + enc.flush()
    assert enc.fell_back and len(packets) == 12
    assert [p.pts for p in packets] == list(range(12))
    assert [i for i, p in enumerate(packets) if p.is_keyframe] == [0, 6]


def test_clients_placing_at_once_share_a_pool_of_single_slots(start_server) -> None:
    """Each placement HELLOs every member: a slot another client only looked at is not lost."""
    servers = [start_server("--engine", "x264", "--max-sessions", "1") for _ in range(3)]
    pool = Pool("three", tuple(PoolMember(s.addr) for s in servers))
    barrier = threading.Barrier(3)
    encoders: list[FailoverEncoder] = []
    errors: list[BaseException] = []

    def place() -> None:
        barrier.wait()
        try:
            encoders.append(
                FailoverEncoder(pool, "h264", width=W, height=H, time_base=Fraction(1, 30), gop=10)
            )
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=place) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert not errors, errors
        assert sorted(e.server for e in encoders) == sorted(s.addr for s in servers)
    finally:
        for e in encoders:
            e.close()
