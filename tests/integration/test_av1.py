"""AV1, an extension codec, through a real ``vtremoted``: negotiated, encoded, decoded.

HELLO names a v1 codec and the server offers ``ext:codecs=av1`` in HELLO_ACK; only
then does the client ask for AV1 in CONFIGURE (wire/extensions.py), so a v1 peer
never sees the name. Outputs are decoded with PyAV (dav1d): frame count, keyframes
at the GOP and at a forced key frame, presentation order.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import pytest
from av.video.frame import PictureType

from media import make_h264_mp4, testsrc_frames
from mediaserver_helpers import make_movie, run_ffmpeg
from vtremote.cli.main import main
from vtremote.client import RemoteDecoder, RemoteEncoder
from vtremote.errors import UnsupportedConfigError
from vtremote.wire import extensions as ext
from vtremote.wire.av1 import AV1C_MARKER_VERSION

W, H, N = 160, 96, 30
pytestmark = pytest.mark.skipif(
    not {"libsvtav1", "libdav1d"} <= av.codecs_available, reason="PyAV without SVT-AV1/dav1d"
)


def encode_remote(addr: str, n: int = N, forced: tuple[int, ...] = (13,)) -> tuple:
    frames = testsrc_frames(n, W, H, "nv12")
    packets: list[av.Packet] = []
    with RemoteEncoder(
        addr,
        "av1",
        width=W,
        height=H,
        time_base=Fraction(1, 30),
        framerate=30,
        bitrate=300_000,
        constant_bit_rate=True,
        gop=10,
        inflight=8,
    ) as enc:
        assert (ext.OPT_CODEC, "av1") in enc.options
        for i, frame in enumerate(frames):
            if i in forced:
                frame.pict_type = PictureType.I
            packets += enc.encode(frame)
        packets += enc.flush()
        record = enc.config_record
    return record, packets


def test_av1_encode_through_vtremoted(server) -> None:
    record, packets = encode_remote(server.addr)
    server.wait_for_log(r"CONFIGURE ok mode=encode codec=av1 .*libsvtav1")
    assert "unknown option ext_codec" not in server.stderr_text()  # the session consumed it
    assert record[0] == AV1C_MARKER_VERSION
    assert len(packets) == N
    dec = av.CodecContext.create("libdav1d", "r")
    dec.extradata = record
    frames: list[av.VideoFrame] = []
    for p in packets:
        packet = av.Packet(bytes(p))
        packet.pts, packet.dts = p.pts, p.dts
        frames += dec.decode(packet)
    frames += dec.decode(None)
    assert len(frames) == N
    assert [f.pts for f in frames] == list(range(N))
    assert [f.pts for f in frames if f.key_frame] == [0, 10, 13, 23]
    assert (frames[0].width, frames[0].height) == (W, H)


def test_av1_decode_through_vtremoted(server) -> None:
    record, packets = encode_remote(server.addr, 12, ())
    frames: list[av.VideoFrame] = []
    with RemoteDecoder(
        server.addr, "av1", width=W, height=H, extradata=record, time_base=Fraction(1, 30)
    ) as dec:
        for p in packets:
            frames += dec.decode(p)
        frames += dec.flush()
    assert len(frames) == 12
    assert [f.pts for f in frames] == sorted(p.pts for p in packets)


def test_a_server_without_extensions_is_never_asked_for_av1(start_server) -> None:
    plain = start_server("--engine", "x264", "--no-extensions")
    with pytest.raises(UnsupportedConfigError, match="does not offer av1"):
        encode_remote(plain.addr, 2)
    # The v1 server's log shows a v1 HELLO codec, and no CONFIGURE came.
    plain.wait_for_log(r"codec=hevc")
    assert "CONFIGURE" not in plain.stderr_text()


# --- the CLI: -c:v av1_remote, and packet transcode with AV1 on either side ----------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> dict:
    rc = main([str(a) for a in args] + ["--json", "-v", "info"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def _video(summary: dict) -> dict:
    return next(s for s in summary["streams"] if s["type"] == "video")


def check_output(path: Path, codec: str, n: int, keys: list[int]) -> None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.codec.canonical_name == codec
        frames = list(container.decode(stream))
    assert len(frames) == n
    assert [i for i, f in enumerate(frames) if f.key_frame] == keys
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == n


@pytest.mark.parametrize("suffix", ["mkv", "mp4"])
def test_cli_encodes_av1_remote(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    out = tmp_path / f"out.{suffix}"
    run_cli(
        capsys,
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x96:rate=30",
        "-t",
        "1",
        "-c:v",
        "av1_remote",
        "-g",
        "10",
        "-b:v",
        "300k",
        "-vt_remote_host",
        server.addr,
        out,
    )
    check_output(out, "av1", 30, [0, 10, 20])


def test_packet_transcode_to_and_from_av1(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_h264_mp4(tmp_path / "in.mp4", 30, 160, 96)
    as_av1 = tmp_path / "av1.mkv"
    common = ("-g", "10", "-b:v", "300k", "-vt_remote_host", server.addr)
    summary = run_cli(capsys, "-y", "-i", src, "-c:v", "av1_remote", *common, as_av1)
    assert _video(summary)["strategy"] == "transcode"
    server.wait_for_log(r"transcode h264 160x96 .* -> av1 160x96")
    check_output(as_av1, "av1", 30, [0, 10, 20])
    back = tmp_path / "back.mkv"
    summary = run_cli(capsys, "-y", "-i", as_av1, "-c:v", "h264_videotoolbox_remote", *common, back)
    assert _video(summary)["strategy"] == "transcode"  # the server decodes AV1 itself
    server.wait_for_log(r"transcode av1 160x96 .* -> h264 160x96")
    check_output(back, "h264", 30, [0, 10, 20])


def test_jellyfin_av1_line_through_vtremote_ffmpeg(server, tmp_path: Path) -> None:
    movie = make_movie(tmp_path / "movie.mkv", 2.0)
    out = tmp_path / "out.mp4"
    args = [
        "-analyzeduration",
        "200M",
        "-f",
        "matroska,webm",
        "-i",
        f"file:{movie}",
        "-map_metadata",
        "-1",
        "-map",
        "0:0",
        "-map",
        "0:1",
        "-codec:v:0",
        "av1_nvenc",
        "-preset",
        "p1",
        "-b:v",
        "400000",
        "-maxrate",
        "400000",
        "-bufsize",
        "800000",
        "-g:v:0",
        "30",
        "-keyint_min:v:0",
        "30",
        "-codec:a:0",
        "copy",
        "-y",
        str(out),
    ]
    result = run_ffmpeg(tmp_path, args, host=server.addr)
    assert result.returncode == 0, result.stderr
    server.wait_for_log(r"CONFIGURE ok mode=(encode|transcode) codec=av1 ")
    check_output(out, "av1", 60, [0, 30])
