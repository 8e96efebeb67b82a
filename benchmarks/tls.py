"""What TLS costs on the wire: 1080p NV12 frames through the null engine, plain vs TLS, loopback.

    python benchmarks/tls.py [--frames 240] [--rounds 3] [--size 1920x1080] [--json]

A ``vtremoted`` process (``--in-process``: a thread of this one) with the ``null`` engine (no codec:
the wire path only) and TLS offered on the same port (a self-signed certificate in a temporary
directory); one client encodes ``--frames`` frames with wire compression ``none``, once over plain
TCP and once over TLS (the client pins the fingerprint; the cipher is printed, AES-GCM on CPUs with
AES instructions). Best of ``--rounds`` for each; the ratio TLS/plain is the result. Results go to
docs/benchmarks.md, never into tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np

from vtremote.client import RemoteEncoder
from vtremote.server import Server, ServerConfig


def frames_1080p(n: int, width: int, height: int) -> list[av.VideoFrame]:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, size=(height * 3 // 2, width), dtype=np.uint8)
    out = []
    for i in range(min(n, 8)):  # a few distinct pictures, reused: the wire does not care
        arr = np.roll(base, i * 7, axis=1)
        out.append(av.VideoFrame.from_ndarray(arr, format="nv12"))
    return [out[i % len(out)] for i in range(n)]


def run_once(
    addr: str, frames: list[av.VideoFrame], width: int, height: int, **tls: object
) -> tuple[float, str]:
    with RemoteEncoder(
        addr,
        "h264",
        width=width,
        height=height,
        time_base=Fraction(1, 30),
        compression="none",
        inflight=16,
        **tls,
    ) as enc:  # type: ignore[arg-type]
        sock = enc._transport.sock
        cipher = sock.cipher()[0] if hasattr(sock, "cipher") and sock.cipher() else "none"
        t0 = time.perf_counter()
        n = 0
        for i, frame in enumerate(frames):
            frame.pts = i
            n += len(enc.encode(frame))
        n += len(enc.flush())
        elapsed = time.perf_counter() - t0
    assert n == len(frames), f"{n} packets for {len(frames)} frames"
    return len(frames) / elapsed, cipher


def start_process(state: str, engine: str) -> tuple[str, str, Callable[[], None]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vtremote.cli.serve",
            "--listen",
            "127.0.0.1:0",
            "--engine",
            engine,
            "--tls",
            "--tls-dir",
            state,
            "--log-level",
            "info",
            "--max-sessions",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline().strip()
    addr = line.rsplit(" ", 1)[1]
    fp = ""
    while not fp:
        m = re.search(r"SHA-256 fingerprint ([0-9A-F:]+)", proc.stderr.readline())
        fp = m.group(1) if m else ""
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained

    def stop() -> None:
        proc.terminate()
        proc.wait(30)

    return addr, fp, stop


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=240)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--in-process", action="store_true", help="run the server in this process (shares the GIL)"
    )
    p.add_argument(
        "--engine",
        default="null",
        help="server engine: null (wire only, default) or x264 (a real encode)",
    )
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    logging.basicConfig(level=logging.WARNING)
    frames = frames_1080p(args.frames, width, height)
    with tempfile.TemporaryDirectory() as state:
        if args.in_process:
            server = Server(
                ServerConfig(
                    listen="127.0.0.1:0",
                    engine=args.engine,
                    tls=True,
                    tls_state_dir=state,
                    log_level="warning",
                )
            )
            server.start()
            addr, fp, stop = (
                f"127.0.0.1:{server.address[1]}",
                server.tls_fingerprint,
                server.shutdown,
            )
        else:  # the server in its own process, as deployed: no GIL shared with the client
            addr, fp, stop = start_process(state, args.engine)
        try:
            run_once(addr, frames[:16], width, height)  # warm up both paths
            run_once(addr, frames[:16], width, height, tls_fingerprint=fp)
            plain, tls, cipher = [], [], ""
            for _ in range(args.rounds):
                plain.append(run_once(addr, frames, width, height)[0])
                fps, cipher = run_once(addr, frames, width, height, tls_fingerprint=fp)
                tls.append(fps)
        finally:
            stop()
    frame_mb = width * height * 1.5 / 1e6
    result = {
        "engine": args.engine,
        "size": args.size,
        "frames": args.frames,
        "rounds": args.rounds,
        "cipher": cipher,
        "cpus": os.cpu_count(),
        "plain_fps": round(max(plain), 1),
        "tls_fps": round(max(tls), 1),
        "plain_gbps": round(max(plain) * frame_mb * 8 / 1000, 2),
        "tls_gbps": round(max(tls) * frame_mb * 8 / 1000, 2),
        "ratio": round(max(tls) / max(plain), 3),
        "plain_all": [round(v, 1) for v in plain],
        "tls_all": [round(v, 1) for v in tls],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.size} NV12, engine {args.engine}, {args.frames} frames, best of {args.rounds}, "
            f"{os.cpu_count()} CPUs, cipher {cipher}"
        )
        print(
            f"plain: {result['plain_fps']} fps ({result['plain_gbps']} Gb/s)  runs "
            f"{result['plain_all']}"
        )
        print(
            f"TLS:   {result['tls_fps']} fps ({result['tls_gbps']} Gb/s)  runs {result['tls_all']}"
        )
        print(f"TLS / plain = {result['ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
