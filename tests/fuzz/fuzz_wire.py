#!/usr/bin/env python3
"""Fuzz the sans-IO VTR1 wire layer with random and mutated byte streams.

Run by hand (pytest does not collect it: the name does not start with ``test_``)::

    python tests/fuzz/fuzz_wire.py --iterations 200000 --seed 1

Every iteration builds one input, either random bytes or a mutation (bit flips, interesting byte
values, truncation, splicing with another stream, changed header length/type fields, inserted or
deleted bytes, now and then large valid PACKETs) of a real session: the reference client's captures
in ``../shared/protocol/vectors`` (client -> server) and server -> client streams built here from
the same sessions. The input goes, in random chunks, through one of:

* a bare :class:`Receiver` (``receive_data`` or ``get_buffer``/``buffer_updated``),
  with the FRAME planes decompressed and checked against the geometry, PACKET
  data and CONFIGURE extradata run through the Annex B / avcC functions;
* a :class:`Connection` in the server role, answering like a server would
  (HELLO_ACK, CONFIGURE_ACK or ERROR, PONG, DONE);
* a :class:`Connection` in the client role that first sent a captured HELLO and
  CONFIGURE and then reads the mutated server stream.

The only exceptions allowed out of the wire layer are ``ProtocolError``
subclasses; anything else is a crash: the input is written to ``--crash-dir``
and the run fails. Memory is checked too: the largest body a receiver reserved,
the tracemalloc peak (with ``--tracemalloc``) and the process's peak RSS are
reported, and the run fails if the RSS grew by more than ``--max-rss-growth-mib``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
import traceback
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vtremote.errors import ProtocolError
from vtremote.wire import (
    HEADER_SIZE,
    Configure,
    ConfigureAck,
    Connection,
    Done,
    Error,
    Flush,
    Frame,
    Hello,
    HelloAck,
    Limits,
    Message,
    Packet,
    Ping,
    Plane,
    Pong,
    Receiver,
    Role,
    annexb,
    check_frame_geometry,
    compression,
    serialize_bytes,
)
from vtremote.wire.compression import parse_compression
from vtremote.wire.framing import LAZY_BODY_THRESHOLD

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO.parent / "shared" / "protocol" / "vectors"

#: FRAME limit for the bare Receiver: the geometry of every capture (320x180 NV12).
BARE_LIMITS = Limits().with_geometry(320, 180, 1, 2)


@dataclass
class Seed:
    """One real byte stream, the header offsets of its messages and who reads it."""

    name: str
    data: bytes
    offsets: list[int]
    reader: Role  # the role that receives this stream
    compression: int  # the session's wire_compression
    prelude: list[Message] = field(default_factory=list)  # what the reader sent first (client role)


@dataclass
class Stats:
    iterations: int = 0
    protocol_errors: int = 0
    messages: int = 0
    max_allocated: int = 0
    crashes: int = 0
    by_target: dict[str, int] = field(default_factory=dict)


def _read_capture(path: Path) -> tuple[bytes, list[int]]:
    index = json.loads(path.with_suffix(".json").read_text())
    return path.read_bytes(), [int(e["offset"]) for e in index]


def _join(msgs: list[Message]) -> tuple[bytes, list[int]]:
    out = bytearray()
    offsets = []
    for m in msgs:
        offsets.append(len(out))
        out += serialize_bytes(m)
    return bytes(out), offsets


def _parse_all(data: bytes) -> list[Message]:
    r = Receiver(BARE_LIMITS)
    r.receive_data(data)
    msgs = []
    while (m := r.next_message()) is not None:
        msgs.append(m)
    return msgs


def load_seeds() -> list[Seed]:
    """Captured client streams plus server streams answering the same sessions."""
    if not VECTORS.is_dir():
        sys.exit(f"fuzz_wire: the captures are missing: {VECTORS} does not exist")
    seeds: list[Seed] = []
    for path in sorted(VECTORS.glob("*.bin")):
        data, offsets = _read_capture(path)
        client_msgs = _parse_all(data)
        hello, cfg = client_msgs[0], client_msgs[1]
        assert isinstance(hello, Hello) and isinstance(cfg, Configure)
        mode = parse_compression(cfg.option("wire_compression"))
        seeds.append(Seed(path.stem, data, offsets, Role.SERVER, mode))
        reply: list[Message] = [HelloAck(), ConfigureAck(pix_fmt=cfg.pix_fmt)]
        if cfg.option("mode") == "decode":
            # One FRAME per PACKET, planes compressed as the session asks.
            for i, m in enumerate(client_msgs[2:-1]):
                assert isinstance(m, Packet)
                luma = bytes((x * 7 + i) & 0xFF for x in range(320)) * 180
                chroma = bytes(range(64, 64 + 160)) * 2 * 90
                planes = (
                    Plane(320, 180, compression.compress_plane(mode, luma)),
                    Plane(320, 90, compression.compress_plane(mode, chroma)),
                )
                reply.append(Frame(m.pts, 1, 0, planes))
                if i == 2:
                    reply.append(Ping())
        else:
            rng = random.Random(len(data))
            for i in range(3):
                nal = b"\x00\x00\x00\x01" + bytes([0x65 if i == 0 else 0x41]) + rng.randbytes(200)
                reply.append(Packet(i, i - 1, 0, 1 if i == 0 else 0, nal))
        reply.append(Done())
        sdata, soffsets = _join(reply)
        seeds.append(Seed(path.stem + "-server", sdata, soffsets, Role.CLIENT, mode, [hello, cfg]))
    # A refused session and an ERROR mid-handshake, for the client role.
    hello = Hello("x", "hevc", "fuzz", "1")
    cfg = Configure(320, 180, 1, 1, 5, 5, 1, (("mode", "encode"), ("wire_compression", "1")))
    sdata, soffsets = _join([HelloAck(status=2), Error(1, "authentication failed")])
    seeds.append(Seed("refused-server", sdata, soffsets, Role.CLIENT, 0, [hello]))
    sdata, soffsets = _join([HelloAck(), Error(3, "unsupported wire_compression=3")])
    seeds.append(Seed("error-server", sdata, soffsets, Role.CLIENT, 1, [hello, cfg]))
    return seeds


# --- mutations ---------------------------------------------------------------------------------

INTERESTING_U32 = [
    0,
    1,
    2,
    11,
    12,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
]


def _bit_flips(rng: random.Random, data: bytearray, seed: Seed, other: Seed) -> None:
    for _ in range(rng.randint(1, 8)):
        if data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)


def _interesting_bytes(rng: random.Random, data: bytearray, seed: Seed, other: Seed) -> None:
    for _ in range(rng.randint(1, 4)):
        if data:
            i = rng.randrange(len(data))
            data[i] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF))


def _truncate(rng: random.Random, data: bytearray, seed: Seed, other: Seed) -> None:
    del data[rng.randrange(len(data) + 1) :]


def _splice(rng: random.Random, data: bytearray, seed: Seed, other: Seed) -> None:
    a = rng.randrange(len(data) + 1)
    b = rng.randrange(len(other.data) + 1)
    c = rng.randrange(b, len(other.data) + 1)
    data[a:] = other.data[b:c] + data[a:]


def _splice_messages(rng: random.Random, data: bytearray, seed: Seed, other: Seed) -> None:
    # Whole messages of another stream inserted at a message boundary.
    a = rng.choice(seed.offsets)
    j = rng.randrange(len(other.offsets))
    k = rng.randrange(j, len(other.offsets)) + 1
    end = other.offsets[k] if k < len(other.offsets) else len(other.data)
    data[a:a] = other.data[other.offsets[j] : end]


def _length_field(rng: random.Random, data: bytearray, seed: Seed, other: Seed) -> None:
    off = rng.choice(seed.offsets) + 8
    if off + 4 > len(data):
        return
    old = int.from_bytes(data[off : off + 4], "big")
    choice = rng.random()
    if choice < 0.4:
        new = rng.choice(INTERESTING_U32)
    elif choice < 0.8:
        new = max(0, old + rng.randint(-16, 16))
    else:
        new = rng.getrandbits(rng.choice((8, 16, 24, 32)))
    data[off : off + 4] = (new & 0xFFFFFFFF).to_bytes(4, "big")


def _type_field(rng: random.Random, data: bytearray, seed: Seed, other: Seed) -> None:
    off = rng.choice(seed.offsets) + 6
    if off + 2 <= len(data):
        new = rng.choice((rng.randint(0, 13), rng.getrandbits(16)))
        data[off : off + 2] = new.to_bytes(2, "big")


def _inner_field(rng: random.Random, data: bytearray, seed: Seed, other: Seed) -> None:
    # An interesting u32/u16 written inside a payload: counts, lengths, strides, heights.
    start = rng.choice(seed.offsets) + HEADER_SIZE
    off = start + rng.randrange(64)
    width = rng.choice((1, 2, 4))
    if off + width <= len(data):
        value = rng.choice(INTERESTING_U32) & ((1 << (8 * width)) - 1)
        data[off : off + width] = value.to_bytes(width, "big")


def _insert_delete(rng: random.Random, data: bytearray, seed: Seed, other: Seed) -> None:
    i = rng.randrange(len(data) + 1)
    if rng.random() < 0.5:
        data[i:i] = rng.randbytes(rng.randint(1, 16))
    else:
        del data[i : i + rng.randint(1, 16)]


def _duplicate(rng: random.Random, data: bytearray, seed: Seed, other: Seed) -> None:
    if data:
        a = rng.randrange(len(data))
        b = min(len(data), a + rng.randint(1, 4096))
        data[b:b] = data[a:b]


def _large_messages(rng: random.Random, data: bytearray, seed: Seed, other: Seed) -> None:
    # Whole, valid PACKETs above LAZY_BODY_THRESHOLD at a message boundary: their bodies
    # take the memory-map path, and several of them exercise the receiver's reuse.
    at = rng.choice(seed.offsets)
    blob = bytearray()
    for _ in range(rng.randint(1, 3)):
        size = rng.randint(LAZY_BODY_THRESHOLD + 1, 3 * LAZY_BODY_THRESHOLD)
        body = b"\x00\x00\x00\x01\x41" + bytes([rng.getrandbits(8)]) * size
        blob += serialize_bytes(Packet(rng.getrandbits(16), 0, 0, 0, body))
    data[at:at] = blob


MUTATORS: list[Callable[[random.Random, bytearray, Seed, Seed], None]] = [
    _bit_flips,
    _interesting_bytes,
    _truncate,
    _splice,
    _splice_messages,
    _length_field,
    _length_field,
    _type_field,
    _inner_field,
    _inner_field,
    _insert_delete,
    _duplicate,
]


def make_input(rng: random.Random, seeds: list[Seed]) -> tuple[Seed, bytes]:
    seed = rng.choice(seeds)
    r = rng.random()
    if r < 0.05:
        return seed, rng.randbytes(rng.randint(0, 256))
    if r < 0.10:
        # A valid header of a random type and length, then random bytes.
        hdr = (
            b"VTR1\x00\x01"
            + rng.randint(0, 12).to_bytes(2, "big")
            + rng.getrandbits(32).to_bytes(4, "big")
        )
        return seed, hdr + rng.randbytes(rng.randint(0, 64))
    data = bytearray(seed.data)
    if rng.random() < 0.01:  # rare: large inputs cost a hundred times more to process
        _large_messages(rng, data, seed, seed)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        rng.choice(MUTATORS)(rng, data, seed, rng.choice(seeds))
    return seed, bytes(data)


# --- targets -----------------------------------------------------------------------------------


def _chunks(rng: random.Random, data: bytes) -> list[bytes]:
    if rng.random() < 0.5:
        return [data]
    out = []
    pos = 0
    while pos < len(data):
        n = rng.choice((1, 3, 12, 13, 100, 1000, 10000))
        out.append(data[pos : pos + n])
        pos += n
    return out


def _feed_zero_copy(
    rng: random.Random, recv: Receiver, data: bytes, on_msg: Callable[[Message], None]
) -> None:
    """Drive the get_buffer/buffer_updated path as a recv_into loop would."""
    pos = 0
    while pos < len(data):
        buf = recv.get_buffer()
        n = min(len(buf), len(data) - pos, rng.choice((1, 7, 4096, 1 << 20)))
        buf[:n] = data[pos : pos + n]
        pos += n
        recv.buffer_updated(n)
        while (m := recv.next_message()) is not None:
            on_msg(m)
    recv.receive_eof()
    while (m := recv.next_message()) is not None:
        on_msg(m)


def _exercise(msg: Message, mode: int, rng: random.Random, stats: Stats) -> None:
    """Run the functions a server or client applies to a received message.

    Each call gets its own try: one refusing the input must not hide the next."""
    calls: list[Callable[[], object]] = []
    if isinstance(msg, Frame):

        def frame_checks() -> None:
            # As a peer does: planes are decompressed only once the geometry fits.
            check_frame_geometry(msg, 320, 180, 1)
            if rng.random() < 0.25:
                for p in msg.planes:
                    compression.decompress_plane(mode, p.data, p.stride * p.height)

        calls.append(frame_checks)
    elif isinstance(msg, Packet):
        calls.append(lambda: annexb.is_keyframe(rng.choice(("h264", "hevc")), msg.data))
        if rng.random() < 0.25:
            calls.append(lambda: annexb.annexb_to_length_prefixed(msg.data, rng.choice((1, 2, 4))))
            calls.append(
                lambda: annexb.length_prefixed_to_annexb(msg.data, rng.choice((1, 2, 3, 4)))
            )
            calls.append(lambda: annexb.parameter_sets_from_annexb("h264", msg.data))
    elif isinstance(msg, Configure) and len(msg.extradata):
        calls.append(lambda: annexb.build_avcc(annexb.parse_extradata("h264", msg.extradata)))
        calls.append(lambda: annexb.build_hvcc(annexb.parse_extradata("hevc", msg.extradata)))
        calls.append(lambda: annexb.config_record_to_annexb("h264", msg.extradata))
        calls.append(
            lambda: annexb.build_config_record(
                "h264", annexb.config_record_to_annexb("h264", msg.extradata)
            )
        )
    elif isinstance(msg, ConfigureAck) and len(msg.extradata):
        calls.append(
            lambda: annexb.config_record_to_annexb(rng.choice(("h264", "hevc")), msg.extradata)
        )
    for call in calls:
        try:
            call()
        except ProtocolError:
            stats.protocol_errors += 1


def target_receiver(rng: random.Random, seed: Seed, data: bytes, stats: Stats) -> None:
    recv = Receiver(BARE_LIMITS)
    # Mostly the compression the stream really uses, sometimes a wrong one.
    mode = seed.compression if rng.random() < 0.9 else rng.choice((0, 1, 2))

    def on_msg(m: Message) -> None:
        stats.messages += 1
        stats.max_allocated = max(stats.max_allocated, recv.allocated)
        _exercise(m, mode, rng, stats)

    if rng.random() < 0.5:
        _feed_zero_copy(rng, recv, data, on_msg)
        return
    for chunk in _chunks(rng, data):
        recv.receive_data(chunk)
        stats.max_allocated = max(stats.max_allocated, recv.allocated)
        while (m := recv.next_message()) is not None:
            on_msg(m)
    recv.receive_eof()
    while (m := recv.next_message()) is not None:
        on_msg(m)


def _server_reply(conn: Connection, msg: Message) -> None:
    """What a server does with each received message (its sends must never fail)."""
    if isinstance(msg, Hello):
        conn.send(HelloAck())
    elif isinstance(msg, Configure):
        try:
            parse_compression(msg.option("wire_compression"))
        except ValueError as e:
            conn.send(Error(1, str(e)))
            return
        if msg.pix_fmt not in (1, 2):
            conn.send(Error(3, f"pix_fmt {msg.pix_fmt}"))
            return
        conn.send(ConfigureAck(pix_fmt=msg.pix_fmt))
    elif isinstance(msg, Ping):
        conn.send(Pong())
    elif isinstance(msg, Flush):
        if conn.state.value.startswith("draining"):
            conn.send(Done())
    elif isinstance(msg, Frame) and conn.configure is not None:
        # An encode server decompresses every plane of an accepted FRAME.
        for p in msg.planes:
            compression.decompress_plane(conn.compression, p.data, p.stride * p.height)
        conn.send(Packet(msg.pts, msg.pts, 0, 1, b"\x00\x00\x00\x01\x65"))


def _drive(
    rng: random.Random,
    conn: Connection,
    data: bytes,
    stats: Stats,
    on_msg: Callable[[Message], None],
) -> None:
    def handle(m: Message) -> None:
        stats.messages += 1
        stats.max_allocated = max(stats.max_allocated, conn.receiver.allocated)
        on_msg(m)

    if rng.random() < 0.3:
        pos = 0
        while pos < len(data) and not conn.finished:
            buf = conn.get_buffer()
            n = min(len(buf), len(data) - pos, rng.choice((1, 5, 4096, 1 << 20)))
            buf[:n] = data[pos : pos + n]
            pos += n
            conn.buffer_updated(n)
            stats.max_allocated = max(stats.max_allocated, conn.receiver.allocated)
            while not conn.finished and (m := conn.next_event()) is not None:
                handle(m)
        return
    for chunk in _chunks(rng, data):
        if conn.finished:
            return
        conn.receive_data(chunk)
        while not conn.finished and (m := conn.next_event()) is not None:
            handle(m)
    if not conn.finished:
        conn.receive_eof()
        while (m := conn.next_event()) is not None:
            handle(m)


def target_server(rng: random.Random, seed: Seed, data: bytes, stats: Stats) -> None:
    conn = Connection(Role.SERVER)
    _drive(rng, conn, data, stats, lambda m: _server_reply(conn, m))


def target_client(rng: random.Random, seed: Seed, data: bytes, stats: Stats) -> None:
    conn = Connection(Role.CLIENT)
    prelude = list(seed.prelude)
    conn.send(prelude.pop(0))

    def on_msg(m: Message) -> None:
        if isinstance(m, HelloAck) and prelude and m.status == 0:
            conn.send(prelude.pop(0))
        elif isinstance(m, Ping):
            conn.send(Pong())
        elif isinstance(m, Frame) and conn.configure is not None:
            for p in m.planes:
                compression.decompress_plane(conn.compression, p.data, p.stride * p.height)
        elif isinstance(m, ConfigureAck) and conn.configure is not None:
            if len(m.extradata):
                annexb.config_record_to_annexb("h264", m.extradata)
            conn.send(Flush())  # go straight to draining: PACKET and DONE stay legal

    _drive(rng, conn, data, stats, on_msg)


def run_one(rng: random.Random, seeds: list[Seed], stats: Stats) -> tuple[str, bytes]:
    seed, data = make_input(rng, seeds)
    if seed.reader is Role.SERVER:
        name, fn = rng.choice((("receiver", target_receiver), ("server", target_server)))
    else:
        name, fn = rng.choice((("receiver", target_receiver), ("client", target_client)))
    stats.by_target[name] = stats.by_target.get(name, 0) + 1
    try:
        fn(rng, seed, data, stats)
    except ProtocolError:
        stats.protocol_errors += 1
    return f"{name}:{seed.name}", data


def max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: time based)")
    ap.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"))
    ap.add_argument("--keep-going", action="store_true", help="record crashes and continue")
    ap.add_argument(
        "--tracemalloc", action="store_true", help="also report the Python heap peak (slower)"
    )
    ap.add_argument("--max-rss-growth-mib", type=int, default=256)
    ap.add_argument("--progress", type=int, default=50_000, help="print a line every N iterations")
    args = ap.parse_args(argv)

    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    seeds = load_seeds()
    print(f"fuzz_wire: seed={seed} iterations={args.iterations} streams={len(seeds)}", flush=True)
    if args.tracemalloc:
        tracemalloc.start()
    stats = Stats()
    rss0 = max_rss_bytes()
    t0 = time.perf_counter()
    for i in range(1, args.iterations + 1):
        state = rng.getstate()
        try:
            label, data = run_one(rng, seeds, stats)
        except Exception:
            stats.crashes += 1
            args.crash_dir.mkdir(parents=True, exist_ok=True)
            # Replaying the iteration needs the generator state, so keep it with the input.
            rng2 = random.Random()
            rng2.setstate(state)
            _, data = make_input(rng2, seeds)
            path = args.crash_dir / f"crash-{seed}-{i}.bin"
            path.write_bytes(data)
            print(f"CRASH at iteration {i} (input saved to {path}):", file=sys.stderr)
            traceback.print_exc()
            if not args.keep_going:
                return 1
        stats.iterations = i
        if args.progress and i % args.progress == 0:
            dt = time.perf_counter() - t0
            print(
                f"  {i} iterations, {i / dt:,.0f}/s, max RSS {max_rss_bytes() / 2**20:.0f} MiB",
                flush=True,
            )
    dt = time.perf_counter() - t0
    heap_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    rss1 = max_rss_bytes()
    print(f"iterations        {stats.iterations}")
    print(f"elapsed           {dt:.1f} s ({stats.iterations / dt:,.0f} inputs/s)")
    print(f"targets           {dict(sorted(stats.by_target.items()))}")
    print(f"messages parsed   {stats.messages}")
    print(f"ProtocolErrors    {stats.protocol_errors}")
    print(f"other exceptions  {stats.crashes}")
    print(f"largest body reserved {stats.max_allocated} bytes")
    if heap_peak is not None:
        print(f"tracemalloc peak  {heap_peak / 2**20:.1f} MiB")
    print(f"max RSS           {rss1 / 2**20:.1f} MiB (at start {rss0 / 2**20:.1f} MiB)")
    if rss1 - rss0 > args.max_rss_growth_mib * 2**20:
        print(f"FAIL: RSS grew by {(rss1 - rss0) / 2**20:.0f} MiB", file=sys.stderr)
        return 1
    return 1 if stats.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
