"""Several sources composited into one re-encoded recording: a grid of tiles at a fixed rate."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from vtremote.errors import ConfigError
from vtremote.live.composite import CompositeConfig, Compositor, parse_grid

RED, BLUE, BLACK = (255, 0, 0), (0, 0, 255), (0, 0, 0)


def _solid(rgb: tuple[int, int, int], w: int = 96, h: int = 64) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.full((h, w, 3), rgb, np.uint8), format="rgb24")


def _decode_recording(path: Path) -> tuple[list[float], list[np.ndarray], Any]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        times, pictures = [], []
        for f in c.decode(stream):
            times.append(float(f.pts * stream.time_base))
            pictures.append(f.to_ndarray(format="rgb24"))
        return (
            times,
            pictures,
            (stream.codec_context.width, stream.codec_context.height, stream.codec_context.name),
        )


def _tile(picture: np.ndarray, cfg: CompositeConfig, tile: int) -> np.ndarray:
    x, y = cfg.tile_origin(tile)
    # The middle of the tile: away from the chroma edges the encoder blurs.
    mx, my = cfg.tile_width // 4, cfg.tile_height // 4
    return (
        picture[y + my : y + cfg.tile_height - my, x + mx : x + cfg.tile_width - mx]
        .reshape(-1, 3)
        .mean(axis=0)
    )


def _near(mean: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    return bool(np.all(np.abs(mean - np.array(rgb)) < 40))


def test_each_tile_holds_its_sources_latest_picture_at_every_tick(tmp_path: Path) -> None:
    cfg = CompositeConfig(width=320, height=240, fps=Fraction(10), columns=2, rows=2)
    comp = Compositor(tmp_path / "grid.mkv", cfg)
    ms = 1_000_000
    comp.add(0, _solid(RED), 1000 * ms)  # t0: tick 0 at 1.000 s
    comp.add(0, _solid(RED), 1150 * ms)
    comp.add(1, _solid(BLUE), 1250 * ms)  # the second source appears between ticks 2 and 3
    comp.add(0, _solid((0, 255, 0)), 1420 * ms)  # source 0 turns green from tick 5 on
    comp.add(1, _solid(BLUE), 1600 * ms)  # last picture: the file ends with tick 6
    comp.close()
    times, pictures, (w, h, name) = _decode_recording(tmp_path / "grid.mkv")
    assert (w, h, name) == (320, 240, "h264")
    assert comp.frames == len(pictures) == 7
    assert times == pytest.approx([i / 10 for i in range(7)])
    for i, pic in enumerate(pictures):
        assert _near(_tile(pic, cfg, 0), RED if i < 5 else (0, 255, 0)), i
        assert _near(_tile(pic, cfg, 1), BLACK if i < 3 else BLUE), (
            i
        )  # black before its first picture
        assert _near(_tile(pic, cfg, 2), BLACK) and _near(_tile(pic, cfg, 3), BLACK)


def test_a_source_beyond_the_grid_is_not_shown(tmp_path: Path) -> None:
    cfg = CompositeConfig(width=160, height=64, fps=Fraction(5), columns=2, rows=1)
    comp = Compositor(tmp_path / "two.mkv", cfg)
    for i in range(4):
        comp.add(0, _solid(RED), i * 200_000_000)
        comp.add(2, _solid(BLUE), i * 200_000_000)  # a third source: no tile
    comp.close()
    _, pictures, _ = _decode_recording(tmp_path / "two.mkv")
    assert len(pictures) == 4 and comp.ignored_sources == {2}
    assert all(_near(_tile(p, cfg, 1), BLACK) for p in pictures)


def test_grid_and_size_are_checked() -> None:
    assert parse_grid("3x2") == (3, 2)
    with pytest.raises(ConfigError):
        parse_grid("big")
    with pytest.raises(ConfigError):
        CompositeConfig(width=6, height=6, columns=4, rows=4)
    with pytest.raises(ConfigError):
        CompositeConfig(width=321, height=240)


def test_two_sender_processes_composite_into_one_file(
    start_receiver: Any, start_sender: Any, tmp_path: Path
) -> None:
    out = tmp_path / "composite.mkv"
    recv = start_receiver(
        "--composite",
        str(out),
        "--grid",
        "2x2",
        "--composite-size",
        "320x240",
        "--composite-fps",
        "30",
    )
    senders = [
        start_sender(
            "-f",
            "lavfi",
            "-i",
            f"color=c={colour}:size=160x120:rate=30",
            "--to",
            recv.addr,
            "-t",
            "1.5",
        )
        for colour in ("red", "blue")
    ]
    assert all(s.wait(60) == 0 for s in senders)
    rc, summary = recv.finish()
    assert rc == 0 and len(summary["sources"]) == 2
    times, pictures, (w, h, name) = _decode_recording(out)
    assert (w, h, name) == (320, 240, "h264")
    # One picture per 1/30 s, with no gap, from the first picture received to the last.
    assert times == pytest.approx([i / 30 for i in range(len(times))], abs=1e-3)
    assert 1.4 <= len(times) / 30 <= 10
    cfg = CompositeConfig(width=320, height=240, columns=2, rows=2)
    last = pictures[-1]
    top = {tuple(int(v) for v in _tile(last, cfg, t)) for t in (0, 1)}
    assert any(_near(np.array(c), RED) for c in top) and any(_near(np.array(c), BLUE) for c in top)
    assert _near(_tile(last, cfg, 2), BLACK) and _near(_tile(last, cfg, 3), BLACK)
    # The first tick is the first picture of either source.
    assert not (
        _near(_tile(pictures[0], cfg, 0), BLACK) and _near(_tile(pictures[0], cfg, 1), BLACK)
    )


def test_one_picture_per_tick_when_capture_times_are_whole_nanoseconds(tmp_path: Path) -> None:
    cfg = CompositeConfig(width=64, height=64, fps=Fraction(30), columns=1, rows=1)
    comp = Compositor(tmp_path / "ticks.mkv", cfg)
    for i in range(30):
        comp.add(0, _solid(RED), 5 * 10**9 + i * 33_333_333)  # 1/30 s, truncated to ns
    comp.close()
    times, pictures, _ = _decode_recording(tmp_path / "ticks.mkv")
    assert len(pictures) == comp.frames == 30
