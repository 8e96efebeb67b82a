"""The library API in one process: Sender.send(frame, metadata) -> Receiver frames with metadata."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import lavfi_frames
from vtremote.live import LiveReceiver, ReceivedFrame, Sender, SenderConfig
from vtremote.live import receiver as receiver_module


def _push(
    rx: LiveReceiver, frames: list[av.VideoFrame], source_id: int, transport: str = "tcp"
) -> Sender:
    cfg = SenderConfig(
        width=160,
        height=120,
        fps=Fraction(30),
        source_id=source_id,
        transport=transport,
        key=rx.key,
    )
    tx = Sender(f"127.0.0.1:{rx.address[1]}", cfg).start()
    assert tx.wait_connected(10)
    start = time.monotonic_ns()
    for i, frame in enumerate(frames):
        due = start + i * 33_333_333
        time.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
        tx.send(frame, {"i": i} if i % 4 == 0 else None, capture_ns=due)
    tx.close()
    return tx


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_pushed_frames_arrive_with_their_metadata_and_latency(transport: str) -> None:
    got: list[ReceivedFrame] = []
    lock = threading.Lock()

    def on_frame(f: ReceivedFrame) -> None:
        with lock:
            got.append(f)

    with LiveReceiver("127.0.0.1:0", on_frame=on_frame) as rx:
        tx = _push(rx, lavfi_frames(30, "160x120"), 77, transport)
        assert rx.wait(10)
    assert tx.stats.frames_sent + tx.stats.dropped == 30
    assert len(got) == tx.stats.frames_sent and got[0].keyframe and got[0].source_id == 77
    assert [g.seq for g in got] == sorted(g.seq for g in got)
    for g in got:
        # Measured, on the sender's clock mapped to ours: the offset estimate's noise (half a
        # round trip) can exceed a loopback latency, so only its size is checked here.
        assert g.frame.width == 160 and abs(g.latency_ns) < 10**9
        assert g.capture_local_ns + g.latency_ns >= g.capture_ns - 10**9  # same machine, same clock
        for m in g.metadata:  # each metadata with its own frame (or the next one shown)
            assert m["i"] <= g.seq and m["i"] % 4 == 0
    shown = [m["i"] for g in got for m in g.metadata]
    assert shown == sorted(shown) and len(shown) == 8


def test_an_ended_source_gives_its_slot_to_a_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receiver_module, "MAX_SOURCES", 1)
    with LiveReceiver("127.0.0.1:0", on_frame=lambda f: None) as rx:
        _push(rx, lavfi_frames(5, "160x120"), 1)
        assert rx.wait(10)
        _push(
            rx, lavfi_frames(5, "160x120"), 2
        )  # refused (busy) if the first still held the only slot
        assert rx.wait(10)
        summary = rx.summary()
    assert [s["source_id"] for s in summary["sources"]] == [1, 2]
    assert all(s["frames"] >= 4 for s in summary["sources"])


def test_a_burst_of_pushed_frames_is_dropped_not_queued() -> None:
    """60 frames pushed at once: the newest goes out, the others are dropped (counted), never
    queued; every frame's metadata still arrives, in order, and the pictures keep their capture
    times."""
    with av.open("testsrc2=size=640x480:rate=30", format="lavfi") as c:
        frames = [f for f, _ in zip(c.decode(video=0), range(60), strict=False)]
    got: list[ReceivedFrame] = []
    lock = threading.Lock()

    def on_frame(f: ReceivedFrame) -> None:
        with lock:
            got.append(f)

    with LiveReceiver("127.0.0.1:0", on_frame=on_frame) as rx:
        cfg = SenderConfig(width=640, height=480, fps=Fraction(30), source_id=9, key=rx.key)
        tx = Sender(f"127.0.0.1:{rx.address[1]}", cfg).start()
        assert tx.wait_connected(10)
        base = time.monotonic_ns()
        # A burst: all within 60 µs of capture time.
        captures = [base + i * 1000 for i in range(60)]
        for i, frame in enumerate(frames):
            tx.send(frame, {"i": i}, capture_ns=captures[i])
        stats = tx.close()
        assert rx.wait(10)
    assert stats.frames_in == 60 and stats.frames_sent + stats.dropped == 60
    assert stats.dropped > 0 and stats.frames_sent < 60  # dropped, not queued behind the encoder
    assert len(got) == stats.frames_sent
    assert got[-1].capture_ns == captures[-1]  # the newest frame is the one kept
    assert all(g.capture_ns in captures for g in got)  # each with its own capture time
    assert [g.capture_ns for g in got] == sorted(g.capture_ns for g in got)
    assert [m["i"] for g in got for m in g.metadata] == list(range(60))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_pushed_audio_is_recorded_on_the_video_clock(transport: str, tmp_path: Path) -> None:
    with av.open("sine=frequency=1000:sample_rate=16000", format="lavfi") as c:
        sound = [
            f for f, _ in zip(c.decode(audio=0), range(16), strict=False)
        ]  # 16 x 1024 samples: 1.024 s
    record = tmp_path / "pushed.mkv"
    with LiveReceiver("127.0.0.1:0", on_frame=lambda f: None, record=record) as rx:
        cfg = SenderConfig(
            width=160,
            height=120,
            fps=Fraction(30),
            source_id=3,
            transport=transport,
            audio=True,
            key=rx.key,
        )
        tx = Sender(f"127.0.0.1:{rx.address[1]}", cfg).start()
        assert tx.wait_connected(10)
        start = time.monotonic_ns()
        pending = list(enumerate(sound))
        for i, frame in enumerate(lavfi_frames(30, "160x120")):
            due = start + i * 33_333_333
            time.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
            tx.send(frame, capture_ns=due)
            while pending and pending[0][0] * 1024 * 10**9 // 16000 <= due - start:
                k, chunk = pending.pop(0)
                tx.send_audio(chunk, capture_ns=start + k * 1024 * 10**9 // 16000)
        for k, chunk in pending:
            tx.send_audio(chunk, capture_ns=start + k * 1024 * 10**9 // 16000)
        stats = tx.close()
        assert rx.wait(10)
        summary = rx.summary()
    assert stats.audio_packets >= 50 and stats.audio_dropped == 0
    assert summary["sources"][0]["audio_packets"] == stats.audio_packets
    with av.open(str(record)) as c:
        got = list(c.decode(audio=0))
    seconds = sum(f.samples for f in got) / 48000
    # From the first recorded picture (over UDP that may be a frame or two in) to the end of the
    # sound.
    assert 0.9 <= seconds <= 1.1 and abs(float(got[0].time or 0)) < 0.1


def test_send_audio_needs_an_audio_sender() -> None:
    from vtremote.errors import ConfigError

    frame = av.AudioFrame(format="s16", layout="mono", samples=960)
    tx = Sender("127.0.0.1:9", SenderConfig(width=160, height=120, fps=Fraction(30)))
    with pytest.raises(ConfigError):
        tx.send_audio(frame)
    tx.close()


def test_frames_the_capture_drops_for_lateness_are_in_the_bye() -> None:
    """The pacer drops frames that come out of the input too late; the sender counts them with
    its own drops, so its BYE, its stats and the receiver's summary agree exactly."""
    from vtremote.live.source import open_capture, paced_frames

    offset = [0]
    reads = [0]

    def stalling_clock() -> int:
        # The process stalls for 250 ms once, before the 11th frame: the ~7 frames due in that
        # window come out late and are dropped by the pacer.
        reads[0] += 1
        if reads[0] == 11:
            offset[0] += 250_000_000
        return time.monotonic_ns() + offset[0]

    cap = open_capture("testsrc2=size=160x120:rate=30", "lavfi")
    got: list[ReceivedFrame] = []
    with LiveReceiver("127.0.0.1:0", on_frame=got.append) as rx:
        cfg = SenderConfig(width=160, height=120, fps=Fraction(30), source_id=5, key=rx.key)
        tx = Sender(f"127.0.0.1:{rx.address[1]}", cfg).start()
        assert tx.wait_connected(10)
        captured = 0
        for frame, capture_ns in paced_frames(
            cap, seconds=1.0, on_late=tx.count_skipped, clock=stalling_clock
        ):
            tx.send(frame, capture_ns=capture_ns)
            captured += 1
        stats = tx.close()
        cap.close()
        assert rx.wait(10)
        summary = rx.summary()
    assert cap.late_dropped >= 5  # the stall really dropped frames in the pacer
    assert stats.frames_in == 30 == captured + cap.late_dropped
    assert stats.frames_sent + stats.dropped == 30
    (source,) = summary["sources"]
    assert source["sender_dropped"] == stats.dropped  # what the BYE said
    assert summary["frames"] == len(got) == stats.frames_sent == 30 - source["sender_dropped"]
