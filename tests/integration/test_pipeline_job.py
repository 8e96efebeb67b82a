"""The pipeline layer on its own: a whole job from Python, and what a failed run leaves behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from media import decode_video, make_h264_mp4
from vtremote.errors import JobError
from vtremote.pipeline import InputSpec, Job, JobSpec, OutputSpec, RemoteOptions

REMOTE_H264 = "h264_videotoolbox_remote"


def test_job_from_python_without_the_cli(server, tmp_path: Path) -> None:
    src = make_h264_mp4(tmp_path / "in.mp4", 30, 320, 240)
    out = tmp_path / "out.mkv"
    spec = JobSpec(
        inputs=[InputSpec(str(src))],
        output=OutputSpec(
            str(out),
            codecs={"v": REMOTE_H264},
            video={"bitrate": 500_000, "gop": 15},
            video_filter="scale=160:120",
            remote=RemoteOptions(host=server.addr),
        ),
    )
    seen: list[bool] = []
    stats = Job(spec, on_progress=seen.append).run()
    frames = decode_video(out)
    assert len(frames) == 30 == stats.frames
    assert (frames[0].width, frames[0].height) == (160, 120)
    assert seen and seen[-1] is True  # the final forced update
    assert stats.streams[0]["strategy"] == "transcode"  # H.264 packets in, the server scales and encodes
    assert stats.remote[0]["server"] == server.addr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_existing_output_is_refused_before_any_work(tmp_path: Path) -> None:
    src = make_h264_mp4(tmp_path / "in.mp4", 5, 64, 64)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(JobError, match="already exists"):
        Job(JobSpec(inputs=[InputSpec(str(src))], output=OutputSpec(str(out), codecs={"v": "libx264"}))).run()
    assert out.read_bytes() == b"keep me"


def _encode_until_killed(server, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Start a long remote encode, kill the server once output is being written, wait for the CLI."""
    args = [
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "120", "-c:v", REMOTE_H264,
        "-vt_remote_host", server.addr, "-vt_remote_timeout_ms", "1000", "-y", *extra, str(out),
    ]
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; from vtremote.cli.main import main; sys.exit(main())", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:
        deadline = time.monotonic() + 60
        temp = None
        while time.monotonic() < deadline and temp is None and proc.poll() is None:
            written = [p for p in out.parent.iterdir() if p.name.startswith(".") and p.stat().st_size > 4096]
            temp = written[0] if written else None
            time.sleep(0.05)
        if temp is None:
            proc.kill()
        assert not out.exists()  # the target name appears only on success
        server.stop(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=60)
    assert temp is not None, f"the run wrote nothing: {stderr}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_failed_run_leaves_no_output(start_server, tmp_path: Path) -> None:
    srv = start_server("--engine", "x264")
    out = tmp_path / "o" / "out.mp4"
    out.parent.mkdir()
    result = _encode_until_killed(srv, out)
    assert result.returncode == 1, result.stderr
    assert srv.addr in result.stderr
    assert list(out.parent.iterdir()) == []  # neither the target nor the temporary file


def test_failed_run_keeps_a_marked_partial_file_on_request(start_server, tmp_path: Path) -> None:
    srv = start_server("--engine", "x264")
    out = tmp_path / "o" / "out.mkv"
    out.parent.mkdir()
    result = _encode_until_killed(srv, out, "-vt_remote_keep_partial", "1")
    assert result.returncode == 1, result.stderr
    assert [p.name for p in out.parent.iterdir()] == ["out.partial.mkv"]
    assert "out.partial.mkv" in result.stderr
