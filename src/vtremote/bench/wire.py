"""The wire ceiling: raw sockets against the real client and server, per compression mode."""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from typing import Any

import av
import av.filter

from vtremote.bench.common import (
    MODES,
    SOURCES,
    Progress,
    ServerProcess,
    Stopwatch,
    encode_session,
    machine_info,
    make_frames,
)
from vtremote.wire.constants import FRAME_PREFIX, HEADER, MAGIC, PLANE_HEADER, VERSION, MessageType

# --- raw socket ceiling ----------------------------------------------------------------------


def frame_message_parts(frame: av.VideoFrame, pts: int = 0) -> list[Any]:
    """An uncompressed VTR1 FRAME message for ``frame`` as buffers for one ``sendmsg``.

    Built by hand (not with ``vtremote.wire``) so that the raw ceiling measures
    the socket alone: header, prefix, and the frame's own plane memory.
    """
    planes = []
    for plane in frame.planes:
        view = memoryview(plane)
        planes.append((plane.line_size, view.nbytes // plane.line_size, view))
    body = FRAME_PREFIX.size + sum(PLANE_HEADER.size + v.nbytes for _, _, v in planes)
    parts: list[Any] = [
        HEADER.pack(MAGIC, VERSION, MessageType.FRAME, body),
        FRAME_PREFIX.pack(pts, 1, 0, len(planes)),
    ]
    for stride, rows, view in planes:
        parts.append(PLANE_HEADER.pack(stride, rows, view.nbytes))
        parts.append(view)
    return parts


def _sendmsg_all(sock: socket.socket, parts: list[Any]) -> None:
    """``sendmsg`` every byte of ``parts`` (a blocking sendmsg may still send less)."""
    views = [memoryview(p).cast("B") for p in parts]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= views[0].nbytes:
            sent -= views[0].nbytes
            views.pop(0)
        if views and sent:
            views[0] = views[0][sent:]


def _raw_peer(
    listener: socket.socket, message_size: int, reply: bytes, stop: threading.Event
) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(message_size)  # reused for every message, as recv_into allows
        view = memoryview(buf)
        while not stop.is_set():
            got = 0
            while got < message_size:
                n = conn.recv_into(view[got:])
                if n == 0:
                    return
                got += n
            conn.sendall(reply)


def raw_ceiling(
    frames: Sequence[av.VideoFrame], count: int, *, window: int, reply_size: int = 12 + 32 + 20
) -> dict[str, Any]:
    """Frames per second of a plain loopback ``sendmsg`` / ``recv_into`` ping-pong.

    The same FRAME bytes the wire benchmark sends (uncompressed), ``window``
    messages in flight like the real client; a peer thread receives each whole
    message into one reused buffer and answers with a ``reply_size``-byte message
    (the size of a small PACKET). No parsing, no copies in user space: what is
    left is the kernel's loopback copy and the system calls, the ceiling any
    VTR1 implementation on this machine can reach.
    """
    messages = [frame_message_parts(f, i) for i, f in enumerate(frames)]
    size = sum(memoryview(p).nbytes for p in messages[0])
    if any(sum(memoryview(p).nbytes for p in m) != size for m in messages):
        raise ValueError("raw ceiling needs frames of one geometry")
    reply = bytes(reply_size)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()
    peer = threading.Thread(target=_raw_peer, args=(listener, size, reply, stop), daemon=True)
    peer.start()
    sock = socket.create_connection(listener.getsockname())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rbuf = bytearray(reply_size * max(window, 1) * 2)
    rview = memoryview(rbuf)
    partial = 0
    done = 0

    def receive(block: bool) -> int:
        nonlocal partial
        try:
            n = sock.recv_into(rview, 0, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0
        if n == 0:
            raise ConnectionError("raw ceiling peer closed the connection")
        partial += n
        whole, partial = divmod(partial, reply_size)
        return whole

    try:
        # Warm up: first messages grow the socket buffers (TCP autotuning).
        for _ in range(min(8, count)):
            _sendmsg_all(sock, messages[0])
            got = 0
            while got < 1:
                got += receive(True)
        with Stopwatch() as sw:
            inflight = 0
            for i in range(count):
                while inflight >= window:
                    k = receive(True)
                    inflight -= k
                    done += k
                _sendmsg_all(sock, messages[i % len(messages)])
                inflight += 1
                k = receive(False)
                inflight -= k
                done += k
            while done < count:
                done += receive(True)
    finally:
        stop.set()
        sock.close()
        peer.join(timeout=5)
        listener.close()
    fps = count / sw.wall
    return {
        "fps": round(fps, 1),
        "gbps": round(fps * size / 1e9, 3),
        "message_bytes": size,
        "frames": count,
        "window": window,
        "seconds": round(sw.wall, 3),
        "client_cpu_s_per_frame": sw.cpu / count,
    }


# --- wire ceiling ------------------------------------------------------------------------------

#: Wire compression modes, in VTR1 order (VTR1.md §4).


def _wire_entry(
    runs: dict[str, list[dict[str, Any]]], modes: Sequence[str], frames: int, picture_bytes: int
) -> dict[str, Any]:
    """One source's wire results: the best run of the raw ceiling and of each mode."""
    best_raw = max(runs["raw"], key=lambda r: r["fps"])
    entry: dict[str, Any] = {
        "raw": {
            "fps": best_raw["fps"],
            "gbps": best_raw["gbps"],
            "message_bytes": best_raw["message_bytes"],
            "client_cpu_ms_per_frame": round(best_raw["client_cpu_s_per_frame"] * 1000, 3),
            "runs_fps": [r["fps"] for r in runs["raw"]],
        }
    }
    for mode in modes:
        best = max(runs[mode], key=lambda r: r["fps"])
        per_frame = best["frame_bytes"] / frames
        server_cpu = best["server_cpu_s"]
        entry[mode] = {
            "fps": round(best["fps"], 1),
            "gbps": round(best["fps"] * picture_bytes / 1e9, 3),
            "wire_gbps": round(best["fps"] * per_frame / 1e9, 3),
            "ratio_to_raw": round(best["fps"] / best_raw["fps"], 3),
            "wire_bytes_per_frame": round(per_frame),
            "compression_ratio": round(per_frame / picture_bytes, 4),
            "client_cpu_ms_per_frame": round(best["client_cpu_s"] * 1000 / frames, 3),
            "server_cpu_ms_per_frame": None
            if server_cpu is None
            else round(server_cpu * 1000 / frames, 3),
            "seconds": round(best["seconds"], 3),
            "runs_fps": [round(r["fps"], 1) for r in runs[mode]],
        }
    return entry


def run_wire(
    *,
    width: int = 1920,
    height: int = 1080,
    frames: int = 600,
    distinct: int = 16,
    repeat: int = 4,
    window: int | None = None,
    sources: Sequence[str] = SOURCES,
    modes: Sequence[str] = MODES,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The wire ceiling: NV12 frames client -> vtremoted (``null`` engine) -> client.

    For each source the raw-socket ceiling (:func:`raw_ceiling`, same bytes,
    same window) and one session per compression mode run ``repeat`` times, in
    rounds over all sources and modes so that a burst of load from elsewhere
    hits all of them alike; the best run of each is reported (every run's rate
    is kept in ``runs_fps``).

    JSON layout (docs/benchmarks.md "JSON output")::

        {"benchmark": "wire", "machine": {...}, "params": {...},
         "raw_fps": ..., "none": {...}, "lz4": {...}, "zstd": {...},   # testsrc2, for convenience
         "sources": {"testsrc2": {"raw": {...}, "none": {...}, "lz4": {...}, "zstd": {...}},
                     "noise": {...}},
         "goals": [{"name", "goal", "value", "met"}, ...]}

    Each mode: ``fps``, ``gbps`` (picture bytes/s), ``wire_gbps``, ``ratio_to_raw``,
    ``wire_bytes_per_frame``, ``compression_ratio``, ``client_cpu_ms_per_frame``,
    ``server_cpu_ms_per_frame``, ``seconds``, ``runs_fps``.
    """
    from vtremote.client import ConnectionOptions

    say = progress or Progress(False)
    if window is None:
        window = ConnectionOptions().window
    result: dict[str, Any] = {
        "benchmark": "wire",
        "machine": machine_info(),
        "params": {
            "width": width,
            "height": height,
            "pix_fmt": "nv12",
            "frames": frames,
            "distinct_frames": distinct,
            "repeat": repeat,
            "window": window,
            "engine": "null",
            "modes": list(modes),
        },
        "sources": {},
    }
    pics: dict[str, list[av.VideoFrame]] = {}
    for source in sources:
        say(f"wire: generating {distinct} {width}x{height} {source} frames")
        pics[source] = make_frames(source, width, height, distinct)
    picture_bytes = sum(memoryview(p).nbytes for p in frame_message_parts(pics[sources[0]][0]))
    runs = _wire_runs(pics, modes, frames=frames, repeat=repeat, window=window, say=say)
    for source in sources:
        result["sources"][source] = _wire_entry(runs[source], modes, frames, picture_bytes)
    first = "testsrc2" if "testsrc2" in result["sources"] else next(iter(result["sources"]))
    top = result["sources"][first]
    # Convenience keys: the raw ceiling and the per-mode results of testsrc2 at the top level.
    result["source"] = first
    result["raw_fps"] = top["raw"]["fps"]
    for mode in modes:
        result[mode] = top[mode]
    result["goals"] = wire_goals(result)
    return result


def _wire_runs(
    pics: dict[str, list[av.VideoFrame]],
    modes: Sequence[str],
    *,
    frames: int,
    repeat: int,
    window: int,
    say: Progress,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every run: source -> "raw" or mode -> one result per round."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        source: {"raw": [], **{m: [] for m in modes}} for source in pics
    }
    with ServerProcess("null") as server:
        # One short untimed session per mode first: the server's first frames of a
        # kind grow its heap and receive buffers, a cost no later frame pays.
        for source in pics:
            for mode in modes:
                encode_session(
                    server.address,
                    pics[source],
                    min(frames, 64),
                    compression=mode,
                    window=window,
                    server_pid=None,
                )
        # Rounds go over every source and mode, so each one's runs are spread over the
        # whole benchmark: a burst of other work on the machine cannot hit all of them.
        for rep in range(repeat):
            for source in pics:
                raw = raw_ceiling(pics[source], frames, window=window)
                runs[source]["raw"].append(raw)
                say(f"wire: run {rep + 1}/{repeat} {source}: raw socket {raw['fps']:.0f} fps")
                for mode in modes:
                    r = encode_session(
                        server.address,
                        pics[source],
                        frames,
                        compression=mode,
                        window=window,
                        server_pid=server.pid,
                    )
                    runs[source][mode].append(r)
                    say(f"wire: run {rep + 1}/{repeat} {source}: {mode} {r['fps']:.0f} fps")
                    server.check_alive()
    return runs


def wire_goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The wire benchmark's goals, evaluated on a wire result."""
    goals = []
    src = result["sources"]
    for source in ("testsrc2", "noise"):
        if source in src and "none" in src[source]:
            v = src[source]["none"]["ratio_to_raw"]
            goals.append(
                {
                    "name": f"uncompressed / raw socket ({source})",
                    "goal": ">= 0.6",
                    "value": v,
                    "met": v >= 0.6,
                }
            )
    if (
        "testsrc2" in src
        and "lz4" in src["testsrc2"]
        and result["params"]["width"] * result["params"]["height"] >= 1920 * 1080
    ):
        v = src["testsrc2"]["lz4"]["fps"]
        goals.append({"name": "lz4 fps on testsrc2", "goal": ">= 400", "value": v, "met": v >= 400})
    return goals
