"""``-force_key_frames``: a time list, or ffmpeg's expression language, parsed once.

ffmpeg takes ``-force_key_frames`` as a list of times (``0,2.5,00:00:10``) or as
``expr:EXPR``, an expression of libavutil's evaluator computed for every frame; a
frame is a keyframe when it is non-zero. Media servers write both kinds:
Jellyfin ``expr:gte(t,n_forced*3)``, Emby
``expr:if(isnan(prev_forced_t),eq(t,t),gte(t,prev_forced_t+3))``.

:func:`parse_key_frames` reads the text once into :class:`KeyFrames` (no ``eval``: a
small recursive-descent parser builds closures); :meth:`KeyFrames.clock` gives the
per-frame decider with ffmpeg's variables (``t``, ``n``, ``n_forced``,
``prev_forced_t``, ``prev_forced_n``; the ``prev_*`` start as NaN) and ffmpeg's update
rule (``n`` counts every frame; a forced frame sets ``prev_forced_*`` and bumps
``n_forced``). :meth:`KeyFrames.interval` recognises the expressions that are a plain
interval from zero, which a packet transcode on the server can carry.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from vtremote.errors import UsageError
from vtremote.pipeline.values import parse_time

#: The variables of ffmpeg's -force_key_frames expressions.
VARIABLES = ("t", "n", "n_forced", "prev_forced_t", "prev_forced_n")
#: Longest expression accepted (a media server's are under 100 characters).
MAX_EXPRESSION = 4096

Env = dict[str, float]
Node = Callable[[Env], float]


def _truth(x: float) -> bool:
    return x != 0  # C semantics: NaN is true


def _cmp(op: Callable[[float, float], bool]) -> Callable[[float, float], float]:
    return lambda a, b: 1.0 if op(a, b) else 0.0


def _div(a: float, b: float) -> float:
    if b == 0:
        return (
            math.nan
            if a == 0 or math.isnan(a)
            else math.copysign(math.inf, a) * (math.copysign(1.0, b))
        )
    return a / b


def _pow(a: float, b: float) -> float:
    try:
        return float(math.pow(a, b))
    except (OverflowError, ValueError):
        return math.nan


#: Functions of libavutil's evaluator taken here: name -> (arity, function) for the eager
#: ones; ``if``/``ifnot`` evaluate only the branch taken.
_FUNCTIONS: dict[str, tuple[int, Callable[..., float]]] = {
    "eq": (2, _cmp(lambda a, b: a == b)),
    "gte": (2, _cmp(lambda a, b: a >= b)),
    "gt": (2, _cmp(lambda a, b: a > b)),
    "lte": (2, _cmp(lambda a, b: a <= b)),
    "lt": (2, _cmp(lambda a, b: a < b)),
    "isnan": (1, lambda a: 1.0 if math.isnan(a) else 0.0),
    "isinf": (1, lambda a: 1.0 if math.isinf(a) else 0.0),
    "not": (1, lambda a: 1.0 if a == 0 else 0.0),
    "and": (2, lambda a, b: 1.0 if _truth(a) and _truth(b) else 0.0),
    "or": (2, lambda a, b: 1.0 if _truth(a) or _truth(b) else 0.0),
    "max": (2, lambda a, b: math.nan if math.isnan(a) or math.isnan(b) else max(a, b)),
    "min": (2, lambda a, b: math.nan if math.isnan(a) or math.isnan(b) else min(a, b)),
    "abs": (1, abs),
    "floor": (1, lambda a: float(math.floor(a)) if math.isfinite(a) else a),
    "ceil": (1, lambda a: float(math.ceil(a)) if math.isfinite(a) else a),
    "trunc": (1, lambda a: float(math.trunc(a)) if math.isfinite(a) else a),
    "round": (1, lambda a: float(math.floor(a + 0.5)) if math.isfinite(a) else a),
    "mod": (2, lambda a, b: math.fmod(a, b) if b != 0 else math.nan),
}
_CONSTANTS = {"PI": math.pi, "E": math.e, "PHI": (1 + math.sqrt(5)) / 2, "NAN": math.nan}
_TOKEN = re.compile(
    r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|([A-Za-z_]\w*)|(.))"
)


_OPERATORS: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _div,
}


def _binary(op: Callable[[float, float], float], a: Node, b: Node) -> Node:
    def node(env: Env) -> float:
        return op(a(env), b(env))

    return node


class _Parser:
    """expr := term (('+'|'-') term)*; term := factor (('*'|'/') factor)*;
    factor := unary ('^' factor)?; unary := ('+'|'-') unary | atom."""

    def __init__(self, text: str, label: str) -> None:
        self.label = label
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                break
            pos = m.end()
            if m.group(1):
                self.tokens.append(("num", m.group(1)))
            elif m.group(2):
                self.tokens.append(("name", m.group(2)))
            elif m.group(3) and not m.group(3).isspace():
                self.tokens.append(("op", m.group(3)))
        self.i = 0

    def fail(self, what: str) -> UsageError:
        return UsageError(f"-force_key_frames {self.label!r}: {what}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, op: str) -> bool:
        if self.peek() == ("op", op):
            self.i += 1
            return True
        return False

    def parse(self) -> Node:
        node = self.expr()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def take_any(self, ops: str) -> str | None:
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in ops:
            self.i += 1
            return token[1]
        return None

    def expr(self) -> Node:
        node = self.term()
        while (op := self.take_any("+-")) is not None:
            node = _binary(_OPERATORS[op], node, self.term())
        return node

    def term(self) -> Node:
        node = self.factor()
        while (op := self.take_any("*/")) is not None:
            node = _binary(_OPERATORS[op], node, self.factor())
        return node

    def factor(self) -> Node:
        base = self.unary()
        if self.take("^"):
            return _binary(_pow, base, self.factor())
        return base

    def unary(self) -> Node:
        if self.take("-"):
            inner = self.unary()
            return lambda e: -inner(e)
        if self.take("+"):
            return self.unary()
        return self.atom()

    def atom(self) -> Node:
        token = self.peek()
        if token is None:
            raise self.fail("the expression ends too early")
        self.i += 1
        kind, text = token
        if kind == "num":
            value = float(text)
            return lambda e: value
        if kind == "op" and text == "(":
            node = self.expr()
            if not self.take(")"):
                raise self.fail("a ')' is missing")
            return node
        if kind != "name":
            raise self.fail(f"unexpected {text!r}")
        if self.take("("):
            return self.call(text)
        if text in VARIABLES:
            return lambda e: e[text]
        if text in _CONSTANTS:
            value = _CONSTANTS[text]
            return lambda e: value
        raise self.fail(f"unknown name {text!r} (variables: {', '.join(VARIABLES)})")

    def call(self, name: str) -> Node:
        args = [self.expr()]
        while self.take(","):
            args.append(self.expr())
        if not self.take(")"):
            raise self.fail(f"a ')' is missing after the arguments of {name}")
        if name in ("if", "ifnot") and len(args) in (2, 3):
            cond, then = args[0], args[1]
            other = args[2] if len(args) == 3 else (lambda e: 0.0)
            want = name == "if"
            return lambda e: then(e) if _truth(cond(e)) == want else other(e)
        if name not in _FUNCTIONS:
            raise self.fail(f"unknown function {name}()")
        arity, fn = _FUNCTIONS[name]
        if len(args) != arity:
            raise self.fail(f"{name}() takes {arity} argument(s), not {len(args)}")
        if arity == 1:
            (a,) = args
            return lambda e: float(fn(a(e)))
        a, b = args
        return lambda e: float(fn(a(e), b(e)))


_INTERVAL = re.compile(r"gte\(\s*t\s*,\s*n_forced\s*\*\s*([0-9.]+)\s*\)")


@dataclass(frozen=True)
class KeyFrames:
    """What ``-force_key_frames`` asks for: times (seconds, sorted) or an expression."""

    text: str
    times: tuple[float, ...] = ()
    expression: Node | None = field(default=None, compare=False)
    #: The expression's text without ``expr:`` (None for a time list).
    source: str | None = None

    def interval(self) -> float | None:
        """N when the expression is ``gte(t,n_forced*N)`` (a keyframe every N s from 0)."""
        if self.source is None:
            return None
        m = _INTERVAL.fullmatch(self.source.strip())
        return float(m.group(1)) if m else None

    def clock(self) -> KeyFrameClock:
        return KeyFrameClock(self)


class KeyFrameClock:
    """Decides, frame by frame in output order, which frames are forced keyframes."""

    def __init__(self, rule: KeyFrames) -> None:
        self.rule = rule
        self.env: Env = {
            "t": math.nan,
            "n": 0.0,
            "n_forced": 0.0,
            "prev_forced_t": math.nan,
            "prev_forced_n": math.nan,
        }
        self._next = 0
        self._every = rule.interval()

    def forced(self, t: float) -> bool:
        """Whether the frame at output time ``t`` (seconds) is a forced keyframe."""
        expression = self.rule.expression
        if expression is None:
            times, hit = self.rule.times, False
            while self._next < len(times) and times[self._next] <= t + 1e-9:
                self._next += 1
                hit = True
            return hit
        env = self.env
        env["t"] = t
        if self._every is not None:  # the interval form, with a tolerance for float times
            hit = t >= env["n_forced"] * self._every - 1e-9
        else:
            hit = _truth(expression(env))
        env["n"] += 1
        if hit:
            env["prev_forced_n"] = env["n"] - 1
            env["prev_forced_t"] = t
            env["n_forced"] += 1
        return hit


def parse_key_frames(text: str) -> KeyFrames:
    """``0,2.5,00:00:10`` or ``expr:EXPR``; raises UsageError naming what is wrong."""
    spec = text.strip()
    if spec.startswith("expr:"):
        source = spec[5:]
        if len(source) > MAX_EXPRESSION:
            raise UsageError(
                f"-force_key_frames expression of {len(source)} characters exceeds {MAX_EXPRESSION}"
            )
        node = _Parser(source, text).parse()
        return KeyFrames(text, expression=node, source=source)
    if spec.startswith("source"):
        raise UsageError(
            f"-force_key_frames {text!r}: 'source' keeps the input's keyframes, which a "
            "re-encode here does not see; give times or expr:"
        )
    times = sorted(parse_time(p, "-force_key_frames") for p in spec.split(",") if p.strip())
    return KeyFrames(text, times=tuple(times))


def parse_force_key_frames(text: str) -> tuple[list[float], float | None]:
    """A time list, or the interval of ``expr:gte(t,n_forced*N)``: (times, None) or ([], N);
    raises UsageError for other expressions (which only a per-frame clock can follow)."""
    rule = parse_key_frames(text)
    if rule.expression is None:
        return list(rule.times), None
    every = rule.interval()
    if every is None:
        raise UsageError(f"-force_key_frames {text!r} is not a time list or gte(t,n_forced*N)")
    if every <= 0:
        raise UsageError(f"-force_key_frames {text!r}: the interval must be positive")
    return [], every
