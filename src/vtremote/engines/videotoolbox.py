"""Apple VideoToolbox engine: h264/hevc_videotoolbox encoders, videotoolbox hwaccel decoding.

The device the reference daemon served. The encoder options follow the
reference's session properties (VTR1.md §9.5): realtime, prio_speed,
power_efficient, allow_sw/require_sw, frames_before/after, max_slice_bytes,
spatial_aq and CBR are passed to FFmpeg's VideoToolbox wrapper, which sets the
same VTCompressionSession properties. macOS only; elsewhere the probe says the
FFmpeg build has no videotoolbox encoder.

Options, as libavcodec/videotoolboxenc.c declares them: ``level`` is H.264's only
and names 1.3 and 3.0 .. 5.2 (other levels are left to the encoder, with a
warning); ``coder``, ``a53cc`` and ``max_slice_bytes`` are H.264's only; HEVC's
profiles are main and main10 (main42210/rext need 4:2:2 frames). Apple has no
AV1 encoder.
"""

from __future__ import annotations

from vtremote.engines.hardware import Features, HardwareEngine


class VideoToolboxEngine(HardwareEngine):
    name = "videotoolbox"
    description = "Apple VideoToolbox: h264/hevc_videotoolbox encode, videotoolbox hwaccel decode"
    encoders = {"h264": "h264_videotoolbox", "hevc": "hevc_videotoolbox"}
    decoders = {"h264": "h264", "hevc": "hevc"}
    hwaccel_device = "videotoolbox"
    requirement = "needs macOS with VideoToolbox and an FFmpeg build with it"
    features = Features(
        forced_idr=None,  # VideoToolbox forces a keyframe for pict_type I
        realtime={"realtime": "1"},
        speed=({"prio_speed": "1"}, {"prio_speed": "0"}),
        cbr={"constant_bit_rate": "1"},
        quality="qscale",
        entropy="coder",
        spatial_aq="spatial_aq",
        strict_gop={},
        # The default profiles are h264_videotoolbox's names.
        levels="name",
        refs_option="max_ref_frames",
        vt_keys=True,
        max_bframes=4,
        a53_option="a53cc",
        per_codec={"hevc": {"a53_option": None, "levels": None}},
    )
