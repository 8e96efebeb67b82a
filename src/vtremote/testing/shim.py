"""A lossy, rate-limited relay on loopback, for tests and benchmarks only (never used otherwise).

``LossyRelay(target).start()`` listens on 127.0.0.1 (TCP and UDP, one port) and
forwards to ``target``, shaping the sender -> receiver direction the way a bad
network path would:

* ``loss``: fraction of UDP datagrams dropped (at random, seeded);
* ``reorder``: fraction of UDP datagrams held back ``reorder_ms`` and sent late;
* ``rate_bps``: a bottleneck of this many bits per second. TCP bytes are paced
  through a small buffer (what does not fit stays in the sender's socket, as
  behind a router), or with ``greedy`` through an unbounded one (a bloated
  buffer that never pushes back); UDP datagrams queue up to ``queue_bytes`` and
  the rest are dropped (tail drop);
* :meth:`cut` drops every connection now (a network failure: TCP connections
  are reset, UDP is blackholed for ``seconds``).

The receiver -> sender direction passes untouched.
"""

from __future__ import annotations

import contextlib
import heapq
import queue
import random
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass
class RelayCounters:
    datagrams: int = 0
    dropped: int = 0
    reordered: int = 0
    tail_dropped: int = 0
    tcp_bytes: int = 0
    connections: int = 0


class LossyRelay:
    def __init__(
        self,
        target: tuple[str, int],
        *,
        loss: float = 0.0,
        reorder: float = 0.0,
        reorder_ms: float = 5.0,
        rate_bps: int = 0,
        queue_bytes: int = 64 * 1024,
        greedy: bool = False,
        seed: int = 1,
    ) -> None:
        self.target = target
        self.loss, self.reorder, self.reorder_ms = loss, reorder, reorder_ms
        self.rate_bps = rate_bps
        self.queue_bytes = queue_bytes
        self.greedy = greedy
        self.counters = RelayCounters()
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._blackhole_until = 0.0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        # UDP: client address -> upstream socket
        self._upstream: dict[tuple[str, int], socket.socket] = {}
        self._udp_queue: deque[tuple[socket.socket, bytes]] = deque()
        self._udp_queued = 0
        self._late: list[tuple[float, int, socket.socket, bytes]] = []
        self._cond = threading.Condition()
        self._n = 0

    def start(self) -> LossyRelay:
        for _ in range(20):
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # A small receive buffer: the bottleneck's buffer, not the kernel's megabytes.
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                tcp.close()
                udp.close()
                continue
            break
        else:
            raise OSError("no port free for the relay")
        tcp.listen(8)
        self._tcp, self._udp = tcp, udp
        self.address = ("127.0.0.1", port)
        for target in (self._accept, self._udp_in, self._udp_out):
            threading.Thread(target=target, daemon=True, name="lossy-relay").start()
        return self

    @property
    def addr(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def cut(self, seconds: float = 0.0) -> None:
        """Drop every connection now; for ``seconds`` also refuse new ones and lose UDP."""
        self._blackhole_until = time.monotonic() + seconds
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                c.close()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        for s in (self._tcp, self._udp, *self._upstream.values()):
            with contextlib.suppress(OSError):
                s.close()
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> LossyRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- TCP ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._tcp.accept()
            except OSError:
                return
            if time.monotonic() < self._blackhole_until:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=2.0)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            self.counters.connections += 1
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, shaped: bool) -> None:
        rate = self.rate_bps / 8 if shaped and self.rate_bps else 0.0
        next_t = time.monotonic()
        chunks = _greedy_reader(src) if rate and self.greedy else None
        try:
            while True:
                data = chunks.get() if chunks is not None else src.recv(1460 if rate else 65536)
                if not data:
                    break
                if rate:
                    next_t = max(next_t, time.monotonic()) + len(data) / rate
                    delay = next_t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                dst.sendall(data)
                if shaped:
                    self.counters.tcp_bytes += len(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    # --- UDP ---------------------------------------------------------------------------

    def _udp_in(self) -> None:
        while not self._stop.is_set():
            try:
                data, client = self._udp.recvfrom(65536)
            except OSError:
                return
            up = self._upstream.get(client)
            if up is None:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.connect(self.target)
                self._upstream[client] = up
                threading.Thread(target=self._udp_back, args=(up, client), daemon=True).start()
            self.counters.datagrams += 1
            if time.monotonic() < self._blackhole_until or self._random.random() < self.loss:
                self.counters.dropped += 1
                continue
            with self._cond:
                if self._random.random() < self.reorder:
                    self.counters.reordered += 1
                    self._n += 1
                    heapq.heappush(
                        self._late, (time.monotonic() + self.reorder_ms / 1000, self._n, up, data)
                    )
                elif self.rate_bps and self._udp_queued + len(data) > self.queue_bytes:
                    self.counters.tail_dropped += 1
                else:
                    self._udp_queue.append((up, data))
                    self._udp_queued += len(data)
                self._cond.notify_all()

    def _udp_out(self) -> None:
        rate = self.rate_bps / 8
        next_t = time.monotonic()
        while not self._stop.is_set():
            with self._cond:
                now = time.monotonic()
                while self._late and self._late[0][0] <= now:
                    _, _, up, data = heapq.heappop(self._late)
                    self._udp_queue.append((up, data))
                    self._udp_queued += len(data)
                if not self._udp_queue:
                    wait = (self._late[0][0] - now) if self._late else 0.05
                    self._cond.wait(max(0.0005, wait))
                    continue
                up, data = self._udp_queue.popleft()
                self._udp_queued -= len(data)
            if rate:
                next_t = max(next_t, time.monotonic()) + len(data) / rate
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            with contextlib.suppress(OSError):
                up.send(data)

    def _udp_back(self, up: socket.socket, client: tuple[str, int]) -> None:
        while not self._stop.is_set():
            try:
                data = up.recv(65536)
            except OSError:
                if self._stop.is_set():
                    return
                continue
            with contextlib.suppress(OSError):
                self._udp.sendto(data, client)


def _greedy_reader(src: socket.socket) -> queue.Queue[bytes]:
    """Read ``src`` as fast as it comes into an unbounded queue (b"" at the end)."""
    chunks: queue.Queue[bytes] = queue.Queue()

    def run() -> None:
        try:
            while data := src.recv(65536):
                for i in range(0, len(data), 1460):
                    chunks.put(data[i : i + 1460])
        except OSError:
            pass
        chunks.put(b"")

    threading.Thread(target=run, daemon=True, name="lossy-relay-greedy").start()
    return chunks
