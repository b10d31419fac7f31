"""From rule verdicts to a score, a grade and a pass/fail."""

from __future__ import annotations

from collections.abc import Iterable


def deduction_of(
    weight: float,
    tolerance: int,
    deduct_once: bool,
    max_deduction: float | None,
    occurrences: int,
) -> float:
    """Points a failed rule takes off: its weight once, or per occurrence (beyond the
    tolerance) up to ``max_deduction`` (default 3 x weight)."""
    if deduct_once:
        d = weight
        cap = max_deduction if max_deduction is not None else d
    else:
        d = weight * max(occurrences - tolerance, 1)
        cap = max_deduction if max_deduction is not None else 3 * weight
    return min(d, cap)


def score_from(deductions: float) -> float:
    return round(min(max(100.0 - deductions, 0.0), 100.0), 2)


def grade_of(
    grades: Iterable[tuple[str, float]], fail_grade: str | None, score: float, failed: bool
) -> str:
    """The grade of a score: ``fail_grade`` for a failed call, else the first grade (best
    first) whose ``min_score`` the score reaches, else the last one."""
    if failed and fail_grade is not None:
        return fail_grade
    name = ""
    for name, min_score in grades:
        if score >= min_score:
            return name
    return name
