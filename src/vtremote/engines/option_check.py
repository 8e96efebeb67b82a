"""Every option an engine passes is checked against the encoder's own table before opening.

PyAV hands ``CodecContext.options`` to ``avcodec_open2``, and an option the codec
does not know stays behind in the dictionary, unused, without a word; a value of
the wrong shape (``level=4.1`` on an integer option) is rounded. So a misspelt or
misplaced option would be lost silently. :func:`check_options` refuses both: the
option must be in the encoder's private table or AVCodecContext's generic one (the
private one wins, as ``av_opt_find2`` searches the private class first), and its
value must parse as FFmpeg's ``av_opt_set`` would take it: a named constant of the
option's unit or a number in range (integers for integer options).

The private table is the running codec's (``CodecContext.supported_options``) when
PyAV has the encoder and lists its options (PyAV 18.1+), else the checked-in table of
engines/option_table.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from av.codec.context import CodecContext

from vtremote.engines.option_table import (
    GENERIC_OPTIONS,
    PRIVATE_OPTIONS,
    OptionKind,
    OptionSpec,
)
from vtremote.errors import EngineError

#: AVOptionType names (PyAV's OptionType, before and after 18.1) -> how values parse.
_KINDS: dict[str, OptionKind] = {
    "INT": "int",
    "INT64": "int",
    "UINT": "int",
    "UINT64": "int",
    "BOOL": "bool",
    "FLOAT": "float",
    "DOUBLE": "float",
    "FLAGS": "flags",
}
#: Words av_opt_set takes for AV_OPT_TYPE_BOOL (libavutil/opt.c set_string_bool).
_BOOL_WORDS = {
    "auto": -1,
    "true": 1,
    "y": 1,
    "yes": 1,
    "enable": 1,
    "on": 1,
    "false": 0,
    "n": 0,
    "no": 0,
    "disable": 0,
    "off": 0,
}


def spec_of(option: Any) -> OptionSpec:
    """PyAV's description of an AVOption (``CodecOption`` from PyAV 18.1, ``av.option.Option``
    before) as an :class:`OptionSpec`."""
    kind = _KINDS.get(getattr(option.type, "name", str(option.type)), "string")
    return OptionSpec(
        kind, float(option.min), float(option.max), frozenset(c.name for c in option.choices)
    )


def running_options(ctx: CodecContext) -> tuple[dict[str, OptionSpec], dict[str, OptionSpec]]:
    """(generic, private) options of ``ctx``'s codec as the running PyAV describes them.

    PyAV 18.1+ lists both (``supported_options``); before, the codec's descriptor has the
    private ones and the generic ones come from the checked-in table (GENERIC_OPTIONS).
    """
    supported = getattr(ctx, "supported_options", None)
    if supported is not None:
        return (
            {o.name: spec_of(o) for o in supported.generic},
            {o.name: spec_of(o) for o in supported.private},
        )
    descriptor = getattr(ctx.codec, "descriptor", None)
    options = descriptor.options if descriptor is not None else ()
    return dict(GENERIC_OPTIONS), {o.name: spec_of(o) for o in options}


def options_table(encoder: str, ctx: CodecContext) -> dict[str, OptionSpec]:
    """``encoder``'s options: AVCodecContext's generic ones, then its private ones over them.

    ``ctx`` is any encoder context of this FFmpeg (for the generic table); when it is
    ``encoder`` itself its private table is the running codec's, else the checked-in one.
    """
    generic, private = running_options(ctx)
    if ctx.name != encoder or not private:  # another codec's context, or no listing (PyAV < 18.1)
        private = PRIVATE_OPTIONS.get(encoder, {})
    return generic | private


def value_problem(spec: OptionSpec, value: str) -> str | None:
    """Why ``value`` is not a value of the option (None when it is)."""
    text = value.strip()
    if spec.kind == "string":
        return None
    if spec.kind == "flags":
        names = [n for n in text.replace("-", "+").split("+") if n]
        bad = [n for n in names if n not in spec.consts and not n.isdigit()]
        return f"{', '.join(bad)} not among {_listing(spec)}" if bad else None
    if text in spec.consts:
        return None
    if spec.kind == "bool" and text.lower() in _BOOL_WORDS:
        number: float = _BOOL_WORDS[text.lower()]
    else:
        try:
            number = int(text) if spec.kind in ("int", "bool") else float(text)
        except ValueError:
            what = "an integer" if spec.kind in ("int", "bool") else "a number"
            return f"is neither {what} nor one of {_listing(spec)}"
    if not math.isfinite(number) or not spec.min <= number <= spec.max:
        return f"is outside {spec.min:g}..{spec.max:g}"
    return None


def _listing(spec: OptionSpec) -> str:
    return ", ".join(sorted(spec.consts)) if spec.consts else "its named values (it has none)"


def problems(table: Mapping[str, OptionSpec], options: Mapping[str, str]) -> list[str]:
    """Every option of ``options`` that ``table`` does not take, with why."""
    found: list[str] = []
    for name, value in options.items():
        spec = table.get(name)
        if spec is None:
            found.append(f"{name}={value}: no such option")
            continue
        why = value_problem(spec, value)
        if why is not None:
            found.append(f"{name}={value}: {why}")
    return found


def check_options(encoder: str, ctx: CodecContext, options: Mapping[str, str]) -> None:
    """Raise :class:`EngineError` naming every option ``encoder`` would not take.

    An option the engine passes wrongly is vtremote's bug, never the client's: the
    session ends with an internal-error ERROR naming the option rather than encode
    with a setting quietly dropped.
    """
    found = problems(options_table(encoder, ctx), options)
    if found:
        raise EngineError(f"{encoder} does not take the options vtremote set: {'; '.join(found)}")
