"""Configuration of ``vtremote-ffmpeg``: TOML files, then the environment.

Files are read in order, later ones overriding earlier keys:
``/etc/vtremote/config.toml``, ``~/.config/vtremote/config.toml`` (or
``$XDG_CONFIG_HOME/vtremote/config.toml``), then ``$VTREMOTE_CONFIG``. The
``[ffmpeg]`` table holds this command's settings::

    [ffmpeg]
    servers = ["mac.local:5555", "gpu-box:5555"]   # one pool (placement, failover)
    token = "s3cret"                               # or token_file = "/etc/vtremote/token"
    ffmpeg_path = "/usr/lib/jellyfin-ffmpeg/ffmpeg" # lines vtremote cannot run go here
    on_unavailable = "local"                       # local | ffmpeg | fail
    rate_control = "quality"                       # quality | bitrate
    [ffmpeg.remote_encoders]                       # local name -> remote codec
    libx264 = "h264"

Environment (overrides the files): ``VTREMOTE_HOST`` (comma-separated
servers), ``VTREMOTE_TOKEN``, ``VTREMOTE_FFMPEG`` (ffmpeg_path),
``VTREMOTE_ON_UNAVAILABLE``, ``VTREMOTE_LOG_FILE``, ``VTREMOTE_STATE_DIR``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vtremote.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/vtremote/config.toml")

#: Local encoder names media servers ask for -> the remote codec that replaces them.
DEFAULT_REMOTE_ENCODERS: dict[str, str] = {
    "libx264": "h264",
    "h264": "h264",
    "h264_qsv": "h264",
    "h264_vaapi": "h264",
    "h264_nvenc": "h264",
    "h264_amf": "h264",
    "h264_videotoolbox": "h264",
    "h264_v4l2m2m": "h264",
    "h264_rkmpp": "h264",
    "libx265": "hevc",
    "hevc": "hevc",
    "hevc_qsv": "hevc",
    "hevc_vaapi": "hevc",
    "hevc_nvenc": "hevc",
    "hevc_amf": "hevc",
    "hevc_videotoolbox": "hevc",
    "hevc_rkmpp": "hevc",
    # AV1 (Jellyfin 10.9+): served by vtremoted's that offer it (wire/extensions.py ext:codecs).
    "libsvtav1": "av1",
    "libaom-av1": "av1",
    "librav1e": "av1",
    "av1_qsv": "av1",
    "av1_vaapi": "av1",
    "av1_nvenc": "av1",
    "av1_amf": "av1",
}

ON_UNAVAILABLE = ("local", "ffmpeg", "fail")
RATE_CONTROLS = ("quality", "bitrate")


@dataclass(frozen=True)
class MediaServerConfig:
    """Everything ``vtremote-ffmpeg`` reads from files and the environment."""

    #: The servers, one pool (:attr:`pool`); empty = an embedded server on loopback (tests,
    #: trials).
    servers: tuple[str, ...] = ()
    token: str = ""
    #: A real ffmpeg for command lines vtremote cannot run (and for ``on_unavailable = "ffmpeg"``).
    ffmpeg_path: str | None = None
    #: When no server can take the job: encode locally with PyAV, hand the line to ffmpeg, or fail.
    on_unavailable: str = "local"
    #: ``quality``: -crf / -global_quality become the engine's constant quality (capped by
    #: -maxrate); ``bitrate``: the engine gets -b:v, else -maxrate, as its average bitrate.
    rate_control: str = "quality"
    remote_encoders: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_REMOTE_ENCODERS)
    )
    #: Lines with no video encode for a server (stream copy, thumbnails, audio only):
    #: "ffmpeg" hands them to ffmpeg_path when one is configured, "vtremote" runs them here.
    local_lines: str = "ffmpeg"
    #: Local encoder used when the server is unavailable: "auto" = libx264 / libx265.
    fallback_encoder: str = "auto"
    timeout_ms: int = 5000
    #: A failed run keeps its complete HLS segments (playlist renamed NAME.partial.m3u8) or
    #: its file as NAME.partial.EXT, instead of removing them.
    keep_partial: bool = False
    compression: str = "auto"
    log_file: str | None = None
    log_level: str = "info"
    state_dir: str | None = None
    #: Version string printed by -version after the FFmpeg version of PyAV's libraries.
    version_suffix: str = "vtremote"
    #: Where the values came from, for ``vtremote-ffmpeg -vtremote_config``.
    sources: tuple[str, ...] = ()

    @property
    def pool(self) -> str:
        """The servers as one ``-vt_remote_host`` value: a pool when there are several (the
        job is placed on the one with the most free capacity and, when it dies mid-line,
        carries on on another without a lost or repeated frame), "" when there are none."""
        return ",".join(self.servers)

    def __post_init__(self) -> None:
        if self.on_unavailable not in ON_UNAVAILABLE:
            raise ConfigError(
                f"on_unavailable {self.on_unavailable!r} is not one of {', '.join(ON_UNAVAILABLE)}"
            )
        if self.local_lines not in ("ffmpeg", "vtremote"):
            raise ConfigError(f"local_lines {self.local_lines!r} is not ffmpeg or vtremote")
        if self.rate_control not in RATE_CONTROLS:
            raise ConfigError(
                f"rate_control {self.rate_control!r} is not one of {', '.join(RATE_CONTROLS)}"
            )
        for name, codec in self.remote_encoders.items():
            if codec not in ("h264", "hevc", "av1", ""):
                raise ConfigError(
                    f'remote_encoders.{name} = {codec!r}: use "h264", "hevc", "av1" or ""'
                    " (stay local)"
                )
        if not 100 <= self.timeout_ms <= 60000:
            raise ConfigError(f"timeout_ms {self.timeout_ms} is outside 100..60000")
        if self.compression not in ("auto", "none", "lz4", "zstd"):
            raise ConfigError(f"compression {self.compression!r} is not auto, none, lz4 or zstd")

    def remote_codec(self, encoder: str) -> str | None:
        """The remote codec that replaces a local encoder name, or None (stays local)."""
        return self.remote_encoders.get(encoder) or None

    @property
    def state_path(self) -> Path:
        if self.state_dir:
            return Path(self.state_dir)
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "state"
        )
        return Path(base) / "vtremote"


def config_paths(env: Mapping[str, str]) -> list[Path]:
    """The files read, in order (missing ones are skipped)."""
    home = env.get("XDG_CONFIG_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".config"
    )
    paths = [SYSTEM_CONFIG, Path(home) / "vtremote" / "config.toml"]
    if env.get("VTREMOTE_CONFIG"):
        paths.append(Path(env["VTREMOTE_CONFIG"]))
    return paths


_KEYS = {f for f in MediaServerConfig.__dataclass_fields__ if f != "sources"}


def _apply_table(values: dict[str, Any], table: Mapping[str, Any], where: str) -> None:
    for key, value in table.items():
        if key == "token_file":
            try:
                values["token"] = Path(str(value)).read_text().strip()
            except OSError as e:
                raise ConfigError(
                    f"{where}: token_file {value!r} cannot be read: {e.strerror}"
                ) from e
            continue
        if key == "server":
            key, value = "servers", [value]
        if key not in _KEYS:
            raise ConfigError(
                f"{where}: unknown key {key!r} in [ffmpeg] (known: "
                f"{', '.join(sorted(_KEYS | {'token_file', 'server'}))})"
            )
        if key == "servers":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f'{where}: servers must be a list of "HOST:PORT" strings')
            value = tuple(value)
        elif key == "remote_encoders":
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{where}: [ffmpeg.remote_encoders] must be a table of "
                    'NAME = "h264"|"hevc"|"av1"'
                )
            value = dict(values.get("remote_encoders", DEFAULT_REMOTE_ENCODERS)) | {
                str(k): str(v) for k, v in value.items()
            }
        values[key] = value


def load_config(
    env: Mapping[str, str] | None = None, paths: list[Path] | None = None
) -> MediaServerConfig:
    """Read the files that exist, then the environment; raises :class:`ConfigError` with the file
    named."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: list[str] = []
    for path in config_paths(env) if paths is None else paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise ConfigError(f"{path}: cannot be read: {e.strerror}") from e
        try:
            doc = tomllib.loads(data.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from e
        table = doc.get("ffmpeg", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [ffmpeg] must be a table")
        _apply_table(values, table, str(path))
        sources.append(str(path))
    envmap = {
        "VTREMOTE_HOST": "servers",
        "VTREMOTE_TOKEN": "token",
        "VTREMOTE_FFMPEG": "ffmpeg_path",
        "VTREMOTE_ON_UNAVAILABLE": "on_unavailable",
        "VTREMOTE_RATE_CONTROL": "rate_control",
        "VTREMOTE_LOG_FILE": "log_file",
        "VTREMOTE_LOG_LEVEL": "log_level",
        "VTREMOTE_STATE_DIR": "state_dir",
    }
    for var, key in envmap.items():
        if env.get(var):
            raw = env[var]
            values[key] = (
                tuple(s.strip() for s in raw.split(",") if s.strip()) if key == "servers" else raw
            )
            sources.append(f"${var}")
    if env.get("VTREMOTE_TOKEN_FILE") and not env.get("VTREMOTE_TOKEN"):
        _apply_table(values, {"token_file": env["VTREMOTE_TOKEN_FILE"]}, "$VTREMOTE_TOKEN_FILE")
    if "timeout_ms" in values:
        values["timeout_ms"] = int(values["timeout_ms"])
    try:
        return replace(MediaServerConfig(), **values, sources=tuple(sources))
    except TypeError as e:
        raise ConfigError(f"configuration: {e}") from e
