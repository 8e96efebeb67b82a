"""Engine names -> engine classes, imported only when chosen, and the ``auto`` choice.

Each engine lives in its own module and is imported on first use, so a broken
driver stack for one device cannot break the others (STYLE.md §6). ``auto``
takes the first engine in :data:`AUTO_ORDER` whose probe really works for the
session's codec and mode; ``null`` is never part of it.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

import av

from vtremote.engines.base import ALL_CODECS, MODES, Engine, Mode
from vtremote.errors import ConfigError, EngineUnavailableError
from vtremote.wire.constants import EXTENSION_CODECS

log = logging.getLogger(__name__)

#: name -> "module:Class".
ENGINES: dict[str, str] = {
    "videotoolbox": "vtremote.engines.videotoolbox:VideoToolboxEngine",
    "nvenc": "vtremote.engines.nvenc:NvencEngine",
    "qsv": "vtremote.engines.qsv:QsvEngine",
    "vaapi": "vtremote.engines.vaapi:VaapiEngine",
    "x264": "vtremote.engines.software:SoftwareEngine",
    "null": "vtremote.engines.null:NullEngine",
}
#: Other spellings accepted on the command line.
ALIASES = {"software": "x264", "sw": "x264", "x265": "x264"}
#: Best first: the device that the reference daemon used, then discrete GPUs, then
#: integrated ones, then software.
AUTO_ORDER: tuple[str, ...] = ("videotoolbox", "nvenc", "qsv", "vaapi", "x264")
CHOICES: tuple[str, ...] = ("auto", *ENGINES)

_classes: dict[str, type[Engine]] = {}


def canonical(name: str) -> str:
    """The registry name for ``name`` (aliases resolved); ConfigError if unknown."""
    key = ALIASES.get(name, name)
    if key != "auto" and key not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(CHOICES)}")
    return key


def engine_class(name: str) -> type[Engine]:
    """Import and return the engine class registered as ``name``."""
    key = canonical(name)
    if key == "auto":
        raise ConfigError("'auto' is a policy, not an engine; use resolve()")
    if key in _classes:
        return _classes[key]
    module_name, _, attr = ENGINES[key].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise EngineUnavailableError(f"engine {key} cannot be imported: {e}") from e
    cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise EngineUnavailableError(f"{ENGINES[key]} is not an Engine")
    _classes[key] = cls
    return cls


def resolve(name: str, codec: str, mode: Mode) -> type[Engine]:
    """The engine class to serve codec/mode under the configured engine ``name``.

    A named engine must work (EngineUnavailableError otherwise: never a silent
    fallback); ``auto`` takes the best one that probes OK.
    """
    key = canonical(name)
    if key != "auto":
        cls = engine_class(key)
        cls.require(codec, mode)
        return cls
    reasons = []
    for candidate in AUTO_ORDER:
        try:
            cls = engine_class(candidate)
        except EngineUnavailableError as e:
            reasons.append(f"{candidate}: {e}")
            continue
        reason = cls.probe_error(codec, mode)
        if reason is None:
            return cls
        reasons.append(f"{candidate}: {reason}")
    raise EngineUnavailableError(f"no engine can {mode} {codec} here ({'; '.join(reasons)})")


def candidates(name: str, codec: str, mode: Mode) -> list[type[Engine]]:
    """Engines to try in order for one session: the named one only (it must work), or
    under ``auto`` every engine that probes OK, best first."""
    key = canonical(name)
    if key != "auto":
        return [resolve(key, codec, mode)]
    out = []
    for candidate in AUTO_ORDER:
        try:
            cls = engine_class(candidate)
        except EngineUnavailableError:
            continue
        if cls.probe(codec, mode):
            out.append(cls)
    if not out:
        resolve("auto", codec, mode)  # raises with every engine's reason
    return out


@dataclass(frozen=True, slots=True)
class ProbeResult:
    engine: str
    hardware: bool
    description: str
    #: (codec, mode) -> None if it works, else why not.
    results: dict[tuple[str, Mode], str | None]

    @property
    def works(self) -> bool:
        return any(r is None for r in self.results.values())


def extension_codecs(name: str) -> tuple[str, ...]:
    """The extension codecs (AV1) to offer in HELLO_ACK: those engine ``name`` (under
    ``auto``: any engine) has an encoder and a decoder for in this FFmpeg build.

    No device is opened, so a HELLO never waits for a probe; a session whose device then
    fails reports why at CONFIGURE, as for any codec."""
    key = canonical(name)
    found = []
    for codec in EXTENSION_CODECS:
        for candidate in AUTO_ORDER if key == "auto" else (key,):
            try:
                cls = engine_class(candidate)
            except EngineUnavailableError:
                continue
            encoders = getattr(cls, "encoders", None)
            decoders = getattr(cls, "decoders", None)
            if encoders is None or decoders is None:
                continue  # the null engine: placeholder bitstreams for the v1 codecs only
            names = (encoders.get(codec), decoders.get(codec))
            if all(n is not None and n in av.codecs_available for n in names):
                found.append(codec)
                break
    return tuple(found)


def probe_all(names: tuple[str, ...] | None = None) -> list[ProbeResult]:
    """Really probe every engine for every codec and mode (for --list-engines)."""
    out = []
    for name in names or tuple(ENGINES):
        try:
            cls = engine_class(name)
        except EngineUnavailableError as e:
            out.append(
                ProbeResult(name, False, "", {(c, m): str(e) for c in ALL_CODECS for m in MODES})
            )
            continue
        results = {(c, m): cls.probe_error(c, m) for c in ALL_CODECS for m in MODES}
        out.append(ProbeResult(name, cls.hardware, cls.description, results))
    return out
