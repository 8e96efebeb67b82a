"""VA-API engine (Linux: Intel/AMD): h264_vaapi / hevc_vaapi encoders, VA-API hwaccel decoding.

Frames are uploaded to VA surfaces by PyAV's hardware frames context. Needs a
DRI render node (/dev/dri/renderD128), libva and its driver, and an FFmpeg
build with VA-API; the probe names what is missing.
"""

from __future__ import annotations

from vtremote.engines.hardware import Features, HardwareEngine
from vtremote.wire.settings import H264_BASELINE, H264_CONSTRAINED_BASELINE, H264_HIGH, H264_MAIN


class VaapiEngine(HardwareEngine):
    name = "vaapi"
    description = "VA-API (Intel/AMD on Linux): h264/hevc_vaapi encode, vaapi hwaccel decode"
    encoders = {"h264": "h264_vaapi", "hevc": "hevc_vaapi"}
    decoders = {"h264": "h264", "hevc": "hevc"}
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
        # VA-API has no plain baseline: constrained baseline is what it encodes.
        h264_profiles={
            H264_BASELINE: "constrained_baseline",
            H264_CONSTRAINED_BASELINE: "constrained_baseline",
            H264_MAIN: "main",
            H264_HIGH: "high",
        },
    )
