"""ffmpeg's command line as data: global options, inputs and outputs with their options in order.

ffmpeg's rule is positional: options before an ``-i`` apply to that input,
options after the last input apply to the next output file. An option name
may carry a stream specifier (``-codec:v:0``, ``-x264opts:0``, ``-b:a``); it is
kept apart from the name here, so ``-codec:v:0 libx264`` is
``Opt("codec", "v:0", "libx264")``.

Media servers also pass encoder-private and muxer options ffmpeg learns from
the libraries (``-mbbrc 1``, ``-hls_time 3``). An option not in the tables
below takes a value when one follows; the translator decides what it means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vtremote.errors import UsageError
from vtremote.mediaserver import dialect

#: Options that never take a value: those of the option tables, and ffmpeg's own switches.
FLAGS = dialect.flag_names() | frozenset(
    [
        "stdin",
        "noaccurate_seek",
        "accurate_seek",
        "noautorotate",
        "autorotate",
        "noautoscale",
        "autoscale",
        "re",
        "shortest",
        "benchmark",
        "benchmark_all",
        "copytb",
        "xerror",
        "ignore_unknown",
        "report",
        "dump",
        "hex",
        "seek_timestamp",
        "copyinkf",
        "nocopyinkf",
    ]
)
#: Flags that some generators follow with 0 or 1 (``-autorotate 0``): the number is their value.
BOOL_FLAGS = frozenset(
    {"autorotate", "autoscale", "accurate_seek", "copyinkf", "shortest", "seek_timestamp", "stats"}
)
#: Information options, answered without running anything (cli/ffmpeg.py prints them).
INFO = frozenset(
    {
        "version",
        "buildconf",
        "formats",
        "muxers",
        "demuxers",
        "devices",
        "codecs",
        "decoders",
        "encoders",
        "bsfs",
        "protocols",
        "filters",
        "pix_fmts",
        "layouts",
        "sample_fmts",
        "colors",
        "hwaccels",
        "L",
        "license",
    }
)
HELP = frozenset({"h", "help", "-help", "?"})


@dataclass(frozen=True)
class Opt:
    """One option occurrence: ``-name[:spec] [value]``."""

    name: str
    spec: str
    value: str | None
    raw: str

    def __str__(self) -> str:
        return self.raw if self.value is None else f"{self.raw} {self.value}"


@dataclass
class FileArgs:
    """An input (``-i URL``) or an output file, with the options that apply to it."""

    url: str
    options: list[Opt] = field(default_factory=list)


@dataclass
class Command:
    """A parsed command line."""

    argv: list[str]
    globals: list[Opt] = field(default_factory=list)
    inputs: list[FileArgs] = field(default_factory=list)
    outputs: list[FileArgs] = field(default_factory=list)
    #: ``-version``, ``-encoders``... (the first one on the line), or ``h`` with its topic.
    info: str | None = None
    help_topic: str | None = None

    def global_value(self, *names: str) -> str | None:
        found: str | None = None
        for o in self.globals:
            if o.name in names:
                found = o.value if o.value is not None else ""
        return found

    def has_global(self, *names: str) -> bool:
        return any(o.name in names for o in self.globals)


#: Options that apply to the whole run wherever they stand.
GLOBAL_OPTIONS = frozenset(
    [
        "y",
        "n",
        "nostdin",
        "stdin",
        "hide_banner",
        "nostats",
        "stats",
        "loglevel",
        "v",
        "report",
        "filter_threads",
        "filter_complex_threads",
        "init_hw_device",
        "filter_hw_device",
        "benchmark",
        "max_error_rate",
        "progress",
        "stats_period",
        "xerror",
        "vsync",
        "copyts",
        "start_at_zero",
        "copytb",
    ]
)


def strip_file_url(url: str) -> str:
    """``file:"/a b.mkv"`` / ``file:/a b.mkv`` -> ``/a b.mkv``; other URLs unchanged."""
    text = url
    if text.startswith("file:"):
        text = text[5:]
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return text


def _split_name(token: str) -> tuple[str, str]:
    body = token[1:]
    name, _, spec = body.partition(":")
    return name, spec


def _looks_like_value(token: str) -> bool:
    """A token that is a value, not an option: anything not starting with '-', or a negative
    number."""
    if not token.startswith("-") or token == "-":
        return True
    try:
        float(token)
    except ValueError:
        return False
    return True


def parse_argv(argv: Sequence[str]) -> Command:
    """Split a command line into global options, inputs and outputs; raises UsageError for a
    missing value or an empty line."""
    args = list(argv)
    cmd = Command(argv=args)
    pending: list[Opt] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("-") or token == "-":
            cmd.outputs.append(FileArgs(token, pending))
            pending = []
            continue
        name, spec = _split_name(token)
        if name in INFO and cmd.info is None:
            cmd.info = name
            continue
        if name in HELP:
            cmd.info = "help"
            if i < len(args) and not args[i].startswith("-"):
                cmd.help_topic = args[i]
                i += 1
            continue
        if name == "i":
            if i >= len(args):
                raise UsageError("option -i needs a value")
            cmd.inputs.append(FileArgs(args[i], pending))
            pending = []
            i += 1
            continue
        value: str | None = None
        if name in FLAGS:
            if name in BOOL_FLAGS and i < len(args) and args[i] in ("0", "1"):
                value = args[i]
                i += 1
        elif i < len(args) and (_looks_like_value(args[i]) or _known_value_option(name)):
            # A known value option takes the next token even when it starts with '-'
            # (-map -0:s, -avoid_negative_ts -1); an unknown one only when it looks like a value,
            # and never the last token, which is the output file.
            if _known_value_option(name) or i < len(args) - 1:
                value = args[i]
                i += 1
        elif _known_value_option(name):
            raise UsageError(f"option {token} needs a value")
        opt = Opt(name, spec, value, token)
        if name in GLOBAL_OPTIONS:
            cmd.globals.append(opt)
        else:
            pending.append(opt)
    return cmd  # options after the last output apply to nothing (ffmpeg ignores them too)


#: Options that take a value even when it starts with '-': those the translator takes, those it
#: ignores that are known to take one, and a few more of ffmpeg's.
_VALUE_OPTIONS = (
    dialect.value_names()
    | dialect.IGNORED_WITH_VALUES
    | frozenset(["sseof", "minrate", "atag", "aframes", "itsoffset", "itsscale"])
)


def _known_value_option(name: str) -> bool:
    return name in _VALUE_OPTIONS
