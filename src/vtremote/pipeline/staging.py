"""Where a single-file output is written until the run is complete.

A run must never leave a finished-looking, truncated file under the target's
name, nor litter when it is killed (SIGKILL runs no clean-up). Two ways:

* **anonymous** (Linux, where the filesystem has ``O_TMPFILE``): the output is an
  unnamed inode in the target's folder. FFmpeg writes it through
  ``/proc/self/fd/N`` (a real, seekable file: ``movflags=+faststart`` reopens it
  too), and only on success does ``linkat`` give it a name. A killed run leaves
  nothing: the kernel frees an inode no name and no descriptor holds.
* **hidden name** everywhere else: ``.STEM.vtremote-PID.EXT`` beside the target,
  renamed on success. The pid in the name lets a later run remove the temporaries
  of dead runs (:func:`clean_stale`): only names of exactly that pattern, for the
  same target, whose pid is gone and which nobody wrote to for
  :data:`STALE_AFTER_S` seconds (a pid of another host or container on a shared
  folder may look gone).

Both end the same way: :meth:`Staged.commit` links or renames the file to the
target (replacing an existing one atomically), :meth:`Staged.keep` does the same
under another name (a marked partial file), :meth:`Staged.discard` drops it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import time

log = logging.getLogger(__name__)

#: A hidden temporary whose pid is gone is removed once unmodified for this long.
STALE_AFTER_S = 60.0
#: linkat(2) flags and directory handle (Linux).
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000


def hidden_name(url: str, pid: int) -> str:
    """``DIR/.STEM.vtremote-PID.EXT``: the hidden temporary of ``url`` for process ``pid``."""
    head, name = os.path.split(url)
    stem, ext = os.path.splitext(name)
    return os.path.join(head, f".{stem}.vtremote-{pid}{ext}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's live process
    return True


def clean_stale(url: str, *, now: float | None = None) -> list[str]:
    """Remove the hidden temporaries of ``url`` left by runs that died; return their paths."""
    head, name = os.path.split(url)
    stem, ext = os.path.splitext(name)
    pattern = re.compile(rf"\.{re.escape(stem)}\.vtremote-([1-9][0-9]{{0,9}}){re.escape(ext)}")
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        names = os.listdir(head or ".")
    except OSError:
        return removed
    for entry in names:
        match = pattern.fullmatch(entry)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        path = os.path.join(head, entry)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if (
            not os.path.isfile(path)
            or os.path.islink(path)
            or now - info.st_mtime < STALE_AFTER_S
            or _pid_alive(int(match.group(1)))
        ):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
            log.info("removed %s, the temporary output of a run that died", path)
    return removed


def _link_fd(fd: int, path: str) -> None:
    """Give the unnamed file ``fd`` the name ``path`` (which must not exist)."""
    try:  # the documented way (open(2), O_TMPFILE); some kernels answer EXDEV
        os.link(f"/proc/self/fd/{fd}", path, follow_symlinks=True)
        return
    except OSError as first:
        error = first
    linkat = getattr(ctypes.CDLL(None, use_errno=True), "linkat", None)
    if linkat is None:
        raise error
    if linkat(fd, b"", _AT_FDCWD, os.fsencode(path), _AT_EMPTY_PATH) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{os.strerror(errno)} (and {error.strerror})", path)


def _anonymous(url: str) -> int | None:
    """An unnamed file beside ``url`` that can be linked later, or None where it cannot."""
    folder = os.path.dirname(url)
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd = os.open(folder or ".", flag | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError:
        return None  # the filesystem has no O_TMPFILE (NFS, FUSE...)
    # Linking needs /proc or CAP_DAC_READ_SEARCH: try it on an empty probe file, under
    # the hidden name a run that dies right here leaves to clean_stale.
    probe = hidden_name(url, os.getpid())
    try:
        fd_probe = os.open(folder or ".", flag | os.O_RDWR, 0o600)
        try:
            _link_fd(fd_probe, probe)
            os.unlink(probe)
        finally:
            os.close(fd_probe)
    except OSError as e:
        log.debug("unnamed output files cannot be linked in %s (%s)", folder or ".", e)
        os.close(fd)
        return None
    return fd


class Staged:
    """The file an output is written to until :meth:`commit` gives it the target's name."""

    def __init__(self, url: str) -> None:
        self.url = url
        clean_stale(url)
        #: The descriptor of the unnamed file, or None when a hidden name is used.
        self.fd = _anonymous(url)
        #: Where FFmpeg writes: the unnamed file through /proc, or the hidden name.
        self.path = (
            f"/proc/self/fd/{self.fd}" if self.fd is not None else hidden_name(url, os.getpid())
        )

    @property
    def anonymous(self) -> bool:
        return self.fd is not None

    def commit(self) -> None:
        """The output is complete: it takes the target's name (replacing any file there)."""
        self.keep(self.url)

    def keep(self, name: str) -> None:
        """Give the written file ``name`` instead (replacing any file there)."""
        if self.fd is None:
            os.replace(self.path, name)
            return
        # linkat() refuses an existing name: link to the hidden name, then rename over.
        hidden = hidden_name(self.url, os.getpid())
        with contextlib.suppress(FileNotFoundError):
            os.unlink(hidden)
        _link_fd(self.fd, hidden)
        os.replace(hidden, name)
        self.discard()

    def discard(self) -> None:
        """Drop the file (an unnamed one vanishes with its descriptor)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
