"""Codec levels as the wire carries them and as each encoder takes them.

CONFIGURE's ``level`` is the reference client's H.264 ``level_idc`` (level x 10,
9 for level 1b; VTR1.md §3.2). The same reading serves HEVC and AV1 (``5.1`` ->
51); an HEVC ``general_level_idc`` (level x 30) is accepted as well. Encoders
take levels in three codings:

* ``level_idc``: H.264 level x 10, HEVC ``general_level_idc`` (level x 30), AV1
  ``seq_level_idx`` ((major - 2) x 4 + minor). NVENC's NV_ENC_LEVEL_* and QSV's
  MFX_LEVEL_AVC/HEVC_* constants and VA-API's ``level`` option are these numbers
  (nvEncodeAPI.h, mfxstructures.h, vaapi_encode_h264.c / _h265.c / _av1.c).
* names: ``4.1`` / ``4`` / ``4.0``, which differ per encoder; engines that need a name
  look it up in the encoder's option table (engines/option_table.py).
"""

from __future__ import annotations

from typing import Final

#: H.264 levels (major, minor); (1, 0) with ``level_idc`` 9 is level 1b.
H264_LEVELS: Final = frozenset(
    [(1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2)]
    + [(4, 0), (4, 1), (4, 2), (5, 0), (5, 1), (5, 2), (6, 0), (6, 1), (6, 2)]
)
#: HEVC levels (Rec. ITU-T H.265 Table A.8).
HEVC_LEVELS: Final = frozenset(
    [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (4, 0), (4, 1), (5, 0), (5, 1), (5, 2)]
    + [(6, 0), (6, 1), (6, 2)]
)
#: AV1 levels 2.0 .. 7.3 (AV1 spec Annex A.3).
AV1_LEVELS: Final = frozenset((major, minor) for major in range(2, 8) for minor in range(4))
LEVELS: Final = {"h264": H264_LEVELS, "hevc": HEVC_LEVELS, "av1": AV1_LEVELS}
#: The ``level_idc`` of H.264 level 1b.
H264_LEVEL_1B: Final = 9


def level_parts(codec: str, level: int) -> tuple[int, int] | None:
    """The wire's level number for ``codec`` as (major, minor); None when it is no level
    of that codec. H.264 level 1b (level_idc 9) comes back as (1, 0)."""
    if codec == "h264" and level == H264_LEVEL_1B:
        return (1, 0)
    parts = (level // 10, level % 10)
    if parts in LEVELS.get(codec, frozenset()):
        return parts
    if codec == "hevc" and level % 3 == 0:  # general_level_idc = level x 30
        parts = (level // 30, level % 30 // 3)
        if parts in HEVC_LEVELS:
            return parts
    return None


def level_idc(codec: str, level: int) -> int | None:
    """The level in the codec's own coding (module docstring); None when it is no level."""
    parts = level_parts(codec, level)
    if parts is None:
        return None
    major, minor = parts
    if codec == "h264":
        return H264_LEVEL_1B if level == H264_LEVEL_1B else major * 10 + minor
    if codec == "hevc":
        return major * 30 + minor * 3
    return (major - 2) * 4 + minor


def level_text(codec: str, level: int) -> str:
    """``4.1`` for messages (``1b`` for H.264 level 1b)."""
    parts = level_parts(codec, level)
    if parts is None:
        return str(level)
    if codec == "h264" and level == H264_LEVEL_1B:
        return "1b"
    return f"{parts[0]}.{parts[1]}"
