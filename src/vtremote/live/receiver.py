"""The live receiver: one port, TCP and UDP, any number of sources; decode, time, record.

``LiveReceiver(listen).start()`` binds a TCP listener and a UDP socket on the same
port. It makes a key (``rx.key``) unless given one or ``key=None``; a sender joins
only once it proved it holds it (:mod:`~vtremote.live.gate`, docs/live.md "Keys"),
and a UDP session's datagrams carry a tag under the session key it derived. Each
sender says HELLO with its source id; a source that connects again
(after a network drop, or a restarted sender) continues the same source: its
decoder waits for the keyframe the sender sends on every (re)connect.

Threads: one accepting TCP, one per TCP connection (reads, answers, times the
clock exchange), one for the UDP socket (every UDP association: reassembly, NACKs),
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtremote.errors import AuthError, EngineError, ErrorCode, RemoteProtocolError
from vtremote.live import protocol as p
from vtremote.live.auth import GENERATE, TAG_SIZE, KeyChoice, new_key, tag, untag
from vtremote.live.composite import CompositeConfig, Compositor
from vtremote.live.datagram import (
    DATAGRAM_HEADER,
    MAX_DATAGRAM,
    Lost,
    Reassembler,
    control_datagram,
    parse_header,
)
from vtremote.live.gate import HANDSHAKE_DEADLINE_S, Gate, now_ms
from vtremote.live.stats import combine
from vtremote.live.stream import ReceivedFrame, SourceEvents, SourceLink, SourceStream
from vtremote.live.transport import parse_address

log = logging.getLogger(__name__)

MAX_SOURCES = 16


class LiveReceiver:
    """Listen for live sources on ``listen`` (``HOST:PORT``; port 0 picks one for TCP and UDP).

    ``key``: the text senders must prove they hold; by default (:data:`GENERATE`) a new
    one, read back from :attr:`key`; ``None`` takes any sender (logged as a warning).

    Owns every :class:`SourceStream`; each reports its pictures and its end
    through :class:`SourceEvents`, and the receiver composites, delivers and
    wakes :meth:`wait`.
    """

    def __init__(
        self,
        listen: str = "127.0.0.1:0",
        *,
        record: str | Path | None = None,
        key: str | None | KeyChoice = GENERATE,
        on_frame: Callable[[ReceivedFrame], None] | None = None,
        udp_idle_s: float = 5.0,
        reconnect_wait_s: float = 10.0,
        give_up_ms: float = 150.0,
        composite: str | Path | None = None,
        composite_config: CompositeConfig | None = None,
    ) -> None:
        self.listen = parse_address(listen)
        self.record = Path(record) if record is not None else None
        #: Every source as a tile of one re-encoded picture (``composite``), or None.
        self.compositor = Compositor(composite, composite_config) if composite is not None else None
        #: The key senders must prove they hold (made here by default); None: anyone may send.
        self.key: str | None = new_key() if isinstance(key, KeyChoice) else key
        self._gate = Gate(self.key, log)
        self.on_frame = on_frame
        self.udp_idle_s = udp_idle_s
        self.reconnect_wait_s = reconnect_wait_s
        self.give_up_ns = int(give_up_ms * 1e6)
        self.frames: queue.Queue[ReceivedFrame] = queue.Queue(64)
        self.sources: dict[int, SourceStream] = {}
        self._finished: list[SourceStream] = []  # ended sources whose slot went to a new one
        self._next_index = 0
        self.foreign = 0  # datagrams from an unknown peer or with a wrong token
        self.malformed = 0  # bytes that are not our protocol
        self.forged = 0  # datagrams of a keyed session whose tag was wrong
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._udp_links: dict[tuple[Any, ...], _UdpSession] = {}
        self._events = SourceEvents(on_frame=self._on_frame, on_ended=self._on_ended)
        self.address: tuple[str, int] = self.listen

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> LiveReceiver:
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
        tcp.listen(128)
        self._tcp, self._udp = tcp, udp
        self.address = (host, bound)
        if self.key is None:
            log.warning(
                "live: no key: anyone who reaches %s:%d can send, end or replace a source",
                host,
                bound,
            )
        for target, name in ((self._accept_loop, "live-accept"), (self._udp_loop, "live-udp")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __enter__(self) -> LiveReceiver:
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
            if src.link is not None:
                src.link.close()
            src.close()
        if self.compositor is not None:
            self.compositor.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Until every source seen has ended (BYE, or gone longer than allowed).

        False on timeout, or when the receiver stops first.
        """
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
        return all(src.gone(now, self.reconnect_wait_s) for src in sources)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def current_sources(self) -> list[SourceStream]:
        """The sources holding a slot now (ended ones included until a new one needs it)."""
        with self._lock:
            return list(self.sources.values())

    def summary(self) -> dict[str, Any]:
        with self._lock:
            sources = [s.stats for s in (*self._finished, *self.sources.values())]
        out = combine(sources, foreign=self.foreign, malformed=self.malformed)
        out["forged_datagrams"] = self.forged
        out["faults"] = dict(self._gate.faults.counts)
        return out

    def __iter__(self) -> Iterator[ReceivedFrame]:
        while not self._stop.is_set():
            try:
                yield self.frames.get(timeout=0.2)
            except queue.Empty:
                continue

    # --- what the sources report (their decode threads) ----------------------------------

    def _on_frame(self, src: SourceStream, frame: ReceivedFrame) -> None:
        if self.compositor is not None:
            try:
                self.compositor.add(src.index, frame.frame, frame.capture_local_ns)
            except EngineError as e:  # the composite stops; the sources and their recordings go on
                log.error("live: %s", e)
                self.compositor = None
        self._deliver(frame)

    def _on_ended(self, src: SourceStream) -> None:
        self._notify()

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

    def _admit(self, hello: p.Hello) -> tuple[p.AckStatus, str, SourceStream | None]:
        """A slot for ``hello``'s source (proven, or on a receiver without a key)."""
        with self._lock:
            src = self.sources.get(hello.source_id)
            if src is not None:
                if (src.hello.codec, src.hello.width, src.hello.height) != (
                    hello.codec,
                    hello.width,
                    hello.height,
                ):
                    return (
                        p.AckStatus.UNSUPPORTED,
                        f"source {hello.source_id} changed codec or size",
                        None,
                    )
                return p.AckStatus.OK, "", src
            if len(self.sources) >= MAX_SOURCES and not self._evict_one():
                return p.AckStatus.BUSY, f"{MAX_SOURCES} sources already", None
            src = SourceStream(hello, self._next_index, self._events, record=self.record)
            self._next_index += 1
            self.sources[hello.source_id] = src
        log.info(
            "live: source %d (%s %dx%d %d/%d fps%s) joined",
            hello.source_id,
            src.stats.codec,
            hello.width,
            hello.height,
            hello.fps_num,
            hello.fps_den,
            f" '{hello.name}'" if hello.name else "",
        )
        return p.AckStatus.OK, "", src

    def _evict_one(self) -> bool:
        """Give the slot of an ended source (BYE, or gone too long) to a new one (lock held)."""
        now = time.monotonic()
        for sid, src in self.sources.items():
            if src.gone(now, self.reconnect_wait_s):
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
            self._gate.enter(conn, peer[0])  # may end the oldest idle handshakes
            t = threading.Thread(
                target=self._serve_tcp, args=(conn, peer), name="live-tcp", daemon=True
            )
            t.start()

    def _serve_tcp(self, conn: socket.socket, peer: Any) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        parser = p.StreamParser()
        send_lock = threading.Lock()

        def send(msg: p.Message) -> None:
            with send_lock:
                conn.sendmsg(p.serialize(msg))

        link: SourceLink | None = None
        src: SourceStream | None = None
        faults = self._gate.faults
        try:
            try:
                shook = self._gate.tcp_handshake(conn, peer[:2], parser, send)
            finally:
                self._gate.leave(conn)
            if shook is None:
                return
            hello, pending = shook
            status, text, src = self._admit(hello)
            if src is None:
                send(p.HelloAck(status, 0, text=text))
                faults.warning("refused", "live: refused %s:%d: %s", peer[0], peer[1], text)
                return
            send(
                p.HelloAck(p.AckStatus.OK, 0, p.Capability.METADATA | p.Capability.KEYFRAME_REQUEST)
            )
            link = SourceLink(src, send, "tcp", on_close=lambda: _shutdown(conn))
            src.attach(link, hello)
            conn.settimeout(0.1)
            while not self._stop.is_set() and not link.closed:
                for msg in pending:
                    if self._tcp_message(src, link, msg):
                        return
                link.control_tick(time.monotonic_ns())
                try:
                    data = conn.recv(1 << 18)
                except TimeoutError:
                    pending = []
                    continue
                pending = parser.feed(data)
                if not data:
                    log.warning(
                        "live: source %d: connection closed without BYE", src.hello.source_id
                    )
                    return
        except TimeoutError:
            faults.warning(
                "deadline",
                "live: %s:%d: no handshake within %g s; closed",
                peer[0],
                peer[1],
                HANDSHAKE_DEADLINE_S,
            )
        except RemoteProtocolError as e:
            self.malformed += 1
            faults.warning("malformed", "live: %s:%d: %s; closed", peer[0], peer[1], e)
            with contextlib.suppress(OSError):
                send(p.Error(int(ErrorCode.BAD_REQUEST), str(e)))
        except OSError as e:
            if link is None or not link.closed:
                faults.warning("lost", "live: %s:%d: connection lost: %s", peer[0], peer[1], e)
        finally:
            if src is not None and link is not None:
                src.detach(link)
                self._notify()
            conn.close()

    def _tcp_message(self, src: SourceStream, link: SourceLink, msg: p.Message) -> bool:
        """Handle one message; True at the end of the connection."""
        if isinstance(msg, p.ClockReply):
            src.clock.add(msg.t0, msg.t1, msg.t2, time.monotonic_ns())
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
        buf = bytearray(MAX_DATAGRAM + TAG_SIZE + 64)
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
        session = self._udp_links.get(peer)
        if session is not None and session.key is not None:
            body = untag(session.key, data)
            if body is None and not _handshake_type(data):
                self.forged += 1
                self._gate.faults.warning(
                    "forged", "live udp: %s:%d: datagram with a wrong tag dropped", *peer[:2]
                )
                return
            data = data if body is None else body
        try:
            head = parse_header(data)
        except RemoteProtocolError as e:
            self.malformed += 1
            self._gate.faults.warning("malformed", "live udp: %s:%d: %s", peer[0], peer[1], e)
            return
        fragment = data[DATAGRAM_HEADER.size :]
        if head.type in (p.MessageType.HELLO, p.MessageType.AUTH):
            self._udp_handshake(head.type, fragment, peer)
            return
        if session is None or head.token != session.token:
            self.foreign += 1  # no state, no line: late retransmits after BYE land here too
            return
        session.heard = time.monotonic()
        if head.type in p.ORDERED:
            session.reassembler.receive(head, fragment, now)
            session.link.source.stats.datagrams += 1
            return
        try:
            msg = p.parse_payload(head.type, bytes(fragment))
        except RemoteProtocolError:
            self.malformed += 1
            return
        if isinstance(msg, p.ClockReply):
            session.link.source.clock.add(msg.t0, msg.t1, msg.t2, now)

    def _udp_handshake(self, kind: int, fragment: memoryview, peer: Any) -> None:
        """HELLO or AUTH: no state is made for either until a sender is admitted."""
        try:
            msg = p.parse_payload(kind, bytes(fragment))
        except RemoteProtocolError as e:
            self.malformed += 1
            self._gate.faults.warning("malformed", "live udp: %s:%d: %s", peer[0], peer[1], e)
            return
        session = self._udp_links.get(peer)
        if isinstance(msg, p.Hello):
            reply = self._gate.answer_hello(msg, peer[:2], now_ms())
            if reply is not None:
                self._udp_send(reply, peer, 0, None)
            elif session is not None and session.attempt == msg.nonce and not session.closed:
                self._udp_ack(session, peer)  # the same attempt again: the ACK was lost
            else:
                self._udp_start(msg, peer, None, msg.nonce)
            return
        assert isinstance(msg, p.Auth)
        try:
            hello, key = self._gate.check_auth(msg, peer[:2], now_ms())
        except AuthError as e:
            self._udp_send(p.HelloAck(p.AckStatus.REFUSED, 0, text=str(e)), peer, 0, None)
            return
        if session is not None and session.attempt == msg.nonce and not session.closed:
            self._udp_ack(session, peer)
        else:
            self._udp_start(hello, peer, key, msg.nonce)

    def _udp_send(self, msg: p.Message, peer: Any, token: int, key: bytes | None) -> None:
        udp = self._udp
        assert udp is not None
        datagram = control_datagram(msg, token)
        with contextlib.suppress(OSError):
            udp.sendto(datagram if key is None else datagram + tag(key, datagram), peer)

    def _udp_ack(self, session: _UdpSession, peer: Any) -> None:
        caps = p.Capability.RETRANSMIT
        self._udp_send(p.HelloAck(p.AckStatus.OK, session.token, caps), peer, 0, session.key)

    def _udp_start(self, hello: p.Hello, peer: Any, key: bytes | None, attempt: object) -> None:
        """A session for an admitted sender at ``peer``; ``key`` tags its datagrams."""
        status, text, src = self._admit(hello)
        if src is None:
            self._udp_send(p.HelloAck(status, 0, text=text), peer, 0, key)
            return
        token = secrets.randbits(32) or 1

        def send(msg: p.Message) -> None:
            self._udp_send(msg, peer, token, key)

        def forget() -> None:
            cur = self._udp_links.get(peer)
            if cur is not None and cur.link is link:
                del self._udp_links[peer]

        link = SourceLink(src, send, "udp", on_close=forget)
        reasm = Reassembler(max_bytes=8 * 1024 * 1024, give_up_ns=self.give_up_ns)
        src.attach(link, hello)
        session = _UdpSession(link, reasm, token, time.monotonic(), key, attempt)
        self._udp_links[peer] = session
        self._udp_ack(session, peer)

    def _udp_tick(self, now: int) -> None:
        for session in list(self._udp_links.values()):
            link, reasm, heard, src = (
                session.link,
                session.reassembler,
                session.heard,
                session.source,
            )
            for item in reasm.poll(now):
                if isinstance(item, Lost):
                    link.request_keyframe(p.KeyframeReason.LOSS, item.first)
                    src.put(item, block=False)
                    continue
                if not src.put(item, block=False):
                    src.put(Lost(0, 1), block=False)
                    link.request_keyframe(p.KeyframeReason.LOSS, 0)
                if isinstance(item, p.Bye):
                    link.close()  # forgets the association
                    break
            else:
                missing = reasm.nacks(now)
                if missing:
                    src.stats.retransmit_requests += len(missing)
                    with contextlib.suppress(OSError):
                        link.send_control(p.Nack(tuple(missing)))
                src.stats.recovered_datagrams = reasm.recovered
                link.control_tick(now, reasm)
                if time.monotonic() - heard > self.udp_idle_s:
                    log.warning(
                        "live: source %d silent for %g s over UDP",
                        src.hello.source_id,
                        self.udp_idle_s,
                    )
                    link.close()  # forgets the association
                    src.detach(link, at=time.monotonic() - self.reconnect_wait_s + 0.5)
                    self._notify()


@dataclass
class _UdpSession:
    """One admitted UDP sender: its link, reassembly, token and (with a key) session key."""

    link: SourceLink
    reassembler: Reassembler
    token: int
    heard: float  # monotonic s of its last datagram
    key: bytes | None  # every datagram of the session carries a tag under it
    attempt: object  # HELLO nonce (open) or AUTH nonce (keyed): a repeat is the same attempt

    @property
    def source(self) -> SourceStream:
        return self.link.source

    @property
    def closed(self) -> bool:
        return self.link.closed


def _handshake_type(data: memoryview) -> bool:
    """A HELLO or AUTH datagram: those come untagged, before a session key exists."""
    return data.nbytes > 3 and data[3] in (p.MessageType.HELLO, p.MessageType.AUTH)


def _shutdown(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
