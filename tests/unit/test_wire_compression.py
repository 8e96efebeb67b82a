"""Wire compression of FRAME planes: exact sizes, bombs, the formats v1 peers expect."""

from __future__ import annotations

import random

import lz4.block
import pytest
import zstandard

from vtremote.errors import RemoteProtocolError, UnsupportedConfigError
from vtremote.wire import WireCompression, compression
from vtremote.wire.compression import compress_plane, decompress_plane, parse_compression

PLANE = bytes(range(256)) * 225  # 320 x 180, a little compressible


@pytest.mark.parametrize("mode", list(WireCompression))
def test_round_trip(mode: WireCompression) -> None:
    packed = compress_plane(mode, PLANE)
    assert bytes(decompress_plane(mode, packed, len(PLANE))) == PLANE


def test_none_is_zero_copy() -> None:
    buf = bytearray(PLANE)
    assert compress_plane(WireCompression.NONE, buf) is buf
    assert decompress_plane(WireCompression.NONE, buf, len(buf)) is buf
    # a longer raw plane is accepted (the reference does) and cut, still without a copy
    view = decompress_plane(WireCompression.NONE, buf, 100)
    assert isinstance(view, memoryview) and view.obj is buf and len(view) == 100


def test_formats_match_v1() -> None:
    """LZ4 *block* without a size prefix; one zstd *frame* at level 1 with its content size."""
    lz = compress_plane(WireCompression.LZ4, PLANE)
    assert bytes(lz) == lz4.block.compress(PLANE, store_size=False)
    assert lz4.block.decompress(lz, uncompressed_size=len(PLANE)) == PLANE
    zs = bytes(compress_plane(WireCompression.ZSTD, PLANE))
    assert zs[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic
    assert zstandard.frame_content_size(zs) == len(PLANE)
    assert zstandard.get_frame_parameters(zs).has_checksum is False
    assert zstandard.ZstdDecompressor().decompress(zs) == PLANE


@pytest.mark.parametrize("mode", [WireCompression.LZ4, WireCompression.ZSTD])
@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_size_refused(mode: WireCompression, delta: int) -> None:
    packed = compress_plane(mode, PLANE)
    with pytest.raises(RemoteProtocolError, match=str(len(PLANE) + delta)):
        decompress_plane(mode, packed, len(PLANE) + delta)


def test_raw_plane_too_short() -> None:
    with pytest.raises(
        RemoteProtocolError, match="raw plane has 99 bytes, stride x height needs 100"
    ):
        decompress_plane(WireCompression.NONE, bytes(99), 100)


def test_zstd_bomb_declared_size_refused_before_decompressing() -> None:
    """A zstd frame declaring 64 MiB for a 320x180 plane is refused on its header."""
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(64 << 20))
    assert len(bomb) < 4096
    with pytest.raises(
        RemoteProtocolError, match=f"declares {64 << 20} bytes, stride x height is 57600"
    ):
        decompress_plane(WireCompression.ZSTD, bomb, 57600)


def test_zstd_bomb_without_declared_size_stops_at_expected() -> None:
    bomb = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(bytes(8 << 20))
    assert zstandard.frame_content_size(bomb) == -1
    with pytest.raises(RemoteProtocolError, match="does not decompress"):
        decompress_plane(WireCompression.ZSTD, bomb, 57600)
    # the same frame is fine when it really is stride x height
    assert len(decompress_plane(WireCompression.ZSTD, bomb, 8 << 20)) == 8 << 20


def test_lz4_bomb_refused() -> None:
    bomb = lz4.block.compress(bytes(8 << 20), store_size=False)
    with pytest.raises(RemoteProtocolError, match="does not decompress to 57600 bytes"):
        decompress_plane(WireCompression.LZ4, bomb, 57600)


@pytest.mark.parametrize(
    ("mode", "ratio"), [(WireCompression.LZ4, 255), (WireCompression.ZSTD, 32768)]
)
def test_impossible_ratio_refused_before_allocating(mode: WireCompression, ratio: int) -> None:
    """10 compressed bytes cannot stand for a 1 GiB plane: refused on arithmetic alone."""
    with pytest.raises(
        RemoteProtocolError,
        match=f"cannot decompress to stride x height = {1 << 30} bytes \\(at most {ratio}:1\\)",
    ):
        decompress_plane(mode, bytes(10), 1 << 30)


def test_best_case_ratios_are_within_the_bounds() -> None:
    """The bounds never refuse what a real compressor produces (all-zero planes)."""
    big = bytes(16 << 20)
    for mode in (WireCompression.LZ4, WireCompression.ZSTD):
        packed = compress_plane(mode, big)
        assert len(packed) * compression.MAX_RATIO[int(mode)] >= len(big)
        assert len(decompress_plane(mode, packed, len(big))) == len(big)


def test_plane_size_outside_int_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="outside 0..2147483647"):
        decompress_plane(WireCompression.NONE, b"", 1 << 31)
    with pytest.raises(RemoteProtocolError, match="outside"):
        decompress_plane(WireCompression.NONE, b"", -1)


def test_two_zstd_frames_refused() -> None:
    half = compress_plane(WireCompression.ZSTD, PLANE[:100])
    with pytest.raises(RemoteProtocolError, match="unused data"):
        decompress_plane(WireCompression.ZSTD, bytes(half) * 2, 100)


def test_garbage_refused() -> None:
    for mode in (WireCompression.LZ4, WireCompression.ZSTD):
        with pytest.raises(RemoteProtocolError):
            decompress_plane(mode, b"\xff" * 64, 1000)
    with pytest.raises(RemoteProtocolError, match="unknown wire compression 7"):
        decompress_plane(7, b"", 0)


def test_parse_compression() -> None:
    assert parse_compression(None) is WireCompression.NONE
    assert parse_compression("") is WireCompression.NONE
    assert parse_compression("0") is WireCompression.NONE
    assert parse_compression("1") is WireCompression.LZ4
    assert parse_compression("2") is WireCompression.ZSTD
    for bad in ("3", "zstd", "-1"):
        with pytest.raises(UnsupportedConfigError, match=f"unsupported wire_compression={bad}"):
            parse_compression(bad)
    with pytest.raises(UnsupportedConfigError):
        compress_plane(3, b"")


@pytest.mark.parametrize("mode", list(WireCompression))
def test_compress_bound_covers_incompressible_planes(mode: WireCompression) -> None:
    noise = random.Random(7).randbytes(200_000)
    assert len(compress_plane(mode, noise)) <= compression.compress_bound(mode, len(noise))
