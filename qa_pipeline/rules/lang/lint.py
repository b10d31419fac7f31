"""Static checks of a rule's spec: problems the schema cannot see (the whole pack's lint,
with its load and compile errors and fixture coverage, is :mod:`qa_pipeline.rules.lint`).

Errors (exit 1): unreachable conditions (a window beyond the longest call, an ``all`` of contradicting
roles / directions / times, a body role that the scope filters out, ``keyword`` X with
``not keyword`` X). Warnings: disabled rules, unused settings, one-syllable fuzzy phrases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ...errors import Location
from .registry import REGISTRY, Level, LintCtx, of_level
from .schema import Cond, RuleSpec, Settings, parse_range


@dataclass(frozen=True, slots=True)
class Issue:
    level: Literal["error", "warning"]
    location: Location
    rule_id: str
    message: str

    def __str__(self) -> str:
        rid = f"{self.rule_id}: " if self.rule_id else ""
        return f"{self.location}: {self.level}: {rid}{self.message}"


def _walk(c: Cond, path: str = "") -> list[tuple[str, Cond]]:
    """Every condition in ``c`` (itself first) with its path, from the operators' children."""
    out = [(path, c)]
    for op, v in c.operators():
        for suffix, kid in REGISTRY[op].children(v):
            out.extend(_walk(kid, f"{path}{suffix}"))
    return out


def _conjuncts(c: Cond) -> list[tuple[str, Any]]:
    """Operators that must all hold together (implicit and explicit ``all``)."""
    out: list[tuple[str, Any]] = []
    for op, v in c.operators():
        if op == "all":
            for k in v:
                out.extend(_conjuncts(k))
        else:
            out.append((op, v))
    return out


def _minutes(ranges: list[str]) -> set[int]:
    mins: set[int] = set()
    for r in ranges:
        a, b = parse_range(r)
        mins |= set(range(a, b)) if a <= b else set(range(a, 1440)) | set(range(0, b))
    return mins


def _contradictions(c: Cond) -> list[str]:
    parts = _conjuncts(c)
    msgs = []
    roles = {v for op, v in parts if op == "role" and v != "any"}
    if len(roles) > 1:
        msgs.append(f"'all' of different roles {sorted(roles)} can never hold on one utterance")
    dirs = {v for op, v in parts if op == "direction"}
    if len(dirs) > 1:
        msgs.append("'all' of both call directions can never hold")
    times = [v.between for op, v in parts if op == "time_of_day"]
    if len(times) > 1:
        common = _minutes(times[0])
        for t in times[1:]:
            common &= _minutes(t)
        if not common:
            msgs.append("'all' of time_of_day ranges that do not overlap can never hold")
    pos = set()
    neg = set()
    for op, v in parts:
        if op == "keyword" and v.any is not None:
            pos |= set(v.any) if len(v.any) == 1 else set()
            pos |= set(v.all or [])
        if op == "keyword" and v.all is not None:
            pos |= set(v.all)
        if op == "keyword" and v.none is not None:
            neg |= set(v.none)
        if op == "not":
            for op2, v2 in v.operators():
                if op2 == "keyword" and v2.any is not None:
                    neg |= set(v2.any)
    both = pos & neg
    if both:
        msgs.append(f"requires and excludes the same phrase(s) {sorted(both)}")
    return msgs


def lint_rule(spec: RuleSpec, loc: Location, settings: Settings) -> list[Issue]:
    issues: list[Issue] = []

    def err(msg: str) -> None:
        issues.append(Issue("error", loc, spec.id, msg))

    def warn(msg: str) -> None:
        issues.append(Issue("warning", loc, spec.id, msg))

    sc = spec.scope
    if not spec.enabled:
        warn("disabled (enabled: false): it is not evaluated")
    maxd = settings.max_call_seconds
    for name in ("first_seconds", "last_seconds"):
        v = getattr(sc, name)
        if v is not None and v >= maxd:
            err(f"scope.{name} {v:g} s is beyond the longest call ({maxd:g} s)")
    body = spec.require if spec.require is not None else spec.forbid
    assert body is not None
    for part, cond in (("when", spec.when), ("body", body)):
        if cond is None:
            continue
        for path, c in _walk(cond):
            where = f"{part}{path}"
            for msg in _contradictions(c):
                err(f"{where}: unreachable: {msg}")
            ctx = LintCtx(where, part, maxd, sc, path)
            for op, v in c.operators():
                check = REGISTRY[op].lint
                if check is not None:
                    for lvl, msg in check(ctx, v):
                        (err if lvl == "error" else warn)(msg)
    if spec.when is not None and sc.direction is not None:
        for op, v in _conjuncts(spec.when):
            if op == "direction" and v != sc.direction:
                err(f"when.direction {v} contradicts scope.direction {sc.direction}")
    static_ops = of_level(Level.STATIC)
    if spec.require is not None and all(op in static_ops for op, _ in spec.require.operators()):
        warn("require of call metadata only: it does not depend on what is said")
    return issues
