"""What a ``vtremote`` run killed with SIGKILL leaves behind, and what a later run cleans.

SIGKILL runs no clean-up: a single-file output written as an unnamed file
(O_TMPFILE) vanishes with the process; a hidden temporary (where the filesystem
cannot do that) carries its pid, and a later run for the same target removes it
once that pid is gone. An HLS set is written in place: a killed run's playlist
has no ``#EXT-X-ENDLIST`` (a VOD run's has not been written at all), so no player
takes it for a finished one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_helpers import start_long_encode, written_in

from media import decode_video
from vtremote.cli.main import main
from vtremote.pipeline import staging

REMOTE_H264 = "h264_videotoolbox_remote"


def _encode_ten_frames(server_addr: str, out: Path) -> int:
    return main(
        [
            "-nostats",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x64:rate=30",
            "-frames:v",
            "10",
            "-c:v",
            REMOTE_H264,
            "-vt_remote_host",
            server_addr,
            str(out),
        ]
    )


def _kill_while_writing(proc: subprocess.Popen[str], folder: Path, least: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if written_in(proc.pid, folder) > least:
            break
        time.sleep(0.05)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert alive, f"the run ended before it was killed: {stderr}"
    assert proc.returncode == -signal.SIGKILL
    return stderr


def test_a_killed_run_leaves_no_file(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "o"
    folder.mkdir()
    proc = start_long_encode(server.addr, folder / "out.mp4", "-nostats", "-y")
    _kill_while_writing(proc, folder, 64 * 1024)
    assert sorted(p.name for p in folder.iterdir()) == []


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_later_run_removes_only_the_temporaries_of_dead_runs(
    server,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    out = tmp_path / "out.mp4"
    dead, dead_recently = _dead_pid(), _dead_pid()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) as live:
        try:
            stale = tmp_path / f".out.vtremote-{dead}.mp4"
            kept = [
                tmp_path / f".out.vtremote-{live.pid}.mp4",  # its run is still going
                tmp_path / f".out.vtremote-{dead}.mkv",  # another target
                tmp_path / f".other.vtremote-{dead}.mp4",  # another target
                tmp_path / f".out.vtremote-{dead}.mp4.bak",  # not our pattern
                tmp_path / f".out.vtremote-x{dead}.mp4",  # not our pattern
            ]
            old = time.time() - 2 * staging.STALE_AFTER_S
            for path in [stale, *kept]:
                path.write_bytes(b"partial")
                os.utime(path, (old, old))
            recent = tmp_path / f".out.vtremote-{dead_recently}.mp4"  # maybe another host's
            recent.write_bytes(b"partial")
            kept.append(recent)
            rc = _encode_ten_frames(server.addr, out)
        finally:
            live.kill()
    assert rc == 0
    assert len(decode_video(out)) == 10
    assert not stale.exists()
    assert all(path.exists() for path in kept)


def test_where_unnamed_files_cannot_be_linked_a_hidden_name_is_used(
    server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setattr(staging, "_anonymous", lambda url: None)
    folder = tmp_path / "o"
    folder.mkdir()
    out = folder / "out.mkv"
    rc = _encode_ten_frames(server.addr, out)
    assert rc == 0
    assert len(decode_video(out)) == 10
    assert [p.name for p in folder.iterdir()] == ["out.mkv"]


@pytest.mark.parametrize("playlist_type", ["", "vod", "event"])
def test_a_killed_hls_run_leaves_a_playlist_without_an_end(
    server,
    tmp_path: Path,
    playlist_type: str,  # type: ignore[no-untyped-def]
) -> None:
    folder = tmp_path / "hls"
    folder.mkdir()
    playlist = folder / "s.m3u8"
    extra = ["-hls_playlist_type", playlist_type] if playlist_type else []
    proc = start_long_encode(
        server.addr,
        playlist,
        "-nostats",
        "-f",
        "hls",
        "-hls_time",
        "1",
        "-hls_list_size",
        "0",
        *extra,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not (folder / "s2.ts").exists():
        time.sleep(0.05)
    _kill_while_writing(proc, folder, 0)
    if playlist_type == "vod":
        # FFmpeg writes a VOD playlist once, at the end: a killed run leaves segments only.
        assert not playlist.exists()
        return
    text = playlist.read_text()
    assert text.startswith("#EXTM3U") and "#EXTINF" in text
    assert "#EXT-X-ENDLIST" not in text  # players see an unfinished playlist, not a whole one
