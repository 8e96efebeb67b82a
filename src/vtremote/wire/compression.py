"""Wire compression of FRAME planes, exactly as v1 does it (docs/protocol.md "Compression").

Each plane is compressed on its own: LZ4 *block* (no size prefix) or one zstd
*frame* at level 1 with the content size in its header. The plane header keeps
the uncompressed stride and height; the plane must decompress to exactly
``stride * height`` bytes. Anything else, including a frame that claims more
(a decompression bomb), is a :class:`RemoteProtocolError`. The expected size
is validated against the session's geometry by the caller *before* calling
:func:`decompress_plane`, so the output allocation is bounded.

Compressor objects are per thread (zstd contexts are not thread-safe), so planes
can be compressed in parallel from a thread pool.
"""

from __future__ import annotations

import threading

import lz4.block
import zstandard

from vtremote.errors import RemoteProtocolError, UnsupportedConfigError
from vtremote.wire.constants import WireCompression
from vtremote.wire.messages import Buffer, nbytes

ZSTD_LEVEL = 1  # what both reference peers use

#: Largest plane (stride x height) we decompress: LZ4's and the reference's ``int``.
MAX_PLANE_BYTES = 2**31 - 1
#: Most bytes one compressed byte can stand for. LZ4: a match length grows by 255
#: per extension byte. zstd: a block yields at most 128 KiB and takes at least 4
#: bytes (3-byte header + 1 RLE byte). A plane whose compressed size cannot reach
#: stride x height under these ratios is refused before any output is allocated.
MAX_RATIO = {1: 255, 2: 32768}

_local = threading.local()


def _zstd_c() -> zstandard.ZstdCompressor:
    c = getattr(_local, "zc", None)
    if c is None:
        # write_content_size is the default of ZSTD_compress(): the peer may check it.
        c = _local.zc = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
    return c


def _zstd_d() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "zd", None)
    if d is None:
        d = _local.zd = zstandard.ZstdDecompressor()
    return d


def compress_bound(mode: WireCompression | int, size: int) -> int:
    """Upper bound of the compressed size of a ``size``-byte plane (used for limits)."""
    if mode == WireCompression.NONE:
        return size
    # LZ4_COMPRESSBOUND = n + n/255 + 16; ZSTD_COMPRESSBOUND ~ n + n/256 + 64 (+ frame header).
    return size + size // 255 + 128


def compress_plane(mode: WireCompression | int, data: Buffer) -> Buffer:
    """Compress one plane for the wire; NONE returns ``data`` itself (no copy)."""
    if mode == WireCompression.NONE:
        return data
    if mode == WireCompression.LZ4:
        return lz4.block.compress(data, mode="default", store_size=False)  # type: ignore[no-any-return]
    if mode == WireCompression.ZSTD:
        return _zstd_c().compress(data)
    raise UnsupportedConfigError(f"unsupported wire_compression={mode}")


def decompress_plane(mode: WireCompression | int, data: Buffer, expected: int) -> Buffer:
    """Decompress one plane to exactly ``expected`` (= stride x height) bytes.

    NONE returns a view of the first ``expected`` bytes of ``data`` (the reference
    accepts ``data_len >= expected`` for raw planes) without copying.
    """
    n = nbytes(data)
    if not 0 <= expected <= MAX_PLANE_BYTES:
        raise RemoteProtocolError(
            f"plane of stride x height = {expected} bytes is outside 0..{MAX_PLANE_BYTES}"
        )
    ratio = MAX_RATIO.get(int(mode))
    if ratio is not None and expected > ratio * n + 64:
        name = WireCompression(mode).name
        raise RemoteProtocolError(
            f"{name} plane of {n} bytes cannot decompress to stride x height = {expected} bytes "
            f"(at most {ratio}:1)"
        )
    if mode == WireCompression.NONE:
        if n < expected:
            raise RemoteProtocolError(f"raw plane has {n} bytes, stride x height needs {expected}")
        view = data if isinstance(data, memoryview) else memoryview(data)
        return view[:expected] if n != expected else data
    if mode == WireCompression.LZ4:
        try:
            out = lz4.block.decompress(data, uncompressed_size=expected)
        except (lz4.block.LZ4BlockError, ValueError, MemoryError) as e:
            raise RemoteProtocolError(
                f"LZ4 plane of {n} bytes does not decompress to {expected} bytes: {e}"
            ) from e
        if len(out) != expected:
            raise RemoteProtocolError(
                f"LZ4 plane decompressed to {len(out)} bytes, expected {expected}"
            )
        return out  # type: ignore[no-any-return]
    if mode == WireCompression.ZSTD:
        try:
            declared = zstandard.frame_content_size(data)
        except zstandard.ZstdError as e:
            raise RemoteProtocolError(
                f"zstd plane of {n} bytes has no valid frame header: {e}"
            ) from e
        # ZstdDecompressor trusts a declared content size over max_output_size, so check first.
        if declared not in (-1, expected):
            raise RemoteProtocolError(
                f"zstd plane declares {declared} bytes, stride x height is {expected}"
            )
        try:
            # One frame and nothing after it: ZSTD_decompress() in the reference would
            # run into a second frame and overflow its stride x height buffer.
            out = _zstd_d().decompress(data, max_output_size=expected, allow_extra_data=False)
        except (zstandard.ZstdError, ValueError, MemoryError) as e:
            raise RemoteProtocolError(f"zstd plane of {n} bytes does not decompress: {e}") from e
        if len(out) != expected:
            raise RemoteProtocolError(
                f"zstd plane decompressed to {len(out)} bytes, expected {expected}"
            )
        return out
    raise RemoteProtocolError(f"unknown wire compression {mode}")


def parse_compression(value: str | None) -> WireCompression:
    """CONFIGURE ``wire_compression`` option -> mode; absent means NONE (v1)."""
    if value is None or value == "":
        return WireCompression.NONE
    try:
        return WireCompression(int(value))
    except ValueError:
        raise UnsupportedConfigError(f"unsupported wire_compression={value}") from None
