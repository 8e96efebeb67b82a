"""Watching a ``vtremote`` process from outside: how much output it has written so far."""

from __future__ import annotations

import os
from pathlib import Path


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
