"""Intel Quick Sync engine: h264_qsv / hevc_qsv / av1_qsv encoders and decoders (oneVPL).

Needs an Intel GPU with the media driver and oneVPL runtime; the probe reports
the MFX session error otherwise. Frames travel in system memory (NV12/P010).

Options, as libavcodec/qsvenc_h264.c, qsvenc_hevc.c, qsvenc_av1.c and qsvenc.h
declare them: ``forced_idr``, ``async_depth``, ``preset`` and ``idr_interval``
(H.264/HEVC only) are private; ``profile`` is private with its own names. There
is no private ``level``: qsvenc copies AVCodecContext.level into
``mfxInfoMFX.CodecLevel``, whose MFX_LEVEL_AVC_* / MFX_LEVEL_HEVC_* values are the
codecs' level_idc (41 for H.264 4.1, 123 for HEVC 4.1), so the generic ``level``
gets that number. AV1 levels are left to the encoder (MFX_LEVEL_AV1_* counts
neither like seq_level_idx nor like FFmpeg's other AV1 encoders).
"""

from __future__ import annotations

from vtremote.engines.hardware import (
    AV1_PROFILE_NAMES,
    H264_BASELINE_MAIN_HIGH,
    Features,
    HardwareEngine,
)
from vtremote.wire.settings import (
    HEVC_MAIN,
    HEVC_MAIN10,
    HEVC_MAIN_STILL,
)


class QsvEngine(HardwareEngine):
    name = "qsv"
    description = "Intel Quick Sync: h264/hevc/av1_qsv encode and decode"
    encoders = {"h264": "h264_qsv", "hevc": "hevc_qsv", "av1": "av1_qsv"}
    decoders = {"h264": "h264_qsv", "hevc": "hevc_qsv", "av1": "av1_qsv"}
    hwaccel_device = None  # the _qsv decoders drive the device themselves
    requirement = "needs an Intel GPU with the oneVPL runtime (libvpl) and media driver"
    features = Features(
        forced_idr=("forced_idr", "1"),
        # One frame in flight; lookahead is off unless asked for (look_ahead is
        # h264_qsv's only, and defaults to off).
        realtime={"async_depth": "1"},
        speed=({"preset": "veryfast"}, {"preset": "medium"}),
        cbr=None,  # qsv selects CBR when maxrate == bitrate
        quality="global_quality",
        entropy=None,
        spatial_aq=None,
        strict_gop={"idr_interval": "0"},
        max_bframes=3,
        profiles={
            "h264": H264_BASELINE_MAIN_HIGH,
            "hevc": {HEVC_MAIN: "main", HEVC_MAIN10: "main10", HEVC_MAIN_STILL: "mainsp"},
            "av1": AV1_PROFILE_NAMES,
        },
        per_codec={"av1": {"strict_gop": {}, "levels": None}},
    )
