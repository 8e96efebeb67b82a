"""Numbers and layouts of VTR1 v1 (docs/protocol.md). All integers are big-endian."""

from __future__ import annotations

import enum
import struct

MAGIC = 0x56545231  # b"VTR1"
VERSION = 1

#: magic u32, version u16, type u16, payload length u32 (header excluded).
HEADER = struct.Struct("!IHHI")
HEADER_SIZE = HEADER.size  # 12

U8 = struct.Struct("!B")
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
I64 = struct.Struct("!q")

#: CONFIGURE fixed part: width, height, pix_fmt (u8!), time base num/den, frame rate num/den.
CONFIGURE_FIXED = struct.Struct("!IIBIIII")
#: FRAME prefix: pts, duration, flags, plane_count.
FRAME_PREFIX = struct.Struct("!qqIB")
#: FRAME plane header: stride, height, data_len.
PLANE_HEADER = struct.Struct("!III")
#: FRAME side-data entry header: type, size.
SIDE_DATA_HEADER = struct.Struct("!II")
#: PACKET prefix: pts, dts, duration, flags, data_len.
PACKET_PREFIX = struct.Struct("!qqqII")

MAX_STR = 0xFFFF


class MessageType(enum.IntEnum):
    HELLO = 1
    HELLO_ACK = 2
    CONFIGURE = 3
    CONFIGURE_ACK = 4
    FRAME = 5
    PACKET = 6
    FLUSH = 7
    DONE = 8
    ERROR = 9
    PING = 10
    PONG = 11


class PixelFormat(enum.IntEnum):
    """CONFIGURE / CONFIGURE_ACK pix_fmt (a u8 on the wire)."""

    NV12 = 1
    P010 = 2  # P010LE: 10 significant bits in the high bits of each 16-bit sample

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self is PixelFormat.NV12 else 2


class WireCompression(enum.IntEnum):
    """CONFIGURE option ``wire_compression``: how FRAME planes travel."""

    NONE = 0
    LZ4 = 1  # LZ4 block, no size prefix
    ZSTD = 2  # one zstd frame per plane, level 1, content size in the frame header


class HelloStatus(enum.IntEnum):
    OK = 0
    BUSY = 1  # never sent by the reference server; ours sends it when --max-sessions is reached
    AUTH_FAILED = 2


class FrameFlags(enum.IntFlag):
    KEYFRAME = 1  # encode: force an IDR on this frame


class PacketFlags(enum.IntFlag):
    KEYFRAME = 1


class SideDataType(enum.IntEnum):
    A53_CC = 1  # FFmpeg's AV_FRAME_DATA_A53_CC, as the reference client sends it


#: The codec names a HELLO may carry (VTR1 v1).
CODECS = ("h264", "hevc")
#: Codecs beyond v1's, used only once both sides agreed on them (wire/extensions.py): a
#: plain v1 peer never sees these names.
EXTENSION_CODECS = ("av1",)
#: Every codec an engine may serve.
ALL_CODECS = CODECS + EXTENSION_CODECS

#: What the reference client writes as ``client_name`` in HELLO.
REFERENCE_CLIENT_NAME = "ffmpeg-vtremote"
