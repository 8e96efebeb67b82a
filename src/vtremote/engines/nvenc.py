"""NVIDIA engine: h264_nvenc / hevc_nvenc encoders, NVDEC decoding through the CUDA hwaccel.

Needs an NVIDIA GPU, its driver (libcuda, libnvidia-encode) and an FFmpeg build
with nvenc/nvdec; the probe reports which one is missing ("Cannot load
libcuda.so.1"). Encoding takes NV12/P010 frames from system memory.
"""

from __future__ import annotations

from vtremote.engines.hardware import Features, HardwareEngine
from vtremote.wire.settings import (
    H264_BASELINE,
    H264_CONSTRAINED_BASELINE,
    H264_CONSTRAINED_HIGH,
    H264_HIGH,
    H264_MAIN,
)


class NvencEngine(HardwareEngine):
    name = "nvenc"
    description = "NVIDIA: h264/hevc_nvenc encode, NVDEC (cuda hwaccel) decode"
    encoders = {"h264": "h264_nvenc", "hevc": "hevc_nvenc"}
    decoders = {"h264": "h264", "hevc": "hevc"}
    hwaccel_device = "cuda"
    requirement = "needs an NVIDIA GPU with its driver (libcuda.so.1, libnvidia-encode.so.1)"
    features = Features(
        forced_idr=("forced-idr", "1"),
        # No lookahead and one frame of output delay keep the session within 8 frames.
        realtime={"tune": "ull", "zerolatency": "1", "delay": "0"},
        speed=({"preset": "p2"}, {"preset": "p5"}),
        cbr={"rc": "cbr"},
        quality="cq",
        entropy="coder",
        spatial_aq="spatial-aq",
        strict_gop={"strict_gop": "1", "no-scenecut": "1"},
        max_bframes=4,
        # h264_nvenc knows baseline/main/high; its baseline is constrained, and
        # constrained high is High without B-frames (the client asks for none then).
        h264_profiles={
            H264_BASELINE: "baseline",
            H264_CONSTRAINED_BASELINE: "baseline",
            H264_MAIN: "main",
            H264_HIGH: "high",
            H264_CONSTRAINED_HIGH: "high",
        },
        delay_option="delay",
    )
