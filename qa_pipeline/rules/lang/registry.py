"""The one registry of condition operators.

Each operator is declared once, in its module under :mod:`qa_pipeline.rules.ops`, as an
:class:`Operator`: its YAML name, its spec (the pydantic model of its value), the level it
works at, **what triggers it** (no default: a call-level operator that forgot it would make
``forbid`` pass and ``require`` fail), its compile step (spec -> runtime node), its
sub-conditions, its label and an example. From this registry are derived:

* the condition model of the schema (:class:`qa_pipeline.rules.lang.schema.Cond`),
* the compiler's dispatch (:mod:`qa_pipeline.rules.ops.compiler`),
* lint's walk and per-operator checks (:mod:`qa_pipeline.rules.lang.lint`),
* the labels of findings (:mod:`qa_pipeline.rules.lang.labels`),
* the operator table of ``configs/rules/README.md`` (:func:`readme_table`).

Adding an operator is one module (plus fixtures): define the spec and the compile step,
then :func:`register` it. The registry is the language's (the schema is derived from it),
so it knows nothing of the compiler's or the runtime's types: the operator modules, above
the runtime, fill in the compile steps and register (``rules/__init__`` imports them).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .schema import Cond

CPath = tuple[str | int, ...]
Turn = tuple[str, float, float, str]


class Level(enum.IntEnum):
    """Where an operator works (the compiler nests lower levels into higher ones)."""

    STATIC = 0  # call metadata, decided once when the call starts
    UTTERANCE = 1  # true or false for one utterance
    CALL = 2  # stateful over the call
    NESTED = 3  # all / any / not: the level of its sub-conditions


class Trigger(enum.Enum):
    """Which utterances make the runtime run an operator's node."""

    PHRASES = "utterances where one of its phrases or patterns is found"
    EVERY_UTTERANCE = "every utterance"
    NO_UTTERANCE = "no utterance (call metadata, timeline, clock or call end)"
    CHILDREN = "those of its sub-conditions"


@dataclass(frozen=True)
class Example:
    """A condition using the operator and two calls: ``require`` of it passes on ``found``
    and fails on ``missing`` (turns: ``(role a|c, start, end, text)``). Runs as a test."""

    cond: dict[str, Any]
    found: list[Turn] | None = None
    missing: list[Turn] | None = None


@dataclass(frozen=True)
class LintCtx:
    """What a per-operator lint check sees."""

    where: str  # e.g. ``body.all[0]``
    part: str  # ``when`` or ``body``
    max_call_seconds: float
    scope: Any  # the rule's ScopeSpec
    path: str


Issue = tuple[str, str]  # (level: error | warning, message)


def _no_children(v: Any) -> list[tuple[str, Cond]]:
    return []


@dataclass(frozen=True, kw_only=True)
class Operator:
    name: str  # the YAML key
    level: Level
    spec: Any  # the value's type: a model, a Literal, bool, or a string naming ``Cond``
    # what makes the runtime look at it (required; a function of the spec where it depends
    # on it); the compiler checks every node it builds against it
    trigger: Trigger | Callable[[Any], Trigger]
    trigger_doc: str = ""  # for the README where ``trigger`` is a function (required then)
    summary: str  # one line for the README's operator table
    example: Example
    family: str = ""  # the module it is declared in (set by register)
    # compile steps, by level, each ``(compiler, spec[, path]) -> node``: static -> SNode,
    # utterance -> UNode (None: no constraint), call -> CNode. NESTED operators are compiled
    # by the compiler itself. The language does not know the compiler's or the runtime's
    # types (:mod:`qa_pipeline.rules.ops` sits above it): each operator module types its own.
    static: Callable[[Any, Any], Any] | None = None
    utt: Callable[[Any, Any, CPath], Any] | None = None
    call: Callable[[Any, Any, CPath], Any] | None = None
    shorthand: Callable[[Any], Any] | None = None  # YAML shorthand -> the spec's mapping
    field_args: dict[str, Any] = field(default_factory=dict)  # extra pydantic Field args
    children: Callable[[Any], list[tuple[str, Cond]]] = _no_children  # (path suffix, cond)
    label: Callable[[Any, Callable[[Cond], str]], str] | None = None  # None: not labelled
    lint: Callable[[LintCtx, Any], list[Issue]] | None = None
    models: tuple[type, ...] = ()  # auxiliary models that refer to ``Cond``

    def __post_init__(self) -> None:
        if not isinstance(self.trigger, Trigger) and not callable(self.trigger):
            raise TypeError(f"operator {self.name}: trigger must be a Trigger")
        if not isinstance(self.trigger, Trigger) and not self.trigger_doc:
            raise TypeError(
                f"operator {self.name}: a trigger that depends on the spec needs trigger_doc"
            )
        need = {
            Level.STATIC: self.static,
            Level.UTTERANCE: self.utt,
            Level.CALL: self.call,
        }.get(self.level, True)
        if need is None:
            raise TypeError(
                f"operator {self.name}: a {self.level.name} operator needs its compile step"
            )


#: every operator by YAML name, in declaration order (the order of ``Cond.operators()``)
REGISTRY: dict[str, Operator] = {}
_listeners: list[Callable[[list[tuple[str, Operator | None]]], None]] = []
_held: list[list[tuple[str, Operator | None]]] = []  # changes held back by ``batch``


def _notify(change: tuple[str, Operator | None]) -> None:
    if _held:
        _held[-1].append(change)
    else:
        for f in _listeners:
            f([change])


@contextmanager
def batch() -> Iterator[None]:
    """Tell the listeners of the operators registered (or removed) inside once, at the end
    (the schema rebuilds its models once, not once per operator)."""
    _held.append([])
    try:
        yield
    finally:
        changes = _held.pop()
        if changes:
            if _held:
                _held[-1].extend(changes)
            else:
                for f in _listeners:
                    f(changes)


def register(op: Operator, module: str = "") -> Operator:
    if op.name in REGISTRY:
        raise ValueError(f"operator {op.name} registered twice")
    if module:
        object.__setattr__(op, "family", module.rsplit(".", 1)[-1])
    REGISTRY[op.name] = op
    _notify((op.name, op))
    return op


def unregister(name: str) -> None:
    del REGISTRY[name]
    _notify((name, None))


@contextmanager
def registered(op: Operator) -> Iterator[Operator]:
    """``op`` in the registry for the duration (tests, experiments)."""
    register(op)
    try:
        yield op
    finally:
        unregister(op.name)


def on_change(f: Callable[[list[tuple[str, Operator | None]]], None]) -> None:
    """Call ``f([(name, op), ...])`` when operators are registered (``op``) or removed
    (``None``): once per change, or once for all the changes of a :func:`batch`."""
    _listeners.append(f)


def trigger_of(op: Operator, spec: Any) -> Trigger:
    return op.trigger if isinstance(op.trigger, Trigger) else op.trigger(spec)


def trigger_text(op: Operator) -> str:
    if isinstance(op.trigger, Trigger):
        return op.trigger.value
    return op.trigger_doc


def of_level(*levels: Level) -> frozenset[str]:
    return frozenset(n for n, op in REGISTRY.items() if op.level in levels)


def readme_table() -> str:
    """The operator table of ``configs/rules/README.md``, generated from the registry."""
    rows = [
        "| operator | level | triggered by | what it finds |",
        "|---|---|---|---|",
    ]
    for op in REGISTRY.values():
        rows.append(
            f"| `{op.name}` | {op.level.name.lower()} | {trigger_text(op)} | {op.summary} |"
        )
    return "\n".join(rows) + "\n"


README_BEGIN = "<!-- operators: generated from the registry (python -m qa_pipeline.rules.ops) -->"
README_END = "<!-- operators: end -->"


def with_readme_table(text: str) -> str:
    """``text`` (the rules README) with the generated operator table replaced."""
    head, sep, rest = text.partition(README_BEGIN)
    if not sep:
        raise ValueError(f"the README has no {README_BEGIN!r} marker")
    _, sep2, tail = rest.partition(README_END)
    if not sep2:
        raise ValueError(f"the README has no {README_END!r} marker")
    return f"{head}{README_BEGIN}\n{readme_table()}{README_END}{tail}"
