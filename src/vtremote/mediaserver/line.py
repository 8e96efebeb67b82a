"""A media server's command line read once into typed data: the inputs and the output as the
job specs ffmpeg's options describe, with what the dialect says along the way.

Every option is looked up once (:func:`~vtremote.mediaserver.dialect.option_for`) and set with
the shared table's setter; :mod:`.translate` then decides from the result alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vtremote.mediaserver import dialect
from vtremote.mediaserver.argv import Command, FileArgs, Opt, strip_file_url
from vtremote.mediaserver.filters import Unsupported
from vtremote.pipeline.ffmpeg_options import Occurrence
from vtremote.pipeline.spec import InputSpec, OutputSpec


@dataclass
class Line:
    """What a media server's command line asks for, before any decision."""

    inputs: list[InputSpec]
    output: OutputSpec
    overwrite: bool | None = None  # -y True, -n False (-y wins), neither None
    notes: list[str] = field(default_factory=list)


def read_command(cmd: Command) -> Line:
    """Read the whole line; raises Unsupported (or UsageError for a bad value) when vtremote
    cannot run it."""
    if not cmd.inputs:
        raise Unsupported("no input")
    if len(cmd.outputs) != 1:
        raise Unsupported(f"{len(cmd.outputs)} outputs: vtremote writes exactly one")
    output = cmd.outputs[0]
    line = Line([], OutputSpec(strip_file_url(output.url)))
    for o in cmd.globals:
        _read_global(line, o)
    line.inputs = [_read_input(f, line.notes) for f in cmd.inputs]
    _input_stream_switches(cmd, line.output)
    for o in output.options:
        option = dialect.option_for(o.name, o.spec, "out")
        if option is dialect.IGNORE:
            note = dialect.ignored_note(o.name, o.spec, str(o))
            if note:
                line.notes.append(note)
            continue
        setter = dialect.OUTPUT_SETTERS.get(option.key, option.output) if option else None
        if option is None or setter is None:
            raise Unsupported(f"output option {o} is not supported")
        setter(line.output, Occurrence(option, o.raw, o.value or ""))
    return line


def _read_global(line: Line, o: Opt) -> None:
    """Options that apply to the whole run wherever they stand (see argv.GLOBAL_OPTIONS)."""
    if o.name in ("filter_complex", "lavfi"):
        raise Unsupported(dialect.FILTER_COMPLEX)
    if o.name == "y":
        line.overwrite = True
    elif o.name == "n" and line.overwrite is None:
        line.overwrite = False
    elif o.name in ("copyts", "start_at_zero"):
        setattr(line.output, o.name, True)


#: ``-an``/``-vn``/``-sn``/``-dn`` before an ``-i`` (Jellyfin's trickplay lines): that input's
#: streams of the kind are not read; with one input, the same as on the output.
_INPUT_SWITCHES = {"an": "no_audio", "vn": "no_video", "sn": "no_subtitles", "dn": "no_data"}


def _input_stream_switches(cmd: Command, out: OutputSpec) -> None:
    for f in cmd.inputs:
        for o in f.options:
            if o.name in _INPUT_SWITCHES:
                if len(cmd.inputs) > 1:
                    raise Unsupported(f"input option {o} with several inputs")
                setattr(out, _INPUT_SWITCHES[o.name], True)


def _read_input(f: FileArgs, notes: list[str]) -> InputSpec:
    spec = InputSpec(strip_file_url(f.url))
    for o in f.options:
        if o.name in _INPUT_SWITCHES:
            continue
        option = dialect.option_for(o.name, o.spec, "in")
        if option is dialect.IGNORE:
            continue
        if option is not None and option.key in dialect.INPUT_NOTES:
            notes.append(
                dialect.INPUT_NOTES[option.key].format(spelling=o.raw, value=o.value or "")
            )
        elif option is not None and option.input is not None:
            option.input(spec, Occurrence(option, o.raw, o.value or ""))
        else:
            raise Unsupported(f"input option {o} is not supported")
    return spec
