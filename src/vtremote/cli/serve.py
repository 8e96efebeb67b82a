"""``vtremoted``: serve VTR1 sessions with this host's encoders and decoders.

Prints exactly one line, ``vtremoted listening on HOST:PORT``, to stdout once
the socket is bound (port 0 picks a free port); everything else is logging on
stderr. SIGTERM or SIGINT drains the sessions and exits 0; a second SIGINT
exits at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

import vtremote
from vtremote.cli.memory import retain_freed_frames
from vtremote.cli.service import main as service_main
from vtremote.engines import registry
from vtremote.engines.base import ALL_CODECS, CODECS, MODES
from vtremote.errors import ConfigError, VTRemoteError
from vtremote.server import Server, ServerConfig, format_address
from vtremote.server.advertise import Advertiser, txt_record
from vtremote.server.config import (
    DEFAULT_LISTEN,
    LOG_LEVELS,
    default_max_memory,
    log_level_number,
    parse_size,
)
from vtremote.server.logs import PrintableFilter
from vtremote.testing.faults import ServerFaults

log = logging.getLogger("vtremote.cli.serve")

#: Environment variable holding the token (argv is visible to every local user).
TOKEN_ENV = "VTREMOTED_TOKEN"


#: One flag: its names and the keywords of ``add_argument``.
Flag = tuple[tuple[str, ...], dict[str, Any]]


def _seconds(default: float, help_text: str) -> dict[str, Any]:
    return {"type": float, "default": default, "metavar": "SECONDS", "help": help_text}


def _count(default: int, help_text: str) -> dict[str, Any]:
    return {"type": int, "default": default, "metavar": "N", "help": help_text}


def _memory_size(text: str) -> int:
    try:
        return parse_size(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


#: The server's flags in the order they are added (the usage line's); None: the parser
#: itself, else the title of their group.
FLAGS: tuple[tuple[str | None, tuple[Flag, ...]], ...] = (
    (
        None,
        (
            (
                ("--listen",),
                {
                    "default": DEFAULT_LISTEN,
                    "metavar": "HOST:PORT",
                    "help": "address to listen on; [V6ADDR]:PORT for IPv6, port 0 picks one "
                    f"(default {DEFAULT_LISTEN})",
                },
            ),
            (
                ("--token",),
                {
                    "default": "",
                    "help": "shared secret clients must send in HELLO (visible in ps: prefer "
                    f"--token-file or ${TOKEN_ENV}); default none",
                },
            ),
            (
                ("--token-file",),
                {
                    "default": "",
                    "metavar": "FILE",
                    "help": "read the token from FILE (first line; keep it mode 0600)",
                },
            ),
            (
                ("--max-sessions",),
                _count(4, "concurrent sessions; more get a busy answer (0 = unlimited, default 4)"),
            ),
            (
                ("--max-memory",),
                {
                    "type": _memory_size,
                    "default": default_max_memory(),
                    "metavar": "SIZE",
                    "help": "memory the server may use in all, e.g. 4G or 512M; a session that "
                    "would not fit gets a busy answer (default: half of this host's memory)",
                },
            ),
            (
                ("--capacity",),
                _count(
                    0,
                    "sessions the engine runs at full speed at once, told to pools "
                    "(default 0: the device's limit, or one per CPU core)",
                ),
            ),
            (
                ("--engine",),
                {
                    "default": "auto",
                    "choices": [*registry.CHOICES, *registry.ALIASES],
                    "help": "codec engine; auto picks the best that works here (default auto)",
                },
            ),
            (
                ("--list-engines",),
                {"action": "store_true", "help": "probe every engine, print what works, exit"},
            ),
            (
                ("--self-test",),
                {
                    "action": "store_true",
                    "help": "run the conformance checks (encode, decode, transcode through an "
                    "embedded server) on every engine that loads, or on --engine; exit 0 only "
                    "if every check that ran passed",
                },
            ),
            (
                ("--quick",),
                {
                    "action": "store_true",
                    "help": "with --self-test: a small source (320x180 at 15 fps) for a fast run",
                },
            ),
            (
                ("--json",),
                {
                    "action": "store_true",
                    "help": "with --self-test: print the report as JSON on stdout",
                },
            ),
            (
                ("--log-level",),
                {
                    "default": "info",
                    "choices": list(LOG_LEVELS),
                    "metavar": "LEVEL",
                    "help": "error, warning, info, debug (or 0, 1, 2 as the reference daemon); "
                    "default info",
                },
            ),
            (("--once",), {"action": "store_true", "help": "serve one client, then exit"}),
            (
                ("--idle-timeout",),
                _seconds(30.0, "close a session whose client stays silent this long (default 30)"),
            ),
            (
                ("--no-extensions",),
                {
                    "dest": "extensions",
                    "action": "store_false",
                    "help": "behave as a plain VTR1 v1 daemon: the reference's 22-byte HELLO_ACK, "
                    "no capabilities, lock-step decode (for testing clients)",
                },
            ),
            (
                ("--drain-timeout",),
                _seconds(
                    30.0, "on SIGTERM/SIGINT, how long running sessions may finish (default 30)"
                ),
            ),
        ),
    ),
    (
        "admission (unauthenticated connections)",
        (
            (
                ("--handshake-timeout",),
                _seconds(
                    5.0, "a complete HELLO must arrive this soon after connecting (default 5)"
                ),
            ),
            (
                ("--max-handshakes",),
                _count(64, "connections waiting for HELLO, all sources together (default 64)"),
            ),
            (
                ("--max-handshakes-per-source",),
                _count(
                    8,
                    "connections waiting for HELLO from one address; the oldest makes way "
                    "(default 8)",
                ),
            ),
            (
                ("--auth-block-after",),
                _count(
                    10,
                    "wrong tokens from one address before it is refused for a while (default 10)",
                ),
            ),
            (
                ("--auth-block-seconds",),
                _seconds(60.0, "how long such an address is refused (default 60)"),
            ),
        ),
    ),
    (
        "TLS",
        (
            (
                ("--tls",),
                {
                    "action": "store_true",
                    "help": "offer TLS with a self-signed certificate made on first start "
                    "(fingerprint in the log)",
                },
            ),
            (
                ("--tls-cert",),
                {
                    "default": "",
                    "metavar": "PEM",
                    "help": "certificate chain to serve (implies --tls)",
                },
            ),
            (
                ("--tls-key",),
                {"default": "", "metavar": "PEM", "help": "private key of --tls-cert"},
            ),
            (
                ("--tls-dir",),
                {
                    "default": "",
                    "metavar": "DIR",
                    "help": "where the self-signed certificate is kept "
                    "(default ~/.config/vtremoted)",
                },
            ),
            (
                ("--tls-client-ca",),
                {
                    "default": "",
                    "metavar": "PEM",
                    "help": "require client certificates signed by this CA (mutual TLS)",
                },
            ),
            (
                ("--require-tls",),
                {
                    "action": "store_true",
                    "help": "refuse plain TCP clients (default: TLS and plain VTR1 share the port)",
                },
            ),
        ),
    ),
    (
        None,
        (
            (
                ("--metrics",),
                {
                    "default": "",
                    "metavar": "HOST:PORT",
                    "help": "serve Prometheus metrics at /metrics and a health answer at /healthz",
                },
            ),
            (
                ("--no-advertise",),
                {
                    "dest": "advertise",
                    "action": "store_false",
                    "default": True,
                    "help": "do not announce this server on the LAN (mDNS _vtremote._tcp)",
                },
            ),
            (
                ("--advertise",),
                {
                    "dest": "advertise",
                    "action": "store_true",
                    "help": "announce this server on mDNS (the default; on loopback only when "
                    "listening there)",
                },
            ),
        ),
    ),
    (
        "test-only (measuring and failover tests; never in production)",
        (
            (
                ("--throttle-fps",),
                {
                    "type": float,
                    "default": 0.0,
                    "metavar": "R",
                    "help": "each session takes at most R frames/packets per second (with "
                    "--engine null: a server of known speed for fleet benchmarks)",
                },
            ),
            (
                ("--die-after-frames",),
                {
                    "type": int,
                    "default": None,
                    "metavar": "N",
                    "help": "SIGKILL this process when a session receives frame/packet N+1",
                },
            ),
            (
                ("--die-at-flush",),
                {
                    "action": "store_true",
                    "help": "SIGKILL this process when a session receives FLUSH",
                },
            ),
        ),
    ),
    (
        None,
        (
            (
                ("--version",),
                {"action": "version", "version": f"vtremoted {vtremote.__version__}"},
            ),
        ),
    ),
)

#: ServerConfig fields whose flag has another name (dest); the others share the field's
#: name, and ``token`` comes from read_token.
_FLAG_FOR_FIELD = {"tls_state_dir": "tls_dir"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vtremoted",
        description="Serve remote H.264/HEVC encode and decode sessions (VTR1 protocol v1).",
        epilog="Also: vtremoted install-service [--system] [--print] [--dir DIR] -- FLAGS... "
        "(a launchd agent or systemd unit running vtremoted with FLAGS), "
        "vtremoted uninstall-service.",
        allow_abbrev=False,
    )
    groups: dict[str | None, Any] = {None: p}
    for title, flags in FLAGS:
        if title not in groups:
            groups[title] = p.add_argument_group(title)
        for names, kwargs in flags:
            groups[title].add_argument(*names, **kwargs)
    return p


def server_config(args: argparse.Namespace) -> ServerConfig:
    """The ServerConfig the flags describe (ConfigError when they do not add up)."""
    values = {}
    for f in dataclasses.fields(ServerConfig):
        dest = _FLAG_FOR_FIELD.get(f.name, f.name)
        if f.name != "token" and hasattr(args, dest):
            values[f.name] = getattr(args, dest)
    return ServerConfig(token=read_token(args), **values)


def server_faults(args: argparse.Namespace) -> ServerFaults | None:
    """The test-only fault switches the flags ask for (vtremote/testing), or None."""
    faults = ServerFaults(args.die_after_frames, args.die_at_flush, args.throttle_fps)
    return faults if faults.active else None


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s vtremoted %(levelname)s %(message)s"))
    handler.addFilter(PrintableFilter())  # FFmpeg's lines (libav.*) too: one record, one line
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level_number(level))
    # PyAV forwards FFmpeg's own log lines to "libav.*" when enabled; keep them at warning.
    logging.getLogger("libav").setLevel(logging.WARNING)


def list_engines() -> int:
    results = registry.probe_all()
    for r in results:
        kind = "hardware" if r.hardware else "software"
        status = "available" if r.works else "unavailable"
        print(f"{r.engine:<13} {status:<12} {kind}  {r.description}".rstrip())
        for (codec, mode), reason in r.results.items():
            print(f"    {codec:<5} {mode:<7} {'ok' if reason is None else 'no: ' + reason}")
    auto = []
    for codec in ALL_CODECS:  # AV1 too: the extension codec a client may negotiate
        for mode in MODES:
            try:
                auto.append(f"{codec} {mode}={registry.resolve('auto', codec, mode).name}")
            except VTRemoteError:
                auto.append(f"{codec} {mode}=none")
    print(f"auto: {', '.join(auto)}")
    # On stderr: stdout keeps one line per engine, codec and mode, then auto, for scripts.
    print(
        "a probe opens each codec once; to check that an engine really works end to end "
        "(encode, decode, transcode, SSIM, bitrate), run: vtremoted --self-test "
        "[--engine NAME] [--json] (docs/engines.md)",
        file=sys.stderr,
    )
    return 0


def self_test(args: argparse.Namespace) -> int:
    """``--self-test``: the conformance run (vtremote/selftest), one line per check."""
    from vtremote.selftest import Check, run_self_test

    def show(check: Check) -> None:
        if not args.json:
            print(check.line(), flush=True)

    try:
        report = run_self_test(args.engine, quick=args.quick, out=show)
    except KeyboardInterrupt:
        print("self-test interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.summary_line())
    return 0 if report.ok else 1


def read_token(args: argparse.Namespace) -> str:
    """--token, else --token-file, else $VTREMOTED_TOKEN, else none (ConfigError on conflicts)."""
    if args.token and args.token_file:
        raise ConfigError("give --token or --token-file, not both")
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.readline().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(
                f"cannot read --token-file {args.token_file}: {e.strerror or e}"
            ) from e
        if not token:
            raise ConfigError(f"--token-file {args.token_file} is empty")
        return token
    return str(args.token or os.environ.get(TOKEN_ENV, ""))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("install-service", "uninstall-service"):
        return service_main(argv, build_parser)
    parser = build_parser()
    args = parser.parse_args(argv)
    # A self-test's lines are its output: the embedded server logs only warnings unless
    # asked for more (--log-level debug).
    _setup_logging("warning" if args.self_test and args.log_level == "info" else args.log_level)
    if args.list_engines:
        return list_engines()
    if args.self_test:
        return self_test(args)
    if args.quick or args.json:
        parser.error("--quick and --json go with --self-test")
    try:
        faults = server_faults(args)
        config = server_config(args)
    except ConfigError as e:
        parser.error(str(e))
    # Freed frame buffers stay in the process for the next frame instead of being
    # faulted in again page by page (cli/memory.py; ~0.4 ms per 1080p frame).
    retain_freed_frames()
    return _serve(Server(config, faults=faults), config, advertise=args.advertise)


def _serve(server: Server, config: ServerConfig, advertise: bool) -> int:
    """Start, print the listening line, serve until a signal drains the sessions."""
    signals_seen = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1 and signum == signal.SIGINT:
            log.warning("second interrupt: exiting now")
            os._exit(130)
        log.info(
            "%s received: draining sessions (Ctrl-C again to exit at once)",
            signal.Signals(signum).name,
        )
        server.request_shutdown()

    # Handlers first: once the listening line is out, a signal must drain, not kill.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start()
    except (VTRemoteError, OSError) as e:
        log.error("cannot start: %s", e)
        return 1
    print(f"vtremoted listening on {format_address(*server.address)}", flush=True)
    advertiser = _advertise(server, config) if advertise else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # a signal arriving before the handler was installed
        server.shutdown(config.drain_timeout)
    finally:
        if advertiser is not None:
            advertiser.close()
    return 0


def _advertise(server: Server, config: ServerConfig) -> Advertiser:
    """Announce the server on mDNS in the background (server/advertise.py)."""
    props = txt_record(
        codecs={c: server.state.engine_label(c) for c in CODECS},
        max_sessions=config.max_sessions,
        capacity=config.capacity,
        token=bool(config.token),
        tls=config.tls,
    )
    host, port = server.address[:2]
    advertiser = Advertiser(host, port, props)
    advertiser.start()
    return advertiser


if __name__ == "__main__":
    sys.exit(main())
