"""The reference client and the server's session rules: token, wrong token, busy, a server
stopped mid-run."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from interop_helpers import REFCLIENT, check_encode, ffmpeg, lavfi, read_stream, remote


def _encode_args(server, out: str, *extra: str) -> list[str]:
    return [
        *lavfi("320x240", 20),
        "-pix_fmt",
        "nv12",
        "-c:v",
        "h264_videotoolbox_remote",
        *remote(server, *extra),
        "-g",
        "10",
        "-y",
        out,
    ]


def test_token(start_refserver, tmp_path: Path) -> None:
    server = start_refserver("--engine", "x264", "--token", "s3cret")
    out = tmp_path / "out.mp4"
    ffmpeg(*_encode_args(server, str(out), "-vt_remote_token", "s3cret")).check()
    check_encode(read_stream(out), 20, 10)


def test_wrong_or_missing_token_fails_at_once(start_refserver, tmp_path: Path) -> None:
    server = start_refserver("--engine", "x264", "--token", "s3cret")
    for token in ("wrong", ""):
        extra = ("-vt_remote_token", token) if token else ()
        run = ffmpeg(*_encode_args(server, str(tmp_path / "out.mp4"), *extra), timeout=20)
        assert run.returncode != 0
        assert (
            "Permission denied" in run.stderr
        )  # HELLO_ACK status 2 -> EACCES in the reference client
    server.wait_for_log(r"HELLO authfail from ffmpeg-vtremote")
    assert server.proc.poll() is None  # the server keeps serving


def test_busy_server_fails_at_once_and_frees_its_slot(start_refserver, tmp_path: Path) -> None:
    server = start_refserver("--engine", "x264", "--max-sessions", "1")
    # A real-time source keeps the first session open for about 2 s.
    first = subprocess.Popen(
        [
            str(REFCLIENT),
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-re",
            *lavfi("320x240", 60),
            "-pix_fmt",
            "nv12",
            "-c:v",
            "h264_videotoolbox_remote",
            *remote(server),
            "-g",
            "10",
            "-y",
            str(tmp_path / "first.mp4"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        server.wait_for_log(r"CONFIGURE ok mode=encode")
        busy = ffmpeg(*_encode_args(server, str(tmp_path / "busy.mp4")), timeout=20)
        assert busy.returncode != 0
        assert "Permission denied" in busy.stderr
        server.wait_for_log(r"server busy: 1 of 1 sessions in use")
        _, err = first.communicate(timeout=30)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    check_encode(read_stream(tmp_path / "first.mp4"), 60, 10)
    # The slot is free again.
    ffmpeg(*_encode_args(server, str(tmp_path / "after.mp4"))).check()


def test_server_stopped_mid_run(start_refserver, tmp_path: Path) -> None:
    """SIGTERM drains for --drain-timeout, then closes: the client ends with an error, nothing
    hangs."""
    server = start_refserver("--engine", "x264", "--drain-timeout", "0.5")
    client = subprocess.Popen(
        [
            str(REFCLIENT),
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-re",
            *lavfi("320x240", 300),
            "-pix_fmt",
            "nv12",
            "-c:v",
            "h264_videotoolbox_remote",
            *remote(server),
            "-g",
            "30",
            "-y",
            str(tmp_path / "out.mp4"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        server.wait_for_log(r"CONFIGURE ok mode=encode")
        time.sleep(0.5)
        assert server.stop(signal.SIGTERM, timeout=15) == 0
        _, err = client.communicate(
            timeout=15
        )  # not 300 frames in real time (10 s): the session was closed
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    assert client.returncode != 0, err
    assert "SUMMARY mode=encode" in server.stderr_text()
