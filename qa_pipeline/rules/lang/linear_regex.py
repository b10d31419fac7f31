"""Pack regexes on a linear-time engine (RE2): no pattern can make matching hang.

Rule packs write regexes in Python's ``re`` syntax with Python's meaning (``\\d`` is any
Unicode decimal digit, ``\\w`` any letter, digit or ``_``, Chinese included). Python's
engine backtracks, so a pattern such as ``^(.|.|.|.)*QQQ$`` can take exponential time on
a long utterance. Every pack pattern is therefore parsed by Python's own parser and
written out in RE2 syntax (:func:`to_re2`), then run by RE2 (``google-re2``), whose time
is linear in the text. A pattern RE2 cannot run the same way is refused at pack load with
the reason (:class:`PatternError`): backreferences, lookahead / lookbehind, atomic groups,
possessive quantifiers, conditionals, ``\\b`` / ``\\B``, a repeated part that can match
nothing (``(a*)*``: Python and RE2 repeat it differently), a pattern that can match an
empty stretch, repeat counts over 1000. Nothing is timed out or guessed.

Kept equal to Python's ``re`` (tests/rules/test_linear_regex.py checks each):

* ``\\d \\D \\w \\W \\s \\S`` as Python defines them for ``str`` (RE2's own are ASCII):
  ``\\p{Nd}``, ``[\\p{L}\\p{N}_]`` and Python's whitespace list; they agree with Python on
  every code point of Python's Unicode database (characters added in later Unicode
  versions are letters or digits to RE2 and not yet to Python). ``(?a)`` makes them ASCII
  as in Python. ``\\W`` mixed with other items in a class is refused (RE2 cannot write
  its complement there).
* everything Python's parser resolves: ``{,n}`` (RE2 would read it as literal text),
  ``\\Z``, ``\\uXXXX``, ``\\N{name}``, octal escapes, ``(?x)`` whitespace and comments,
  ``[`` inside a class (RE2 reads ``[[:alpha:]]`` as a POSIX class), scoped flags.
* leftmost-first matching (RE2's default) gives Python's spans; matches are found left to
  right as ``finditer`` finds them (the rule engine uses the non-empty ones).

``\\b`` / ``\\B`` are refused: the text rules match on has no spaces or punctuation (see
:func:`qa_pipeline.text.match_form`), so in Python they only mark its start and end (use
``^`` / ``$``), while RE2's are ASCII-only and would differ silently between a Latin
letter and a Chinese character. ``$`` is the end of the text (Python's also matches before
a final newline, which the match form never has).
"""

from __future__ import annotations

import importlib
import re
import warnings
from functools import lru_cache
from typing import Any, Final

import re2

# RE2's pybind11 binding: the public ``re2`` wrapper adds ~3 us of Python per call
# (generators, offset maps); the rule engine calls the bound ``Match`` directly.
from re2 import _re2

from ...errors import QAError

Span = tuple[int, int]

# Python's own regex parser (what ``re.compile`` runs first): its syntax, exactly
_parser: Any = importlib.import_module("re._parser")
_C: Any = importlib.import_module("re._constants")

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_NO_MATCH = -1
_MAX_CHAR = 0x10FFFF
_SURROGATE = re.compile("[\ud800-\udfff]")
_FLAG_NAMES = (
    (_C.SRE_FLAG_IGNORECASE, "i"),
    (_C.SRE_FLAG_MULTILINE, "m"),
    (_C.SRE_FLAG_DOTALL, "s"),
)

# Python's classes for str patterns as code point ranges, where a list is short: RE2's
# own \d \w \s are ASCII-only (and its \s lacks \v).
_UNI_SPACE: Final = [
    (0x09, 0x0D), (0x1C, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680),
    (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
]  # fmt: skip
_ASCII: Final = {
    "DIGIT": [(0x30, 0x39)],
    "WORD": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "SPACE": [(0x09, 0x0D), (0x20, 0x20)],
}


# RE2's error text (prefix) -> what a pack author reads
_RE2_REASONS: Final = (
    ("bad repetition", "nested quantifiers are not supported"),
    (
        "invalid repetition size",
        "repeat counts above 1000 (nested counts multiply) are not supported",
    ),
    ("pattern too large", "the pattern is too large (repeat counts multiply: (?:x{100}){100})"),
)


class PatternError(QAError, ValueError):
    """A pack regex the linear-time engine does not run; the message says why."""


def _refuse(reason: str) -> PatternError:
    return PatternError(f"{reason} (pack regexes run on RE2, in linear time)")


def to_re2(pattern: str) -> str:
    """The RE2 pattern that matches what ``pattern`` matches with Python's ``re`` (str).

    The pattern is parsed by Python's own parser (so its syntax, escapes, ``(?x)`` and
    ``{,n}`` mean what they mean in Python) and written out node by node in RE2 syntax.
    Raises :class:`PatternError` for what RE2 cannot run or would run differently (see
    the module docstring); ``re.error`` for a pattern Python itself refuses."""
    with warnings.catch_warnings():  # "possible nested set": Python's meaning is kept
        warnings.simplefilter("ignore", FutureWarning)
        tree = _parser.parse(pattern)
    flags = tree.state.flags
    prefix = "".join(f for bit, f in _FLAG_NAMES if flags & bit)
    body = _seq(tree, bool(flags & _C.SRE_FLAG_ASCII))
    if tree.getwidth()[0] == 0:
        raise PatternError(
            "it can match an empty stretch of text, so it would hold for every utterance "
            "(as an exclude: exclude every one): make it need at least one character"
        )
    return (f"(?{prefix})" if prefix else "") + body


def _seq(items: Any, ascii_only: bool) -> str:
    return "".join(_node(op, av, ascii_only) for op, av in items)


def _node(op: Any, av: Any, ascii_only: bool) -> str:
    if op is _C.LITERAL:
        return _lit(av)
    if op is _C.NOT_LITERAL:
        return f"[^{_lit(av)}]"
    if op is _C.ANY:
        return "."
    if op is _C.IN:
        return _class(av, ascii_only)
    if op is _C.BRANCH:
        return "(?:" + "|".join(_seq(alt, ascii_only) for alt in av[1]) + ")"
    if op is _C.SUBPATTERN:
        _group, add, drop, sub = av
        if add & _C.SRE_FLAG_ASCII:
            ascii_only = True
        if drop & _C.SRE_FLAG_ASCII:  # (?-a) is not valid Python; kept for completeness
            ascii_only = False
        on = "".join(f for bit, f in _FLAG_NAMES if add & bit)
        off = "".join(f for bit, f in _FLAG_NAMES if drop & bit)
        return f"(?{on}{'-' + off if off else ''}:{_seq(sub, ascii_only)})"
    if op is _C.MAX_REPEAT or op is _C.MIN_REPEAT:
        lo, hi, sub = av
        if hi > 1 and sub.getwidth()[0] == 0:
            raise _refuse(
                "a repeated part that can match nothing, as in (a*)* or (x?){2,}, is not "
                "supported (Python and RE2 repeat it differently): make each repetition "
                "need a character"
            )
        if hi == _C.MAXREPEAT:
            q = {0: "*", 1: "+"}.get(lo, f"{{{lo},}}")
        elif lo == 0 and hi == 1:
            q = "?"
        else:
            q = f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"
        return f"(?:{_seq(sub, ascii_only)}){q}{'?' if op is _C.MIN_REPEAT else ''}"
    if op is _C.AT:
        return _at(av)
    raise _refuse(f"{_unsupported(op, av)} is not supported")


def _unsupported(op: Any, av: Any) -> str:
    name = str(op)
    if name == "GROUPREF":
        return f"backreference \\{av} (or (?P=name))"
    if name in ("ASSERT", "ASSERT_NOT"):
        neg = name == "ASSERT_NOT"
        if av[0] == 1:
            return "negative lookahead (?!...)" if neg else "lookahead (?=...)"
        return "negative lookbehind (?<!...)" if neg else "lookbehind (?<=...)"
    return {
        "GROUPREF_EXISTS": "conditional (?(...)...)",
        "ATOMIC_GROUP": "atomic group (?>...)",
        "POSSESSIVE_REPEAT": "possessive quantifier (*+, ++, ?+, {m,n}+)",
    }.get(name, name.lower())


def _at(code: Any) -> str:
    name = str(code)
    if name == "AT_BEGINNING":
        return "^"
    if name == "AT_END":  # Python's $ also matches before a final newline: texts have none
        return "$"
    if name == "AT_BEGINNING_STRING":
        return r"\A"
    if name == "AT_END_STRING":
        return r"\z"
    raise _refuse(
        "word boundaries \\b / \\B are not supported: rules match a text without spaces or "
        "punctuation, where \\b only marks its start or end (use ^ or $)"
    )


def _lit(code: int) -> str:
    """One character as RE2 reads it literally, in or out of a class."""
    ch = chr(code)
    if ch.isascii() and ch.isalnum() or (code > 0x7F and ch.isprintable() and not ch.isspace()):
        return ch
    return f"\\x{{{code:x}}}"


def _ranges(ranges: list[tuple[int, int]], negate: bool = False) -> str:
    if negate:
        out: list[tuple[int, int]] = []
        nxt = 0
        for a, b in ranges:
            if a > nxt:
                out.append((nxt, a - 1))
            nxt = b + 1
        if nxt <= _MAX_CHAR:
            out.append((nxt, _MAX_CHAR))
        ranges = out
    return "".join(_lit(a) if a == b else f"{_lit(a)}-{_lit(b)}" for a, b in ranges)


def _category(code: Any, ascii_only: bool) -> tuple[bool, str, str | None]:
    r"""A category (``\d``, ``\W`` ...): whether it is a complement (``\D \W \S``), the class
    items of its base (``\d \w \s``) and those of the base's complement (None: RE2 has no
    short way to write it inside a class)."""
    name = str(code).removeprefix("CATEGORY_")
    base = name.removeprefix("NOT_")
    if base not in _ASCII:  # LINEBREAK, LOC_* ...: not produced for str patterns
        raise _refuse(f"character class {code} is not supported")
    if ascii_only:
        pos, neg = _ranges(_ASCII[base]), _ranges(_ASCII[base], negate=True)
    elif base == "DIGIT":
        pos, neg = r"\p{Nd}", r"\P{Nd}"
    elif base == "WORD":
        pos, neg = r"\p{L}\p{N}_", None
    else:
        pos, neg = _ranges(_UNI_SPACE), _ranges(_UNI_SPACE, negate=True)
    return base != name, pos, neg


def _class(items: list[Any], ascii_only: bool) -> str:
    negate = bool(items) and items[0][0] is _C.NEGATE
    if negate:
        items = items[1:]
    if len(items) == 1 and items[0][0] is _C.CATEGORY:  # \d, \W, [^\s] ...
        is_not, pos, _neg = _category(items[0][1], ascii_only)
        return f"[{'^' if negate != is_not else ''}{pos}]"
    parts: list[str] = []
    for op, av in items:
        if op is _C.LITERAL:
            parts.append(_lit(av))
        elif op is _C.RANGE:
            parts.append(f"{_lit(av[0])}-{_lit(av[1])}")
        elif op is _C.CATEGORY:
            is_not, pos, neg = _category(av, ascii_only)
            if is_not and neg is None:
                raise _refuse(
                    "\\W together with other items in a class [...] is not supported: "
                    "write it as an alternative, (?:\\W|x)"
                )
            parts.append(neg if is_not and neg is not None else pos)
        else:
            raise _refuse(f"{op} inside a character class is not supported")
    return f"[{'^' if negate else ''}{''.join(parts)}]"


def _options() -> Any:
    o = re2.Options()
    o.log_errors = False  # errors become PatternError, not lines on stderr
    o.never_capture = True  # only the whole match is used: RE2 may skip submatches
    return o


class LinearRegex:
    """A pack regex compiled for RE2: :meth:`search` and :meth:`spans` on ``str``."""

    __slots__ = ("_match", "engine_pattern", "pattern")

    def __init__(self, pattern: str) -> None:
        try:
            self.engine_pattern = to_re2(pattern)
        except PatternError as e:
            raise PatternError(f"regex {pattern!r}: {e}") from None
        except re.error as e:
            raise PatternError(f"bad regular expression {pattern!r}: {e}") from e
        except RecursionError as e:  # Python's own compile would fail too
            raise PatternError(f"regular expression nested too deeply: {pattern[:40]!r}...") from e
        self.pattern = pattern
        compiled = _re2.RE2(self.engine_pattern.encode("utf-8"), _options())
        if not compiled.ok():
            err = compiled.error()
            err = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
            reason = next((r for k, r in _RE2_REASONS if err.startswith(k)), None)
            raise PatternError(
                f"regex {pattern!r}: " + str(_refuse(reason or f"not supported: {err}"))
            )
        self._match = compiled.Match

    def __reduce__(self) -> tuple[Any, ...]:
        return (LinearRegex, (self.pattern,))

    def __repr__(self) -> str:
        return f"LinearRegex({self.pattern!r})"

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text`` (an empty match counts)."""
        b = _utf8(text)
        span: Span = self._match(_UNANCHORED, b, 0, len(b))[0]
        return span[0] != _NO_MATCH

    def spans(self, text: str) -> list[Span]:
        """The non-empty matches, left to right as ``re.finditer`` finds them, in
        character offsets."""
        b = _utf8(text)
        n = len(b)
        ascii_only = n == len(text)
        out: list[Span] = []
        pos = 0
        seen_b = seen_c = 0  # a byte offset already converted to characters, and its count
        while pos <= n:
            s, e = self._match(_UNANCHORED, b, pos, n)[0]
            if s == _NO_MATCH:
                break
            if e > s:
                if ascii_only:
                    out.append((s, e))
                else:  # bytes -> characters, decoding each stretch once (linear)
                    start = seen_c + len(b[seen_b:s].decode("utf-8"))
                    seen_b, seen_c = e, start + len(b[s:e].decode("utf-8"))
                    out.append((start, seen_c))
                pos = e
            else:  # cannot happen for an accepted pattern (none matches empty)
                break
        return out


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: one replacement character each
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> LinearRegex:
    """:class:`LinearRegex` of ``pattern`` (memoised); :class:`PatternError` if refused."""
    return LinearRegex(pattern)
