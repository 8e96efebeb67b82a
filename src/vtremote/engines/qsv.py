"""Intel Quick Sync engine: h264_qsv / hevc_qsv encoders and decoders (oneVPL / Media SDK).

Needs an Intel GPU with the media driver and oneVPL runtime; the probe reports
the MFX session error otherwise. Frames travel in system memory (NV12/P010).
"""

from __future__ import annotations

from vtremote.engines.hardware import Features, HardwareEngine
from vtremote.wire.settings import H264_BASELINE, H264_CONSTRAINED_BASELINE, H264_HIGH, H264_MAIN


class QsvEngine(HardwareEngine):
    name = "qsv"
    description = "Intel Quick Sync: h264/hevc_qsv encode and decode"
    encoders = {"h264": "h264_qsv", "hevc": "hevc_qsv"}
    decoders = {"h264": "h264_qsv", "hevc": "hevc_qsv"}
    hwaccel_device = None  # the _qsv decoders drive the device themselves
    requirement = "needs an Intel GPU with the oneVPL runtime (libvpl) and media driver"
    features = Features(
        forced_idr=("forced_idr", "1"),
        realtime={"async_depth": "1", "look_ahead": "0"},
        speed=({"preset": "veryfast"}, {"preset": "medium"}),
        cbr=None,  # qsv selects CBR when maxrate == bitrate
        quality="global_quality",
        entropy=None,
        spatial_aq=None,
        strict_gop={"idr_interval": "0"},
        max_bframes=3,
        h264_profiles={
            H264_BASELINE: "baseline",
            H264_CONSTRAINED_BASELINE: "baseline",
            H264_MAIN: "main",
            H264_HIGH: "high",
        },
    )
