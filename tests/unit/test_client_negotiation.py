"""Client negotiation and flow control against a scripted server on a socketpair.

The "server" here is a thread speaking VTR1 through ``vtremote.wire`` (server
role), so each test decides exactly what a plain v1 server or one of ours
announces and checks, byte for byte, what the client does with it: CONFIGURE
options, lock-step versus pipelined decoding, FLUSH once, refusals, keepalive.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from fractions import Fraction

import av
import pytest

from vtremote.client import RemoteDecoder, RemoteEncoder, Transport, parse_address
from vtremote.client.encoder import EncoderSettings
from vtremote.errors import (
    AuthError,
    BusyError,
    ConfigError,
    ConnectionLostError,
    RemoteProtocolError,
    TimeoutExpiredError,
    UnsupportedError,
)
from vtremote.wire import Connection, Role
from vtremote.wire import messages as m
from vtremote.wire.constants import WireCompression

V1_CAPS = ("h264", "hevc")  # what the reference server announces (VTR1.md §2.2)
OUR_CAPS = (
    "h264",
    "hevc",
    "ext:busy",
    "ext:errors",
    "ext:keepalive=900",
    "ext:decode-pipeline",
    "ext:engine=x264",
)

# A tiny but valid avcC (SPS/PPS of a 320x180 x264 stream) for decode sessions.
_AVCC = None


def avcc() -> bytes:
    global _AVCC
    if _AVCC is None:
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = 64, 64, "yuv420p"
        enc.time_base = Fraction(1, 25)
        enc.flags |= 1 << 22  # global header: Annex B SPS/PPS in extradata
        enc.open()
        from vtremote.wire import annexb

        _AVCC = annexb.build_config_record("h264", enc.extradata)
    return _AVCC


class FakeServer:
    """One end of a socketpair served by ``script(peer)`` on a thread."""

    def __init__(self, script: Callable[[FakeServer], None]) -> None:
        self.client_sock, self.sock = socket.socketpair()
        self.sock.settimeout(10)
        self.conn = Connection(Role.SERVER)
        self.received: list[m.Message] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(script,), daemon=True)
        self._thread.start()

    def transport(self, timeout: float = 5.0) -> Transport:
        return Transport.from_socket(self.client_sock, name="fake:5555", timeout=timeout)

    def _main(self, script: Callable[[FakeServer], None]) -> None:
        try:
            script(self)
        except BaseException as e:  # noqa: BLE001 - reported by join()
            self.error = e

    def recv(self) -> m.Message:
        while True:
            msg = self.conn.next_event()
            if msg is not None:
                self.received.append(msg)
                return msg
            data = self.sock.recv(1 << 16)
            if not data:
                self.conn.receive_eof()
                raise EOFError("client closed")
            self.conn.receive_data(data)

    def send(self, *msgs: m.Message) -> None:
        for msg in msgs:
            self.sock.sendall(b"".join(bytes(b) for b in self.conn.send(msg)))

    def handshake(
        self, caps: tuple[str, ...] = OUR_CAPS, *, extradata: bytes = b"", pix_fmt: int = 1
    ) -> m.Configure:
        hello = self.recv()
        assert isinstance(hello, m.Hello)
        self.send(m.HelloAck(0, "fake", "1.0", caps, 4, 1))
        cfg = self.recv()
        assert isinstance(cfg, m.Configure)
        self.send(m.ConfigureAck(0, extradata, pix_fmt))
        return cfg

    def join(self) -> None:
        self._thread.join(10)
        assert not self._thread.is_alive(), "fake server did not finish"
        self.sock.close()
        if self.error is not None:
            raise self.error


def nv12_picture(pts: int, w: int = 64, h: int = 64) -> av.VideoFrame:
    frame = av.VideoFrame(w, h, "nv12")
    for plane in frame.planes:
        memoryview(plane)[:] = bytes([pts % 256]) * plane.buffer_size
    frame.pts = pts
    return frame


def wire_frame(pts: int, w: int = 64, h: int = 64) -> m.Frame:
    return m.Frame(
        pts,
        1,
        0,
        (m.Plane(w, h, bytes(w * h)), m.Plane(w, (h + 1) // 2, bytes(w * ((h + 1) // 2)))),
    )


def stub_packet(pts: int) -> m.Packet:
    return m.Packet(
        pts, pts, 1, 1 if pts == 0 else 0, b"\x00\x00\x00\x01\x65" + pts.to_bytes(4, "big")
    )


def h264_packet(pts: int) -> av.Packet:
    # Length-prefixed (the avcC says 4-byte lengths): the client must send Annex B.
    nal = b"\x65\x88" + pts.to_bytes(2, "big")
    pkt = av.Packet(len(nal).to_bytes(4, "big") + nal)
    pkt.pts = pkt.dts = pts
    pkt.is_keyframe = pts == 0
    return pkt


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mac.local:5555", ("mac.local", 5555)),
        ("127.0.0.1:7000", ("127.0.0.1", 7000)),
        ("[::1]:5555", ("::1", 5555)),
        ("[fe80::1%eth0]:6000", ("fe80::1%eth0", 6000)),
        ("::1", ("::1", 5555)),
        ("studio-mac", ("studio-mac", 5555)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, 5555) == expected


@pytest.mark.parametrize(
    "text", ["", "host:", "host:0", "host:99999", "host:http", "[::1", "[::1]5555"]
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(text)


def test_dead_server_names_host_and_reason() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        ConnectionLostError, match=rf"^cannot reach 127\.0\.0\.1:{port}: connection refused$"
    ):
        RemoteEncoder(f"127.0.0.1:{port}", width=64, height=64)


def test_a_service_that_is_not_vtr1_is_named() -> None:
    """An HTTP proxy (or any other service) on the port: the error names the host."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        t = threading.Thread(target=answer)
        t.start()
        with pytest.raises(
            RemoteProtocolError,
            match=rf"^127\.0\.0\.1:{port} does not answer like a VTR1 server: bad header",
        ):
            RemoteEncoder(f"127.0.0.1:{port}", width=64, height=64)
        t.join(5)


# --- encoder ---------------------------------------------------------------------------------


def test_encoder_options_match_reference_capture(capture_loader: Callable[[str], object]) -> None:
    """Same keys, same order, same values as the reference client's CONFIGURE (VTR1.md §3.2)."""
    cap = capture_loader("h264_enc_lz4")
    ref_cfg = next(msg for msg in _parse_capture(cap) if isinstance(msg, m.Configure))

    def script(srv: FakeServer) -> None:
        cfg = srv.handshake(V1_CAPS)
        srv.received.append(cfg)
        assert isinstance(srv.recv(), m.Flush)
        srv.send(m.Done())

    srv = FakeServer(script)
    # The capture: testsrc2 (SAR 1:1), -vt_remote_wire_compression lz4, ffmpeg's FRAME_DURATION
    # flag.
    with RemoteEncoder(
        srv.transport(),
        "h264",
        width=320,
        height=180,
        time_base=Fraction(1, 5),
        framerate=5,
        compression="lz4",
        flags=256,
        sar=(1, 1),
    ) as enc:
        assert enc.flush() == []
    srv.join()
    cfg = next(msg for msg in srv.received if isinstance(msg, m.Configure))
    assert cfg.options == ref_cfg.options
    assert (cfg.width, cfg.height, cfg.pix_fmt) == (ref_cfg.width, ref_cfg.height, ref_cfg.pix_fmt)


def _parse_capture(cap: object) -> list[m.Message]:
    conn = Connection(Role.SERVER)
    conn.receive_data(cap.data)  # type: ignore[attr-defined]
    out = []
    while (msg := conn.next_event()) is not None:
        out.append(msg)
        if isinstance(msg, m.Configure):
            # answer in our head so the state machine lets the stream go on
            conn.send(m.ConfigureAck())
        elif isinstance(msg, m.Hello):
            conn.send(m.HelloAck())
    return out


def test_encoder_options_reference_order_all_keys() -> None:
    s = EncoderSettings(
        bitrate=6_000_000,
        maxrate=8_000_000,
        gop=240,
        max_b_frames=2,
        flags=1 << 22,
        global_quality=0,
        qmin=10,
        qmax=40,
        profile="high",
        level="4.1",
        entropy="cabac",
        allow_sw=True,
        realtime=1,
        prio_speed=1,
        power_efficient=0,
        spatial_aq=1,
        max_ref_frames=3,
        max_slice_bytes=1200,
        constant_bit_rate=True,
        color_range=1,
        colorspace=1,
        color_primaries=1,
        color_trc=1,
        sar=(1, 1),
    )
    keys = [k for k, _ in s.configure_options("h264", WireCompression.ZSTD)]
    assert keys == [
        "mode",
        "wire_compression",
        "bitrate",
        "maxrate",
        "gop",
        "max_b_frames",
        "flags",
        "qmin",
        "qmax",
        "profile",
        "level",
        "entropy",
        "allow_sw",
        "realtime",
        "prio_speed",
        "power_efficient",
        "spatial_aq",
        "max_ref_frames",
        "max_slice_bytes",
        "constant_bit_rate",
        "color_range",
        "colorspace",
        "color_primaries",
        "color_trc",
        "sar_num",
        "sar_den",
        "a53_cc",
    ]
    opts = dict(s.configure_options("h264", WireCompression.ZSTD))
    assert opts["profile"] == "100" and opts["level"] == "41" and opts["entropy"] == "2"
    hevc = dict(
        EncoderSettings(profile="main10", level="5.1").configure_options(
            "hevc", WireCompression.NONE
        )
    )
    # HEVC: no level key, entropy/max_slice_bytes/a53_cc always "0", no wire_compression for none.
    assert hevc == {
        "mode": "encode",
        "gop": "12",
        "profile": "2",
        "entropy": "0",
        "realtime": "0",
        "max_slice_bytes": "0",
        "a53_cc": "0",
    }
    assert dict(EncoderSettings(flags=1 << 31).configure_options("h264", WireCompression.NONE))[
        "flags"
    ] == str(-(1 << 31))


def test_encoder_pipelines_and_flush_returns_every_packet() -> None:
    """The server answers nothing until FLUSH, then everything + DONE in one write (the
    situation that loses the tail in the reference, VTR1.md §10.2)."""
    n = 12
    flushes = []

    def script(srv: FakeServer) -> None:
        cfg = srv.handshake(OUR_CAPS, extradata=avcc())
        assert cfg.option("ext_keepalive") == "1"
        frames = []
        while True:
            msg = srv.recv()
            if isinstance(msg, m.Flush):
                flushes.append(msg)
                break
            if isinstance(msg, m.Frame):
                frames.append(msg)
        assert [f.pts for f in frames] == list(range(n))
        assert frames[3].flags == 1 and all(f.flags == 0 for i, f in enumerate(frames) if i != 3)
        blob = b"".join(bytes(b) for f in frames for b in srv.conn.send(stub_packet(f.pts)))
        blob += b"".join(bytes(b) for b in srv.conn.send(m.Done()))
        srv.sock.sendall(blob)
        with pytest.raises(EOFError):
            srv.recv()  # nothing after FLUSH: FLUSH exactly once

    srv = FakeServer(script)
    with RemoteEncoder(
        srv.transport(), width=64, height=64, inflight=16, compression="zstd"
    ) as enc:
        assert enc.extradata.startswith(b"\x00\x00\x00\x01\x67")  # avcC -> Annex B
        assert enc.config_record == avcc()
        got = []
        for i in range(n):
            got += enc.encode(nv12_picture(i), keyframe=(i == 3))
        assert got == [] and enc.in_flight == n
        got += enc.flush()
        assert enc.flush() == []  # idempotent: no second FLUSH
    srv.join()
    assert len(flushes) == 1
    assert [p.pts for p in got] == list(range(n))
    assert got[0].is_keyframe and not got[1].is_keyframe
    assert all(p.time_base == Fraction(1, 30) for p in got)
    assert enc.stats.frames == n and enc.stats.packets == n and enc.stats.max_inflight == n


def test_encoder_window_blocks_until_a_packet_arrives() -> None:
    window = 3

    def script(srv: FakeServer) -> None:
        srv.handshake(V1_CAPS)
        for _ in range(window):
            assert isinstance(srv.recv(), m.Frame)
        # The client must now wait: nothing more may arrive before we answer.
        srv.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            srv.sock.recv(1, socket.MSG_PEEK)
        srv.sock.settimeout(10)
        srv.send(stub_packet(0))
        assert isinstance(srv.recv(), m.Frame)
        assert isinstance(srv.recv(), m.Flush)
        srv.send(*(stub_packet(i) for i in range(1, window + 1)), m.Done())

    srv = FakeServer(script)
    with RemoteEncoder(
        srv.transport(), width=64, height=64, inflight=window, compression="none"
    ) as enc:
        out = []
        for i in range(window + 1):
            out += enc.encode(nv12_picture(i))
        out += enc.flush()
    srv.join()
    assert [p.pts for p in out] == list(range(window + 1))
    assert enc.stats.max_inflight == window


def test_encoder_error_from_server_raises_remote_error() -> None:
    def script(srv: FakeServer) -> None:
        srv.handshake(OUR_CAPS)
        srv.recv()
        srv.send(m.Error(3, "profile 110 is not supported by engine x264"))

    srv = FakeServer(script)
    with RemoteEncoder(srv.transport(), width=64, height=64) as enc:
        enc.encode(nv12_picture(0))
        with pytest.raises(
            UnsupportedError, match=r"profile 110 is not supported by engine x264 \(fake:5555\)"
        ):
            for i in range(1, 50):
                enc.encode(nv12_picture(i))
                time.sleep(0.01)
            enc.flush()
    srv.join()


def test_encoder_times_out_when_the_server_goes_silent() -> None:
    def script(srv: FakeServer) -> None:
        srv.handshake(V1_CAPS)
        with pytest.raises(EOFError):
            while True:
                srv.recv()

    srv = FakeServer(script)
    enc = RemoteEncoder(srv.transport(), width=64, height=64, inflight=1, timeout=0.3)
    enc.encode(nv12_picture(0))
    # The full window's wait and the stall check (a PING after a third of the timeout, no
    # PONG) end at the same moment; either names the host, the timeout and what was in flight.
    try:
        with pytest.raises(
            TimeoutExpiredError,
            match=r"no reply from fake:5555 for 0.3 s (while 1 frames were in flight \(window 1; "
            r"|with 1 message\(s\) in flight: the server stalled)",
        ):
            enc.encode(nv12_picture(1))
    finally:
        enc.close()
    srv.join()


def test_keepalive_ping_only_when_announced() -> None:
    pings: list[int] = []
    two_pings = threading.Event()

    def script(srv: FakeServer) -> None:
        srv.handshake(("h264", "ext:keepalive=600"))
        while True:
            msg = srv.recv()
            if isinstance(msg, m.Ping):
                pings.append(1)
                if len(pings) >= 2:
                    two_pings.set()
                srv.send(m.Pong())
            elif isinstance(msg, m.Flush):
                srv.send(m.Done())
                return

    srv = FakeServer(script)
    with RemoteEncoder(srv.transport(), width=64, height=64) as enc:
        assert enc.keepalive
        # Idle for more than a third of 600 ms, several times: the client pings on its own.
        assert two_pings.wait(30), "the client sent fewer than 2 pings while idle"
        enc.flush()
    srv.join()
    assert len(pings) >= 2


def test_v1_server_gets_plain_pings_without_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """A v1 server drops a session after 10 s of silence; PING is v1, so the client sends it
    when idle, but never announces ext_keepalive to a server that did not offer it."""
    from vtremote.client import session as client_session

    monkeypatch.setattr(client_session, "V1_KEEPALIVE_S", 0.2)
    pings: list[int] = []
    two_pings = threading.Event()
    options: dict[str, str] = {}

    def script(srv: FakeServer) -> None:
        cfg = srv.handshake(("h264", "hevc"))  # what the reference daemon sends
        options.update(cfg.option_map())
        while True:
            msg = srv.recv()
            if isinstance(msg, m.Ping):
                pings.append(1)
                if len(pings) >= 2:
                    two_pings.set()
                srv.send(m.Pong())
            elif isinstance(msg, m.Flush):
                srv.send(m.Done())
                return

    srv = FakeServer(script)
    with RemoteEncoder(srv.transport(), width=64, height=64) as enc:
        assert not enc.keepalive
        assert two_pings.wait(30), "the client sent fewer than 2 pings while idle"
        assert enc.flush() == []
    srv.join()
    assert len(pings) >= 2
    assert "ext_keepalive" not in options


# --- refusals --------------------------------------------------------------------------------


def test_busy_refusal_uses_the_error_text() -> None:
    def script(srv: FakeServer) -> None:
        assert isinstance(srv.recv(), m.Hello)
        srv.send(
            m.HelloAck(1, "fake", "1.0", OUR_CAPS, 4, 4),
            m.Error(2, "server busy: 4 of 4 sessions in use"),
        )

    srv = FakeServer(script)
    with pytest.raises(BusyError, match=r"^server busy: 4 of 4 sessions in use \(fake:5555\)$"):
        RemoteEncoder(srv.transport(), width=64, height=64)
    srv.join()


def test_busy_refusal_without_error_text() -> None:
    def script(srv: FakeServer) -> None:
        srv.recv()
        srv.send(m.HelloAck(1, "fake", "1.0", V1_CAPS, 2, 2))
        srv.sock.shutdown(socket.SHUT_WR)

    srv = FakeServer(script)
    with pytest.raises(BusyError, match=r"server busy: 2 of 2 sessions in use"):
        RemoteDecoder(srv.transport(), width=64, height=64, extradata=avcc())
    srv.join()


def test_auth_refusal_v1_style() -> None:
    def script(srv: FakeServer) -> None:
        hello = srv.recv()
        assert isinstance(hello, m.Hello) and hello.token == "wrong"
        srv.send(m.HelloAck(2, "", "", V1_CAPS, 4, 1))  # the reference: status 2, then close
        srv.sock.shutdown(socket.SHUT_WR)

    srv = FakeServer(script)
    with pytest.raises(AuthError, match=r"^authentication failed"):
        RemoteEncoder(srv.transport(), width=64, height=64, token="wrong")
    srv.join()


def test_configure_refused_with_error() -> None:
    def script(srv: FakeServer) -> None:
        srv.recv()
        srv.send(m.HelloAck(0, "fake", "1.0", V1_CAPS, 4, 1))
        srv.recv()
        srv.send(m.Error(1, "unsupported wire_compression=2"))

    srv = FakeServer(script)
    with pytest.raises(AuthError, match="unsupported wire_compression=2"):
        RemoteEncoder(srv.transport(), width=64, height=64, compression="zstd")
    srv.join()


# --- decoder: pipelined versus lock-step ---------------------------------------------------------


def test_decoder_lock_step_with_a_v1_server() -> None:
    """No ext:decode-pipeline: one PACKET at a time, its FRAME (if any) returned by the same
    call."""
    n = 6

    def script(srv: FakeServer) -> None:
        cfg = srv.handshake(V1_CAPS)
        assert "ext_decode_pipeline" not in cfg.option_map()
        assert "ext_keepalive" not in cfg.option_map()
        for i in range(n):
            pkt = srv.recv()
            assert isinstance(pkt, m.Packet) and pkt.pts == i
            assert bytes(pkt.data).startswith(b"\x00\x00\x00\x01\x65")  # rewritten to Annex B
            # Lock-step: nothing else may be on its way before we answer this packet.
            assert isinstance(srv.recv(), m.Ping)
            srv.sock.settimeout(0.2)
            with pytest.raises(TimeoutError):
                srv.sock.recv(1, socket.MSG_PEEK)
            srv.sock.settimeout(10)
            if i >= 2:  # a decoder with two frames of delay
                srv.send(wire_frame(i - 2))
            srv.send(m.Pong())
        assert isinstance(srv.recv(), m.Flush)
        srv.send(wire_frame(n - 2), wire_frame(n - 1), m.Done())

    srv = FakeServer(script)
    with RemoteDecoder(
        srv.transport(), width=64, height=64, extradata=avcc(), compression="none"
    ) as dec:
        assert not dec.pipelined
        for i in range(n):
            frames = dec.decode(h264_packet(i))
            assert [f.pts for f in frames] == ([i - 2] if i >= 2 else [])
        tail = dec.flush()
    srv.join()
    assert [f.pts for f in tail] == [n - 2, n - 1]
    assert all(f.format.name == "nv12" and (f.width, f.height) == (64, 64) for f in tail)
    assert dec.stats.max_inflight == 1


def test_decoder_pipelines_when_the_server_offers_it() -> None:
    """ext:decode-pipeline: the client sends a whole window before the server answers anything."""
    window = 4
    n = 10

    def script(srv: FakeServer) -> None:
        cfg = srv.handshake(OUR_CAPS)
        assert cfg.option("ext_decode_pipeline") == "1"
        sent = 0
        pending = 0
        while True:
            msg = srv.recv()
            if isinstance(msg, m.Flush):
                break
            if isinstance(msg, m.Packet):
                pending += 1
            elif isinstance(msg, m.Ping) and pending == window:
                # A whole window arrived unanswered: answer all of it at once.
                for _ in range(window):
                    srv.send(wire_frame(sent))
                    sent += 1
                srv.send(*(m.Pong() for _ in range(window)))
                pending = 0
        srv.send(*(wire_frame(i) for i in range(sent, n)), m.Pong(), m.Pong(), m.Done())

    srv = FakeServer(script)
    got = []
    with RemoteDecoder(
        srv.transport(), width=64, height=64, extradata=avcc(), inflight=window
    ) as dec:
        assert dec.pipelined and dec.window == window
        for i in range(n):
            got += dec.decode(h264_packet(i))
        got += dec.flush()
    srv.join()
    assert [f.pts for f in got] == list(range(n))
    assert dec.stats.max_inflight == window


def test_decoder_pipeline_false_forces_v1_behaviour() -> None:
    def script(srv: FakeServer) -> None:
        cfg = srv.handshake(OUR_CAPS)
        assert "ext_decode_pipeline" not in cfg.option_map()
        assert isinstance(srv.recv(), m.Packet)
        assert isinstance(srv.recv(), m.Ping)
        srv.send(wire_frame(0), m.Pong())
        assert isinstance(srv.recv(), m.Flush)
        srv.send(m.Done())

    srv = FakeServer(script)
    with RemoteDecoder(
        srv.transport(), width=64, height=64, extradata=avcc(), pipeline=False
    ) as dec:
        assert not dec.pipelined
        assert [f.pts for f in dec.decode(h264_packet(0))] == [0]
        assert dec.flush() == []
    srv.join()


def test_decoder_pipeline_true_needs_the_capability() -> None:
    def script(srv: FakeServer) -> None:
        srv.recv()
        srv.send(m.HelloAck(0, "", "", V1_CAPS, 4, 1))
        with pytest.raises(EOFError):
            srv.recv()

    srv = FakeServer(script)
    with pytest.raises(ConfigError, match="does not offer pipelined decoding"):
        RemoteDecoder(srv.transport(), width=64, height=64, extradata=avcc(), pipeline=True)
    srv.join()


def test_decoder_reports_p010_from_the_ack_and_decompresses() -> None:
    w, h = 32, 18
    luma = bytes(range(256)) * (w * 2 * h // 256 + 1)

    def script(srv: FakeServer) -> None:
        cfg = srv.handshake(OUR_CAPS, pix_fmt=2)  # asked NV12, the stream is 10-bit
        assert cfg.option("wire_compression") == "2"
        assert isinstance(srv.recv(), m.Packet)
        assert isinstance(srv.recv(), m.Ping)
        from vtremote.wire.compression import compress_plane

        y = luma[: w * 2 * h]
        c = bytes(w * 2 * (h // 2))
        srv.send(
            m.Frame(
                7,
                1,
                0,
                (
                    m.Plane(w * 2, h, compress_plane(2, y)),
                    m.Plane(w * 2, h // 2, compress_plane(2, c)),
                ),
            ),
            m.Pong(),
        )
        assert isinstance(srv.recv(), m.Flush)
        srv.send(m.Done())

    srv = FakeServer(script)
    with RemoteDecoder(
        srv.transport(),
        width=w,
        height=h,
        extradata=avcc(),
        compression="zstd",
        time_base=Fraction(1, 90000),
        pipeline=False,
    ) as dec:
        assert dec.pix_fmt.name == "P010"
        (frame,) = dec.decode(h264_packet(0))
        dec.flush()
    srv.join()
    assert (
        frame.format.name == "p010le" and frame.pts == 7 and frame.time_base == Fraction(1, 90000)
    )
    plane = frame.planes[0]
    got = bytes(memoryview(plane))
    assert (
        b"".join(got[r * plane.line_size : r * plane.line_size + w * 2] for r in range(h))
        == luma[: w * 2 * h]
    )


def test_sendmsg_all_survives_partial_writes() -> None:
    """A FRAME larger than the socket buffer goes out in pieces, in order, without copies."""
    from vtremote.client.transport import _sendmsg_all

    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    a.settimeout(10)
    parts = [
        b"head",
        bytes(range(256)) * 2000,
        memoryview(bytearray(b"\x07" * 300_001))[1:],
        b"",
        b"tail",
    ]
    want = b"".join(bytes(p) for p in parts)
    got = bytearray()

    def reader() -> None:
        while len(got) < len(want):
            time.sleep(0.001)  # slow reader: forces partial sendmsg calls
            got.extend(b.recv(65536))

    t = threading.Thread(target=reader)
    t.start()
    _sendmsg_all(a, parts)
    t.join(10)
    a.close()
    b.close()
    assert bytes(got) == want
