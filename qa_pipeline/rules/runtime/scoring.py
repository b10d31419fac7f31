"""From rule verdicts to a score, a grade and a pass/fail."""

from __future__ import annotations

import math
from collections.abc import Iterable


def fround(x: float, ndigits: int) -> float:
    """``round(x, ndigits)``, same result, without the decimal conversion ``round`` does
    (a noticeable share of scoring a call: every finding's time and every scorecard figure
    is rounded).

    With ``y = x * 10**ndigits`` (a float, within half an ulp of the exact product) and
    |y| < 2**31, that error is below 1.2e-7; when y is further than 1e-6 from a half,
    the exact product rounds to the same integer k as y. ``round`` returns the float
    nearest to the decimal k / 10**ndigits, and so does the IEEE division k / 10**ndigits
    (both operands exact). Near halves (where ``round`` breaks exact ties to even), at
    zero (its sign), for large values, NaN and infinities: ``round`` itself."""
    if ndigits == 2:
        scale = 100.0
    elif ndigits == 3:
        scale = 1000.0
    elif ndigits == 1:
        scale = 10.0
    else:
        return round(x, ndigits)
    y = x * scale
    if -2147483648.0 < y < 2147483648.0:
        f = float(math.floor(y))
        d = y - f
        if d < 0.499999 or d > 0.500001:
            k = f + 1.0 if d > 0.5 else f
            if k != 0.0:
                return k / scale
    return round(x, ndigits)


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
    return fround(min(max(100.0 - deductions, 0.0), 100.0), 2)


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
