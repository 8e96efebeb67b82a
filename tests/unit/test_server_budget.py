"""server/budget.py and the bounded stages behind it, without a socket: sizes, shares,
reservations, the filter stage's bound per input frame and its graph freed on close."""

from __future__ import annotations

import gc
import logging
import os
from fractions import Fraction

import av
import pytest

from vtremote.engines.limits import decode_pixel_limit
from vtremote.engines.transcode import MAX_FRAMES_PER_INPUT, FilterStage
from vtremote.errors import CapacityError, ConfigError, UnsupportedConfigError
from vtremote.server.budget import (
    BASE_BYTES,
    Estimate,
    MemoryBudget,
    estimate_session,
    packet_limit,
)
from vtremote.server.config import MiB, ServerConfig, default_max_memory, parse_size
from vtremote.server.configure import ConfigurePlan, plan_configure
from vtremote.wire import filters as vf
from vtremote.wire import messages
from vtremote.wire.constants import PixelFormat
from vtremote.wire.framing import Limits

LOG = logging.LoggerAdapter(logging.getLogger("test"), {})


def _plan(width: int, height: int, *options: tuple[str, str]) -> ConfigurePlan:
    msg = messages.Configure(width, height, int(PixelFormat.NV12), 1, 30, 30, 1, options)
    return plan_configure(msg, codec="h264", client_name="t", config=ServerConfig(engine="x264"))


def test_sizes_parse_in_powers_of_1024() -> None:
    assert parse_size("4G") == 4 << 30
    assert parse_size("512M") == 512 * MiB
    assert parse_size("1.5GiB") == 3 << 29
    assert parse_size("1048576") == MiB
    with pytest.raises(ConfigError, match="'lots' is not a number"):
        parse_size("lots")
    with pytest.raises(ConfigError, match="below the 256 MiB"):
        ServerConfig(max_memory=100 * MiB)
    assert default_max_memory() >= 256 * MiB


def test_shares_grow_with_the_geometry_and_the_mode() -> None:
    limits = Limits()
    small = estimate_session(_plan(640, 360), 4, limits)
    hd = estimate_session(_plan(1920, 1080), 4, limits)
    uhd = estimate_session(_plan(3840, 2160), 4, limits)
    assert small.total < hd.total < uhd.total
    assert 3.5 < uhd.total / hd.total < 4.5  # pictures dominate
    assert hd.detail.startswith("encode h264 1920x1080 NV12: session 24 MiB")
    decode = estimate_session(_plan(320, 180, ("mode", "decode")), 4, limits)
    # A decoder may make pictures up to 1920x1088 whatever the configured size says.
    assert "decoder" in decode.detail and decode.total > 20 * 1920 * 1088 * 3 // 2
    transcode = _plan(320, 180, ("mode", "transcode"), ("ext_in_codec", "h264"))
    assert "filters" in estimate_session(transcode, 4, limits).detail
    # PACKETs follow the geometry: twice the largest raw picture, at least 4 MiB.
    assert packet_limit(transcode, limits) == 2 * decode_pixel_limit(320, 180) * 3 // 2
    assert packet_limit(_plan(8192, 8192, ("mode", "decode")), limits) == limits.packet


def test_reservations_refuse_what_does_not_fit_and_come_back() -> None:
    budget = MemoryBudget(BASE_BYTES + 100 * MiB)
    first = budget.reserve(Estimate(60 * MiB, "a"))
    with pytest.raises(CapacityError, match=r"needs about 60 MiB \(b\); 40 MiB of the memory"):
        budget.reserve(Estimate(60 * MiB, "b"))
    with pytest.raises(UnsupportedConfigError, match="more than the 100 MiB sessions may use"):
        budget.reserve(Estimate(101 * MiB, "c"))
    first.release()
    first.release()  # once only
    assert budget.available == 100 * MiB


class _Worker:
    def __init__(self) -> None:
        self.callbacks: list[object] = []

    def when_stopped(self, callback: object) -> None:
        self.callbacks.append(callback)


def test_a_stuck_engine_keeps_its_share_until_it_stops() -> None:
    budget = MemoryBudget(BASE_BYTES + 100 * MiB)
    share = budget.reserve(Estimate(70 * MiB, "a"))
    worker = _Worker()
    budget.session_ended(share, worker, stopped=False, log=LOG, waited=30)
    assert budget.stuck_engines == 1 and budget.available == 30 * MiB
    for callback in worker.callbacks:
        callback()  # type: ignore[operator]
    assert budget.available == 100 * MiB


def _frames(pts: list[int]) -> list[av.VideoFrame]:
    out = []
    for p in pts:
        f = av.VideoFrame(64, 64, "yuv420p")
        for plane in f.planes:
            memoryview(plane)[:] = b"\x80" * plane.buffer_size
        f.pts, f.duration = p, 1
        f.time_base = Fraction(1, 30)
        out.append(f)
    return out


TEN_HOURS = 10 * 3600 * 30  # at 1/30 s


def _stage(chain: str) -> FilterStage:
    source = vf.Geometry(64, 64, Fraction(1, 30), Fraction(30))
    c = vf.parse(chain)
    return FilterStage(c, source, vf.output_geometry(c, source), "nv12")


def test_an_fps_gap_is_filled_up_to_the_bound_and_no_further() -> None:
    stage = _stage("fps=30")
    made = []
    for f in _frames([0, 10, 10 + MAX_FRAMES_PER_INPUT, TEN_HOURS]):
        made += [g.pts for g in stage.push(f)]
    made += [g.pts for g in stage.push(None)]
    # Gaps of 10 and 600 frames are filled as FFmpeg's fps does; ten hours are not.
    assert made[: 10 + MAX_FRAMES_PER_INPUT + 1] == list(range(10 + MAX_FRAMES_PER_INPUT + 1))
    assert made[10 + MAX_FRAMES_PER_INPUT + 1 :] == [TEN_HOURS]
    assert stage.discontinuities == 1 and stage.dropped == 0


def test_frames_come_out_one_at_a_time() -> None:
    stage = _stage("fps=30")
    first, second = _frames([0, 300])
    list(stage.push(first))
    out = stage.push(second)
    assert next(out).pts == 0  # made on demand: the rest are not made until asked for
    stage.close()


def test_a_closed_filter_graph_goes_without_the_garbage_collector() -> None:
    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs Linux /proc")
    gc.collect()
    gc.disable()
    try:
        before = threads()
        stage = _stage("scale=32:32")
        list(stage.push(_frames([0])[0]))
        assert threads() >= before  # the graph's worker threads, if any
        stage.close()
        assert threads() == before
    finally:
        gc.enable()
