"""The conformance run: an embedded vtremoted per engine, driven by the real client.

For every engine that loads (or the one named), for every codec it reports, and
for NV12 (and P010 where the codec has a 10-bit form): encode the synthetic
source, decode a reference clip, and transcode the H.264 reference clip with a
scale, each through a real session on loopback, so the wire path is part of what
is checked. Every result is a :class:`~vtremote.selftest.report.Check`.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import av

from vtremote.client import ConnectionOptions, RemoteDecoder, RemoteEncoder, RemoteTranscoder
from vtremote.engines import registry
from vtremote.engines.base import CODECS, Mode
from vtremote.errors import ConfigError, EngineError, UnsupportedError, VTRemoteError
from vtremote.selftest import checks as ck
from vtremote.selftest import media
from vtremote.selftest.report import Check, Report
from vtremote.server import Server, ServerConfig

log = logging.getLogger(__name__)

#: What a failing session raises: ours, FFmpeg's (a local decoder), the socket's.
FAILURES = (VTRemoteError, av.FFmpegError, OSError)


class NotOffered(Exception):
    """The server refused a 10-bit session at CONFIGURE: a SKIP, not a FAIL."""


@contextmanager
def refusal(scope: ck.Scope) -> Iterator[None]:
    """Opening a session: a P010 session refused (by the server or the client's checks) means
    the engine does not offer 10-bit here."""
    try:
        yield
    except (UnsupportedError, ConfigError) as e:
        if scope.pix_fmt == "p010":
            raise NotOffered(str(e)) from e
        raise


@dataclass(frozen=True, slots=True)
class Settings:
    """The source and the encoder targets of a run."""

    source: media.Source
    bitrate: int
    gop: int
    quick: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.source),
            "bitrate": self.bitrate,
            "gop": self.gop,
            "quick": self.quick,
        }


#: 10 s of 1280x720 at 30 fps, 2 Mb/s, a keyframe every 2 s: a realistic stream.
FULL = Settings(media.Source(1280, 720, 30, 10), bitrate=2_000_000, gop=60)
#: The same 10 s (the bitrate check needs them) small and at 15 fps, for a quick look and
#: the test suite.
QUICK = Settings(media.Source(320, 180, 15, 10), bitrate=250_000, gop=30, quick=True)


def pix_fmts(codec: str) -> tuple[str, ...]:
    """NV12 always; P010 for the codecs that have a 10-bit form on the wire (not H.264)."""
    return ("nv12",) if codec == "h264" else ("nv12", "p010")


def engines_to_test(name: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The engines to run (all that load under ``auto``, never null) and every probe's result."""
    key = registry.canonical(name)
    names = registry.AUTO_ORDER if key == "auto" else (key,)
    described: list[dict[str, Any]] = [
        {
            "engine": result.engine,
            "hardware": result.hardware,
            "description": result.description,
            "probe": {f"{c} {m}": r or "ok" for (c, m), r in result.results.items()},
            # A named engine runs even if it cannot load: its server.start check fails.
            "tested": result.works or key != "auto",
        }
        for result in registry.probe_all(names)
    ]
    return [d["engine"] for d in described if d["tested"]], described


class SelfTest:
    """One run: the source frames, the reference clips (made once) and the report."""

    def __init__(
        self, settings: Settings, report: Report, out: Callable[[Check], None], scratch: str
    ) -> None:
        self.settings = settings
        self.report = report
        self.out = out
        self.scratch = scratch
        self._frames: dict[str, list[av.VideoFrame]] = {}
        self._clips: dict[tuple[str, str], str] = {}
        self.connection = ConnectionOptions(timeout=60.0)

    def frames(self, pix_fmt: str) -> list[av.VideoFrame]:
        fmt = "p010le" if pix_fmt == "p010" else pix_fmt
        if fmt not in self._frames:
            self._frames[fmt] = media.make_frames(self.settings.source, fmt)
        return self._frames[fmt]

    def clip(self, codec: str, pix_fmt: str) -> str:
        """A reference clip of the source written by this machine's software encoder."""
        key = (codec, pix_fmt)
        if key not in self._clips:
            path = f"{self.scratch}/{codec}-{pix_fmt}.mp4"
            s = self.settings
            media.write_reference(path, codec, self.frames(pix_fmt), s.source, s.gop, s.bitrate * 2)
            self._clips[key] = path
        return self._clips[key]

    def scope(self, engine: str, codec: str, pix_fmt: str, step: str) -> ck.Scope:
        return ck.Scope(engine, codec, pix_fmt, step, self.emit)

    def emit(self, check: Check) -> None:
        self.report.checks.append(check)
        self.out(check)

    # -- one engine --------------------------------------------------------------------------

    def run_engine(self, engine: str) -> None:
        server = Server(ServerConfig(listen="127.0.0.1:0", engine=engine, max_sessions=0))
        try:
            server.start()
        except FAILURES as e:
            self.scope(engine, "-", "-", "server").add(
                "start", False, "", f"embedded vtremoted --engine {engine} cannot start: {e}"
            )
            return
        host, port = server.address[:2]
        address = f"{host}:{port}"
        try:
            cls = registry.engine_class(engine)
            # The v1 codecs, and the extension codecs (AV1) the server offers for this engine.
            for codec in (*CODECS, *registry.extension_codecs(engine)):
                for pix_fmt in pix_fmts(codec):
                    self.run_codec(address, cls.probe_error, engine, codec, pix_fmt)
        finally:
            server.shutdown(10.0)

    def run_codec(
        self,
        address: str,
        probe: Callable[[str, Mode], str | None],
        engine: str,
        codec: str,
        pix_fmt: str,
    ) -> None:
        steps: list[tuple[str, Mode, Callable[[ck.Scope, str], None]]] = [
            ("encode", "encode", self.encode),
            ("decode", "decode", self.decode),
        ]
        if pix_fmt == "nv12":  # the transcode reads the H.264 reference clip
            steps.append(("transcode", "encode", self.transcode))
        for step, mode, run in steps:
            scope = self.scope(engine, codec, pix_fmt, step)
            reason = probe(codec, mode)
            if reason is not None:
                scope.add("session", None, "", f"engine cannot {mode} {codec} here: {reason}")
                continue
            try:
                run(scope, address)
            except NotOffered as e:
                scope.add("session", None, "", f"{pix_fmt} not offered: {e}")
            except FAILURES as e:
                scope.add("session", False, "", f"{type(e).__name__}: {e}")

    # -- the steps ---------------------------------------------------------------------------

    def encode(self, scope: ck.Scope, address: str) -> None:
        s, src = self.settings, self.settings.source
        frames = self.frames(scope.pix_fmt)
        sent: dict[int, float] = {}
        latency: list[float] = []
        packets: list[av.Packet[Any]] = []

        def took(got: list[av.Packet[Any]]) -> None:
            now = time.perf_counter()
            for p in got:
                if p.pts in sent:
                    latency.append(now - sent[p.pts])
            packets.extend(got)

        start = time.perf_counter()
        with refusal(scope):
            enc = RemoteEncoder(
                address,
                scope.codec,
                width=src.width,
                height=src.height,
                pix_fmt=scope.pix_fmt,
                time_base=src.time_base,
                framerate=src.rate,
                bitrate=s.bitrate,
                gop=s.gop,
                connection=self.connection,
            )
        with enc:
            for i, frame in enumerate(frames):
                sent[i] = time.perf_counter()
                took(enc.encode(frame))
            took(enc.flush())
            extradata = enc.extradata
        wall = time.perf_counter() - start
        self.session_line(scope, len(frames), wall, latency)
        ck.check_count(scope, len(packets), len(frames), "packets")
        ck.check_packet_order(scope, packets)
        ck.check_keyframes(scope, packets, src.time_base, src.rate, s.gop, len(frames))
        ck.check_bitrate(scope, packets, src.seconds, s.bitrate)
        decoded, error = media.decode_locally(scope.codec, packets, extradata)
        output = {ck.frame_index(f.pts, src.time_base, src.rate): f for f in decoded}
        if error:
            scope.add("ssim", False, "", f"{error} after {len(decoded)} frames")
            return
        reference = {i: f for i, f in enumerate(frames)}
        threshold = ck.ENCODE_SSIM.get(scope.codec, 0.90)
        ck.check_ssim(scope, reference, dict(_known(output)), threshold, "source")

    def decode(self, scope: ck.Scope, address: str) -> None:
        src = self.settings.source
        reason = media.reference_available(scope.codec)
        if reason is not None:
            scope.add("session", None, "", reason)
            return
        path = self.clip(scope.codec, scope.pix_fmt)
        with av.open(path) as container:
            stream = container.streams.video[0]
            packets = [p for p in container.demux(stream) if p.size]
            extradata = bytes(stream.codec_context.extradata or b"")
            local, error = media.decode_locally(stream.codec_context.name, packets, extradata)
            if error:
                raise EngineError(f"the reference clip {path}: {error}")
            frames: list[av.VideoFrame] = []
            start = time.perf_counter()
            with refusal(scope):
                dec = RemoteDecoder.from_stream(address, stream, connection=self.connection)
            with dec:
                for p in packets:
                    frames.extend(dec.decode(p))
                frames.extend(dec.flush())
            wall = time.perf_counter() - start
            tb = stream.time_base
        assert tb is not None
        self.session_line(scope, len(packets), wall, [])
        ck.check_count(scope, len(frames), len(packets), "pictures")
        ck.check_frame_order(scope, frames)
        want = "p010le" if scope.pix_fmt == "p010" else "nv12"
        got = {f.format.name for f in frames}
        scope.add(
            "format",
            got == {want},
            f"pictures in {want}",
            f"pictures in {', '.join(sorted(got))}, expected {want}",
        )
        index = {ck.frame_index(f.pts, tb, src.rate): f for f in local}
        output = {ck.frame_index(f.pts, tb, src.rate): f for f in frames}
        ck.check_ssim(
            scope, dict(_known(index)), dict(_known(output)), ck.DECODE_SSIM, "local decode"
        )

    def transcode(self, scope: ck.Scope, address: str) -> None:
        s, src = self.settings, self.settings.source
        width, height = src.width // 2 // 2 * 2, src.height // 2 // 2 * 2
        path = self.clip("h264", "nv12")
        packets: list[av.Packet[Any]] = []
        with av.open(path) as container:
            stream = container.streams.video[0]
            source_packets = [p for p in container.demux(stream) if p.size]
            start = time.perf_counter()
            with RemoteTranscoder.from_stream(
                address,
                stream,
                codec=scope.codec,
                filters=f"scale={width}:{height}",
                bitrate=s.bitrate // 4,
                gop=s.gop,
                connection=self.connection,
            ) as tc:
                for p in source_packets:
                    packets.extend(tc.transcode(p))
                packets.extend(tc.flush())
                tb, extradata = tc.time_base, tc.extradata
            wall = time.perf_counter() - start
        self.session_line(scope, len(source_packets), wall, [])
        ck.check_count(scope, len(packets), len(source_packets), "packets")
        ck.check_packet_order(scope, packets)
        ck.check_keyframes(scope, packets, tb, src.rate, s.gop, len(source_packets))
        decoded, error = media.decode_locally(scope.codec, packets, extradata)
        sizes = {(f.width, f.height) for f in decoded}
        scope.add(
            "scale",
            sizes == {(width, height)},
            f"pictures {width}x{height}",
            f"pictures {', '.join(f'{w}x{h}' for w, h in sorted(sizes)) or 'none'}, "
            f"expected {width}x{height}" + (f" ({error})" if error else ""),
        )
        reference = {
            i: f.reformat(width=width, height=height) for i, f in enumerate(self.frames("nv12"))
        }
        output = {ck.frame_index(f.pts, tb, src.rate): f for f in decoded}
        threshold = ck.ENCODE_SSIM.get(scope.codec, 0.90)
        ck.check_ssim(scope, reference, dict(_known(output)), threshold, "scaled source")

    @staticmethod
    def session_line(scope: ck.Scope, count: int, wall: float, latency: list[float]) -> None:
        """The session ran to the end; its speed is reported, never asserted."""
        values: dict[str, Any] = {"seconds": round(wall, 3), "fps": round(count / wall, 1)}
        detail = f"{count} frames in {wall:.2f} s, {count / wall:.0f} fps"
        if latency:
            values["latency_ms_median"] = round(statistics.median(latency) * 1000, 1)
            values["latency_ms_max"] = round(max(latency) * 1000, 1)
            detail += (
                f", latency median {values['latency_ms_median']:.0f} ms"
                f" max {values['latency_ms_max']:.0f} ms"
            )
        scope.add("session", True, detail, **values)


def _known(frames: dict[int | None, av.VideoFrame]) -> list[tuple[int, av.VideoFrame]]:
    return [(i, f) for i, f in frames.items() if i is not None]


def run_self_test(
    engine: str = "auto", *, quick: bool = False, out: Callable[[Check], None] | None = None
) -> Report:
    """Run every check on ``engine`` (``auto``: every engine that loads here, null aside).

    ``out`` sees each check as it is made (the CLI prints it); the report has them all.
    """
    settings = QUICK if quick else FULL
    report = Report(settings.as_dict())
    names, report.engines = engines_to_test(engine)
    scratch = media.scratch_dir()
    try:
        run = SelfTest(settings, report, out or (lambda check: None), scratch)
        for described in report.engines:
            if not described["tested"]:
                reason = next(iter(described["probe"].values()), "")
                run.scope(described["engine"], "-", "-", "server").add(
                    "start", None, "", f"does not load here: {reason}"
                )
        for name in names:
            run.run_engine(name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report
