"""Sender and receiver as separate processes on loopback: the command line end to end.

Small pictures (320x240) and a few seconds each; the 1080p numbers are in the
benchmark (``vtremote bench live``), not here. The lossy and rate-limited paths
go through :class:`vtremote.testing.shim.LossyRelay` in the test process.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from vtremote.live import protocol as p
from vtremote.live.datagram import DATAGRAM_HEADER, control_datagram
from vtremote.testing.shim import LossyRelay

LAVFI = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"]


def _recorded_packets_and_frames(path: Path) -> tuple[list[int], list[bool], list[np.ndarray]]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        pts, keys = [], []
        for packet in c.demux(stream):
            if packet.size:
                pts.append(int(packet.pts * stream.time_base * 1000))
                keys.append(bool(packet.is_keyframe))
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    return pts, keys, frames


def _source_summary(summary: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return summary["sources"][index]


@pytest.mark.parametrize("codec", ["h264", "hevc", "mjpeg"])
def test_stream_records_every_frame_with_timestamps_and_metadata(
    codec: str, start_receiver: Any, start_sender: Any, tmp_path: Path
) -> None:
    if codec == "hevc" and "libx265" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx265")
    record = tmp_path / "out.mkv"
    meta = tmp_path / "meta.jsonl"
    meta.write_text("".join(json.dumps({"frame": i, "n": i}) + "\n" for i in range(0, 45, 3)))
    recv = start_receiver("--record", str(record))
    sender = start_sender(
        *LAVFI, "--to", recv.addr, "--codec", codec, "-t", "1.5", "--metadata", str(meta)
    )
    assert sender.wait(60) == 0
    rc, summary = recv.finish()
    assert rc == 0
    src = _source_summary(summary)
    assert src["codec"] == codec and src["size"] == "320x240"
    # Every frame the sender did not drop is recorded; how many it drops depends on the load.
    assert summary["frames"] == 45 - src["sender_dropped"] and summary["frames"] >= 45 // 2
    # The sender's own last line says the same number of drops as its BYE did.
    said = re.search(r"dropped (\d+),", next(tmp_path.glob("send*.stderr")).read_text())
    assert said is not None and int(said.group(1)) == src["sender_dropped"]
    assert summary["bytes"] > 0 and summary["latency_ms"]["p50"] is not None
    assert set(summary["latency_ms"]) == {"p50", "p99", "max"}
    pts, keys, frames = _recorded_packets_and_frames(record)
    assert len(frames) == len(pts) == summary["frames"]
    assert keys[0]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))
    # Frames are 1/30 s apart in the file, as they were captured (drops leave gaps of a multiple).
    steps = np.diff(pts)
    assert np.all(np.abs(steps - np.round(steps / 33.33) * 33.33) <= 2)
    assert 1300 <= pts[-1] <= 1500
    assert float(np.mean(frames[-1])) > 20  # a real picture, not a grey fill
    lines = [json.loads(x) for x in (tmp_path / "out.metadata.jsonl").read_text().splitlines()]
    assert [x["data"]["n"] for x in lines] == list(range(0, 45, 3))  # all of them, in order
    for x in lines:  # each tied to its own frame when that frame was shown
        if x["frame"] is not None and x["seq"] == x["data"]["frame"]:
            assert x["pts_ms"] == pts[x["frame"]]
    assert sum(1 for x in lines if x["seq"] == x["data"]["frame"]) == len(lines)


def test_udp_with_loss_and_reordering_recovers_every_picture(
    start_receiver: Any, start_sender: Any, tmp_path: Path
) -> None:
    recv = start_receiver("--record", str(tmp_path / "udp.mkv"))
    with LossyRelay(
        ("127.0.0.1", recv.port), loss=0.05, reorder=0.05, reorder_ms=3, seed=7
    ) as relay:
        sender = start_sender(
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
            "--to",
            relay.addr,
            "--transport",
            "udp",
            "-t",
            "2",
            "-b:v",
            "2M",
        )
        assert sender.wait(60) == 0
        rc, summary = recv.finish()
    assert rc == 0
    src = _source_summary(summary)
    assert relay.counters.dropped > 10 and relay.counters.reordered > 5
    assert (
        src["datagrams"] > 200 and src["retransmit_requests"] > 0 and src["recovered_datagrams"] > 0
    )
    # Every loss was repaired or recovered by a keyframe: most pictures are shown, none frozen.
    assert summary["frames"] + src["sender_dropped"] >= 50
    _, keys, frames = _recorded_packets_and_frames(tmp_path / "udp.mkv")
    assert len(frames) == summary["frames"] and keys[0]


def test_receiver_joining_mid_stream_gets_a_keyframe_at_once(
    start_receiver: Any, start_sender: Any
) -> None:
    with socket.socket() as s:  # a free port for the receiver that is not up yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = start_sender(*LAVFI, "--to", f"127.0.0.1:{port}", "-t", "4", "-g", "600")
    time.sleep(2.5)  # the sender is streaming (and dropping) by now
    recv = start_receiver(listen=f"127.0.0.1:{port}")
    assert sender.wait(60) == 0
    rc, summary = recv.finish()
    src = _source_summary(summary)
    # No natural keyframe for 20 s: the one picture that starts the stream is the join keyframe.
    assert src["keyframes"] == 1 and src["lost"] == 0 and summary["frames"] > 10
    assert src["sender_dropped"] > 0


def test_tcp_reconnects_after_a_network_drop(start_receiver: Any, start_sender: Any) -> None:
    recv = start_receiver()
    with LossyRelay(("127.0.0.1", recv.port)) as relay:
        sender = start_sender(*LAVFI, "--to", relay.addr, "-t", "3", "-g", "600")
        deadline = time.monotonic() + 20
        while relay.counters.connections == 0 or relay.counters.tcp_bytes < 20_000:
            assert time.monotonic() < deadline and sender.poll() is None
            time.sleep(0.05)
        relay.cut(seconds=0.3)
        assert sender.wait(60) == 0
        rc, summary = recv.finish()
    src = _source_summary(summary)
    assert relay.counters.connections == 2 and src["connections"] == 2
    assert src["keyframes"] == 2  # one per connection: the stream is decodable again at once
    assert src["lost"] == 0 and summary["frames"] > 50


def test_two_sources_into_one_receiver_record_two_files(
    start_receiver: Any, start_sender: Any, tmp_path: Path
) -> None:
    recv = start_receiver("--record", str(tmp_path / "two.mkv"))
    a = start_sender(*LAVFI, "--to", recv.addr, "-t", "1.5")
    b = start_sender(
        "-f",
        "lavfi",
        "-i",
        "mandelbrot=size=256x192:rate=25",
        "--to",
        recv.addr,
        "-t",
        "1.5",
        "--transport",
        "udp",
        "--codec",
        "mjpeg",
    )
    assert a.wait(60) == 0 and b.wait(60) == 0
    rc, summary = recv.finish()
    assert rc == 0 and len(summary["sources"]) == 2
    sizes = sorted(s["size"] for s in summary["sources"])
    assert sizes == ["256x192", "320x240"]
    files = sorted(tmp_path.glob("two*.mkv"))
    assert len(files) == 2
    counts = {}
    for f in files:
        with av.open(str(f)) as c:
            st = c.streams.video[0]
            counts[(st.codec_context.width, st.codec_context.height)] = sum(1 for _ in c.decode(st))
    by_size = {s["size"]: s["frames"] for s in summary["sources"]}
    assert counts == {(320, 240): by_size["320x240"], (256, 192): by_size["256x192"]}


def test_garbage_and_foreign_datagrams_are_dropped_and_counted(
    start_receiver: Any, start_sender: Any
) -> None:
    recv = start_receiver()
    sender = start_sender(*LAVFI, "--to", recv.addr, "-t", "2", "--transport", "udp")
    time.sleep(1.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for i in range(50):
            u.sendto(bytes([i]) * (i * 20), ("127.0.0.1", recv.port))  # not ours at all
        for i in range(30):  # well formed, but from a stranger with a guessed token
            head = DATAGRAM_HEADER.pack(b"VL", 1, p.MessageType.VIDEO, i, i, i, 0, 1)
            u.sendto(head + b"\x01" * 30, ("127.0.0.1", recv.port))
        u.sendto(
            control_datagram(p.KeyframeRequest(p.KeyframeReason.USER), 5), ("127.0.0.1", recv.port)
        )
    with socket.create_connection(("127.0.0.1", recv.port)) as t:  # TCP garbage: ERROR, then closed
        t.sendall(b"GET / HTTP/1.1\r\n\r\n")
        t.settimeout(5)
        reply = b""
        while chunk := t.recv(4096):
            reply += chunk
    (err,) = p.StreamParser().feed(reply)
    assert isinstance(err, p.Error) and "bad header magic" in err.text
    assert sender.wait(60) == 0
    rc, summary = recv.finish()
    assert rc == 0
    assert summary["malformed"] >= 50 and summary["foreign_datagrams"] >= 31
    src = _source_summary(summary)
    assert summary["frames"] + src["sender_dropped"] >= 55 and src["lost"] == 0


def test_sigterm_stops_the_receiver_with_its_recording_and_summary(
    start_receiver: Any, start_sender: Any, tmp_path: Path
) -> None:
    record = tmp_path / "cut.mp4"
    recv = start_receiver("--record", str(record))
    sender = start_sender(*LAVFI, "--to", recv.addr, "-t", "30")
    deadline = time.monotonic() + 20
    while "joined" not in recv.stderr():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    rc, summary = recv.stop(signal.SIGTERM)
    assert rc == 0 and summary["interrupted"] is True and summary["frames"] > 10
    _, keys, frames = _recorded_packets_and_frames(record)
    assert keys[0] and len(frames) == summary["frames"]
    sender.send_signal(signal.SIGINT)
    assert sender.wait(30) == 130


def run_live(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "vtremote.cli.main", "live", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_usage_and_unreachable_receiver_exit_codes() -> None:
    assert run_live("send", "-i", "x", "--to", "127.0.0.1:1", "--codec", "vp9").returncode == 2
    assert run_live("recv").returncode == 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run_live("send", *LAVFI, "--to", f"127.0.0.1:{port}", "-t", "0.5", "--no-key")
    assert done.returncode == 1
    assert f"cannot reach 127.0.0.1:{port}" in done.stderr


def test_udp_sender_says_hello_again_to_a_restarted_receiver(
    start_receiver: Any, start_sender: Any
) -> None:
    first = start_receiver()
    sender = start_sender(*LAVFI, "--to", first.addr, "--transport", "udp", "-t", "8", "-g", "900")
    deadline = time.monotonic() + 20
    while "joined" not in first.stderr():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    rc, before = first.stop(signal.SIGTERM)
    assert rc == 0 and before["frames"] > 10
    second = start_receiver(listen=first.addr)
    assert sender.wait(60) == 0
    rc, after = second.finish()
    src = _source_summary(after)
    # The old session's datagrams are foreign to the new receiver until the sender, hearing
    # nothing for 3 s, says HELLO again and starts the new session with a keyframe.
    assert after["foreign_datagrams"] > 0
    assert src["keyframes"] == 1 and src["lost"] == 0 and after["frames"] > 30


def test_audio_is_recorded_beside_the_video(
    start_receiver: Any, start_sender: Any, tmp_path: Path
) -> None:
    record = tmp_path / "av.mkv"
    recv = start_receiver("--record", str(record))
    graph = "testsrc2=size=320x240:rate=30[out0];sine=frequency=440:sample_rate=44100[out1]"
    sender = start_sender("-f", "lavfi", "-i", graph, "--to", recv.addr, "-t", "1.5")
    assert sender.wait(60) == 0
    rc, summary = recv.finish()
    assert rc == 0
    assert (
        _source_summary(summary)["audio_packets"] >= 70
    )  # 1.5 s of 20 ms Opus packets (some before the first picture)
    with av.open(str(record)) as c:
        assert len(c.streams.audio) == 1 and len(c.streams.video) == 1
        audio = c.streams.audio[0]
        assert audio.codec_context.name == "opus" and audio.rate == 48000 and audio.channels == 2
        samples, first, last = 0, None, 0.0
        for frame in c.decode(audio=0):
            samples += frame.samples
            first = float(frame.time) if first is None else first
            last = float(frame.time) + frame.samples / frame.sample_rate
            level = float(np.abs(frame.to_ndarray()).mean())
        assert level > 0.01  # the sine, not silence
    assert (
        first is not None and abs(first) < 0.1
    )  # on the video's clock: starts with the first picture
    assert 1.3 <= samples / 48000 <= 1.6 and 1.3 <= last <= 1.6


def test_no_audio_with_an(start_receiver: Any, start_sender: Any, tmp_path: Path) -> None:
    record = tmp_path / "video-only.mkv"
    recv = start_receiver("--record", str(record))
    graph = "testsrc2=size=160x120:rate=30[out0];sine=frequency=440[out1]"
    sender = start_sender("-f", "lavfi", "-i", graph, "--to", recv.addr, "-t", "0.5", "-an")
    assert sender.wait(60) == 0
    rc, summary = recv.finish()
    assert rc == 0 and _source_summary(summary)["audio_packets"] == 0
    with av.open(str(record)) as c:
        assert not c.streams.audio and len(c.streams.video) == 1
