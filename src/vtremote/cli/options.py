"""ffmpeg-style command lines, parsed verbatim with argparse.

``vtremote [global] [input options] -i INPUT ... [output options] OUTPUT``

As in ffmpeg, where an option stands decides what it applies to: options before
an ``-i`` belong to that input (``-f lavfi``, ``-ss``, a decoder chosen with
``-c:v h264_videotoolbox_remote`` = remote decode, ``-vt_remote_host`` of that
decoder), options after the last ``-i`` belong to the output (``-c:v
h264_videotoolbox_remote`` = remote encode, ``-b:v 6000k``...). One argparse
parser (``allow_abbrev=False``, so ``-vt_remote_h`` is not ``-vt_remote_host``)
reads the whole line in order; each option's action records how many inputs
had been seen, which is exactly ffmpeg's rule. The options themselves (spellings, help,
what each sets) are the shared table of :mod:`vtremote.pipeline.ffmpeg_options`.

The result is a :class:`~vtremote.pipeline.spec.JobSpec`: plain data, validated, with values
already converted (bitrates, times, sizes, rates, colour names). Nothing here opens a
file or a socket.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from vtremote.errors import UsageError
from vtremote.pipeline.ffmpeg_options import BY_KEY, OPTIONS, Occurrence
from vtremote.pipeline.keyframes import parse_force_key_frames
from vtremote.pipeline.spec import (
    REMOTE_CODECS,
    InputSpec,
    JobSpec,
    MapSpec,
    OutputSpec,
    RemoteOptions,
)
from vtremote.pipeline.values import (
    parse_bitrate,
    parse_rate,
    parse_size,
    parse_time,
)

__all__ = [
    "REMOTE_CODECS",
    "InputSpec",
    "JobSpec",
    "MapSpec",
    "OutputSpec",
    "RemoteOptions",
    "UsageError",
    "build_parser",
    "parse_bitrate",
    "parse_command",
    "parse_force_key_frames",
    "parse_rate",
    "parse_size",
    "parse_time",
]

# --- argparse plumbing --------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # ffmpeg words: "unrecognized arguments: -foo" -> usage error, exit code 2.
        raise UsageError(message)


@dataclass
class _Event:
    dest: str
    option: str
    value: Any
    input_index: int  # inputs seen when the option appeared


class _Record(argparse.Action):
    """Store every occurrence with its position relative to the ``-i`` options (``-i`` itself
    adds an input)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        ns: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if self.dest == "inputs":
            ns.inputs.append(values)
            return
        value = True if self.nargs == 0 else values
        ns.events.append(_Event(self.dest, option_string or self.dest, value, len(ns.inputs)))


def build_parser() -> argparse.ArgumentParser:
    """``vtremote``'s parser: ``-i``, every option of the ffmpeg option table, help, version."""
    parser = _Parser(
        prog="vtremote",
        allow_abbrev=False,
        add_help=False,
        usage="vtremote [options] [[input options] -i INPUT]... [output options] OUTPUT\n"
        "       vtremote probe HOST:PORT [--json]\n"
        "       vtremote bench ...",
        description="ffmpeg-style front end of vtremote: "
        "video encode/decode on a vtremoted server.",
    )
    parser.set_defaults(events=[], inputs=[])
    parser.add_argument(
        "-i", dest="inputs", action=_Record, metavar="INPUT", help="input file or lavfi graph"
    )
    for option in OPTIONS:
        if option.flag:
            parser.add_argument(
                *option.names, dest=option.key, action=_Record, nargs=0, help=option.help
            )
        else:
            parser.add_argument(
                *option.names, dest=option.key, action=_Record, metavar="VALUE", help=option.help
            )
    parser.add_argument(
        "-h", "-help", "--help", dest="help", action="store_true", help="show this help"
    )
    parser.add_argument(
        "-version", "--version", dest="version", action="store_true", help="show the version"
    )
    parser.add_argument(
        "output", nargs="?", metavar="OUTPUT", help="output file, or - with -f null"
    )
    return parser


_TAKES_VALUE = {name: not o.flag for o in OPTIONS for name in o.names} | {"-i": True}
_FLAGS_ONLY = {"-h", "-help", "--help", "-version", "--version"}


def _normalize(argv: Sequence[str]) -> list[str]:
    """Check every option name exactly and keep values that start with ``-`` attached.

    argparse alone would read an unknown ``-tag:x`` as ``-t ag:x`` (short option
    with an attached value) and ``-map -0:s`` as two options; ffmpeg does neither.
    """
    out: list[str] = []
    outputs: list[str] = []
    it = iter(argv)
    for token in it:
        if not token.startswith("-") or token == "-":
            outputs.append(token)
            out.append(token)
            continue
        name = token.split("=", 1)[0] if token.startswith("--") or "=" in token else token
        if name in _FLAGS_ONLY:
            out.append(token)
            continue
        if name not in _TAKES_VALUE:
            raise UsageError(f"unrecognized option '{name}'")
        if not (_TAKES_VALUE[name] and name == token):
            out.append(token)
            continue
        value = next(it, None)
        if value is None:
            raise UsageError(f"option {token} needs a value")
        if value.startswith("-") and value != "-":
            out.append(f"{token}={value}")
        else:
            out += [token, value]
    if len(outputs) > 1:
        raise UsageError(
            f"more than one output ({', '.join(outputs)}): vtremote writes exactly one"
        )
    return out


def parse_command(argv: Sequence[str]) -> tuple[JobSpec | None, argparse.Namespace]:
    """Parse a full command line. Returns (None, ns) for -h / -version."""
    parser = build_parser()
    ns = parser.parse_args(_normalize(argv))
    if ns.help or ns.version:
        return None, ns
    inputs = [InputSpec(url) for url in ns.inputs]
    if not inputs:
        raise UsageError(
            "no input: give at least one -i INPUT (a file, or -f lavfi -i testsrc2=...)"
        )
    if ns.output is None:
        raise UsageError("no output file: give OUTPUT last (or -f null -)")
    cmd = JobSpec(inputs, OutputSpec(ns.output))
    for ev in ns.events:
        _apply(cmd, ev)
    return cmd, ns


def _apply(cmd: JobSpec, ev: _Event) -> None:
    """One option, where ffmpeg's rule puts it: the job, the input it precedes, or the output."""
    option = BY_KEY[ev.dest]
    occ = Occurrence(option, ev.option, "" if ev.value is True else str(ev.value))
    if option.where == "global":
        if option.job is not None:
            option.job(cmd, occ)
    elif ev.input_index < len(cmd.inputs):
        inp = cmd.inputs[ev.input_index]
        if option.input is None:
            raise UsageError(
                f"option {ev.option} ({ev.value}) cannot be applied to input {inp.url!r}: "
                "put it after the last -i"
            )
        option.input(inp, occ)
    elif option.output is None:
        raise UsageError(f"option {ev.option} is an input option: put it before -i")
    else:
        option.output(cmd.output, occ)
        if option.key == "duration" and (cmd.output.duration or 0) <= 0:
            raise UsageError(f"-t {occ.value} must be positive")
