"""An ffmpeg option (:class:`Option`) and one use of it on a command line (:class:`Occurrence`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from vtremote.pipeline.spec import InputSpec, JobSpec, OutputSpec

Where = Literal["in", "out", "both", "global"]


@dataclass(frozen=True)
class Option:
    """One ffmpeg option."""

    key: str  # a name of our own: "bitrate" for -b:v / -b / -vb
    names: tuple[str, ...]  # spellings, the first is the one error texts use
    where: Where
    help: str
    flag: bool = False  # takes no value
    stream: str | None = None  # a bare spelling's stream type (-r: "v"); None: any
    input: InputSetter | None = None
    output: OutputSetter | None = None
    job: JobSetter | None = None


#: Spellings that name a stream type without a ``:`` specifier.
_BARE_STREAM = {"-vcodec": "v", "-acodec": "a", "-scodec": "s", "-dcodec": "d"}


@dataclass(frozen=True)
class Occurrence:
    """One option as it stands on a command line: which option, how it was spelt, its value."""

    option: Option
    spelling: str  # "-c:a", "-codec:v:0", "-vcodec"
    value: str  # "" for an option that takes none

    @property
    def label(self) -> str:
        """The option's main spelling, as error texts name it (``-g`` for ``-g:v``)."""
        return self.option.names[0]

    @property
    def stream(self) -> str:
        """The stream type the spelling names: v, a, s, d, or * for every stream."""
        name, colon, spec = self.spelling.partition(":")
        return stream_of(spec) if colon else _BARE_STREAM.get(name, "*")


def stream_of(spec: str) -> str:
    """The stream type a specifier selects: ``v:0`` -> v, ``0`` or nothing -> * (every stream)."""
    head = spec.split(":", 1)[0]
    return "v" if head == "V" else head if head in ("v", "a", "s", "d") else "*"


InputSetter = Callable[[InputSpec, Occurrence], None]
OutputSetter = Callable[[OutputSpec, Occurrence], None]
JobSetter = Callable[[JobSpec, Occurrence], None]
