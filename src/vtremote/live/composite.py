"""Composite several live sources into one recording: a grid of tiles, re-encoded.

Every source has a tile (the first to join the top-left one, then left to right,
top to bottom); a source beyond the grid is not shown. The output advances in
fixed ticks (``fps``) on the receiver's clock, from the capture time of the
first picture of any source: at each tick every tile shows the latest picture
of its source captured before that tick (the last one held while a source
stalls or is gone; black before its first). Ticks are written as pictures
arrive, so the file ends at the last picture received; it is encoded with
libx264 (``yuv420p``), frame N at N / fps.

Driven by the decode threads of every source: one lock around everything.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vtremote.errors import ConfigError, EngineError

log = logging.getLogger(__name__)

#: Ticks written at once when a source's capture time jumps far ahead; beyond, the gap is skipped.
MAX_CATCH_UP_S = 10


@dataclass(frozen=True)
class CompositeConfig:
    width: int = 1280
    height: int = 720
    fps: Fraction = Fraction(30)
    columns: int = 2
    rows: int = 2
    crf: int = 23
    preset: str = "veryfast"

    def __post_init__(self) -> None:
        if self.columns < 1 or self.rows < 1 or self.columns * self.rows > 64:
            raise ConfigError(f"grid {self.columns}x{self.rows} must have 1..64 tiles")
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ConfigError(
                f"composite size {self.width}x{self.height} must be positive and even"
            )
        if self.tile_width < 2 or self.tile_height < 2:
            raise ConfigError(
                f"composite size {self.width}x{self.height} too small for a "
                f"{self.columns}x{self.rows} grid"
            )
        if self.fps <= 0:
            raise ConfigError(f"composite frame rate {self.fps} must be positive")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"crf {self.crf} outside 0..51")

    @property
    def tile_width(self) -> int:
        return (self.width // self.columns) & ~1

    @property
    def tile_height(self) -> int:
        return (self.height // self.rows) & ~1

    def tile_origin(self, tile: int) -> tuple[int, int]:
        """(x, y) of a tile's top-left corner in the output picture."""
        return (tile % self.columns) * self.tile_width, (tile // self.columns) * self.tile_height


def parse_grid(text: str) -> tuple[int, int]:
    """``2x2`` -> (columns, rows)."""
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"grid {text!r} is not COLUMNSxROWS (like 2x2)") from None
    return cols, rows


class Compositor:
    """The grid of tiles and the encoder of the composite file."""

    def __init__(self, path: str | Path, config: CompositeConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config or CompositeConfig()
        c = self.config
        self._lock = threading.Lock()
        self._y = np.full((c.height, c.width), 16, np.uint8)
        self._u = np.full((c.height // 2, c.width // 2), 128, np.uint8)
        self._v = np.full((c.height // 2, c.width // 2), 128, np.uint8)
        self._interval_ns = 1e9 / float(c.fps)
        self._t0: int | None = None
        self._next_tick = 0  # index of the next picture to write
        self._last_ns: int | None = None
        self._container: Any = None
        self._stream: Any = None
        self._closed = False
        self.frames = 0
        self.ignored_sources: set[int] = set()

    def _open(self) -> None:
        c = self.config
        try:
            self._container = av.open(str(self.path), "w")
            stream = self._container.add_stream("libx264", rate=c.fps)
            stream.width, stream.height, stream.pix_fmt = c.width, c.height, "yuv420p"
            stream.time_base = 1 / c.fps
            stream.codec_context.options = {"preset": c.preset, "crf": str(c.crf)}
            self._stream = stream
        except (av.FFmpegError, ValueError) as e:
            raise EngineError(f"cannot write the composite {self.path}: {e}") from e

    def add(self, tile: int, frame: av.VideoFrame, capture_local_ns: int) -> None:
        """A picture of the source in ``tile``, captured at ``capture_local_ns``.

        ``capture_local_ns`` is on the receiver's clock.
        """
        c = self.config
        if tile >= c.columns * c.rows:
            if tile not in self.ignored_sources:
                self.ignored_sources.add(tile)
                log.warning(
                    "live: composite: no tile left for source #%d (grid %dx%d)",
                    tile + 1,
                    c.columns,
                    c.rows,
                )
            return
        small = frame.reformat(width=c.tile_width, height=c.tile_height, format="yuv420p")
        planes = [
            _plane(small, i, c.tile_width >> (i > 0), c.tile_height >> (i > 0)) for i in range(3)
        ]
        with self._lock:
            if self._closed:
                return
            if self._t0 is None:
                self._t0 = capture_local_ns
                self._open()
            # Every tick before this picture's capture shows what came before it.
            self._write_until(capture_local_ns, inclusive=False)
            self._last_ns = (
                capture_local_ns if self._last_ns is None else max(self._last_ns, capture_local_ns)
            )
            x, y = c.tile_origin(tile)
            th, tw = c.tile_height, c.tile_width
            self._y[y : y + th, x : x + tw] = planes[0]
            self._u[y // 2 : (y + th) // 2, x // 2 : (x + tw) // 2] = planes[1]
            self._v[y // 2 : (y + th) // 2, x // 2 : (x + tw) // 2] = planes[2]

    def _write_until(self, t_ns: int, *, inclusive: bool) -> None:
        assert self._t0 is not None
        span = (t_ns - self._t0) / self._interval_ns
        # Capture times rounded to whole nanoseconds: within 1/1000 of a tick is on the tick.
        last = int(np.floor(span + 1e-3)) if inclusive else int(np.ceil(span - 1e-3)) - 1
        if last - self._next_tick > MAX_CATCH_UP_S * float(self.config.fps):
            skip = last - int(MAX_CATCH_UP_S * float(self.config.fps))
            log.warning(
                "live: composite: %d ticks skipped (no picture for a long time)",
                skip - self._next_tick,
            )
            self._next_tick = skip
        if self._next_tick > last:
            return
        out = av.VideoFrame.from_ndarray(
            np.concatenate([self._y.ravel(), self._u.ravel(), self._v.ravel()]).reshape(
                -1, self.config.width
            ),
            format="yuv420p",
        )
        while self._next_tick <= last:
            out.pts = self._next_tick
            out.time_base = 1 / self.config.fps  # the codec's; the muxer changes the stream's
            self._mux(self._stream.encode(out))
            self._next_tick += 1
            self.frames += 1

    def _mux(self, packets: list[Any]) -> None:
        try:
            self._container.mux(packets)
        except av.FFmpegError as e:
            raise EngineError(f"writing the composite {self.path} failed: {e}") from e

    def close(self) -> None:
        """Write the tick of the last picture, finish the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._container is None:
                return
            if self._last_ns is not None:
                self._write_until(self._last_ns, inclusive=True)
            self._mux(self._stream.encode(None))
            try:
                self._container.close()
            except av.FFmpegError as e:
                log.warning("closing %s: %s", self.path, e)
            log.info("composite: %d frames to %s", self.frames, self.path)


def _plane(frame: av.VideoFrame, index: int, width: int, height: int) -> np.ndarray:
    plane = frame.planes[index]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    return rows[:height, :width]
