"""The live receiver: one port, TCP and UDP, any number of sources; decode, time, record.

``Receiver(listen).start()`` binds a TCP listener and a UDP socket on the same
port. Each sender says HELLO with its source id; a source that connects again
(after a network drop, or a restarted sender) continues the same source: its
decoder waits for the keyframe the sender sends on every (re)connect.

Threads: one accepting TCP, one per TCP connection (reads, answers, times the
clock exchange), one for the UDP socket (every UDP session: reassembly, NACKs),
and one decode thread per source, fed in order through a bounded queue. A TCP
reader blocks when its source's queue is full (TCP pushes back to the sender,
which drops frames); the UDP thread never blocks: it drops the picture and asks
for a keyframe.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vtremote.errors import EngineError, ErrorCode, RemoteProtocolError, VTRemoteError
from vtremote.live import protocol as p
from vtremote.live.clock import ClockSync
from vtremote.live.codec import LiveDecoder
from vtremote.live.datagram import (
    DATAGRAM_HEADER,
    MAX_DATAGRAM,
    Lost,
    Reassembler,
    control_datagram,
    parse_header,
)
from vtremote.live.recorder import Recorder, path_for_source
from vtremote.live.stats import SourceStats, combine
from vtremote.live.transport import parse_address

log = logging.getLogger(__name__)

CONTROL_INTERVAL_NS = 500_000_000
KEYFRAME_REQUEST_INTERVAL_NS = 200_000_000
DECODE_QUEUE = 64
#: Compressed bytes waiting for one source's decoder; beyond, TCP readers wait and UDP drops.
DECODE_QUEUE_BYTES = 32 * 1024 * 1024
HANDSHAKE_TIMEOUT_S = 5.0
MAX_SOURCES = 16


@dataclass(frozen=True)
class ReceivedFrame:
    """One decoded picture and when it was captured, on both clocks."""

    source_id: int
    seq: int
    frame: av.VideoFrame
    keyframe: bool
    capture_ns: int  # sender's clock
    capture_local_ns: int  # the same instant on this machine's clock
    latency_ns: int  # capture to decoded
    metadata: tuple[Any, ...] = ()


class _Session:
    """One connection or UDP association of a source: how to talk back."""

    def __init__(self, source: _Source, send: Callable[[p.Message], None], transport: str) -> None:
        self.source = source
        self.send_control = send
        self.transport = transport
        self.closed = False
        self.clock_id = 0
        self.next_control = 0
        self.last_kf_request = 0
        self._seen = self._missing = 0
        self.close_hook: Callable[[], None] = lambda: None

    def control_tick(self, now: int, reassembler: Reassembler | None = None) -> None:
        if now < self.next_control:
            return
        self.next_control = now + CONTROL_INTERVAL_NS
        self.clock_id += 1
        st = self.source.stats
        recent = st.recent(now, CONTROL_INTERVAL_NS)  # what the sender reacts to: the last interval
        loss = 0
        if reassembler is not None:  # over the last interval, not the whole session
            seen = reassembler.datagrams + reassembler.missing_total
            d_seen, d_missing = seen - self._seen, reassembler.missing_total - self._missing
            self._seen, self._missing = seen, reassembler.missing_total
            loss = int(1000 * d_missing / d_seen) if d_seen > 0 else 0
        try:
            self.send_control(p.ClockRequest(self.clock_id & 0xFFFFFFFF, time.monotonic_ns()))
            self.send_control(p.Stats(
                st.frames & 0xFFFFFFFF, st.lost & 0xFFFFFFFF, st.bytes,
                _us(recent["p50"]), _us(recent["p99"]), min(loss, 1000),
            ))
        except (OSError, VTRemoteError):
            pass

    def request_keyframe(self, reason: p.KeyframeReason, seq: int) -> None:
        now = time.monotonic_ns()
        if now - self.last_kf_request < KEYFRAME_REQUEST_INTERVAL_NS:
            return
        self.last_kf_request = now
        self.source.stats.keyframe_requests += 1
        with contextlib.suppress(OSError, VTRemoteError):
            self.send_control(p.KeyframeRequest(reason, seq & 0xFFFFFFFF))


def _us(ms: float) -> int:
    return 0 if ms != ms else min(0xFFFFFFFF, int(ms * 1000))


class _Source:
    """Everything about one source id: stats, clock, decoder thread, recording."""

    def __init__(self, receiver: Receiver, hello: p.Hello, index: int) -> None:
        self.receiver = receiver
        self.hello = hello
        self.index = index
        self.stats = SourceStats(hello.source_id, p.Codec(hello.codec).name.lower(), hello.width, hello.height)
        self.clock = ClockSync()
        self.session: _Session | None = None
        self._queue: deque[p.Message | Lost | None] = deque()
        self._queued_bytes = 0
        self._queue_cond = threading.Condition()
        self.ended = False
        self.ended_at = 0.0
        self.disconnected_at: float | None = None
        self._decoder = LiveDecoder(hello.codec)
        self._waiting_key = True
        self._pending_meta: list[p.Metadata] = []
        self._recorder: Recorder | None = None
        self._thread = threading.Thread(target=self._run, name=f"live-decode-{hello.source_id}", daemon=True)
        self._thread.start()

    def attach(self, session: _Session, hello: p.Hello) -> None:
        old, self.session = self.session, session
        if old is not None and old is not session:
            old.closed = True
            old.close_hook()
        self.hello = hello
        self.stats.connections += 1
        self.ended = False
        self.disconnected_at = None
        self.put(Lost(0, 0), block=True)  # reset the decoder, in order with the pictures

    def detach(self, session: _Session) -> None:
        if self.session is session and not self.ended:
            self.disconnected_at = time.monotonic()

    def put(self, item: p.Message | Lost | None, *, block: bool) -> bool:
        """Queue for the decoder: at most DECODE_QUEUE items and DECODE_QUEUE_BYTES bytes.

        ``block``: wait (up to 2 s) for room, else False at once. Control items
        (None, Lost) always fit.
        """
        size = _size(item)
        deadline = time.monotonic() + 2.0
        with self._queue_cond:
            while size and self._queue and (
                len(self._queue) >= DECODE_QUEUE or self._queued_bytes + size > DECODE_QUEUE_BYTES
            ):
                left = deadline - time.monotonic()
                if not block or left <= 0:
                    return False
                self._queue_cond.wait(left)
            self._queue.append(item)
            self._queued_bytes += size
            self._queue_cond.notify_all()
        return True

    def _get(self) -> p.Message | Lost | None:
        with self._queue_cond:
            while not self._queue:
                self._queue_cond.wait()
            item = self._queue.popleft()
            self._queued_bytes -= _size(item)
            self._queue_cond.notify_all()
            return item

    def close(self) -> None:
        self.put(None, block=True)
        self._thread.join(10.0)

    def _run(self) -> None:
        try:
            while True:
                item = self._get()
                if item is None:
                    break
                self._handle(item)
        except Exception:
            log.exception("live: decode thread of source %d failed", self.hello.source_id)
        finally:
            if self._recorder is not None:
                self._recorder.close()
            self.ended = True
            self.ended_at = time.monotonic()

    def _handle(self, item: p.Message | Lost) -> None:
        st = self.stats
        if isinstance(item, Lost):
            if item.count == 0:  # a new connection: start over at its keyframe
                self._decoder.reset()
            self._waiting_key = True
            return
        if isinstance(item, p.Metadata):
            st.metadata += 1
            self._pending_meta.append(item)
            if len(self._pending_meta) > 1000:
                self._pending_meta.pop(0)
            return
        if isinstance(item, p.Bye):
            log.info("live: source %d said BYE (sent %d, dropped %d)", self.hello.source_id,
                     item.frames_sent, item.frames_dropped)
            st.sender_dropped = max(st.sender_dropped, item.frames_dropped)
            self.ended = True
            self.ended_at = time.monotonic()
            self.receiver._source_ended(self)
            return
        if not isinstance(item, p.Video):
            return
        data = bytes(item.data)
        st.bytes += len(data)
        st.sender_dropped = max(st.sender_dropped, item.sender_dropped)
        # Its own metadata, and any of earlier frames that were dropped before it.
        metas = [m for m in self._pending_meta if not _after(m.seq, item.seq)]
        self._pending_meta = [m for m in self._pending_meta if _after(m.seq, item.seq)]
        session = self.session
        if self._waiting_key and not item.keyframe:
            st.lost += 1
            if session is not None:
                session.request_keyframe(p.KeyframeReason.LOSS if st.frames else p.KeyframeReason.JOIN, item.seq)
            self._orphans(metas)
            return
        try:
            frames = self._decoder.decode(data)
        except EngineError as e:
            log.warning("live: source %d frame %d: %s", self.hello.source_id, item.seq, e)
            st.lost += 1
            self._waiting_key = True
            self._decoder.reset()
            if session is not None:
                session.request_keyframe(p.KeyframeReason.DECODE_ERROR, item.seq)
            self._orphans(metas)
            return
        self._waiting_key = False
        now = time.monotonic_ns()
        best = self.clock.best()
        if best is not None:
            st.clock_offset_ns, st.clock_delay_ns = best.offset_ns, best.delay_ns
        local = self.clock.to_local(item.capture_ns)
        latency = now - local
        if not frames:
            st.lost += 1
            self._orphans(metas)
            return
        pts = self._record(data, item, metas)
        values = tuple(m.value() for m in metas)
        for frame in frames[-1:]:
            st.frame(now, len(data), latency / 1e6, item.keyframe)
            self.receiver._deliver(ReceivedFrame(
                self.hello.source_id, item.seq, frame, item.keyframe, item.capture_ns, local, latency, values,
            ))
        del pts

    def _record(self, data: bytes, item: p.Video, metas: list[p.Metadata]) -> int | None:
        path = self.receiver.record
        if path is None:
            return None
        if self._recorder is None:
            self._recorder = Recorder(
                path_for_source(path, self.index, self.hello.source_id), self.hello.codec,
                self.hello.width, self.hello.height, Fraction(self.hello.fps_num, self.hello.fps_den),
            )
        pts = self._recorder.write(data, item.keyframe, item.capture_ns)
        for m in metas:
            self._recorder.metadata({
                "source": self.hello.source_id, "seq": m.seq, "frame": self._recorder.frames - 1,
                "pts_ms": pts, "capture_ns": m.capture_ns, "data": m.value(),
            })
        return pts

    def _orphans(self, metas: list[p.Metadata]) -> None:
        """Metadata of a picture that was not shown: still recorded, with no frame."""
        if self._recorder is not None:
            for m in metas:
                self._recorder.metadata({
                    "source": self.hello.source_id, "seq": m.seq, "frame": None, "pts_ms": None,
                    "capture_ns": m.capture_ns, "data": m.value(),
                })


def _size(item: p.Message | Lost | None) -> int:
    """Bytes an item holds in a decode queue; 0 for the receiver's own markers, which always fit."""
    if item is None or isinstance(item, Lost):
        return 0
    if isinstance(item, (p.Video, p.Audio, p.Metadata)):
        return max(1, p.nbytes(item.data))
    return 1


def _after(a: int, b: int) -> bool:
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


class Receiver:
    """Listen for live sources on ``listen`` (``HOST:PORT``; port 0 picks one for TCP and UDP)."""

    def __init__(
        self,
        listen: str = "127.0.0.1:0",
        *,
        record: str | Path | None = None,
        key: int = 0,
        on_frame: Callable[[ReceivedFrame], None] | None = None,
        udp_idle_s: float = 5.0,
        reconnect_wait_s: float = 10.0,
        give_up_ms: float = 150.0,
    ) -> None:
        self.listen = parse_address(listen)
        self.record = Path(record) if record is not None else None
        self.key = key
        self.on_frame = on_frame
        self.udp_idle_s = udp_idle_s
        self.reconnect_wait_s = reconnect_wait_s
        self.give_up_ns = int(give_up_ms * 1e6)
        self.frames: queue.Queue[ReceivedFrame] = queue.Queue(64)
        self.sources: dict[int, _Source] = {}
        self._finished: list[_Source] = []  # ended sources whose slot went to a new one
        self._next_index = 0
        self.foreign = 0  # datagrams from an unknown peer or with a wrong token
        self.malformed = 0  # bytes that are not our protocol
        self.refused = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._udp_sessions: dict[tuple[Any, ...], tuple[_Session, Reassembler, int, float]] = {}
        self.address: tuple[str, int] = self.listen

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Receiver:
        host, port = self.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(20):
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, port))
            bound = tcp.getsockname()[1]
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            try:
                udp.bind((host, bound))
            except OSError:
                tcp.close()
                udp.close()
                if port:
                    raise
                continue  # port 0: that number is taken for UDP; pick another
            break
        else:
            raise OSError(f"no port free for both TCP and UDP on {host}")
        tcp.listen(16)
        self._tcp, self._udp = tcp, udp
        self.address = (host, bound)
        for target, name in ((self._accept_loop, "live-accept"), (self._udp_loop, "live-udp")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening, finish decoding what arrived, close the recordings."""
        self._stop.set()
        for sock in (self._tcp, self._udp):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        for t in self._threads:
            t.join(3.0)
        with self._lock:
            sources = [*self.sources.values(), *self._finished]
        for src in sources:
            if src.session is not None:
                src.session.closed = True
                src.session.close_hook()
            src.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Until every source seen has ended (BYE, or gone longer than allowed); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not self._all_ended():
                if self._stop.is_set():
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(0.2 if left is None else min(0.2, left))
        return True

    def _all_ended(self) -> bool:
        with self._lock:
            sources = list(self.sources.values())
        if not sources:
            return False
        now = time.monotonic()
        for src in sources:
            if src.ended:
                continue
            if src.disconnected_at is not None and now - src.disconnected_at > self.reconnect_wait_s:
                continue
            return False
        return True

    def _source_ended(self, src: _Source) -> None:
        with self._changed:
            self._changed.notify_all()

    def summary(self) -> dict[str, Any]:
        with self._lock:
            sources = [s.stats for s in (*self._finished, *self.sources.values())]
        return combine(sources, foreign=self.foreign, malformed=self.malformed)

    def __iter__(self) -> Iterator[ReceivedFrame]:
        while not self._stop.is_set():
            try:
                yield self.frames.get(timeout=0.2)
            except queue.Empty:
                continue

    def _deliver(self, frame: ReceivedFrame) -> None:
        if self.on_frame is not None:
            self.on_frame(frame)
            return
        while True:
            try:
                self.frames.put_nowait(frame)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self.frames.get_nowait()  # nobody is reading fast enough: keep the newest

    # --- sources -------------------------------------------------------------------------

    def _admit(self, hello: p.Hello) -> tuple[p.AckStatus, str, _Source | None]:
        if self.key and not secrets.compare_digest(hello.key.to_bytes(8, "big"), self.key.to_bytes(8, "big")):
            self.refused += 1
            return p.AckStatus.REFUSED, "wrong key", None
        with self._lock:
            src = self.sources.get(hello.source_id)
            if src is not None:
                if (src.hello.codec, src.hello.width, src.hello.height) != (hello.codec, hello.width, hello.height):
                    return p.AckStatus.UNSUPPORTED, f"source {hello.source_id} changed codec or size", None
                return p.AckStatus.OK, "", src
            if len(self.sources) >= MAX_SOURCES and not self._evict_one():
                return p.AckStatus.BUSY, f"{MAX_SOURCES} sources already", None
            src = _Source(self, hello, self._next_index)
            self._next_index += 1
            self.sources[hello.source_id] = src
        log.info("live: source %d (%s %dx%d %d/%d fps%s) joined", hello.source_id, src.stats.codec,
                 hello.width, hello.height, hello.fps_num, hello.fps_den, f" '{hello.name}'" if hello.name else "")
        return p.AckStatus.OK, "", src

    def _evict_one(self) -> bool:
        """Give the slot of an ended source (BYE, or gone too long) to a new one (lock held)."""
        now = time.monotonic()
        for sid, src in self.sources.items():
            gone = src.disconnected_at is not None and now - src.disconnected_at > self.reconnect_wait_s
            if src.ended or gone:
                del self.sources[sid]
                self._finished.append(src)
                threading.Thread(target=src.close, name="live-close", daemon=True).start()
                return True
        return False

    # --- TCP -----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._tcp is not None
        while not self._stop.is_set():
            try:
                conn, peer = self._tcp.accept()
            except OSError:
                return
            t = threading.Thread(target=self._tcp_session, args=(conn, peer), name="live-tcp", daemon=True)
            t.start()

    def _tcp_session(self, conn: socket.socket, peer: Any) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        parser = p.StreamParser()
        send_lock = threading.Lock()

        def send(msg: p.Message) -> None:
            with send_lock:
                conn.sendmsg(p.serialize(msg))

        session: _Session | None = None
        src: _Source | None = None
        try:
            conn.settimeout(HANDSHAKE_TIMEOUT_S)
            first: list[p.Message] = []
            while not first:
                data = conn.recv(4096)
                if not data:
                    return
                first = parser.feed(data)
            hello = first[0]
            if not isinstance(hello, p.Hello):
                raise RemoteProtocolError(f"expected HELLO, got {type(hello).__name__}")
            status, text, src = self._admit(hello)
            if src is None:
                send(p.HelloAck(status, 0, text=text))
                log.warning("live: refused %s: %s", peer, text)
                return
            send(p.HelloAck(p.AckStatus.OK, 0, p.Capability.METADATA | p.Capability.KEYFRAME_REQUEST))
            session = _Session(src, send, "tcp")
            session.close_hook = lambda: _shutdown(conn)
            src.attach(session, hello)
            conn.settimeout(0.1)
            pending = first[1:]
            while not self._stop.is_set() and not session.closed:
                for msg in pending:
                    if self._tcp_message(src, session, msg):
                        return
                session.control_tick(time.monotonic_ns())
                try:
                    data = conn.recv(1 << 18)
                except TimeoutError:
                    pending = []
                    continue
                pending = parser.feed(data)
                if not data:
                    log.warning("live: source %d: connection closed without BYE", src.hello.source_id)
                    return
        except RemoteProtocolError as e:
            self.malformed += 1
            log.warning("live: %s: %s; closing the connection", peer, e)
            with contextlib.suppress(OSError):
                send(p.Error(int(ErrorCode.BAD_REQUEST), str(e)))
        except OSError as e:
            if session is None or not session.closed:
                log.warning("live: %s: connection lost: %s", peer, e)
        finally:
            if src is not None and session is not None:
                src.detach(session)
                with self._changed:
                    self._changed.notify_all()
            conn.close()

    def _tcp_message(self, src: _Source, session: _Session, msg: p.Message) -> bool:
        """Handle one message; True at the end of the session."""
        if isinstance(msg, p.ClockReply):
            sample = src.clock.add(msg.t0, msg.t1, msg.t2, time.monotonic_ns())
            del sample
            return False
        if isinstance(msg, (p.Video, p.Metadata, p.Audio, p.Bye)):
            if not src.put(msg, block=True):
                src.put(Lost(0, 1), block=True)
            return isinstance(msg, p.Bye)
        if isinstance(msg, p.Hello):
            raise RemoteProtocolError("second HELLO on one connection")
        return False

    # --- UDP -----------------------------------------------------------------------------

    def _udp_loop(self) -> None:
        udp = self._udp
        assert udp is not None
        buf = bytearray(MAX_DATAGRAM + 64)
        view = memoryview(buf)
        udp.settimeout(0.005)
        while not self._stop.is_set():
            try:
                n, peer = udp.recvfrom_into(buf)
            except TimeoutError:
                n, peer = -1, None
            except OSError:
                if self._stop.is_set():
                    return
                continue
            now = time.monotonic_ns()
            if n >= 0:
                self._udp_datagram(view[:n], peer, now)
            self._udp_tick(now)

    def _udp_datagram(self, data: memoryview, peer: Any, now: int) -> None:
        try:
            head = parse_header(data)
        except RemoteProtocolError as e:
            self.malformed += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("live udp: %s: %s", peer, e)
            return
        fragment = data[DATAGRAM_HEADER.size :]
        if head.type == p.MessageType.HELLO:
            self._udp_hello(fragment, peer, now)
            return
        entry = self._udp_sessions.get(peer)
        if entry is None or head.token != entry[2]:
            self.foreign += 1
            return
        session, reasm, token, _ = entry
        self._udp_sessions[peer] = (session, reasm, token, time.monotonic())
        if head.type in p.ORDERED:
            reasm.receive(head, fragment, now)
            session.source.stats.datagrams += 1
            return
        try:
            msg = p.parse_payload(head.type, bytes(fragment))
        except RemoteProtocolError:
            self.malformed += 1
            return
        if isinstance(msg, p.ClockReply):
            session.source.clock.add(msg.t0, msg.t1, msg.t2, now)

    def _udp_hello(self, fragment: memoryview, peer: Any, now: int) -> None:
        udp = self._udp
        assert udp is not None
        try:
            hello = p.parse_payload(p.MessageType.HELLO, bytes(fragment))
        except RemoteProtocolError:
            self.malformed += 1
            return
        assert isinstance(hello, p.Hello)
        entry = self._udp_sessions.get(peer)
        if entry is not None and entry[0].source.hello.nonce == hello.nonce and not entry[0].closed:
            token = entry[2]  # the same attempt again: the ACK was lost
        else:
            status, text, src = self._admit(hello)
            if src is None:
                udp.sendto(control_datagram(p.HelloAck(status, 0, text=text), 0), peer)
                return
            token = secrets.randbits(32) or 1

            def send(msg: p.Message, _peer: Any = peer, _token: int = token) -> None:
                udp.sendto(control_datagram(msg, _token), _peer)

            session = _Session(src, send, "udp")
            reasm = Reassembler(max_bytes=8 * 1024 * 1024, give_up_ns=self.give_up_ns)

            def forget(_peer: Any = peer, _session: _Session = session) -> None:
                cur = self._udp_sessions.get(_peer)
                if cur is not None and cur[0] is _session:
                    del self._udp_sessions[_peer]

            session.close_hook = forget
            src.attach(session, hello)
            self._udp_sessions[peer] = (session, reasm, token, time.monotonic())
        with contextlib.suppress(OSError):
            udp.sendto(control_datagram(p.HelloAck(p.AckStatus.OK, token, p.Capability.RETRANSMIT), token), peer)

    def _udp_tick(self, now: int) -> None:
        for peer, (session, reasm, _token, heard) in list(self._udp_sessions.items()):
            src = session.source
            for item in reasm.poll(now):
                if isinstance(item, Lost):
                    session.request_keyframe(p.KeyframeReason.LOSS, item.first)
                    src.put(item, block=False)
                    continue
                if not src.put(item, block=False):
                    src.put(Lost(0, 1), block=False)
                    session.request_keyframe(p.KeyframeReason.LOSS, 0)
                if isinstance(item, p.Bye):
                    session.closed = True
                    del self._udp_sessions[peer]
                    break
            else:
                missing = reasm.nacks(now)
                if missing:
                    src.stats.retransmit_requests += len(missing)
                    with contextlib.suppress(OSError):
                        session.send_control(p.Nack(tuple(missing)))
                src.stats.recovered_datagrams = reasm.recovered
                session.control_tick(now, reasm)
                if time.monotonic() - heard > self.udp_idle_s:
                    log.warning("live: source %d silent for %g s over UDP", src.hello.source_id, self.udp_idle_s)
                    session.closed = True
                    del self._udp_sessions[peer]
                    src.detach(session)
                    src.disconnected_at = time.monotonic() - self.reconnect_wait_s + 0.5
                    with self._changed:
                        self._changed.notify_all()


def _shutdown(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
