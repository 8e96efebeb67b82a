"""The sender encoding on a real ``vtremoted --engine x264`` in realtime mode."""

from __future__ import annotations

import re
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from media import lavfi_frames
from vtremote.errors import ConfigError
from vtremote.live import LiveReceiver, ReceivedFrame, Sender, SenderConfig
from vtremote.live.codec import EncoderConfig, LiveDecoder, parameter_sets
from vtremote.live.protocol import Codec
from vtremote.live.remote import RemoteLiveEncoder


def test_keyframes_on_request_and_parameter_sets_in_band(server: Any) -> None:
    got: list[ReceivedFrame] = []
    lock = threading.Lock()

    def on_frame(f: ReceivedFrame) -> None:
        with lock:
            got.append(f)

    cfg = SenderConfig(
        width=160,
        height=120,
        fps=Fraction(30),
        source_id=5,
        encoder="remote",
        server=server.addr,
        keyint_s=10.0,
        bitrate=400_000,
    )
    # A receiver without a key takes a sender without one (key=None on both sides).
    with LiveReceiver("127.0.0.1:0", on_frame=on_frame, key=None) as rx:
        tx = Sender(f"127.0.0.1:{rx.address[1]}", cfg).start()
        assert tx.wait_connected(10)
        start = time.monotonic_ns()
        for i, frame in enumerate(lavfi_frames(40, "160x120")):
            due = start + i * 33_333_333
            time.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
            if i == 20:
                tx.request_keyframe()
            tx.send(frame, capture_ns=due)
        stats = tx.close()
        assert rx.wait(10)
    assert stats.frames_sent + stats.dropped == 40 and stats.frames_sent >= 20
    assert len(got) == stats.frames_sent  # every picture from the server decoded
    keys = [g.seq for g in got if g.keyframe]
    assert keys[0] == got[0].seq  # the stream starts on a keyframe
    assert any(20 <= k <= 25 for k in keys), keys  # the requested one, not the 10 s GOP
    assert len(keys) == stats.keyframes <= 3
    assert float(np.mean(got[-1].frame.to_ndarray(format="gray"))) > 20


def test_send_process_encodes_on_vtremoted(
    server: Any, start_receiver: Any, start_sender: Any, tmp_path: Path
) -> None:
    record = tmp_path / "remote.mkv"
    recv = start_receiver("--record", str(record))
    sender = start_sender(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "--to",
        recv.addr,
        "--encoder",
        "remote",
        "--server",
        server.addr,
        "-g",
        "15",
        "-b:v",
        "800k",
        "-t",
        "1.5",
    )
    assert sender.wait(60) == 0
    rc, summary = recv.finish()
    assert rc == 0
    src = summary["sources"][0]
    assert src["codec"] == "h264" and src["size"] == "320x240"
    assert summary["frames"] == 45 - src["sender_dropped"] and summary["frames"] >= 30
    with av.open(str(record)) as c:
        packets = [pk for pk in c.demux(video=0) if pk.size]
    with av.open(str(record)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == len(packets) == summary["frames"]
    keys = [i for i, pk in enumerate(packets) if pk.is_keyframe]
    assert keys[0] == 0 and len(keys) >= 2  # GOP 15 frames on the server: every 0.5 s
    # The server did the encoding: its session summary counts the frames it got.
    m = re.search(r"SUMMARY mode=encode frames_in=(\d+)", server.stderr_text())
    deadline = time.monotonic() + 10
    while m is None and time.monotonic() < deadline:
        time.sleep(0.1)
        m = re.search(r"SUMMARY mode=encode frames_in=(\d+)", server.stderr_text())
    assert m is not None and int(m.group(1)) == summary["frames"] + src.get("lost", 0)


def test_one_packet_per_frame_with_parameter_sets_on_every_keyframe(server: Any) -> None:
    cfg = EncoderConfig(
        Codec.H264, 160, 120, Fraction(30), bitrate=300_000, keyint_s=1 / 3
    )  # GOP 10
    enc = RemoteLiveEncoder(cfg, server.addr)
    try:
        units = [
            enc.encode(f, i, keyframe=(i == 13)) for i, f in enumerate(lavfi_frames(25, "160x120"))
        ]
    finally:
        enc.close()
    assert [len(u) for u in units] == [
        1
    ] * 25  # realtime: each frame's packet before the next frame
    assert [u[0].index for u in units] == list(range(25))
    keys = [i for i, u in enumerate(units) if u[0].keyframe]
    assert keys == [0, 10, 13, 20] or keys == [0, 10, 13, 23], keys  # GOP, plus the forced one
    for i, u in enumerate(units):
        assert bool(parameter_sets(Codec.H264, u[0].data)) == (i in keys)
    dec = LiveDecoder(Codec.H264)
    assert sum(len(dec.decode(u[0].data)) for u in units) == 25


def test_remote_encoder_needs_a_server_and_a_video_codec() -> None:
    with pytest.raises(ConfigError):
        SenderConfig(width=160, height=120, fps=Fraction(30), encoder="remote")
    with pytest.raises(ConfigError):
        SenderConfig(
            width=160,
            height=120,
            fps=Fraction(30),
            encoder="remote",
            server="127.0.0.1:1",
            codec=Codec.MJPEG,
        )
