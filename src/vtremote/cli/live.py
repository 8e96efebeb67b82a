"""``vtremote live send|recv``: stream a camera, a file or a test source to a live receiver.

::

    vtremote live recv --listen HOST:PORT [--key-file F | --key K | --no-key]
                       [--record FILE] [--json]
                       [--composite FILE [--grid 2x2] [--composite-size WxH] [--composite-fps FPS]]
    vtremote live send [-f FORMAT] -i INPUT --to HOST:PORT [--codec h264|hevc|mjpeg]
                       [--key-file F | --key K | --no-key]
                       [--transport tcp|udp] [-b:v RATE] [-t SECONDS] [-g FRAMES]
                       [-an] [--metadata FILE.jsonl]
                       [--encoder local|remote --server HOST:PORT [--token T]]

The receiver listens on TCP and UDP at the same port, takes only senders that
prove they hold its key (made once in ``~/.config/vtremote/live.key`` unless
``--key-file``/``--key`` name one; ``--no-key`` takes anyone), prints
``vtremote live: listening on HOST:PORT`` and the matching ``send`` command on
stderr once bound, and stops on
SIGINT/SIGTERM or when every sender has ended; the recording and, with
``--json``, one summary object on stdout are written either way.

Exit codes: 0 ok, 1 runtime error, 2 usage error, 130 interrupted (the sender).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from vtremote.errors import ConfigError, VTRemoteError

if TYPE_CHECKING:
    from vtremote.live.protocol import Codec
    from vtremote.live.receiver import LiveReceiver
    from vtremote.live.sender import Sender, SenderConfig
    from vtremote.live.source import Capture

log = logging.getLogger("vtremote.live")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors are exit code 2, raised not exited
        raise _Usage(message)


def _rate(text: str) -> int:
    """``4M``, ``2500k``, ``800000``."""
    t = text.strip().lower()
    mult = 1
    if t and t[-1] in "kmg":
        mult = {"k": 1000, "m": 1_000_000, "g": 1_000_000_000}[t[-1]]
        t = t[:-1]
    try:
        value = float(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad rate {text!r} (like 4M or 2500k)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"rate {text!r} must be positive")
    return int(value)


def _fps(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"bad frame rate {text!r} (like 30 or 30000/1001)"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"frame rate {text!r} must be positive")
    return value


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"size {text!r} is not WIDTHxHEIGHT (like 1280x720)") from None
    return w, h


Option = tuple[tuple[str, ...], dict[str, Any]]

#: The key flags of both commands (docs/live.md "Keys").
KEY_OPTIONS: tuple[Option, ...] = (
    (
        ("--key-file",),
        {
            "metavar": "FILE",
            "help": "the live key's file (default ~/.config/vtremote/live.key; "
            "recv makes it, mode 0600, when missing)",
        },
    ),
    (("--key",), {"metavar": "KEY", "help": "the key itself (visible to other local users)"}),
    (
        ("--no-key",),
        {"action": "store_true", "help": "no key: only on a network where every host is trusted"},
    ),
)

#: ``vtremote live recv``: (flags, ``add_argument`` keywords), in help order.
RECV_OPTIONS: tuple[Option, ...] = (
    (
        ("--listen",),
        {"required": True, "metavar": "HOST:PORT", "help": "TCP and UDP address (port 0: any)"},
    ),
    *KEY_OPTIONS,
    (
        ("--record",),
        {"metavar": "FILE", "help": "record the stream (MKV/MP4) without re-encoding"},
    ),
    (
        ("--json",),
        {"action": "store_true", "help": "print one summary object on stdout at the end"},
    ),
    (
        ("--composite",),
        {
            "metavar": "FILE",
            "help": "also write every source as a tile of one picture, re-encoded with libx264",
        },
    ),
    (
        ("--grid",),
        {"default": "2x2", "metavar": "COLSxROWS", "help": "tiles of the composite (default 2x2)"},
    ),
    (
        ("--composite-size",),
        {
            "default": "1280x720",
            "metavar": "WxH",
            "help": "picture size of the composite (default 1280x720)",
        },
    ),
    (
        ("--composite-fps",),
        {
            "type": _fps,
            "default": Fraction(30),
            "metavar": "FPS",
            "help": "frame rate of the composite (default 30)",
        },
    ),
)

#: ``vtremote live send``: (flags, ``add_argument`` keywords), in help order.
SEND_OPTIONS: tuple[Option, ...] = (
    (
        ("-f",),
        {"dest": "format", "metavar": "FORMAT", "help": "input format (lavfi, v4l2, x11grab, ...)"},
    ),
    (
        ("-i",),
        {
            "dest": "input",
            "required": True,
            "metavar": "INPUT",
            "help": "file, lavfi graph or device",
        },
    ),
    (("--to",), {"required": True, "metavar": "HOST:PORT", "help": "the receiver"}),
    *KEY_OPTIONS,
    (("--codec",), {"choices": ("h264", "hevc", "mjpeg"), "default": "h264"}),
    (("--transport",), {"choices": ("tcp", "udp"), "default": "tcp"}),
    (
        ("-b:v",),
        {
            "dest": "bitrate",
            "type": _rate,
            "default": None,
            "metavar": "RATE",
            "help": "maximum bitrate, like 4M; starts at half "
            "(default: 0.06 bit/pixel/frame, 3.7M at 1080p30)",
        },
    ),
    (
        ("-t",),
        {
            "dest": "seconds",
            "type": float,
            "default": None,
            "metavar": "SECONDS",
            "help": "stop after this much media",
        },
    ),
    (
        ("-g",),
        {
            "dest": "gop",
            "type": int,
            "default": None,
            "metavar": "FRAMES",
            "help": "keyframe interval (default 2 s)",
        },
    ),
    (
        ("--encoder",),
        {
            "choices": ("local", "remote"),
            "default": "local",
            "help": "local: hardware or x264/x265 here; "
            "remote: a vtremoted (--server) in realtime mode",
        },
    ),
    (
        ("--server",),
        {"metavar": "HOST:PORT", "help": "the vtremoted that encodes with --encoder remote"},
    ),
    (
        ("--token",),
        {"default": "", "metavar": "TOKEN", "help": "the vtremoted's token, if it asks for one"},
    ),
    (("-an",), {"dest": "no_audio", "action": "store_true", "help": "leave the input's audio out"}),
    (
        ("--metadata",),
        {
            "metavar": "FILE.jsonl",
            "help": 'one JSON value per line, for frame N by line number, or {"frame": N, ...}',
        },
    ),
)

#: The subcommands: (name, help, options).
COMMANDS: tuple[tuple[str, str, tuple[Option, ...]], ...] = (
    ("recv", "receive, decode, time and record live sources", RECV_OPTIONS),
    ("send", "encode and send a capture source", SEND_OPTIONS),
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vtremote live",
        description="Live streaming of a camera or a file.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="send|recv")
    for name, help_text, options in COMMANDS:
        command = sub.add_parser(name, help=help_text, allow_abbrev=False)
        for flags, keywords in options:
            command.add_argument(*flags, **keywords)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from vtremote.cli.main import setup_logging

    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except _Usage as e:
        print(f"vtremote live: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:  # --help
        return int(e.code or 0)
    setup_logging("info" if args.command == "recv" else "warning")
    try:
        return _recv(args) if args.command == "recv" else _send(args)
    except ConfigError as e:
        print(f"vtremote live: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (VTRemoteError, OSError, ValueError) as e:
        print(f"vtremote live: error: {e}", file=sys.stderr)
        return EXIT_ERROR


@contextlib.contextmanager
def _signals_set(event: threading.Event) -> Iterator[None]:
    """Inside, SIGINT and SIGTERM set ``event``; the previous handlers come back after."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        event.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- recv ------------------------------------------------------------------------------


def _recv(args: argparse.Namespace) -> int:
    from vtremote.live.composite import CompositeConfig, parse_grid
    from vtremote.live.receiver import LiveReceiver

    for path in (args.record, args.composite):
        if path is not None and not Path(path).parent.is_dir():
            raise ConfigError(f"cannot record to {path}: no such directory")
    composite = None
    if args.composite is not None:
        (cols, rows), (width, height) = parse_grid(args.grid), _size(args.composite_size)
        composite = CompositeConfig(
            width=width, height=height, fps=args.composite_fps, columns=cols, rows=rows
        )
    stop = threading.Event()
    with _signals_set(stop):
        key, key_file = _key_choice(args) or (None, None)
        receiver = LiveReceiver(
            args.listen,
            key=key,
            record=args.record,
            composite=args.composite,
            composite_config=composite,
        )
        try:
            receiver.start()
            _say_listening(receiver, key_file)
            _receive_until_done(receiver, stop)
        finally:
            receiver.stop()
    summary = receiver.summary()
    summary["interrupted"] = stop.is_set()
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    else:
        lat = summary["latency_ms"]
        print(
            f"vtremote live: {summary['frames']} frames, {summary['bytes']} bytes "
            f"in {summary['seconds']} s ({summary['fps']} fps), "
            f"latency p50 {lat['p50']} ms p99 {lat['p99']} ms max {lat['max']} ms, "
            f"{summary['drops']} dropped, {summary['keyframe_requests']} keyframe requests",
            file=sys.stderr,
        )
    return EXIT_OK


def _key_choice(args: argparse.Namespace) -> tuple[str, Path | None] | None:
    """(key, its file; None for ``--key``) from the key flags; None with ``--no-key``."""
    from vtremote.live.keys import default_key_file, load_or_make_key, read_key

    given = [f for f, v in (("--key", args.key), ("--key-file", args.key_file)) if v] + (
        ["--no-key"] if args.no_key else []
    )
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)}: give one of them")
    if args.no_key:
        print(
            "vtremote live: warning: --no-key: anyone who reaches the port can send, "
            "end or replace a stream",
            file=sys.stderr,
        )
        return None
    if args.key:
        from vtremote.live.auth import check_key

        check_key(args.key)
        return args.key, None
    path = Path(args.key_file).expanduser() if args.key_file else default_key_file()
    if args.command == "send":
        if not args.key_file and not path.exists():
            raise ConfigError(
                f"no key: give the receiver's (--key-file F or --key K, as `vtremote live recv` "
                f"prints it; {path} does not exist), or --no-key for a receiver without one"
            )
        return read_key(path), path
    key, made = load_or_make_key(path)
    if made:
        print(f"vtremote live: made a new key in {path}", file=sys.stderr)
    return key, path


def _say_listening(receiver: LiveReceiver, key_file: Path | None) -> None:
    """Where it listens, and the command a sender runs (with the key: on a terminal only)."""
    import socket

    host, port = receiver.address
    shown = f"[{host}]" if ":" in host else host
    print(f"vtremote live: listening on {shown}:{port}", file=sys.stderr, flush=True)
    if host in ("0.0.0.0", "::"):
        shown = socket.gethostname()
    send = f"vtremote live send -i INPUT --to {shown}:{port}"
    if receiver.key is None:
        print(f"vtremote live: senders: {send} --no-key", file=sys.stderr, flush=True)
        return
    if key_file is not None:
        print(f"vtremote live: senders: {send} --key-file {key_file}", file=sys.stderr)
    if sys.stderr.isatty() or key_file is None:
        print(f"vtremote live: senders: {send} --key {receiver.key}", file=sys.stderr)
    sys.stderr.flush()


def _receive_until_done(receiver: LiveReceiver, stop: threading.Event) -> None:
    """A stats line a second on a terminal, until every source ended or a signal."""
    tty = sys.stderr.isatty()
    next_line = time.monotonic() + 1.0
    while not stop.is_set():
        if receiver.wait(0.2):
            break
        if tty and time.monotonic() >= next_line:
            next_line += 1.0
            _print_live(receiver)


def _print_live(receiver: LiveReceiver) -> None:
    now = time.monotonic_ns()
    parts = []
    for src in receiver.current_sources():
        r = src.stats.recent(now)
        parts.append(
            f"src {src.hello.source_id}: {r['fps']:.1f} fps {r['mbps']:.2f} Mb/s "
            f"p50 {r['p50']:.0f} ms p99 {r['p99']:.0f} ms "
            f"drops {src.stats.lost + src.stats.sender_dropped}"
        )
    if parts:
        print("live: " + " | ".join(parts), file=sys.stderr, flush=True)


# --- send ------------------------------------------------------------------------------


def _metadata_lines(path: str) -> dict[int, list[Any]]:
    """Frame number -> metadata values, from a JSON Lines file."""
    out: dict[int, list[Any]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read metadata {path}: {e.strerror}") from None
    n = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise ConfigError(f"{path}:{number}: not JSON") from None
        frame = value.get("frame") if isinstance(value, dict) else None
        index = frame if isinstance(frame, int) and frame >= 0 else n
        out.setdefault(index, []).append(value)
        n += 1
    return out


def _send(args: argparse.Namespace) -> int:
    from vtremote.live.codec import CODEC_NAMES, available
    from vtremote.live.sender import Sender
    from vtremote.live.source import open_capture

    codec = CODEC_NAMES[args.codec]
    if not available(codec):
        raise ConfigError(f"--codec {args.codec}: this PyAV build has no encoder for it")
    if args.seconds is not None and args.seconds <= 0:
        raise ConfigError(f"-t {args.seconds}: must be positive")
    metadata = _metadata_lines(args.metadata) if args.metadata else {}
    choice = _key_choice(args)
    args.key = None if choice is None else choice[0]
    cap = open_capture(args.input, args.format, audio=not args.no_audio)
    sender = Sender(args.to, _sender_config(args, cap, codec))
    interrupted = threading.Event()
    with _signals_set(interrupted):
        try:
            sender.start()
            # A receiver that is up gets the first frame; else stream anyway.
            sender.wait_connected(2.0)
            _send_capture(sender, cap, metadata, args.seconds, interrupted)
            if (
                not sender.connected
                and sender.stats.frames_sent == 0
                and not sender.wait_connected(2.0)
            ):
                host, port = sender.address
                raise VTRemoteError(f"cannot reach {host}:{port} ({args.transport})")
        finally:
            stats = sender.close()
            cap.close()
    print(
        f"vtremote live: sent {stats.frames_sent} frames "
        f"({stats.keyframes} keyframes, {stats.bytes} bytes), "
        f"dropped {stats.dropped}, {stats.keyframe_requests} keyframe requests, "
        f"bitrate now {stats.bitrate} b/s",
        file=sys.stderr,
    )
    return EXIT_INTERRUPTED if interrupted.is_set() else EXIT_OK


def _sender_config(args: argparse.Namespace, cap: Capture, codec: Codec) -> SenderConfig:
    from vtremote.live.sender import SenderConfig

    width, height = cap.width - cap.width % 2, cap.height - cap.height % 2
    bitrate = args.bitrate or max(200_000, int(0.06 * width * height * float(cap.fps)))
    return SenderConfig(
        width=width,
        height=height,
        fps=cap.fps,
        codec=codec,
        transport=args.transport,
        bitrate=bitrate,
        keyint_s=(args.gop / float(cap.fps)) if args.gop else 2.0,
        name=Path(args.input).name[:64],
        encoder=args.encoder,
        server=args.server or "",
        token=args.token,
        key=args.key,
        audio=cap.audio is not None,
    )


def _send_capture(
    sender: Sender,
    cap: Capture,
    metadata: dict[int, list[Any]],
    seconds: float | None,
    interrupted: threading.Event,
) -> None:
    """Hand every captured frame (and audio) to ``sender`` at its pace, to the end or a signal."""
    import av

    from vtremote.live.source import paced_frames

    index = 0
    paced = paced_frames(cap, seconds=seconds, on_late=sender.count_skipped)
    for frame, capture_ns in paced:
        if interrupted.is_set():
            break
        if isinstance(frame, av.AudioFrame):
            sender.send_audio(frame, capture_ns=capture_ns)
            continue
        sender.send(frame, metadata.pop(index, None), capture_ns=capture_ns)
        index += 1
    sender.check()
