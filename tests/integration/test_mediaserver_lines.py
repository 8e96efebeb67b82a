"""Whole families of media-server lines run on a real ``vtremoted`` instead of a real ffmpeg.

Jellyfin 10.10's hardware lines (VAAPI with ``-sei -a53_cc``, NVENC with ``-preset p1`` and
its rate-control knobs, QSV with look-ahead and async depth), Emby's ``-force_key_frames``
expression, trickplay lines (keyframes only into JPEG tiles), ``-re`` live reads, and
jellyfin-ffmpeg's stdin keys (``?`` help, ``p``/``u`` throttling). Outputs are decoded with
PyAV; the server's SUMMARY lines say what it did.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import av
import pytest

from mediaserver_helpers import RATE, make_movie, read_hls, run_ffmpeg

SECONDS = 2.0
FRAMES = round(SECONDS * RATE)
HEAD = (
    "-analyzeduration 200M -probesize 1G {hw} -noautorotate -i file:{movie} -noautoscale "
    "-map_metadata -1 -map_chapters -1 -threads 0 -map 0:0 -map 0:1 -map -0:s"
)
TAIL = (
    "-codec:a:0 libfdk_aac -ac 2 -ab 128000 -af volume=2 -copyts -avoid_negative_ts disabled "
    "-max_muxing_queue_size 2048 -f hls -max_delay 5000000 -hls_time 1 -hls_segment_type mpegts "
    "-start_number 0 -hls_segment_filename {out}/x%d.ts -hls_playlist_type vod -hls_list_size 0 "
    "-y {out}/x.m3u8"
)
#: The encoder part of each line as Jellyfin 10.10 writes it for the hardware kind.
HARDWARE = {
    "vaapi": (
        "-init_hw_device vaapi=va:/dev/dri/renderD128,driver=iHD -filter_hw_device va "
        "-hwaccel vaapi -hwaccel_output_format vaapi",
        "-codec:v:0 h264_vaapi -rc_mode VBR -b:v 1200000 -maxrate 1200000 -bufsize 2400000 "
        "-sei -a53_cc -low_power 1 -async_depth 1 -compression_level 1 -profile:v:0 high "
        "-level 51 -force_key_frames:0 expr:gte(t,n_forced*1) "
        "-vf setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709,"
        "scale_vaapi=w=256:h=144:format=nv12:extra_hw_frames=24",
        ["-rc_mode VBR ignored", "-low_power 1 ignored", "-async_depth 1 ignored"],
    ),
    "nvenc": (
        "-init_hw_device cuda=cu:0 -filter_hw_device cu -hwaccel cuda -hwaccel_output_format cuda",
        "-codec:v:0 h264_nvenc -preset p1 -tune ll -rc vbr -cq 28 -spatial-aq 1 -multipass qres "
        "-b_ref_mode middle -b:v 1200000 -maxrate 1200000 -bufsize 2400000 -profile:v:0 high "
        "-g:v:0 30 -keyint_min:v:0 30 -vf setparams=color_primaries=bt709:color_trc=bt709:"
        "colorspace=bt709,scale_cuda=w=256:h=144:format=yuv420p",
        ["-rc vbr ignored", "-multipass qres ignored", "-b_ref_mode middle ignored"],
    ),
    "qsv": (
        "-init_hw_device vaapi=va:,kernel_driver=i915,driver=iHD -init_hw_device qsv=qs@va "
        "-filter_hw_device qs -hwaccel qsv -hwaccel_output_format qsv",
        "-codec:v:0 h264_qsv -mbbrc 1 -preset veryfast -look_ahead 0 -async_depth 1 -extbrc 1 "
        "-b:v 1200000 -maxrate 1200000 -bufsize 2400000 -rc_init_occupancy 1200000 "
        "-profile:v:0 high -level 51 -g:v:0 30 -keyint_min:v:0 30 "
        "-vf setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709,"
        "scale_qsv=w=256:h=144:format=nv12",
        ["-mbbrc 1 ignored", "-look_ahead 0 ignored", "-extbrc 1 ignored"],
    ),
}


@pytest.fixture
def movie(tmp_path: Path) -> Path:
    return make_movie(tmp_path / "movie.mkv", SECONDS)


@pytest.mark.parametrize("kind", sorted(HARDWARE))
def test_jellyfin_hardware_line_runs_on_the_server(
    tmp_path: Path,
    movie: Path,
    server,
    kind: str,  # type: ignore[no-untyped-def]
) -> None:
    hw, encoder, ignored = HARDWARE[kind]
    out = tmp_path / "t"
    out.mkdir()
    line = " ".join([HEAD.format(hw=hw, movie=movie), encoder, TAIL.format(out=out)])
    result = run_ffmpeg(tmp_path, line.split(), host=server.addr)
    assert result.returncode == 0, result.stderr
    assert "handing the command line" not in result.stderr
    for text in ignored:  # one log line for each hardware option ignored
        assert result.stderr.count(text) == 1, result.stderr
    assert "audio encoder libfdk_aac runs as aac here" in result.stderr
    hls = read_hls(out / "x.m3u8")
    assert hls.video_frames == FRAMES
    assert {s.size for s in hls.segments} == {(256, 144)}
    assert {s.audio_codec for s in hls.segments} == {"aac"}
    for seg in hls.segments:
        assert seg.video_frames[0][1], f"{seg.name} does not start with a keyframe"
    assert server.encoded_frames() == FRAMES


def test_emby_key_frame_expression_gives_a_keyframe_every_3_seconds(
    tmp_path: Path,
    server,  # type: ignore[no-untyped-def]
) -> None:
    movie = make_movie(tmp_path / "long.mkv", 7.0, width=160, height=90)
    out = tmp_path / "out.mkv"
    expression = "expr:if(isnan(prev_forced_t),eq(t,t),gte(t,prev_forced_t+3))"
    args = f"-i {movie} -map 0:0 -c:v:0 h264_nvenc -b:v 400000 -g 300 -force_key_frames:0 "
    args += f"{expression} -f matroska -y {out}"
    result = run_ffmpeg(tmp_path, args.split(), host=server.addr)
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as c:
        keys = [round(float(f.time), 3) for f in c.decode(video=0) if f.key_frame]
    assert keys == [0.0, 3.0, 6.0]
    assert server.encoded_frames() == round(7.0 * RATE)


def test_trickplay_line_decodes_keyframes_on_the_server(
    tmp_path: Path,
    server,  # type: ignore[no-untyped-def]
) -> None:
    movie = make_movie(tmp_path / "tp.mkv", 6.0, gop=RATE)  # a keyframe every second
    tiles = tmp_path / "trickplay"
    tiles.mkdir()
    args = (
        "-loglevel error -an -sn -dn -skip_frame nokey -threads 1 -i "
        f"file:{movie} -an -sn -dn -vf fps=1/2,scale=160:-2 -threads 1 -c:v mjpeg "
        f"-qscale:v 4 -f image2 {tiles}/%08d.jpg"
    ).split()
    result = run_ffmpeg(tmp_path, args, host=server.addr)
    assert result.returncode == 0, result.stderr
    m = server.wait_for_log(r"SUMMARY mode=decode packets_in=(\d+) frames_out=(\d+)")
    assert (int(m.group(1)), int(m.group(2))) == (6, 6)  # the keyframes only
    images = sorted(tiles.iterdir())
    assert [p.name for p in images] == ["00000001.jpg", "00000002.jpg", "00000003.jpg"]
    for p in images:
        with av.open(str(p)) as c:
            frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (160, 90)


def test_question_mark_lists_keys_and_the_probe_counts_frames(tmp_path: Path) -> None:
    """Jellyfin's runtime-key probe: '?' on stdin, stderr read to the end."""
    env = {**os.environ, "HOME": str(tmp_path), "VTREMOTE_STATE_DIR": str(tmp_path / "s")}
    env.pop("VTREMOTE_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "vtremote.cli.ffmpeg"]
        + ["-hide_banner", "-f", "lavfi", "-i", "nullsrc=s=1x1:d=500", "-f", "null", "-"],
        input="?",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "p      pause transcoding\n" in proc.stderr
    assert "u      unpause transcoding\n" in proc.stderr
    assert "q      quit\n" in proc.stderr
    assert "frame=12500 " in proc.stderr  # 500 s at nullsrc's 25 fps, as ffmpeg counts


def _ffmpeg_process(tmp_path: Path, args: list[str], host: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREMOTE_")}
    env.update(HOME=str(tmp_path), VTREMOTE_STATE_DIR=str(tmp_path / "s"), VTREMOTE_HOST=host)
    return subprocess.Popen(
        [sys.executable, "-m", "vtremote.cli.ffmpeg", *args],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


PINGS = re.compile(r"<- ping", re.IGNORECASE)


class StderrWatch:
    """Collects a process's stderr on a thread; waits for a text to appear."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.text = ""
        self.changed = threading.Condition()
        assert proc.stderr is not None
        self.thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:  # type: ignore[no-untyped-def]
        for ch in iter(lambda: stream.read(1), ""):
            with self.changed:
                self.text += ch
                self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: text in self.text, timeout):
                raise AssertionError(f"{text!r} not seen in:\n{self.text}")


def test_pause_and_resume_keep_the_session_and_every_frame(
    tmp_path: Path,
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    # A short idle timeout: the session lives through the pause only on the client's PINGs.
    server = start_server("--engine", "x264", "--idle-timeout", "1.5", "--log-level", "debug")
    out = tmp_path / "paused.mkv"
    args = (
        "-re -f lavfi -i testsrc2=size=160x90:rate=30:duration=3 -c:v libx264 -b:v 300k "
        f"-f matroska -y {out}"
    ).split()
    proc = _ffmpeg_process(tmp_path, args, server.addr)
    watch = StderrWatch(proc)
    assert proc.stdin is not None
    watch.wait_for("frame=")
    proc.stdin.write("p")
    proc.stdin.flush()
    watch.wait_for("paused on stdin")
    before = len(PINGS.findall(server.stderr_text()))
    # Three keepalive PINGs while paused (past the server's idle timeout), and still open.
    server.wait_for_log(rf"(?is)(?:.*<- ping){{{before + 3}}}", timeout=60)
    proc.stdin.write("u")
    proc.stdin.flush()
    watch.wait_for("resumed on stdin")
    proc.stdin.close()
    assert proc.wait(120) == 0, watch.text
    watch.thread.join(10)
    assert proc.stderr is not None
    proc.stderr.close()
    with av.open(str(out)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    assert len(pts) == 90 and pts == sorted(set(pts))  # no frame lost or repeated
    assert server.encoded_frames() == 90
    assert "idle timeout" not in server.stderr_text()


def test_re_reads_a_live_input_whole(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    """-re with no burst takes every frame to the server (the pace itself: test_keyframes'
    neighbour tests/unit/test_read_rate.py, on a clock of its own)."""
    out = tmp_path / "live.mkv"
    args = (
        "-stats -re -readrate_initial_burst 0 -f lavfi -i testsrc2=size=160x90:rate=30:duration=2 "
        f"-c:v libx264 -b:v 300k -f matroska -y {out}"
    ).split()
    result = run_ffmpeg(tmp_path, args, host=server.addr)
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 60
    assert server.encoded_frames() == 60


def test_q_while_paused_finishes_the_output(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "stopped.mkv"
    args = (
        "-re -f lavfi -i testsrc2=size=160x90:rate=30:duration=30 -c:v libx264 -b:v 300k "
        f"-f matroska -y {out}"
    ).split()
    proc = _ffmpeg_process(tmp_path, args, server.addr)
    watch = StderrWatch(proc)
    assert proc.stdin is not None
    watch.wait_for("frame=")
    proc.stdin.write("p")
    proc.stdin.flush()
    watch.wait_for("paused on stdin")
    proc.stdin.write("q")
    proc.stdin.flush()
    assert proc.wait(120) == 0, watch.text
    watch.thread.join(10)
    assert proc.stderr is not None
    proc.stderr.close()
    proc.stdin.close()
    with av.open(str(out)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert 0 < frames < 900 and server.encoded_frames() == frames
