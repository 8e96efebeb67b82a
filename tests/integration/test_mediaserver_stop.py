"""Stopping ``vtremote-ffmpeg`` the way media servers do: ``q`` on stdin (Jellyfin, when a
client stops or seeks), SIGTERM. The run ends early but its HLS set is finished: a closed
playlist whose segments decode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mediaserver_helpers import RATE, make_movie, read_hls

SECONDS = 40.0


@pytest.fixture
def long_movie(tmp_path: Path) -> Path:
    return make_movie(tmp_path / "long.mkv", SECONDS, 64, 48, gop=30)


def start(tmp_path: Path, movie: Path, host: str) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "t"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREMOTE_")}
    env.update(
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "cfg"),
        VTREMOTE_STATE_DIR=str(tmp_path / "state"),
        VTREMOTE_HOST=host,
    )
    args = [
        "-i",
        str(movie),
        "-map",
        "0:0",
        "-map",
        "0:1",
        "-codec:v:0",
        "libx264",
        "-crf",
        "30",
        "-codec:a:0",
        "copy",
        "-f",
        "hls",
        "-hls_time",
        "1",
        "-hls_segment_filename",
        str(out / "q%d.ts"),
        "-hls_playlist_type",
        "vod",
        "-hls_list_size",
        "0",
        "-y",
        str(out / "q.m3u8"),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtremote.cli.ffmpeg", *args],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    return proc, out


def wait_for_segments(out: Path, proc: subprocess.Popen[bytes], count: int = 2) -> None:
    deadline = time.monotonic() + 60
    while len(list(out.glob("q*.ts"))) < count:
        assert proc.poll() is None, "the run ended before it could be stopped"
        assert time.monotonic() < deadline, "no segments appeared"
        time.sleep(0.01)


def test_q_on_stdin_finishes_the_set(tmp_path: Path, long_movie: Path, server) -> None:  # type: ignore[no-untyped-def]
    proc, out = start(tmp_path, long_movie, server.addr)
    wait_for_segments(out, proc)
    assert proc.stdin is not None
    proc.stdin.write(b"q")
    proc.stdin.flush()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"q on stdin: finishing the output" in err
    hls = read_hls(out / "q.m3u8")  # closed with ENDLIST, every segment decodes
    assert 0 < hls.video_frames < SECONDS * RATE
    assert all(s.first_video_packet_key for s in hls.segments)


def test_sigterm_finishes_the_set_and_exits_255(tmp_path: Path, long_movie: Path, server) -> None:  # type: ignore[no-untyped-def]
    proc, out = start(tmp_path, long_movie, server.addr)
    wait_for_segments(out, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 255, err.decode()
    hls = read_hls(out / "q.m3u8")
    assert 0 < hls.video_frames < SECONDS * RATE


def test_server_lost_mid_run_restarts_locally(
    tmp_path: Path, long_movie: Path, start_server
) -> None:  # type: ignore[no-untyped-def]
    """The server dies after some segments were written: the partial set is taken away and the
    whole line runs again with the local encoder, ending with a complete set."""
    srv = start_server("--engine", "x264")
    proc, out = start(tmp_path, long_movie, srv.addr)
    wait_for_segments(out, proc)
    srv.stop(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    text = err.decode()
    assert proc.returncode == 0, text
    assert "cannot take the job" in text and "falling back to a local encoder" in text
    assert "encoded locally with libx264 (fallback)" in text
    hls = read_hls(out / "q.m3u8")
    assert hls.video_frames == SECONDS * RATE
    assert all(s.first_video_packet_key for s in hls.segments)
