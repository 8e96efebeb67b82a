"""Live keys on disk: where the receiver keeps its key, made once and readable only by its user."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from vtremote.errors import ConfigError
from vtremote.live.auth import check_key, new_key


def default_key_file() -> Path:
    """``$XDG_CONFIG_HOME/vtremote/live.key`` (``~/.config/vtremote/live.key``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vtremote" / "live.key"


def read_key(path: Path) -> str:
    """The key in ``path`` (its first line); :class:`ConfigError` if missing or too short."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"cannot read the live key {path}: {e.strerror}") from None
    check_key(text)
    return text


def load_or_make_key(path: Path) -> tuple[str, bool]:
    """The key in ``path``, made (mode 0600) when there is none; (key, made now)."""
    if path.exists():
        return read_key(path), False
    key = new_key()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another receiver made it just now
        return read_key(path), False
    except OSError as e:
        raise ConfigError(f"cannot make the live key {path}: {e.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
    return key, True
