"""The reference FFmpeg client's flow control, step by step, against the real ``vtremoted``.

:class:`ReferenceEncoder` follows VTR1.md §10.1/§10.2 literally (non-blocking
drain into a packet ring, at most one packet per call, FLUSH on every draining
call that finds the ring empty, EOF returned before the ring is popped, DONE
checked before the ring in the blocking receive); :class:`ReferenceDecoder`
follows §10.3 (lock-step, a receive timeout means "no frame this time").
Whatever the server does must survive these quirks without losing frames.
"""

from __future__ import annotations

import select
import socket
from collections import deque
from pathlib import Path

import av
import numpy as np
import pytest

from media import decode_video, make_h264_mp4, plane_arrays, testsrc_frames, video_packets
from vtr_client import Closed, VTRClient, frame_planes
from vtremote.wire import annexb, messages
from vtremote.wire.constants import PixelFormat, WireCompression

W, H = 320, 180


class EndOfStream(Exception):
    pass


class ReferenceEncoder:
    """``ff_vtremote_encode`` as VTR1.md §10.1 describes it, one call per libavcodec call."""

    def __init__(self, client: VTRClient, inflight: int = 16) -> None:
        self.c = client
        self.inflight_max = inflight
        self.ring: deque[messages.Packet] = deque()
        self.capacity = max(4, 2 * inflight)
        self.inflight = 0
        self.done = False
        self.flushes = 0
        self.stash: deque[messages.Message] = deque()

    def _readable(self) -> bool:
        """poll(fd, 0) of the reference; our client buffers, so look at its buffer first."""
        if not self.stash:
            msg = self.c.conn.next_event()
            if msg is not None:
                self.stash.append(msg)
        return bool(self.stash) or bool(select.select([self.c.sock], [], [], 0)[0])

    def _read_one(self) -> messages.Message:
        if self.stash:
            return self.stash.popleft()
        try:
            return self.c.recv()
        except (Closed, ConnectionError) as e:  # EOF or reset: the call's result is an error
            raise EndOfStream(str(e)) from e

    def _send_frame(self, frame: av.VideoFrame) -> None:
        self.c.send(self.c.frame_message(frame))
        self.inflight += 1

    def call(self, frame: av.VideoFrame | None) -> messages.Packet | None:
        # 1. non-blocking drain
        while len(self.ring) < self.capacity and self._readable():
            msg = self._read_one()
            if isinstance(msg, messages.Packet):
                self.ring.append(msg)
                self.inflight = max(0, self.inflight - 1)
            elif isinstance(msg, messages.Done):
                self.done = True
                break
            elif isinstance(msg, messages.Ping):
                self.c.send(messages.Pong())
        # 2. a queued packet goes out first
        if self.ring:
            pkt = self.ring.popleft()
            if frame is not None and self.inflight < self.inflight_max:
                self._send_frame(frame)
            elif frame is not None:
                raise AssertionError("reference client would block here with a full window")
            return pkt
        # 3. room in the window
        if frame is not None and self.inflight < self.inflight_max:
            self._send_frame(frame)
            return None
        # 4. window full: block for a packet, then send the frame
        if frame is not None:
            msg = self._read_one()
            assert isinstance(msg, messages.Packet), msg
            self.inflight = max(0, self.inflight - 1)
            self._send_frame(frame)
            return msg
        # 5. draining with an empty ring: FLUSH (every time, as the reference does)
        if self.flushes == 0:
            self.c.send(messages.Flush())
        else:  # the client-side state machine knows only one FLUSH; the bytes are the same
            self.c.send_raw(messages.serialize_bytes(messages.Flush()), unchecked=False)
        self.flushes += 1
        # 6. blocking receive; `done` is checked before anything else (§10.2)
        if self.done:
            raise EndOfStream("done")
        msg = self._read_one()
        if isinstance(msg, messages.Done):
            self.done = True
            raise EndOfStream("done")
        assert isinstance(msg, messages.Packet), msg
        self.inflight = max(0, self.inflight - 1)
        return msg

    def encode_all(self, frames: list[av.VideoFrame]) -> list[messages.Packet]:
        out = []
        for frame in frames:
            pkt = self.call(frame)
            if pkt is not None:
                out.append(pkt)
        while True:
            try:
                pkt = self.call(None)
            except EndOfStream:
                return out
            if pkt is not None:
                out.append(pkt)


@pytest.mark.parametrize(
    ("codec", "bframes", "inflight"),
    [
        ("h264", "0", 16),
        ("h264", "3", 16),
        ("hevc", "2", 16),
        ("h264", "2", 9),
    ],
)
def test_reference_encoder_flow_gets_every_packet(
    server, codec: str, bframes: str, inflight: int
) -> None:
    frames = testsrc_frames(45, W, H, "nv12")
    with VTRClient(server.address, timeout=5.0) as client:  # vt_remote_timeout_ms default 5000
        client.hello(codec)
        client.configure(
            W,
            H,
            PixelFormat.NV12,
            (
                ("mode", "encode"),
                ("wire_compression", "2"),
                ("bitrate", "300000"),
                ("gop", "15"),
                ("max_b_frames", bframes),
                ("flags", "4194304"),
                ("entropy", "0"),
                ("realtime", "0"),
            ),
        )
        packets = ReferenceEncoder(client, inflight).encode_all(frames)
    assert sorted(p.pts for p in packets) == list(range(45)), "the reference client lost packets"


class ReferenceDecoder:
    """The lock-step decode callback of VTR1.md §10.3 (with a short receive timeout)."""

    def __init__(self, client: VTRClient, timeout: float) -> None:
        self.c = client
        self.timeout = timeout

    def _recv_frame(self) -> messages.Frame | None:
        ready = (
            self.c.conn.receiver.pending or select.select([self.c.sock], [], [], self.timeout)[0]
        )
        if not ready:
            return None  # got_frame = 0; the late frame is picked up after the next packet
        msg = self.c.recv()
        if isinstance(msg, messages.Done):
            raise EndOfStream("done")
        assert isinstance(msg, messages.Frame), msg
        return msg

    def decode_all(self, packets: list[messages.Packet]) -> list[messages.Frame]:
        out = []
        for p in packets:
            self.c.send(p)
            frame = self._recv_frame()
            if frame is not None:
                out.append(frame)
        self.c.send(messages.Flush())
        while True:
            try:
                frame = self._recv_frame()
            except EndOfStream:
                return out
            if frame is not None:
                out.append(frame)


def test_reference_decoder_flow_gets_every_frame(server, tmp_path: Path) -> None:
    mp4 = make_h264_mp4(tmp_path / "in.mp4", 20, W, H, bframes=2)
    extradata, raw = video_packets(mp4)
    packets = [
        messages.Packet(
            p.pts or 0,
            p.dts or 0,
            p.duration or 0,
            int(p.is_keyframe),
            annexb.length_prefixed_to_annexb(bytes(p), 4),
        )
        for p in raw
    ]
    expected = decode_video(mp4, "nv12")
    with VTRClient(server.address) as client:
        client.hello("h264")
        client.configure(
            W,
            H,
            PixelFormat.NV12,
            (("mode", "decode"), ("wire_compression", "2")),
            extradata=extradata,
            time_base=(0, 1),
        )
        frames = ReferenceDecoder(client, timeout=0.3).decode_all(packets)
        client.sock.shutdown(socket.SHUT_WR)
    assert [f.pts for f in frames] == [f.pts for f in expected]
    for got, want in zip(frames, expected, strict=True):
        for plane, ref in zip(
            frame_planes(got, WireCompression.ZSTD), plane_arrays(want), strict=True
        ):
            assert np.array_equal(np.frombuffer(plane, np.uint8).reshape(ref.shape), ref)
