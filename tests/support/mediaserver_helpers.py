"""Helpers of the ``vtremote-ffmpeg`` tests: run the command in its own process, make
media-server-like test files, check HLS sets the way a player would read them."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from media import mux_in_time_order, sine_frames, subrip_packets, testsrc_frames

RATE = 30


def run_ffmpeg(
    tmp_path: Path,
    args: list[str],
    *,
    host: str | None = None,
    env: dict[str, str] | None = None,
    config: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``vtremote-ffmpeg ARGS`` with a clean environment: no user config, state in tmp."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VTREMOTE_")}
    clean.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        VTREMOTE_STATE_DIR=str(tmp_path / "state"),
    )
    if host is not None:
        clean["VTREMOTE_HOST"] = host
    if config is not None:
        path = tmp_path / "vtremote.toml"
        path.write_text(config)
        clean["VTREMOTE_CONFIG"] = str(path)
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "vtremote.cli.ffmpeg", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean,
        stdin=subprocess.DEVNULL,
    )


def counters(tmp_path: Path) -> dict[str, int]:
    import json

    data: dict[str, int] = json.loads((tmp_path / "state" / "ffmpeg-counters.json").read_text())
    return data


def make_movie(
    path: Path,
    seconds: float = 3.0,
    width: int = 320,
    height: int = 180,
    gop: int = 30,
    audio_layout: str = "stereo",
) -> Path:
    """An MKV like a media library's: H.264 (keyframe every ``gop`` frames, B-frames), AAC,
    SubRip."""
    n = round(seconds * RATE)
    frames = testsrc_frames(n, width, height, "yuv420p", RATE)
    with av.open(str(path), "w", format="matroska") as out:
        video = out.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.options = {
            "preset": "veryfast",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2:log=-1",
        }
        sound = out.add_stream("aac", rate=48000)
        sound.layout = audio_layout
        subs = out.add_mux_stream("subrip")
        subs.time_base = Fraction(1, 1000)
        packets: list[av.Packet] = []
        for frame in frames:
            packets += video.encode(frame)
        packets += video.encode(None)
        for aframe in sine_frames(seconds, 48000, layout=audio_layout):
            packets += sound.encode(aframe)
        packets += sound.encode(None)
        cues = [(i * 0.5, 0.5, f"cue {i}") for i in range(int(seconds * 2))]
        packets += subrip_packets(subs, cues)
        mux_in_time_order(out, packets)
    return path


@dataclass
class Segment:
    name: str
    duration: float
    video_frames: list[tuple[float, bool]] = field(default_factory=list)  # (time s, keyframe)
    first_video_packet_key: bool | None = None
    video_codec: str | None = None
    size: tuple[int, int] | None = None
    pix_fmt: str | None = None
    codec_tag: str | None = None
    audio_codec: str | None = None
    audio_channels: int = 0
    audio_samples: int = 0
    audio_rate: int = 0
    audio: list[np.ndarray] = field(default_factory=list)


@dataclass
class HlsSet:
    text: str
    media_sequence: int
    init: str | None
    segments: list[Segment]

    @property
    def total(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def video_frames(self) -> int:
        return sum(len(s.video_frames) for s in self.segments)

    def audio_rms(self) -> float:
        samples = np.concatenate([a for s in self.segments for a in s.audio], axis=1)
        return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def read_hls(playlist: Path) -> HlsSet:
    """Parse a playlist and decode every segment (init + segment for fMP4), as a player would;
    any decode error fails the test."""
    text = playlist.read_text()
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U", text
    assert "#EXT-X-ENDLIST" in lines, text
    seq = int(next(ln.split(":")[1] for ln in lines if ln.startswith("#EXT-X-MEDIA-SEQUENCE")))
    m = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
    init = m.group(1) if m else None
    segments: list[Segment] = []
    for i, line in enumerate(lines):
        if line.startswith("#EXTINF:"):
            segments.append(Segment(lines[i + 1], float(line[8:].split(",")[0])))
    folder = playlist.parent
    init_bytes = (folder / init).read_bytes() if init else b""
    for seg in segments:
        data = init_bytes + (folder / seg.name).read_bytes()
        # The playlist says what a segment is, as players know it: a last TS segment of a
        # few frames is too short for FFmpeg's format probe.
        with av.open(io.BytesIO(data), format="mp4" if init else "mpegts") as c:
            for stream in c.streams:
                if stream.type == "video":
                    seg.video_codec = stream.codec_context.name
                    seg.codec_tag = stream.codec_tag
                elif stream.type == "audio":
                    seg.audio_codec = stream.codec_context.name
            for packet in c.demux():
                kind = packet.stream.type
                if kind == "video" and packet.size and seg.first_video_packet_key is None:
                    seg.first_video_packet_key = packet.is_keyframe
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        seg.video_frames.append((float(frame.time or 0.0), frame.key_frame))
                        seg.size = (frame.width, frame.height)
                        seg.pix_fmt = frame.format.name
                    elif isinstance(frame, av.AudioFrame):
                        seg.audio_channels = frame.layout.nb_channels
                        seg.audio_samples += frame.samples
                        seg.audio_rate = frame.sample_rate
                        seg.audio.append(
                            frame.to_ndarray().reshape(seg.audio_channels, -1)
                            if frame.format.is_planar is False
                            else frame.to_ndarray()
                        )
    return HlsSet(text, seq, init, segments)


def source_rms(path: Path) -> float:
    with av.open(str(path)) as c:
        arrays = [f.to_ndarray() for f in c.decode(audio=0)]
    return float(np.sqrt(np.mean(np.concatenate(arrays, axis=1).astype(np.float64) ** 2)))
