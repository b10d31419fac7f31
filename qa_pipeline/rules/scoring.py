"""From rule verdicts to a score, a grade and a pass/fail."""

from __future__ import annotations

from .compiler import CompiledRule
from .schema import Settings


def deduction(rule: CompiledRule, occurrences: int) -> float:
    """Points a failed rule takes off: its weight once, or per occurrence (beyond the
    tolerance) up to ``max_deduction`` (default 3 x weight)."""
    spec = rule.spec
    if spec.deduct == "once":
        d = spec.weight
        cap = spec.max_deduction if spec.max_deduction is not None else d
    else:
        n = max(occurrences - spec.tolerance, 1)
        d = spec.weight * n
        cap = spec.max_deduction if spec.max_deduction is not None else 3 * spec.weight
    return min(d, cap)


def score_from(deductions: float) -> float:
    return round(min(max(100.0 - deductions, 0.0), 100.0), 2)


def grade_for(settings: Settings, score: float, failed: bool) -> str:
    if failed and settings.fail_grade is not None:
        return settings.fail_grade
    for g in settings.grades:
        if score >= g.min_score:
            return g.name
    return settings.grades[-1].name
