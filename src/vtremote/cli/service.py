"""``vtremoted install-service`` / ``uninstall-service``: run the server at login or boot.

Linux gets a systemd unit (a user unit in ``~/.config/systemd/user``, or a
system unit in ``/etc/systemd/system`` with ``--system``); macOS a launchd
agent in ``~/Library/LaunchAgents`` (a daemon in ``/Library/LaunchDaemons``
with ``--system``). Server flags after the service options (or after ``--``)
go into the service's command line, checked by the same parser as
``vtremoted`` itself::

    vtremoted install-service -- --listen 0.0.0.0:5555 --token-file ~/.vtremoted-token --tls

``--print`` writes the file to stdout and does nothing else; ``--dir DIR``
writes it into DIR without loading it (both for review and for tests).
``--token`` is refused: a service file is readable, use ``--token-file``.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vtremote.server import fdlimit

NAME = "vtremoted"
LABEL = "com.vtremote.vtremoted"


@dataclass(frozen=True)
class ServiceFile:
    platform: str  # "linux" | "macos"
    path: Path
    text: str
    load: list[list[str]]
    unload: list[list[str]]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vtremoted install-service",
        allow_abbrev=False,
        description="Install (or remove) vtremoted as a systemd unit or launchd agent.",
    )
    p.add_argument(
        "--platform",
        choices=["linux", "macos"],
        default="macos" if sys.platform == "darwin" else "linux",
        help="service manager to write for (default: this host's)",
    )
    p.add_argument(
        "--system",
        action="store_true",
        help="a system-wide service (root) instead of one for the current user",
    )
    p.add_argument(
        "--print", dest="print_only", action="store_true", help="print the file, install nothing"
    )
    p.add_argument(
        "--dir", default="", metavar="DIR", help="write the file into DIR and do not load it"
    )
    p.add_argument("--no-load", action="store_true", help="write the file but do not start it")
    return p


def command_line(server_args: list[str]) -> list[str]:
    """The service's command: this Python running the server module, so a venv keeps working."""
    return [sys.executable, "-m", "vtremote.cli.serve", *server_args]


def systemd_unit(server_args: list[str], system: bool) -> str:
    exec_start = " ".join(shlex.quote(a) for a in command_line(server_args))
    return "\n".join(
        [
            "[Unit]",
            "Description=vtremoted remote video encode/decode server (VTR1)",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            f"ExecStart={exec_start}",
            "Restart=on-failure",
            "RestartSec=2",
            "KillSignal=SIGTERM",
            "TimeoutStopSec=45",
            "NoNewPrivileges=yes",
            "UMask=0077",
            f"LimitNOFILE={fdlimit.SERVICE_LIMIT}",  # fits the connection caps (server/fdlimit.py)
            "",
            "[Install]",
            f"WantedBy={'multi-user.target' if system else 'default.target'}",
            "",
        ]
    )


def launchd_plist(server_args: list[str], system: bool) -> str:
    log_dir = (
        "/Library/Logs" if system else os.path.join(os.path.expanduser("~"), "Library", "Logs")
    )
    doc = {
        "Label": LABEL,
        "ProgramArguments": command_line(server_args),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ProcessType": "Interactive",
        "StandardOutPath": os.path.join(log_dir, "vtremoted.log"),
        "StandardErrorPath": os.path.join(log_dir, "vtremoted.log"),
        "Umask": 0o077,
        # launchd's default soft limit is 256: too few for the connection caps.
        "SoftResourceLimits": {"NumberOfFiles": fdlimit.SERVICE_LIMIT},
        "HardResourceLimits": {"NumberOfFiles": fdlimit.SERVICE_LIMIT},
    }
    return plistlib.dumps(doc).decode()


def service_file(
    platform: str, server_args: list[str], system: bool, directory: str = ""
) -> ServiceFile:
    home = Path(os.path.expanduser("~"))
    if platform == "linux":
        default = Path("/etc/systemd/system") if system else home / ".config" / "systemd" / "user"
        path = Path(directory or default) / f"{NAME}.service"
        ctl = ["systemctl"] if system else ["systemctl", "--user"]
        return ServiceFile(
            "linux",
            path,
            systemd_unit(server_args, system),
            load=[[*ctl, "daemon-reload"], [*ctl, "enable", "--now", f"{NAME}.service"]],
            unload=[[*ctl, "disable", "--now", f"{NAME}.service"], [*ctl, "daemon-reload"]],
        )
    default = Path("/Library/LaunchDaemons") if system else home / "Library" / "LaunchAgents"
    path = Path(directory or default) / f"{LABEL}.plist"
    domain = "system" if system else f"gui/{os.getuid()}"
    return ServiceFile(
        "macos",
        path,
        launchd_plist(server_args, system),
        load=[["launchctl", "bootstrap", domain, str(path)]],
        unload=[["launchctl", "bootout", f"{domain}/{LABEL}"]],
    )


def _check_server_args(
    server_args: list[str], server_parser: Callable[[], argparse.ArgumentParser]
) -> str | None:
    """Why the server flags cannot go into a service file (None: fine)."""
    if any(a == "--token" or a.startswith("--token=") for a in server_args):
        return "--token would be readable in the service file and in ps: use --token-file FILE"
    if "--once" in server_args:
        return "--once makes no sense for a service"
    parser = server_parser()
    parser.exit_on_error = False
    try:
        parser.parse_args(server_args)
    except (argparse.ArgumentError, SystemExit) as e:
        return f"bad server flags: {e}"
    return None


def _run(commands: list[list[str]]) -> int:
    for cmd in commands:
        if shutil.which(cmd[0]) is None:
            print(f"{cmd[0]} not found: run it yourself: {shlex.join(cmd)}", file=sys.stderr)
            return 1
        done = subprocess.run(cmd, check=False)
        if done.returncode != 0:
            print(f"{shlex.join(cmd)} failed with exit code {done.returncode}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str], server_parser: Callable[[], argparse.ArgumentParser]) -> int:
    """``argv``: the action and its flags; ``server_parser`` checks the server flags (the
    ``vtremoted`` parser, handed in by cli/serve.py, which dispatches here)."""
    action, rest = argv[0], argv[1:]
    parser = _parser()
    parser.prog = f"vtremoted {action}"
    args, server_args = parser.parse_known_args(rest)
    if server_args and server_args[0] == "--":
        server_args = server_args[1:]
    if action == "uninstall-service":
        if server_args:
            parser.error(f"unexpected arguments: {' '.join(server_args)}")
        svc = service_file(args.platform, [], args.system, args.dir)
        if svc.path.exists():
            rc = 0 if args.dir or args.no_load else _run(svc.unload)
            svc.path.unlink()
            print(f"removed {svc.path}")
            return rc
        print(f"{svc.path} does not exist: nothing to remove", file=sys.stderr)
        return 1
    problem = _check_server_args(server_args, server_parser)
    if problem:
        print(f"vtremoted {action}: {problem}", file=sys.stderr)
        return 2
    svc = service_file(args.platform, server_args, args.system, args.dir)
    if args.print_only:
        sys.stdout.write(svc.text)
        return 0
    svc.path.parent.mkdir(parents=True, exist_ok=True)
    svc.path.write_text(svc.text)
    print(f"wrote {svc.path}")
    if args.dir or args.no_load:
        print("not loaded; to start it: " + "; ".join(shlex.join(c) for c in svc.load))
        return 0
    return _run(svc.load)


__all__ = ["ServiceFile", "launchd_plist", "main", "service_file", "systemd_unit"]
