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

from decoding import decode_stream
from media import testsrc_frames
from vtremote.cli.main import main
from vtremote.client import RemoteEncoder
from vtremote.client.config import PoolMember, WakeTarget, load_config
from vtremote.client.failover import FailoverEncoder
from vtremote.client.pool import Placer, Pool, is_pool, resolve_pool
from vtremote.errors import BusyError, ConfigError, NoServerError, TimeoutExpiredError

W, H = 160, 96
REMOTE_H264 = "h264_videotoolbox_remote"


def dead_address() -> str:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def hold(addr: str, **options: object) -> RemoteEncoder:
    """An open encode session that occupies one slot of ``addr``."""
    return RemoteEncoder(
        addr, "h264", width=W, height=H, time_base=Fraction(1, 30), framerate=30, gop=10, **options
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


# -- members with their own token and TLS, and members woken by Wake-on-LAN --------------------

FINGERPRINT = r"SHA-256 fingerprint ([0-9A-F:]{95})"


def test_each_member_gets_its_own_token_and_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start_server
) -> None:
    plain = start_server("--engine", "x264", "--token", "plain-token")
    secure = start_server(
        "--engine", "x264", "--token", "tls-token", "--tls", "--tls-dir", str(tmp_path / "tls")
    )
    fp = secure.wait_for_log(FINGERPRINT).group(1)
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        "[pools.mixed]\n"
        'token = "plain-token"\n'
        "hosts = [\n"
        f'  "{plain.addr}",\n'
        f'  {{ host = "{secure.addr}", token = "tls-token", '
        f'tls_fingerprint = "{fp}", weight = 8 }},\n'
        "]\n"
    )
    monkeypatch.setenv("VTREMOTE_CONFIG", str(cfg))
    pool = resolve_pool("mixed")
    offers = Placer(pool, "h264").offers()
    try:  # both said yes to HELLO: each got its own token, the second over TLS
        assert [o.member.address for o in offers] == [secure.addr, plain.addr]
        assert offers[0].transport.tls and not offers[1].transport.tls
    finally:
        for o in offers:
            o.transport.close()
    assert placed(pool) == secure.addr  # weight 8 wins
    # the pool's token alone does not open the TLS member: it is skipped, named, with why
    wrong = Pool("wrong", (PoolMember(secure.addr, token="plain-token", tls=pool.members[1].tls),))
    with pytest.raises(NoServerError, match=rf"{secure.addr}: authentication failed"):
        placed(wrong)


class WakeListener:
    """A UDP socket on 127.0.0.1 standing in for the LAN broadcast: it keeps every datagram
    and runs ``on_packet`` after the first."""

    def __init__(self, on_packet=None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[bytes] = []
        self.seen = threading.Event()
        self.error: BaseException | None = None
        self._on_packet = on_packet
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            self.packets.append(data)
            if not self.seen.is_set():
                self.seen.set()
                if self._on_packet is not None:
                    try:
                        self._on_packet()
                    except BaseException as e:  # noqa: BLE001 - reported by the test
                        self.error = e

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


MAC = bytes.fromhex("3c22fb0a0b0c")


def test_a_sleeping_member_is_woken_and_then_used(start_server, caplog) -> None:
    asleep = dead_address()
    port = asleep.rsplit(":", 1)[1]
    booted: list[str] = []

    def boot() -> None:  # the machine wakes: its vtremoted comes up on the same port
        booted.append(start_server("--engine", "x264", "--listen", f"127.0.0.1:{port}").addr)

    listener = WakeListener(boot)
    try:
        wake = WakeTarget(MAC, "127.0.0.1", listener.port, timeout_s=60)
        pool = Pool("sleepy", (PoolMember(asleep, wake=wake),))
        with caplog.at_level(logging.INFO, logger="vtremote.client"):
            assert placed(pool) == asleep
        assert listener.error is None and booted == [asleep]
        assert listener.packets[0] == b"\xff" * 6 + MAC * 16 and len(listener.packets[0]) == 102
        assert f"{asleep} cannot be reached: sent Wake-on-LAN for 3c:22:fb:0a:0b:0c" in caplog.text
        assert f"{asleep} answered" in caplog.text
    finally:
        listener.close()


def test_background_wake_goes_on_without_the_member(start_server) -> None:
    srv = start_server("--engine", "x264")
    asleep = dead_address()
    listener = WakeListener()
    try:
        wake = WakeTarget(MAC, "127.0.0.1", listener.port, timeout_s=60, mode="background")
        member = PoolMember(asleep, weight=100, wake=wake)
        assert placed(Pool("bg", (member, PoolMember(srv.addr)))) == srv.addr
        assert listener.seen.wait(10) and listener.packets[0] == b"\xff" * 6 + MAC * 16
        with pytest.raises(NoServerError) as err:  # alone: no wait, the error says it was woken
            placed(Pool("alone", (member,)))
        assert f"{asleep}: connection refused (woken by Wake-on-LAN)" in str(err.value)
    finally:
        listener.close()


def test_a_woken_member_that_stays_asleep_is_named(caplog) -> None:
    asleep = dead_address()
    listener = WakeListener()
    try:
        wake = WakeTarget(MAC, "127.0.0.1", listener.port, timeout_s=1.5)
        with pytest.raises(NoServerError) as err:
            placed(Pool("never", (PoolMember(asleep, wake=wake),)))
        assert (
            f"{asleep}: connection refused (woken by Wake-on-LAN); did not answer within 1.5 s"
            in str(err.value)
        )
        assert listener.packets and listener.packets[0] == b"\xff" * 6 + MAC * 16
    finally:
        listener.close()


def test_placement_weighs_engine_capacity_and_measured_speed(start_server, caplog) -> None:
    """HELLO_ACK's ext:capacity: a server whose engine runs more sessions at once, or whose
    sessions ran faster, is preferred at equal free slots."""
    small = start_server("--engine", "x264", "--max-sessions", "8", "--capacity", "1")
    large = start_server("--engine", "x264", "--max-sessions", "8", "--capacity", "3")
    pool = Pool("cap", (PoolMember(small.addr), PoolMember(large.addr)))
    placer = Placer(pool, "h264")
    offers = placer.offers()
    for o in offers:
        o.transport.close()
    by_addr = {o.member.address: o for o in offers}
    assert (by_addr[small.addr].capacity, by_addr[large.addr].capacity) == (1, 3)
    assert by_addr[small.addr].fps is None  # nothing measured before a session ended
    assert [o.member.address for o in offers] == [large.addr, small.addr]
    # past its capacity a server counts by its share: 3 running on capacity 3, plus this one,
    # is 3/4 of a session, less than the small one's free one
    holders = [hold(large.addr), hold(large.addr), hold(large.addr)]
    try:
        with caplog.at_level(logging.INFO, logger="vtremote.client.pool"):
            assert placed(Pool("cap2", pool.members)) == small.addr
        assert "engine capacity 1" in caplog.text
    finally:
        for h in holders:
            h.close()
    # a session that ran gives its server a measured fps, announced from then on
    with hold(small.addr) as enc:
        for frame in testsrc_frames(30, W, H):
            enc.encode(frame)
        enc.flush()
    measured = by_fps = None
    deadline = time.monotonic() + 20
    while measured is None and time.monotonic() < deadline:  # the SUMMARY follows DONE
        offers = Placer(pool, "h264").offers()
        for o in offers:
            o.transport.close()
        by_fps = {o.member.address: o for o in offers}
        measured = by_fps[small.addr].fps
        time.sleep(0.1)
    assert measured is not None and measured > 0 and by_fps is not None
    assert by_fps[large.addr].fps is None
    # the unmeasured server counts at the mean of the measured ones: capacity decides again
    assert [o.member.address for o in offers] == [large.addr, small.addr]


# -- a server that stalls while the window is still open -----------------------------------------


def test_a_stall_is_noticed_with_the_window_open(start_server) -> None:
    """SIGSTOP with frames in flight and room in the window: the client's PING goes
    unanswered, and the session fails naming the host without filling the window first."""
    import os
    import signal

    srv = start_server("--engine", "x264")
    enc = hold(srv.addr, inflight=128, timeout=1.0)
    frames = testsrc_frames(100, W, H)
    try:
        for f in frames[:5]:
            enc.encode(f)
        os.kill(srv.proc.pid, signal.SIGSTOP)
        with pytest.raises(TimeoutExpiredError) as err:
            for f in frames[5:]:  # far fewer than the window: only the stall check can fail
                enc.encode(f)
                time.sleep(0.2)
        assert enc.in_flight < enc.inflight
        text = str(err.value)
        assert f"no reply from {srv.addr}" in text and "the server stalled" in text
        assert "a PING" in text and "went unanswered" in text
    finally:
        os.kill(srv.proc.pid, signal.SIGCONT)
        enc.close()


def test_a_live_encoder_holding_frames_is_not_a_stall(start_server) -> None:
    """Frames held by the encoder and a slow feed: the server answers the PING, so the
    session goes on past many timeouts and every frame comes back."""
    srv = start_server("--engine", "x264")
    packets = []
    with hold(srv.addr, inflight=128, timeout=0.6) as enc:
        frames = testsrc_frames(12, W, H)
        for i, f in enumerate(frames):
            packets += enc.encode(f)
            if i in (2, 7):  # idle well past the timeout with frames in flight
                assert enc.in_flight > 0
                time.sleep(2.5)
        packets += enc.flush()
    assert len(packets) == 12 and len(decode_stream("h264", enc.extradata, packets)) == 12


def test_failover_leaves_a_server_that_stalls_with_the_window_open(start_server) -> None:
    import os
    import signal

    stalled = start_server("--engine", "x264")
    healthy = start_server("--engine", "x264")
    frames = testsrc_frames(40, W, H)
    packets: list[av.Packet] = []
    pool = Pool("s", (PoolMember(stalled.addr, weight=10), PoolMember(healthy.addr)))
    enc = FailoverEncoder(
        pool,
        "h264",
        width=W,
        height=H,
        time_base=Fraction(1, 30),
        gop=10,
        inflight=128,
        timeout=1.0,
    )
    try:
        with enc:
            for i, f in enumerate(frames):
                packets += enc.encode(f)
                if i == 9:
                    os.kill(stalled.proc.pid, signal.SIGSTOP)
                if 9 <= i < 25 and not enc.failovers:
                    time.sleep(0.25)  # a slow feed: the window never fills
            packets += enc.flush()
    finally:
        os.kill(stalled.proc.pid, signal.SIGCONT)
    assert enc.servers == [stalled.addr, healthy.addr]
    assert "the server stalled" in enc.switches[0].reason
    assert sorted(p.pts for p in packets) == [f.pts for f in frames]
    assert len(decode_stream("h264", enc.extradata, packets)) == len(frames)


def _ipv6_loopback() -> str | None:
    """None when ``::1`` can be bound here, else why not."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as e:
        return f"no IPv6 loopback here: {e}"
    return None


@pytest.mark.skipif(_ipv6_loopback() is not None, reason=str(_ipv6_loopback()))
def test_a_pool_of_ipv6_members(start_server, caplog) -> None:
    """``[::1]:PORT`` members: greeted, placed, skipped and named in the bracketed form."""
    srv = start_server("--engine", "x264", "--listen", "[::1]:0")
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        dead = f"[::1]:{s.getsockname()[1]}"
    assert srv.addr.startswith("[::1]:")
    pool = resolve_pool(f"{dead},{srv.addr}")
    with caplog.at_level(logging.INFO, logger="vtremote.client.pool"):
        assert placed(pool) == srv.addr
    assert f"skipping {dead}: connection refused" in caplog.text
