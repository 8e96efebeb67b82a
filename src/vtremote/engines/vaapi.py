"""VA-API engine (Linux: Intel/AMD): h264/hevc/av1_vaapi encoders, VA-API hwaccel decoding.

Frames are uploaded to VA surfaces by PyAV's hardware frames context. Needs a
DRI render node (/dev/dri/renderD128), libva and its driver, and an FFmpeg
build with VA-API; the probe names what is missing.

Options, as libavcodec/vaapi_encode_h264.c, _h265.c, _av1.c and vaapi_encode.h
declare them: ``level`` is the codec's level number (level_idc, general_level_idc,
seq_level_idx; its named values are ``4``, ``4.1``, never ``4.0``), ``rc_mode``
takes ``CBR``/``VBR``/``ICQ``..., ``coder`` is H.264's.
"""

from __future__ import annotations

from vtremote.engines.hardware import AV1_PROFILE_NAMES, Features, HardwareEngine
from vtremote.wire.settings import (
    H264_BASELINE,
    H264_CONSTRAINED_BASELINE,
    H264_HIGH,
    H264_MAIN,
    HEVC_MAIN,
    HEVC_MAIN10,
)


class VaapiEngine(HardwareEngine):
    name = "vaapi"
    description = "VA-API (Intel/AMD on Linux): h264/hevc/av1_vaapi encode, vaapi hwaccel decode"
    encoders = {"h264": "h264_vaapi", "hevc": "hevc_vaapi", "av1": "av1_vaapi"}
    decoders = {"h264": "h264", "hevc": "hevc", "av1": "av1"}
    hwaccel_device = "vaapi"
    encode_device = "vaapi"
    requirement = "needs /dev/dri/renderD128, libva with a driver, and FFmpeg built with VA-API"
    features = Features(
        forced_idr=None,  # vaapi_encode turns pict_type I into an IDR by itself
        realtime={"async_depth": "1"},
        speed=None,
        cbr={"rc_mode": "CBR"},
        quality="global_quality",
        entropy="coder",
        spatial_aq=None,
        strict_gop={"idr_interval": "0"},
        max_bframes=2,
        profiles={
            # VA-API has no plain baseline: constrained baseline is what it encodes.
            "h264": {
                H264_BASELINE: "constrained_baseline",
                H264_CONSTRAINED_BASELINE: "constrained_baseline",
                H264_MAIN: "main",
                H264_HIGH: "high",
            },
            "hevc": {HEVC_MAIN: "main", HEVC_MAIN10: "main10"},
            "av1": AV1_PROFILE_NAMES,
        },
    )
