"""Watching a ``vtremote`` process from outside: how much output it has written so far."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def start_long_encode(server_addr: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    """A two-minute remote encode of a synthetic source in its own ``vtremote`` process."""
    args = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-t",
        "120",
        "-c:v",
        "h264_videotoolbox_remote",
        "-vt_remote_host",
        server_addr,
        *extra,
        str(out),
    ]
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from vtremote.cli.main import main; sys.exit(main())"]
        + args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def written_in(pid: int, folder: Path) -> int:
    """Bytes process ``pid`` has written into files of ``folder``: named ones, and unnamed
    ones it holds open (O_TMPFILE; /proc shows them as ``FOLDER/#INODE (deleted)``)."""
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir() if fds.is_dir() else ():
        try:
            if os.readlink(fd).startswith(f"{folder}/#"):
                total += os.stat(fd).st_size
        except OSError:
            continue  # closed meanwhile
    return total
