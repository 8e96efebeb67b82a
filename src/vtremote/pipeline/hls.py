"""HLS output (``-f hls``): a playlist and its segments, written where they belong as the run goes.

Unlike a single file, an HLS set is read while it is written (a media server
serves each segment as soon as it exists), so it cannot be made under a
temporary name and renamed at the end. Instead:

* segments are written with FFmpeg's ``hls_flags=temp_file``: each is
  ``NAME.tmp`` until complete, so a segment under its real name is whole;
* an init segment given as a path in the playlist's folder is passed by its
  name (FFmpeg places it beside the playlist and would otherwise double the folder);
* a run that fails removes the playlist, every segment it created and any
  ``.tmp`` left behind; with ``keep_partial`` it keeps the complete segments and
  renames the playlist ``NAME.partial.m3u8`` instead, so nothing a player finds
  under the expected names passes for a complete set;
* video keyframes fall on every segment start: when no ``-force_key_frames`` is
  given, :func:`segment_key_frames` forces one every ``hls_time`` seconds.

A run killed with SIGKILL cleans nothing, and nothing it left passes for a
complete set: only a muxer that ends writes ``#EXT-X-ENDLIST`` (what tells a
player a playlist is whole), and a ``-hls_playlist_type vod`` playlist is written
only then, so a killed VOD run leaves segments and no playlist at all.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
from typing import Any

import av
import av.error

from vtremote.errors import JobError, UsageError
from vtremote.pipeline.output import close_failed, partial_name

log = logging.getLogger(__name__)

#: FFmpeg's hls muxer default segment length.
DEFAULT_HLS_TIME = 2.0


def hls_time(options: dict[str, str]) -> float:
    try:
        return float(options.get("hls_time", DEFAULT_HLS_TIME))
    except ValueError:
        raise UsageError(f"-hls_time {options['hls_time']!r} is not a number of seconds") from None


def segment_key_frames(options: dict[str, str]) -> str:
    """A ``-force_key_frames`` value that puts a keyframe at every segment start."""
    return f"expr:gte(t,n_forced*{hls_time(options):g})"


def _pattern_glob(pattern: str) -> str:
    """``/t/abc%d.ts`` -> ``/t/abc*.ts`` (printf-style numbers become wildcards)."""
    return re.sub(r"%0?\d*[dl]+", "*", glob.escape(pattern).replace("[%]", "%"))


class HlsOutput:
    """An ``hls`` muxer writing into the playlist's real folder; same interface as
    :class:`~vtremote.pipeline.output.OutputFile` (``container``, ``commit``, ``abort``)."""

    def __init__(
        self,
        url: str,
        options: dict[str, str],
        *,
        overwrite: bool | None,
        keep_partial: bool = False,
    ) -> None:
        self.url = url
        self.keep_partial = keep_partial
        if url == "-" or "://" in url:
            raise UsageError("-f hls needs a playlist path on this machine")
        if os.path.exists(url) and overwrite is not True:
            raise JobError(
                f"{url} already exists; use -y to overwrite it"
                + (" (-n given)" if overwrite is False else "")
            )
        opts = dict(options)
        folder, name = os.path.split(url)
        stem, _ext = os.path.splitext(name)
        fmp4 = opts.get("hls_segment_type") == "fmp4"
        opts.setdefault(
            "hls_segment_filename", os.path.join(folder, f"{stem}%d.{'m4s' if fmp4 else 'ts'}")
        )
        init = opts.get("hls_fmp4_init_filename")
        if init and os.path.isabs(init):
            # FFmpeg prefixes the playlist's folder to the init name: give it a relative one.
            opts["hls_fmp4_init_filename"] = os.path.relpath(init, folder or ".")
        flags = [f for f in re.split(r"[+]", opts.get("hls_flags", "")) if f]
        if "temp_file" not in flags:
            flags.append("temp_file")
        opts["hls_flags"] = "+".join(flags)
        self.patterns = [_pattern_glob(opts["hls_segment_filename"])]
        if fmp4:
            self.patterns.append(
                glob.escape(os.path.join(folder, opts.get("hls_fmp4_init_filename", "init.mp4")))
            )
        self.before = self._existing()
        try:
            self.container: av.container.OutputContainer = av.open(
                url, "w", format="hls", options=opts
            )
        except av.error.FFmpegError as e:
            raise JobError(f"cannot open HLS output {url!r}: {e.strerror or e}") from e
        self.done = False

    def _existing(self) -> set[str]:
        found: set[str] = set()
        for pattern in self.patterns:
            found.update(glob.glob(pattern))
            found.update(glob.glob(pattern + ".tmp"))
        return found

    @property
    def partial_name(self) -> str:
        return partial_name(self.url)

    def commit(self) -> None:
        """The muxer is closed: the playlist and segments are complete where they are."""
        self.done = True

    def abort(self) -> None:
        """The run failed: take away (or mark) what it wrote."""
        if self.done:
            return
        self.done = True
        close_failed(self.container)
        created = sorted(self._existing() - self.before)
        for path in [p for p in created if p.endswith(".tmp")] + glob.glob(
            glob.escape(self.url) + ".tmp"
        ):
            with contextlib.suppress(OSError):
                os.unlink(path)
        segments = [p for p in created if not p.endswith(".tmp")]
        if self.keep_partial:
            if os.path.exists(self.url):
                os.replace(self.url, self.partial_name)
            log.warning(
                "the run failed; its %d complete segment(s) are kept, the playlist as %s",
                len(segments),
                self.partial_name,
            )
            return
        playlist = os.path.exists(self.url)
        for path in [*segments, self.url]:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if playlist or segments:
            log.warning(
                "the run failed; removed %s%d segment(s) it wrote",
                f"the playlist {self.url} and " if playlist else "",
                len(segments),
            )


def is_hls(fmt: str | None, url: str) -> bool:
    return fmt == "hls" or (fmt is None and url.endswith(".m3u8"))


def open_hls(
    url: str, options: dict[str, Any], overwrite: bool | None, keep_partial: bool
) -> HlsOutput:
    return HlsOutput(
        url, {k: str(v) for k, v in options.items()}, overwrite=overwrite, keep_partial=keep_partial
    )
