"""NVIDIA engine: h264/hevc/av1_nvenc encoders, NVDEC decoding through the CUDA hwaccel.

Needs an NVIDIA GPU, its driver (libcuda, libnvidia-encode) and an FFmpeg build
with nvenc/nvdec; the probe reports which one is missing ("Cannot load
libcuda.so.1"). Encoding takes NV12/P010 frames from system memory.

Options, as libavcodec/nvenc_h264.c, nvenc_hevc.c and nvenc_av1.c declare them:
``level`` takes NV_ENC_LEVEL_* numbers, which are the codecs' level_idc (41 for
H.264 4.1, 123 for HEVC 4.1, seq_level_idx 9 for AV1 4.1); ``cq`` runs 0..51
(0..63 for AV1); ``coder`` is H.264's.
"""

from __future__ import annotations

from vtremote.engines.hardware import H264_BASELINE_MAIN_HIGH, Features, HardwareEngine
from vtremote.wire.settings import (
    AV1_MAIN,
    H264_CONSTRAINED_HIGH,
    HEVC_MAIN,
    HEVC_MAIN10,
)


class NvencEngine(HardwareEngine):
    name = "nvenc"
    description = "NVIDIA: h264/hevc/av1_nvenc encode, NVDEC (cuda hwaccel) decode"
    encoders = {"h264": "h264_nvenc", "hevc": "hevc_nvenc", "av1": "av1_nvenc"}
    decoders = {"h264": "h264", "hevc": "hevc", "av1": "av1"}
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
        profiles={
            # h264_nvenc knows baseline/main/high; its baseline is constrained, and
            # constrained high is High without B-frames (the client asks for none then).
            "h264": {**H264_BASELINE_MAIN_HIGH, H264_CONSTRAINED_HIGH: "high"},
            "hevc": {HEVC_MAIN: "main", HEVC_MAIN10: "main10"},
            # av1_nvenc has no profile option: it encodes Main from NV12/P010.
            "av1": {AV1_MAIN: ""},
        },
        delay_option="delay",
        per_codec={"av1": {"quality_max": 63}},
    )
