"""Picture-size limits of decoders: what a stream may make a decoder allocate.

A decoder allocates its pictures from the size the stream's parameter sets
declare, not from what CONFIGURE said: a 658-byte H.264 IDR whose SPS claims
16240x16240 makes FFmpeg's decoder allocate over a gigabyte. Every decoder the
server opens (a decode session's engine, a transcode session's input decoder)
therefore gets a picture limit, enforced twice:

* FFmpeg's ``max_pixels`` option on the codec context (any codec: the decoder
  refuses a larger picture before allocating it);
* for H.264 and HEVC, the SPS in the extradata and in every packet is read
  before the decoder sees it (:func:`check_parameter_sets`): a larger picture is
  refused with an error naming the size and the limit.

The limit follows the configured geometry: a stream may be larger than
CONFIGURE said (a decode session scales it down, a transcode session rebuilds
its filters), up to twice the width and height, and at least 1920x1088.
:func:`decode_pixel_limit` is the one place that says so; the server's memory
budget (server/budget.py) counts decoder pictures at this size.
"""

from __future__ import annotations

from collections.abc import Iterator

from vtremote.errors import BitstreamError, UnsupportedConfigError
from vtremote.wire import annexb
from vtremote.wire.messages import Buffer

#: A decoder may always make pictures this large (1080p, coded in 16-row macroblocks).
MIN_DECODE_PIXELS = 1920 * 1088
#: How much larger than the configured area a decoded picture may be (2x width, 2x height).
DECODE_AREA_FACTOR = 4


def decode_pixel_limit(width: int, height: int) -> int:
    """Most pixels a decoded picture may have in a session configured ``width`` x ``height``."""
    return max(DECODE_AREA_FACTOR * max(width, 1) * max(height, 1), MIN_DECODE_PIXELS)


def describe_limit(width: int, height: int) -> str:
    limit = decode_pixel_limit(width, height)
    return (
        f"at most {limit} pixels (twice the configured {width}x{height} in width and height, "
        "at least 1920x1088)"
    )


def _nals(data: Buffer, nal_length_size: int) -> Iterator[memoryview]:
    if annexb.is_annexb(data):
        return annexb.iter_annexb(data)
    return annexb.iter_length_prefixed(data, nal_length_size)


def sps_sizes(codec: str, data: Buffer, nal_length_size: int = 4) -> Iterator[tuple[int, int]]:
    """(width, height) of each SPS in ``data`` (Annex B, or length-prefixed NAL units);
    nothing for other codecs or data that cannot be split into NAL units."""
    if codec not in ("h264", "hevc"):
        return
    sps_type = annexb.H264_SPS if codec == "h264" else annexb.HEVC_SPS
    try:
        for nal in _nals(data, nal_length_size):
            if len(nal) and annexb.nal_type(codec, nal) == sps_type:
                if codec == "h264":
                    yield annexb.h264_sps_size(nal)
                else:
                    sps = annexb.parse_hevc_sps(nal)
                    yield sps.width, sps.height
    except BitstreamError:
        return  # the decoder judges damaged data; max_pixels still bounds it


def check_parameter_sets(
    codec: str, data: Buffer, width: int, height: int, what: str, nal_length_size: int = 4
) -> None:
    """Refuse ``data`` (extradata or a packet, named ``what``) if an SPS in it declares a
    picture larger than a session configured ``width`` x ``height`` may decode."""
    limit = decode_pixel_limit(width, height)
    for w, h in sps_sizes(codec, data, nal_length_size):
        if w * h > limit:
            raise UnsupportedConfigError(
                f"the SPS in {what} declares {w}x{h} pictures ({w * h} pixels); this session "
                f"allows {describe_limit(width, height)}"
            )


def decoder_options(width: int, height: int) -> dict[str, str]:
    """Codec-context options that bound a decoder's pictures (FFmpeg's ``max_pixels``)."""
    return {"max_pixels": str(decode_pixel_limit(width, height))}


__all__ = [
    "DECODE_AREA_FACTOR",
    "MIN_DECODE_PIXELS",
    "check_parameter_sets",
    "decode_pixel_limit",
    "decoder_options",
    "describe_limit",
    "sps_sizes",
]
