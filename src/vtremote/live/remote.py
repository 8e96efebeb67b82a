"""A live encoder that runs on a ``vtremoted`` in realtime mode.

The sender's encoder thread drives it like a :class:`~vtremote.live.codec.LiveEncoder`:
one frame in, its packet out. The session asks for ``realtime=1`` and no
B-frames (the server's encoder then holds no frame back), a GOP of the keyframe
interval and the maximum bitrate, which stays fixed (VTR1 has no rate change
within a session). A keyframe request forces an IDR on the next frame. Each
frame waits for its own packet, so the network round trip to the server is part
of the capture-to-display latency.

The server returns Annex B; its parameter sets usually travel only in the
session's configuration record, so they are put in front of every keyframe
that lacks them (a receiver can join on any keyframe).
"""

from __future__ import annotations

import contextlib
import logging
from fractions import Fraction

import av

from vtremote.client.encoder import EncoderSettings, RemoteEncoder
from vtremote.errors import ConfigError, VTRemoteError
from vtremote.live.codec import Encoded, EncoderConfig, parameter_sets
from vtremote.live.protocol import Codec

log = logging.getLogger(__name__)

_CODECS = {Codec.H264: "h264", Codec.HEVC: "hevc"}


class RemoteLiveEncoder:
    """One encode session on ``server`` (``HOST:PORT``); driven by exactly one thread."""

    def __init__(
        self, config: EncoderConfig, server: str, *, token: str = "", timeout: float = 5.0
    ) -> None:
        if config.codec not in _CODECS:
            raise ConfigError(f"a vtremoted encodes H.264 or HEVC, not {config.codec.name}")
        self.config = config
        self.bitrate = max(config.max_bitrate, config.bitrate)
        gop = max(1, round(config.keyint_s * config.fps))
        settings = EncoderSettings(
            bitrate=self.bitrate, maxrate=self.bitrate, gop=gop, max_b_frames=0, realtime=1
        )
        codec = _CODECS[config.codec]
        self._pix_fmt = "nv12"  # 8-bit 4:2:0 for both codecs
        self._enc = RemoteEncoder(
            server,
            codec,
            width=config.width,
            height=config.height,
            pix_fmt=self._pix_fmt,
            time_base=Fraction(1) / config.fps,
            framerate=config.fps,
            token=token,
            timeout=timeout,
            settings=settings,
            inflight=4,
        )
        self._params = self._enc.extradata  # Annex B parameter sets
        self.name = f"vtremoted {server} ({self._enc.engine or '?'})"
        log.info("live: encoding %s with %s", config.codec.name, self.name)

    def set_bitrate(self, bps: int) -> bool:
        return False  # fixed for the session

    def encode(self, frame: av.VideoFrame, index: int, *, keyframe: bool = False) -> list[Encoded]:
        """Encode ``frame`` as frame number ``index``; waits for its packet from the server."""
        c = self.config
        if frame.width != c.width or frame.height != c.height or frame.format.name != self._pix_fmt:
            frame = frame.reformat(width=c.width, height=c.height, format=self._pix_fmt)
        frame.pts = index
        frame.time_base = Fraction(1) / c.fps
        packets = self._enc.encode(frame, keyframe=keyframe)
        # Zero-latency on the server: the packet of this frame is the next to come back.
        packets += self._enc.sync()
        out = []
        for packet in packets:
            data = bytes(packet)
            key = bool(packet.is_keyframe)
            if key and self._params and not parameter_sets(c.codec, data):
                data = self._params + data
            out.append(Encoded(data, key, int(packet.pts if packet.pts is not None else index)))
        return out

    def close(self) -> None:
        with contextlib.suppress(VTRemoteError, OSError):
            self._enc.flush()
        with contextlib.suppress(VTRemoteError, OSError):
            self._enc.close()
