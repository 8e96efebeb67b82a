"""The server's memory budget and resource lifetimes, against a real vtremoted.

Each test is an attack that broke the server before: a source timestamp jump that made
the fps filter fill ten hours with frames, an SPS that claims a 16240x16240 picture, a
CONFIGURE whose share does not fit ``--max-memory``, and sessions whose codec threads
outlived them. The server's RSS and thread count are read from /proc (never by
triggering anything in the server); legitimate sessions run beside the attacks.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import make_h264_mp4
from transcode_media import check_timestamps
from vtr_client import Closed, VTRClient
from vtremote.client import RemoteTranscoder
from vtremote.errors import RemoteError
from vtremote.wire import annexb, messages
from vtremote.wire.constants import PixelFormat

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")

MiB = 1 << 20
HOURS_10 = 10 * 3600


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def settle(read: Callable[[], int], target: int, timeout: float = 30.0) -> int:
    """Poll ``read()`` until it is <= ``target`` or ``timeout`` passes; returns the last value."""
    deadline = time.monotonic() + timeout
    value = read()
    while value > target and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


class RssWatch:
    """Samples a process's RSS in the background; ``peak`` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_of(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, rss_of(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_h264_mp4(tmp_path / "in.mp4", 30, 320, 180, bframes=0)


def transcode_file(addr: str, path: Path, filters: str = "scale=160:90") -> list[av.Packet]:
    """A whole, ordinary packet transcode; returns the output packets (checked)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        packets = [p for p in c.demux(stream) if p.size]
        with RemoteTranscoder.from_stream(
            addr, stream, codec="h264", filters=filters, bitrate=200_000, gop=30
        ) as tc:
            out: list[av.Packet] = []
            for pkt in packets:
                out += tc.transcode(pkt)
            out += tc.flush()
    assert len(out) == (len(packets) if "fps" not in filters else 25)  # 30 frames at 30 fps
    check_timestamps(out)
    return out


def idle_threads(pid: int) -> int:
    """The server's thread count once the session threads of earlier work have gone."""
    count = threads_of(pid)
    time.sleep(0.5)
    return min(count, threads_of(pid))


# ---- sessions leave nothing behind ----------------------------------------------------------


def test_threads_return_to_idle_after_packet_transcodes(start_server, source: Path) -> None:
    srv = start_server()
    pid = srv.proc.pid
    transcode_file(srv.addr, source)  # lazily started parts (the pool) count as idle
    srv.wait_for_log(r"SUMMARY mode=transcode")
    idle = idle_threads(pid)
    for i in range(10):
        transcode_file(srv.addr, source, filters="fps=25,scale=160:90" if i % 2 else "scale=160:90")
    # Session threads end right after their SUMMARY; codec and filter threads went before.
    after = settle(lambda: threads_of(pid), idle)
    assert after <= idle, f"server has {after} threads after 10 sessions, {idle} when idle"


# ---- a timestamp jump with an fps filter ------------------------------------------------------


def test_pts_jump_with_fps_filter_stays_bounded(start_server, source: Path) -> None:
    srv = start_server("--max-sessions", "2")
    pid = srv.proc.pid
    transcode_file(srv.addr, source)
    idle_rss = rss_of(pid)
    idle = idle_threads(pid)
    watch = RssWatch(pid)
    outcome: dict[str, object] = {}

    def attack() -> None:
        with av.open(str(source)) as c:
            stream = c.streams.video[0]
            first, second = [p for p in c.demux(stream) if p.size][:2]
            jump = round(HOURS_10 / stream.time_base)
            second.pts = (second.pts or 0) + jump
            second.dts = (second.dts or 0) + jump
            try:
                with RemoteTranscoder.from_stream(
                    srv.addr, stream, codec="h264", filters="fps=30", bitrate=100_000, gop=30
                ) as tc:
                    out = tc.transcode(first) + tc.transcode(second)
                    out += tc.flush()
                outcome["packets"] = out
            except RemoteError as e:
                outcome["error"] = e

    t = threading.Thread(target=attack, daemon=True)
    t.start()
    legit = transcode_file(srv.addr, source)  # beside the attack, in the other slot
    deadline = time.monotonic() + 120
    while t.is_alive() and time.monotonic() < deadline and watch.peak < 1024 * MiB:
        t.join(0.1)
    peak = watch.stop()
    if peak >= 1024 * MiB:  # do not let it take the test machine's memory
        srv.proc.kill()
        srv.proc.wait(10)
        srv.stopped = True
    assert peak < 1024 * MiB, f"RSS reached {peak >> 20} MiB, budget 1024 MiB"
    assert not t.is_alive(), f"the session with the jump did not end (RSS peak {peak >> 20} MiB)"
    assert len(legit) == 30
    # The gap is a discontinuity: a few frames, not ten hours of copies.
    packets = outcome.get("packets")
    assert isinstance(packets, list), outcome
    assert 2 <= len(packets) <= 8
    srv.wait_for_log(r"timestamps jump by 36000\.0 s .*the gap is left empty")
    # The slots are free and nothing of the session is left.
    transcode_file(srv.addr, source)
    transcode_file(srv.addr, source)
    assert settle(lambda: threads_of(pid), idle) <= idle
    back = settle(lambda: rss_of(pid), idle_rss + 50 * MiB)
    assert back <= idle_rss + 50 * MiB, f"RSS {back >> 20} MiB, idle {idle_rss >> 20} MiB"


# ---- a decode bomb: an SPS that claims 16240x16240 ------------------------------------------


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | (self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.u(zeros)


def _ue_bits(value: int) -> str:
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


def _escape(rbsp: bytes) -> bytes:
    """Emulation prevention: 00 00 0x -> 00 00 03 0x for x <= 3."""
    return re.sub(rb"\x00\x00(?=[\x00-\x03])", b"\x00\x00\x03", rbsp)


def patch_sps_size(nal: bytes, width: int, height: int) -> bytes:
    """A baseline-profile H.264 SPS with its picture size fields rewritten."""
    rbsp = annexb.unescape_rbsp(nal)
    assert rbsp[1] == 66, "the test stream is baseline profile"
    r = _BitReader(rbsp[4:])
    r.ue()  # seq_parameter_set_id
    r.ue()  # log2_max_frame_num_minus4
    if r.ue() == 0:  # pic_order_cnt_type
        r.ue()
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    start = r.pos
    r.ue(), r.ue()
    bits = "".join(f"{b:08b}" for b in rbsp[4:])
    new = bits[:start] + _ue_bits(width // 16 - 1) + _ue_bits(height // 16 - 1) + bits[r.pos :]
    new = new.rstrip("0")  # the old rbsp_stop_one_bit is the last 1; keep it, re-pad
    new += "0" * (-len(new) % 8)
    return _escape(rbsp[:4] + int(new, 2).to_bytes(len(new) // 8, "big"))


def bomb_idr(width: int = 16240, height: int = 16240) -> tuple[bytes, bytes]:
    """(patched SPS + PPS + IDR of a real 320x180 stream, as Annex B; the patched SPS)."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 320, 180, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.options = {"preset": "ultrafast", "profile": "baseline", "x264-params": "keyint=1"}
    frame = av.VideoFrame(320, 180, "yuv420p")
    for plane in frame.planes:
        memoryview(plane)[:] = b"\x60" * plane.buffer_size
    frame.pts = 0
    data = b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))
    out, sps = b"", b""
    for nal in annexb.iter_annexb(data):
        raw = bytes(nal)
        if raw[0] & 0x1F == annexb.H264_SPS:
            raw = sps = patch_sps_size(raw, width, height)
        out += annexb.START_CODE + raw
    return out, sps


def test_sps_parser_reads_real_sizes() -> None:
    for size in ((320, 192), (16240, 16240)):
        _, sps = bomb_idr(*size)
        assert annexb.h264_sps_size(sps) == size
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 1280, 720, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.options = {"preset": "ultrafast", "profile": "high"}
    ctx.flags = int(ctx.flags) | int(av.codec.context.Flags.global_header)
    ctx.open()
    nal = annexb.parse_extradata("h264", bytes(ctx.extradata or b"")).nals[0]
    assert annexb.h264_sps_size(nal) == (1280, 720)


def test_sps_bomb_is_refused_in_transcode_and_decode(server, source: Path) -> None:
    data, sps = bomb_idr()
    assert len(data) < 2048
    legit = threading.Thread(target=transcode_file, args=(server.addr, source))
    legit.start()
    source_320x180 = {"input_width": 320, "input_height": 180, "framerate": 30}
    with RemoteTranscoder(
        server.addr, input_codec="h264", input_time_base=Fraction(1, 30), **source_320x180
    ) as tc:
        pkt = av.Packet(data)
        pkt.pts = pkt.dts = 0
        with pytest.raises(RemoteError) as info:
            tc.transcode(pkt)
            tc.flush()
    assert info.value.wire_code == 3
    assert "declares 16240x16240 pictures" in str(info.value)
    assert "at most 2088960 pixels" in str(info.value)
    # A decode session: in a PACKET, and in the extradata at CONFIGURE.
    with VTRClient(server.address) as client:
        client.hello("h264")
        client.configure(320, 180, PixelFormat.NV12, [("mode", "decode")])
        client.send(messages.Packet(pts=0, dts=0, duration=1, flags=1, data=data))
        reply = client.recv()
        assert isinstance(reply, messages.Error) and reply.code == 3, reply
        assert "PACKET pts=0 declares 16240x16240" in reply.message
    with VTRClient(server.address) as client:
        client.hello("h264")
        record = annexb.build_avcc(annexb.parameter_sets_from_annexb("h264", data))
        client.send(
            messages.Configure(
                320, 180, PixelFormat.NV12, 1, 30, 30, 1, (("mode", "decode"),), record
            )
        )
        reply = client.recv()
        assert isinstance(reply, messages.Error) and reply.code == 3, reply
        assert "the extradata declares 16240x16240" in reply.message
    legit.join(60)
    assert not legit.is_alive()


# ---- CONFIGURE against --max-memory --------------------------------------------------------


def encode_configure(client: VTRClient, width: int, height: int) -> messages.Message:
    client.hello("h264")
    client.send(
        messages.Configure(width, height, PixelFormat.NV12, 1, 30, 30, 1, (("bitrate", "1000000"),))
    )
    return client.recv()


def test_configure_beyond_the_memory_budget_is_refused(start_server, source: Path) -> None:
    srv = start_server("--max-memory", "512M")
    with VTRClient(srv.address) as client:  # 4K: more than the whole budget
        reply = encode_configure(client, 3840, 2160)
        assert isinstance(reply, messages.Error) and reply.code == 3, reply
        assert "more than the" in reply.message and "--max-memory 512 MiB" in reply.message
    with VTRClient(srv.address) as client:  # the largest geometry (the zstd FRAME attack)
        reply = encode_configure(client, 16384, 16384)
        assert isinstance(reply, messages.Error) and reply.code == 3, reply
    with VTRClient(srv.address) as first:
        ack = encode_configure(first, 1920, 1080)
        assert isinstance(ack, messages.ConfigureAck), ack
        with VTRClient(srv.address) as second:  # fits an idle server, not beside the first
            reply = encode_configure(second, 1920, 1080)
            assert isinstance(reply, messages.Error) and reply.code == 2, reply
            assert "server busy: this session needs about" in reply.message
            assert "of the memory budget (--max-memory 512 MiB) is left" in reply.message
            with pytest.raises(Closed):
                second.recv()
        transcode_file(srv.addr, source)  # small sessions still fit beside it
    # The first session's share comes back when it ends.
    deadline = time.monotonic() + 20
    while True:
        with VTRClient(srv.address) as client:
            reply = encode_configure(client, 1920, 1080)
        if isinstance(reply, messages.ConfigureAck) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert isinstance(reply, messages.ConfigureAck), reply


def test_a_packet_larger_than_the_geometry_allows_is_refused(server) -> None:
    """A 320x180 decode session may decode up to 1920x1088 pictures: its PACKETs may be
    twice such a raw picture (6267 KiB), not the 64 MiB of the protocol's limit."""
    with VTRClient(server.address) as client:
        client.hello("h264")
        client.configure(320, 180, PixelFormat.NV12, [("mode", "decode")])
        data = annexb.START_CODE + b"\x65" + b"\xaa" * (7 * MiB)
        client.send(messages.Packet(pts=0, dts=0, duration=1, flags=1, data=data))
        reply = client.recv()
        assert isinstance(reply, messages.Error) and reply.code == 4, reply
        assert f"exceeds the limit of {2 * 1920 * 1088 * 3 // 2}" in reply.message
