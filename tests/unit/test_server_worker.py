"""server/configure.py and server/worker.py without a socket: a CONFIGURE becomes a plan,
and an engine worker turns queued work into messages through its outbox alone."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import av
import pytest

from vtremote.engines.null import NullEngine
from vtremote.errors import UnsupportedConfigError, VTRemoteError
from vtremote.server.config import ServerConfig
from vtremote.server.configure import ConfigurePlan, plan_configure
from vtremote.server.logs import SessionLog
from vtremote.server.timestamps import FrameInfo
from vtremote.server.window import PROBED_CLIENT
from vtremote.server.worker import AnswerPing, Drain, EncodeFrame, EngineWorker, SourcePacket
from vtremote.wire import messages
from vtremote.wire.constants import PixelFormat, WireCompression

W, H = 64, 32


def _configure(**options: str) -> messages.Configure:
    return messages.Configure(
        W, H, int(PixelFormat.NV12), 1, 30, 30, 1, options=tuple(options.items())
    )


def _plan(client_name: str = "test", **options: str) -> ConfigurePlan:
    return plan_configure(
        _configure(**options),
        codec="h264",
        client_name=client_name,
        config=ServerConfig(engine="null"),
    )


def test_a_plain_encode_client_gets_its_window_watched() -> None:
    plan = _plan(PROBED_CLIENT, wire_compression="1")
    assert (plan.mode, plan.plain_client, plan.watch_window, plan.probed) == (
        "encode",
        True,
        True,
        True,
    )
    assert plan.compression is WireCompression(1) and plan.stream.least_delay
    assert plan.candidates() == [NullEngine]


def test_a_client_that_states_its_window_gets_a_delay_below_it() -> None:
    plan = _plan(ext_window="4")
    assert not plan.plain_client and not plan.watch_window
    assert plan.stream.max_delay == 3
    with pytest.raises(UnsupportedConfigError, match="ext_window='four' is not a number"):
        _plan(ext_window="four")


def test_a_pipelined_decode_plan_watches_no_window() -> None:
    plan = _plan(mode="decode", ext_decode_pipeline="1")
    assert plan.mode == "decode" and plan.pipelined and not plan.watch_window
    assert plan.transcode is None


def test_a_bad_wire_compression_is_refused_in_the_plan() -> None:
    with pytest.raises(VTRemoteError):
        _plan(wire_compression="9")


class _Outbox:
    """Records what the worker sends; the test's stand-in for a session."""

    def __init__(self) -> None:
        self.sent: list[messages.Message] = []
        self.errors: list[BaseException] = []
        self.done = threading.Event()

    def send(self, message: messages.Message) -> None:
        self.sent.append(message)
        if isinstance(message, messages.Done):
            self.done.set()

    def abort(self, error: BaseException) -> None:
        self.errors.append(error)
        self.done.set()

    def bytes_received(self) -> int:
        return 0


def _worker(plan: ConfigurePlan, outbox: _Outbox, pool: ThreadPoolExecutor) -> EngineWorker:
    log = SessionLog(logging.getLogger("test"), {"id": "t"})
    return EngineWorker(NullEngine(), plan, outbox, pool, lambda s: None, log, "test-engine")


def test_the_worker_encodes_in_order_and_answers_through_its_outbox() -> None:
    outbox = _Outbox()
    with ThreadPoolExecutor(1) as pool:
        worker = _worker(_plan(ext_window="8"), outbox, pool)
        assert worker.start() == b""
        for i in range(3):
            frame = av.VideoFrame(W, H, "nv12")
            assert worker.put(EncodeFrame(frame, FrameInfo(100 + i, 1, time.monotonic())), 1.0)
        assert worker.put(AnswerPing(), 1.0)
        assert worker.put(Drain(), 1.0)
        assert outbox.done.wait(10.0)
        assert worker.join(10.0)
    kinds = [type(m).__name__ for m in outbox.sent]
    assert kinds == ["Packet", "Packet", "Packet", "Pong", "Done"]
    assert [m.pts for m in outbox.sent if isinstance(m, messages.Packet)] == [100, 101, 102]
    assert worker.stats.packets_out == 3 and not outbox.errors


def test_a_worker_failure_reaches_the_session_as_an_abort() -> None:
    outbox = _Outbox()
    with ThreadPoolExecutor(1) as pool:
        worker = _worker(_plan(ext_window="8"), outbox, pool)
        worker.start()
        # An encode session given a PACKET: the engine cannot decode it.
        assert worker.put(SourcePacket(av.Packet(b"\x00\x00\x00\x01\x65")), 1.0)
        assert outbox.done.wait(10.0)
        assert worker.join(10.0)
    assert len(outbox.errors) == 1


def test_stop_ends_an_idle_worker_at_once() -> None:
    outbox = _Outbox()
    with ThreadPoolExecutor(1) as pool:
        worker = _worker(_plan(ext_window="8"), outbox, pool)
        worker.start()
        assert worker.idle_since() is not None
        worker.stop()
        assert worker.join(5.0)
    assert outbox.sent == [] and outbox.errors == []
