"""How runs ended, counted across processes in one small JSON file
(``STATE_DIR/ffmpeg-counters.json``).

Each ``vtremote-ffmpeg`` run adds to one counter: ``remote`` (video made by a server),
``local_fallback`` (no server could take it: a PyAV encoder here), ``ffmpeg_fallback`` (a line
vtremote cannot run, handed to the real ffmpeg), ``ffmpeg_passthrough`` (no video encode for a
server: handed to ffmpeg by choice), ``no_video_encode`` (copy or audio only, run here), ``failed``;
``server_unavailable`` counts each server that could not take a job. An exclusive ``flock`` keeps
concurrent runs from losing counts; a state folder that cannot be written only costs the count.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "ffmpeg-counters.json"
KEYS = (
    "runs",
    "remote",
    "local_fallback",
    "ffmpeg_fallback",
    "ffmpeg_passthrough",
    "no_video_encode",
    "failed",
    "server_unavailable",
)


def bump(state_dir: Path, *keys: str) -> None:
    """Add one to each of ``keys``."""
    path = state_dir / FILE_NAME
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        with open(path, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            text = f.read()
            counts: dict[str, int] = {}
            with contextlib.suppress(ValueError):
                loaded = json.loads(text) if text else {}
                counts = {k: int(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
            for key in keys:
                counts[key] = counts.get(key, 0) + 1
            f.seek(0)
            f.truncate()
            f.write(json.dumps(counts, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        log.debug("counters in %s not updated: %s", path, e)


def read(state_dir: Path) -> dict[str, int]:
    try:
        data = json.loads((state_dir / FILE_NAME).read_text())
    except (OSError, ValueError):
        return {k: 0 for k in KEYS}
    return {k: int(data.get(k, 0)) for k in KEYS} | {
        k: int(v) for k, v in data.items() if k not in KEYS
    }
