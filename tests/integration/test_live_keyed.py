"""A keyed receiver under attack on loopback, a legitimate keyed sender beside the attacker.

The attacker speaks VL1 over real sockets: HELLO and BYE with made-up or known
source ids, forged VIDEO, idle and dripped handshakes, garbage, forged
datagrams (from another port, and with the sender's own address spoofed where
raw sockets are allowed). The sender's recording must hold only its own frames.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import pytest

from vtremote.errors import AuthError
from vtremote.live import LiveReceiver, Sender, SenderConfig
from vtremote.live import protocol as p
from vtremote.live.auth import HELLO_KEYED
from vtremote.live.codec import EncoderConfig, LiveEncoder
from vtremote.live.datagram import Packetizer, control_datagram
from vtremote.live.gate import MAX_HANDSHAKES, MAX_HANDSHAKES_PER_HOST
from vtremote.live.ratelog import LINES_PER_MINUTE, FaultLog

SIZE = (160, 120)


def _frames(n: int) -> list[av.VideoFrame]:
    with av.open(f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate=30", format="lavfi") as c:
        return [f for f, _ in zip(c.decode(video=0), range(n), strict=False)]


def _hello(source_id: int, *, flags: int = 0) -> p.Hello:
    return p.Hello(source_id, random.getrandbits(32), p.Codec.H264, *SIZE, 30, 1, flags=flags)


def _wire(*msgs: p.Message) -> bytes:
    return b"".join(bytes(b) for m in msgs for b in p.serialize(m))


def _gray_keyframe() -> bytes:
    """A decodable H.264 keyframe of a flat gray picture: what an attacker would splice in."""
    frame = av.VideoFrame(*SIZE, "yuv420p")
    for plane in frame.planes:
        plane.update(b"\x80" * plane.buffer_size)
    enc = LiveEncoder(EncoderConfig(p.Codec.H264, *SIZE, Fraction(30)))
    units = enc.encode(frame, 0, keyframe=True)
    assert units and units[0].keyframe
    return units[0].data


def _wait_for(what: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {what}")
        time.sleep(0.02)


def _faults(rx: LiveReceiver, kind: str) -> int:
    return int(rx.summary()["faults"].get(kind, 0))


class _Camera:
    """A keyed sender streaming testsrc2 from a thread until :meth:`finish`."""

    def __init__(self, rx: LiveReceiver, source_id: int, transport: str, key: str | None) -> None:
        cfg = SenderConfig(
            *SIZE, Fraction(30), source_id=source_id, transport=transport, key=key, keyint_s=0.5
        )
        self.tx = Sender(f"127.0.0.1:{rx.address[1]}", cfg).start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        frames = _frames(30)
        start, i = time.monotonic_ns(), 0
        while not self._stop.is_set():
            due = start + i * 33_333_333
            time.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
            self.tx.send(frames[i % len(frames)], capture_ns=due)
            i += 1

    def finish(self, at_least_frames: int = 30) -> int:
        _wait_for(lambda: self.tx.stats.frames_sent >= at_least_frames)
        self._stop.set()
        self._thread.join(10)
        return self.tx.close().frames_sent


def _recorded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def _only_camera_frames(rx: LiveReceiver, sent: int) -> None:
    """The recording holds exactly the camera's pictures: none is the attacker's flat gray."""
    rx.stop()  # closes the recording
    frames = _recorded(Path(str(rx.record)))
    assert len(frames) == sent
    for f in frames:
        luma = f.to_ndarray(format="gray")
        assert luma.std() > 5  # testsrc2, never a flat picture


@pytest.fixture
def rx(tmp_path: Path) -> Iterator[LiveReceiver]:
    with LiveReceiver("127.0.0.1:0", on_frame=lambda f: None, record=tmp_path / "cam.mkv") as r:
        yield r


@contextlib.contextmanager
def _tcp(rx: LiveReceiver) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", rx.address[1]), timeout=10) as s:
        yield s


def _udp(rx: LiveReceiver) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", rx.address[1]))
    s.settimeout(10)
    return s


def test_hello_and_bye_with_a_random_id_neither_join_nor_end_anything(rx: LiveReceiver) -> None:
    with _tcp(rx) as s:
        s.sendall(_wire(_hello(random.getrandbits(31)), p.Bye()))
        ack = p.StreamParser().feed(s.recv(4096))[0]
    assert isinstance(ack, p.HelloAck) and ack.status is p.AckStatus.REFUSED
    assert "needs its key" in ack.text
    with _udp(rx) as u:
        u.send(control_datagram(_hello(random.getrandbits(31)), 0))
        _wait_for(lambda: _faults(rx, "refused") >= 2)
    assert rx.current_sources() == [] and not rx.wait(0.5)  # nothing joined, nothing ended
    cam = _Camera(rx, 7, "tcp", rx.key)
    sent = cam.finish()
    assert rx.wait(20)
    _only_camera_frames(rx, sent)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_forged_bye_and_video_of_a_known_source_change_nothing(
    rx: LiveReceiver, transport: str
) -> None:
    cam = _Camera(rx, 42, transport, rx.key)
    _wait_for(lambda: cam.tx.stats.frames_sent >= 5)
    gray = _gray_keyframe()
    forged = [p.Video(10_000, time.monotonic_ns(), gray, keyframe=True), p.Bye()]
    with _tcp(rx) as s:  # without a key, then with a key flag and a made-up proof
        s.sendall(_wire(_hello(42), *forged))
    with _tcp(rx) as s:
        keyed = _hello(42, flags=HELLO_KEYED)
        s.sendall(_wire(keyed))
        (challenge,) = p.StreamParser().feed(s.recv(4096))
        assert isinstance(challenge, p.Challenge)
        hello = b"".join(bytes(b) for b in p.serialize_payload(keyed))
        s.sendall(_wire(p.Auth(challenge.cookie, bytes(16), bytes(32), hello), *forged))
    with _udp(rx) as u:
        u.send(control_datagram(_hello(42), 0))
        u.send(control_datagram(_hello(42, flags=HELLO_KEYED), 0))
        for token in (0, getattr(cam.tx._link, "token", 0)):
            for msg in forged:
                for parts in Packetizer(token).datagrams(msg):
                    u.send(b"".join(bytes(b) for b in parts))
        _wait_for(lambda: _faults(rx, "refused") >= 3)  # the keyed UDP HELLO got a CHALLENGE
    assert not rx.wait(0.5)  # the forged BYEs ended nothing
    sent = cam.finish()
    assert rx.wait(20)
    (source,) = rx.summary()["sources"]
    assert source["source_id"] == 42 and source["connections"] == 1  # never replaced
    _only_camera_frames(rx, sent)


def _live_tcp_threads() -> int:
    return sum(t.name == "live-tcp" for t in threading.enumerate())


def test_idle_handshakes_beyond_the_caps_do_not_lock_a_keyed_camera_out(
    rx: LiveReceiver,
) -> None:
    idle: list[socket.socket] = []
    try:
        for _ in range(MAX_HANDSHAKES + 16):
            s = socket.create_connection(("127.0.0.1", rx.address[1]), timeout=10)
            s.sendall(_wire(_hello(random.getrandbits(31), flags=HELLO_KEYED)))
            idle.append(s)
        _wait_for(lambda: _faults(rx, "handshakes") >= len(idle) - MAX_HANDSHAKES_PER_HOST)
        cam = _Camera(rx, 3, "tcp", rx.key)  # ends the oldest idle handshake to get its turn
        sent = cam.finish()
        assert rx.wait(20)
        _only_camera_frames(rx, sent)
        assert rx.current_sources()[0].hello.source_id == 3
        # Every idle connection is ended (cap or deadline), and its thread with it.
        _wait_for(lambda: _live_tcp_threads() == 0)
        for s in idle:
            s.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                while s.recv(4096):
                    pass  # its CHALLENGE, then EOF
    finally:
        for s in idle:
            s.close()


def test_forged_udp_hellos_make_no_state_and_do_not_lock_a_camera_out(rx: LiveReceiver) -> None:
    with _udp(rx) as u:
        for _ in range(40):
            u.send(control_datagram(_hello(random.getrandbits(31)), 0))
            u.send(control_datagram(_hello(random.getrandbits(31), flags=HELLO_KEYED), 0))
        _wait_for(lambda: _faults(rx, "refused") >= 40)
    assert rx.current_sources() == []
    cam = _Camera(rx, 11, "udp", rx.key)
    sent = cam.finish()
    assert rx.wait(20)
    assert rx.summary()["frames"] == sent


def _spoofed(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 + UDP packet from ``src`` (kernel fills the IP checksum and length)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(src[0]),
        socket.inet_aton(dst[0]),
    )
    return ip + udp


def test_datagrams_forged_from_the_senders_own_address_are_dropped_and_counted(
    rx: LiveReceiver,
) -> None:
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        pytest.skip("raw sockets need CAP_NET_RAW")
    cam = _Camera(rx, 5, "udp", rx.key)
    _wait_for(lambda: cam.tx.stats.frames_sent >= 5)
    link = cam.tx._link
    sock = getattr(link, "_sock", None)
    assert sock is not None
    src, dst = sock.getsockname(), ("127.0.0.1", rx.address[1])
    gray = _gray_keyframe()
    with raw:
        packetizer = Packetizer(link.token)  # the session's real token
        for seq in range(200):  # messages ahead of the camera's, in its numbering
            packetizer._msg_seq = seq
            for msg in (p.Video(seq, time.monotonic_ns(), gray, keyframe=True), p.Bye()):
                for parts in packetizer.datagrams(msg):
                    raw.sendto(_spoofed(src, dst, b"".join(bytes(b) for b in parts)), dst)
    _wait_for(lambda: rx.forged >= 200)
    assert not rx.wait(0.5)
    sent = cam.finish()
    assert rx.wait(20)
    assert rx.summary()["forged_datagrams"] == rx.forged >= 200
    _only_camera_frames(rx, sent)


def test_a_dripped_hello_is_cut_at_the_deadline(rx: LiveReceiver) -> None:
    data = _wire(_hello(9, flags=HELLO_KEYED))
    sent = 0
    with _tcp(rx) as s, contextlib.suppress(ConnectionResetError, BrokenPipeError):
        for byte in data:
            s.sendall(bytes([byte]))
            sent += 1
            s.settimeout(0.3)
            try:
                if s.recv(1) == b"":
                    break  # closed by the receiver
            except TimeoutError:
                continue
    assert sent < len(data)  # cut while still dripping
    _wait_for(lambda: _faults(rx, "deadline") == 1)
    _wait_for(lambda: _live_tcp_threads() == 0)


def test_garbage_connections_log_a_bounded_number_of_lines(
    rx: LiveReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vtremote.live")
    for i in range(100):
        with _tcp(rx) as s:
            s.sendall(bytes([i]) * 64)
            with contextlib.suppress(ConnectionResetError):
                while s.recv(4096):
                    pass
    with _udp(rx) as u:
        for i in range(100):
            u.send(bytes([i]) * 64)
    _wait_for(lambda: rx.malformed >= 200)
    lines = [r for r in caplog.records if r.name.startswith("vtremote.live")]
    assert len(lines) <= 2 * LINES_PER_MINUTE  # one budget for all malformed input
    assert _faults(rx, "malformed") == 200


def test_the_fault_log_says_how_many_lines_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    faults = FaultLog(logging.getLogger("vtremote.live.test"), per_minute=2, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="vtremote.live.test")
    for i in range(10):
        faults.warning("x", "fault %d", i)
    faults.warning("y", "other %d", 0)
    now[0] = 61.0
    faults.warning("x", "fault %d", 10)
    assert [r.getMessage() for r in caplog.records] == [
        "fault 0",
        "fault 1",
        "other 0",
        "fault 10 (8 more like it not logged)",
    ]
    assert faults.counts == {"x": 11, "y": 1}


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_wrong_key_and_no_key_are_refused_with_a_clear_error(
    rx: LiveReceiver, transport: str
) -> None:
    for key in ("not-the-receivers-key-0123", None):
        cfg = SenderConfig(*SIZE, Fraction(30), transport=transport, key=key, reconnect_s=5)
        tx = Sender(f"127.0.0.1:{rx.address[1]}", cfg).start()
        try:
            with pytest.raises(AuthError, match="wrong key" if key else "needs its key"):
                tx.wait_connected(30)
        finally:
            tx.close()
    assert rx.current_sources() == []


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_keyed_sender_will_not_stream_to_a_receiver_that_never_asked(transport: str) -> None:
    with LiveReceiver("127.0.0.1:0", key=None, on_frame=lambda f: None) as open_rx:
        cfg = SenderConfig(*SIZE, Fraction(30), transport=transport, key="k" * 20, reconnect_s=5)
        tx = Sender(f"127.0.0.1:{open_rx.address[1]}", cfg).start()
        try:
            with pytest.raises(AuthError, match="--no-key"):
                tx.wait_connected(30)
        finally:
            tx.close()


def test_cookies_are_bound_to_the_peer_the_nonce_and_a_time() -> None:
    from vtremote.live.auth import CookieJar

    jar = CookieJar(lifetime_ms=3000)
    cookie = jar.make("10.0.0.7", 5000, 99, now_ms=1_000)
    assert jar.check(cookie, "10.0.0.7", 5000, 99, now_ms=3_999) == ""
    assert "older than 3000 ms" in jar.check(cookie, "10.0.0.7", 5000, 99, now_ms=4_001)
    assert "not made for this peer" in jar.check(cookie, "10.0.0.8", 5000, 99, now_ms=1_000)
    assert "not made for this peer" in jar.check(cookie, "10.0.0.7", 5001, 99, now_ms=1_000)
    assert "not made for this peer" in jar.check(cookie, "10.0.0.7", 5000, 98, now_ms=1_000)
    assert "not made for this peer" in CookieJar(3000).check(cookie, "10.0.0.7", 5000, 99, 1_000)


def test_a_datagram_tag_covers_every_byte() -> None:
    from vtremote.live.auth import TAG_SIZE, tag, untag

    key = bytes(32)
    body = control_datagram(p.ClockReply(1, 2, 3, 4), 77)
    datagram = body + tag(key, body)
    assert len(datagram) == len(body) + TAG_SIZE
    assert bytes(untag(key, memoryview(datagram)) or b"") == body
    for i in range(len(datagram)):
        bad = bytearray(datagram)
        bad[i] ^= 1
        assert untag(key, memoryview(bytes(bad))) is None
    assert untag(bytes([1]) * 32, memoryview(datagram)) is None
