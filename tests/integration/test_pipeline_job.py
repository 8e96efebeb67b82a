"""The pipeline layer on its own: a whole job from Python, and what a failed run leaves behind."""

from __future__ import annotations

import math
import signal
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest
from process_helpers import start_long_encode, written_in

from media import decode_video, make_h264_mp4
from vtremote.errors import JobError
from vtremote.pipeline import InputSpec, Job, JobSpec, OutputSpec, RemoteOptions
from vtremote.pipeline.inputs import lavfi_pixel_format

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
    assert (
        stats.streams[0]["strategy"] == "transcode"
    )  # H.264 packets in, the server scales and encodes
    assert stats.remote[0]["server"] == server.addr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_existing_output_is_refused_before_any_work(tmp_path: Path) -> None:
    src = make_h264_mp4(tmp_path / "in.mp4", 5, 64, 64)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(JobError, match="already exists"):
        Job(
            JobSpec(
                inputs=[InputSpec(str(src))], output=OutputSpec(str(out), codecs={"v": "libx264"})
            )
        ).run()
    assert out.read_bytes() == b"keep me"


def _encode_until_killed(server, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Start a long remote encode, kill the server once output is being written, wait for the
    CLI."""
    with start_long_encode(server.addr, out, "-vt_remote_timeout_ms", "1000", "-y", *extra) as proc:
        deadline = time.monotonic() + 60
        writing = False
        while time.monotonic() < deadline and not writing and proc.poll() is None:
            writing = written_in(proc.pid, out.parent) > 4096  # unnamed or hidden: not out
            time.sleep(0.05)
        if not writing:
            proc.kill()
        assert not out.exists()  # the target name appears only on success
        server.stop(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=60)
    assert writing, f"the run wrote nothing: {stderr}"
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


def _luma_psnr(a: av.VideoFrame, b: av.VideoFrame) -> float:
    ya = a.to_ndarray(format="gray").astype(np.float64)
    yb = b.to_ndarray(format="gray").astype(np.float64)
    mse = float(np.mean((ya - yb) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.mark.parametrize("pix_fmt", [None, "nv12"])
def test_a_lavfi_source_ends_in_the_wire_format_and_keeps_its_picture(
    server, tmp_path: Path, pix_fmt: str | None
) -> None:
    """A remote H.264 encode of a lavfi chain: the graph is asked for NV12 (no conversion
    here); the picture still matches the source's."""
    graph = "testsrc2=size=320x240:rate=30:duration=1"
    out = tmp_path / "out.mkv"
    spec = JobSpec(
        inputs=[InputSpec(graph, format="lavfi")],
        output=OutputSpec(
            str(out),
            codecs={"v": REMOTE_H264},
            pix_fmt=pix_fmt,
            video={"bitrate": 4_000_000},
            remote=RemoteOptions(host=server.addr),
        ),
    )
    assert lavfi_pixel_format(spec.inputs[0], spec.output) == "nv12"
    job = Job(spec)
    job.run()
    assert job.inputs[0].streams[0].format.name == "nv12"  # the graph itself ended in NV12
    frames = decode_video(out)
    with av.open(graph, format="lavfi") as src:
        originals = [f for _, f in zip(range(30), src.decode(video=0), strict=False)]
    assert len(frames) == 30
    assert min(_luma_psnr(a, b) for a, b in zip(frames, originals, strict=True)) > 30


def test_a_lavfi_audio_source_opens_as_given(server, tmp_path: Path) -> None:
    """The NV12 hint cannot end an audio chain: the graph is opened unchanged."""
    out = tmp_path / "out.mka"
    spec = JobSpec(
        inputs=[InputSpec("sine=frequency=440:sample_rate=48000:duration=0.5", format="lavfi")],
        output=OutputSpec(
            str(out),
            codecs={"v": REMOTE_H264, "a": "pcm_s16le"},
            remote=RemoteOptions(host=server.addr),
        ),
    )
    Job(spec).run()
    with av.open(str(out)) as c:
        assert c.streams.audio and not c.streams.video
        assert sum(f.samples for f in c.decode(audio=0)) == 24000


@pytest.mark.parametrize(
    ("graph", "codecs", "extra", "want"),
    [
        ("testsrc2", {"v": REMOTE_H264}, {}, "nv12"),
        (
            "testsrc2",
            {"v": REMOTE_H264},
            {"pix_fmt": "yuv420p"},
            "nv12",
        ),  # H.264 travels as NV12 whatever is asked
        (
            "testsrc2",
            {"v": "hevc_videotoolbox_remote"},
            {},
            None,
        ),  # 8 or 10 bits: the source decides
        ("testsrc2", {"v": "hevc_videotoolbox_remote"}, {"pix_fmt": "p010le"}, "p010le"),
        ("testsrc2", {"v": "hevc_videotoolbox_remote"}, {"pix_fmt": "nv12"}, "nv12"),
        ("testsrc2", {"v": "libx264"}, {}, None),  # a local encoder takes what the source gives
        ("testsrc2", {"v": REMOTE_H264}, {"video_filter": "scale=160:120"}, None),
        ("testsrc2", {"v": REMOTE_H264}, {"size": (160, 120)}, None),
        ("testsrc2", {"v": REMOTE_H264}, {"no_video": True}, None),
        (
            "testsrc2[out0];sine[out1]",
            {"v": REMOTE_H264},
            {},
            None,
        ),  # labelled outputs: not one chain
    ],
)
def test_which_lavfi_sources_get_the_wire_format(
    graph: str, codecs: dict[str, str], extra: dict[str, object], want: str | None
) -> None:
    out = OutputSpec("out.mkv", codecs=codecs, **extra)  # type: ignore[arg-type]
    assert lavfi_pixel_format(InputSpec(graph, format="lavfi"), out) == want
    assert lavfi_pixel_format(InputSpec("in.mp4"), out) is None
