"""Synthetic test media, made in-process with PyAV (never downloaded, no ffmpeg binary).

Helpers other tests import:

* :func:`testsrc_frames` - frames from a lavfi source (``testsrc2``, ``testsrc``,
  ``mandelbrot``, ``smptebars``, or ``noise``: testsrc2 with strong temporal noise);
* :func:`make_h264_mp4` / :func:`make_hevc_mp4` - local libx264/libx265 encodes;
* :func:`make_av_mkv` - MKV with H.264 video, an audio stream (AAC or FLAC from a
  sine source) and a SubRip subtitle stream;
* :func:`decode_video` - decode a file's first video stream, optionally converted to
  NV12/P010 the way the server converts (swscale via ``VideoFrame.reformat``).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.frame import PictureType

SOURCES = ("testsrc2", "testsrc", "mandelbrot", "smptebars", "noise")


def testsrc_frames(
    n: int,
    width: int,
    height: int,
    pix_fmt: str = "nv12",
    rate: int = 30,
    source: str = "testsrc2",
) -> list[av.VideoFrame]:
    """``n`` frames of a lavfi source as ``pix_fmt`` with pts 0..n-1 in time base 1/rate.

    ``pict_type`` is reset (lavfi marks every frame I, which an encoder would
    take as a forced keyframe).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")
    graph = av.filter.Graph()
    size = f"size={width}x{height}:rate={rate}"
    if source == "noise":
        src = graph.add("testsrc2", size)
        noise = graph.add("noise", "alls=40:allf=t+u")
        src.link_to(noise)
        last = noise
    else:
        src = graph.add(source, size)
        last = src
    fmt = graph.add("format", pix_fmt)
    sink = graph.add("buffersink")
    last.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    out = []
    for i in range(n):
        frame = graph.pull()
        assert isinstance(frame, av.VideoFrame)
        frame.pts = i
        frame.time_base = Fraction(1, rate)
        frame.pict_type = PictureType.NONE
        out.append(frame)
    return out


# A helper, not a test (pytest collects test*).
testsrc_frames.__test__ = False  # type: ignore[attr-defined]


def lavfi_frames(n: int, size: str = "320x240", rate: int = 30) -> list[av.VideoFrame]:
    """The first ``n`` frames of lavfi ``testsrc2`` as it decodes (yuv420p, each marked I)."""
    with av.open(f"testsrc2=size={size}:rate={rate}", format="lavfi") as c:
        return [f for f, _ in zip(c.decode(video=0), range(n), strict=False)]


def encode_file(
    path: Path | str,
    codec: str,
    frames: list[av.VideoFrame],
    pix_fmt: str,
    rate: int,
    options: dict[str, str] | None = None,
    bframes: int | None = None,
    fmt: str | None = None,
    time_base: Fraction | None = None,
    bit_rate: int = 0,
) -> Path:
    """Write ``frames`` with an FFmpeg encoder into a container (frames keep their pts).

    ``bframes`` None leaves the encoder's default; ``fmt`` None lets the name choose.
    """
    path = Path(path)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = frames[0].width, frames[0].height
        stream.pix_fmt = pix_fmt
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if bframes is not None:
            stream.codec_context.max_b_frames = bframes
        if bit_rate:
            stream.codec_context.bit_rate = bit_rate
        stream.codec_context.options = options or {}
        for frame in frames:
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)
    return path


def make_h264_mp4(
    path: Path | str,
    n: int,
    width: int,
    height: int,
    bframes: int = 2,
    pix_fmt: str = "yuv420p",
    rate: int = 30,
    source: str = "testsrc2",
    gop: int = 30,
) -> Path:
    """An MP4 (avcC extradata) with ``n`` frames of H.264 from libx264."""
    frames = testsrc_frames(n, width, height, pix_fmt, rate, source)
    params = f"keyint={gop}:bframes={bframes}:log=-1"
    options = {"preset": "veryfast", "x264-params": params}
    return encode_file(path, "libx264", frames, pix_fmt, rate, options, bframes)


def make_hevc_mp4(
    path: Path | str,
    n: int,
    width: int,
    height: int,
    ten_bit: bool = True,
    rate: int = 30,
    source: str = "testsrc2",
    bframes: int = 2,
) -> Path:
    """An MP4 (hvcC extradata) with ``n`` frames of HEVC from libx265 (Main10 if ``ten_bit``)."""
    pix_fmt = "yuv420p10le" if ten_bit else "yuv420p"
    frames = testsrc_frames(n, width, height, pix_fmt, rate, source)
    params = f"log-level=error:info=0:bframes={bframes}:frame-threads=1"
    options = {"preset": "ultrafast", "x265-params": params, "tag": "hvc1"}
    return encode_file(path, "libx265", frames, pix_fmt, rate, options, bframes)


def sine_frames(
    seconds: float,
    sample_rate: int = 48000,
    frame_size: int = 1024,
    frequency: float = 440.0,
    layout: str = "stereo",
) -> list[av.AudioFrame]:
    """Planar float sine frames (``fltp``) of ``frame_size`` samples."""
    total = int(seconds * sample_rate)
    t = np.arange(total, dtype=np.float64) / sample_rate
    wave = (0.25 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    channels = 2 if layout == "stereo" else 1
    out = []
    for start in range(0, total, frame_size):
        chunk = wave[start : start + frame_size]
        if len(chunk) < frame_size:
            chunk = np.pad(chunk, (0, frame_size - len(chunk)))
        data = np.stack([chunk] * channels)
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        out.append(frame)
    return out


def subtitle_cues(seconds: float, every: float = 0.5) -> list[tuple[float, float, str]]:
    """(start, duration, text) cues covering ``seconds``."""
    cues = []
    t, i = 0.0, 0
    while t < seconds:
        cues.append((t, min(every, seconds - t), f"cue {i}"))
        t += every
        i += 1
    return cues


def make_av_mkv(
    path: Path | str,
    n: int = 30,
    width: int = 320,
    height: int = 180,
    rate: int | Fraction = 30,
    bframes: int = 2,
    audio: str = "aac",
    source: str = "testsrc2",
) -> Path:
    """An MKV with H.264 video (``n`` frames), an audio stream (``aac`` or ``flac``,
    a 440 Hz sine as long as the video) and a SubRip subtitle stream (one cue per
    half second, text ``cue N``), muxed as pre-built packets."""
    if audio not in ("aac", "flac"):
        raise ValueError(f"audio must be aac or flac, not {audio!r}")
    path = Path(path)
    seconds = n / rate
    frames = testsrc_frames(n, width, height, "yuv420p", rate, source)
    sample_rate = 48000
    with av.open(str(path), "w", format="matroska") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.max_b_frames = bframes
        video.codec_context.options = {
            "preset": "veryfast",
            "x264-params": f"bframes={bframes}:log=-1",
        }
        sound = out.add_stream(audio, rate=sample_rate)
        sound.layout = "stereo"
        # No encoder: the SubRip packets are built here (text cues).
        subs = out.add_mux_stream("subrip")
        subs.time_base = Fraction(1, 1000)

        packets: list[av.Packet] = []
        for frame in frames:
            packets += video.encode(frame)
        packets += video.encode(None)
        for aframe in sine_frames(seconds, sample_rate):
            packets += sound.encode(aframe)
        packets += sound.encode(None)
        packets += subrip_packets(subs, subtitle_cues(seconds))
        mux_in_time_order(out, packets)
    return path


def subrip_packets(
    stream: av.stream.Stream, cues: list[tuple[float, float, str]]
) -> list[av.Packet]:
    """SubRip packets of (start, duration, text) cues for ``stream`` (time base 1/1000)."""
    packets = []
    for start, dur, text in cues:
        pkt = av.Packet(text.encode())
        pkt.stream = stream
        pkt.time_base = stream.time_base
        pkt.pts = pkt.dts = round(start * 1000)
        pkt.duration = round(dur * 1000)
        packets.append(pkt)
    return packets


def mux_in_time_order(out: av.container.OutputContainer, packets: list[av.Packet]) -> None:
    """Mux packets of several streams interleaved by time (dts, else pts), as muxers want."""
    packets.sort(key=lambda p: float((p.dts if p.dts is not None else p.pts or 0) * p.time_base))
    for pkt in packets:
        out.mux(pkt)


def decode_video(path: Path | str, pix_fmt: str | None = None) -> list[av.VideoFrame]:
    """All frames of the first video stream of ``path`` (in presentation order),
    converted to ``pix_fmt`` with ``VideoFrame.reformat`` if given."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            out.append(frame.reformat(format=pix_fmt) if pix_fmt else frame)
    return out


def video_packets(path: Path | str) -> tuple[bytes, list[av.Packet]]:
    """(extradata, packets in decode order) of the first video stream of ``path``."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        extradata = bytes(stream.codec_context.extradata or b"")
        packets = [p for p in container.demux(stream) if p.size]
    return extradata, packets


def plane_arrays(frame: av.VideoFrame) -> list[np.ndarray]:
    """The meaningful bytes of each plane (linesize padding removed), for pixel comparisons."""
    out = []
    bps = 2 if frame.format.name in ("p010le", "yuv420p10le") else 1
    for i, plane in enumerate(frame.planes):
        width_bytes = (
            plane.width * bps * (2 if frame.format.name in ("nv12", "p010le") and i == 1 else 1)
        )
        arr = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        out.append(arr[:, :width_bytes].copy())
    return out
