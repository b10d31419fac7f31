"""Review and appeal, the domain part (no SQL): why a call enters the review queue, what a
reviewer's decision does to a verdict, and the reviewed score.

A call's machine result (one ``results`` row: its verdicts and findings) is the start. A
review is a set of per-verdict decisions: **confirm** (the machine was right; confirming an
``uncertain`` verdict confirms the failure it stood for, at its ``pending_deduction``, as
:class:`~qa_pipeline.messages.Verdict` documents) or **overturn** to ``passed`` or
``failed``. The reviewed score is computed from the reviewed verdicts by the pack's own
scoring: each failed verdict's deduction (the machine's, which already counts its
occurrences; a verdict overturned to failed takes the rule's deduction for one occurrence,
:meth:`Rule.deduction`), :func:`~qa_pipeline.rules.runtime.scoring.score_from` of their sum,
and the grade of :meth:`Plan.grade` (``fail_grade`` when a critical rule failed), so a
reviewed score and a machine score of the same verdicts are equal.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import QAError
from ..messages import Verdict
from ..rules import RulePack
from ..rules.runtime.scoring import fround, score_from

__all__ = [
    "Action",
    "Decision",
    "QueueState",
    "Reason",
    "ReviewError",
    "ReviewedScore",
    "VerdictState",
    "apply_decisions",
    "machine_verdicts",
    "queue_reasons",
    "reviewed_score",
]


class ReviewError(QAError, ValueError):
    """A review, appeal or queue request that cannot be done (the message says why)."""


class Reason(enum.StrEnum):
    """Why a call is in the review queue."""

    UNCERTAIN = "uncertain"  # a verdict the machine could not decide
    CRITICAL = "critical"  # a critical finding (the call failed)
    LOW_SCORE = "low_score"  # the machine score is below the queue's threshold
    APPEAL = "appeal"  # the agent appealed (申诉) a verdict


class QueueState(enum.StrEnum):
    OPEN = "open"  # nobody has decided anything since the call entered
    IN_REVIEW = "in_review"  # a reviewer took it, or some flagged verdicts are decided
    DONE = "done"  # every verdict that brought it in is decided


class Action(enum.StrEnum):
    CONFIRM = "confirm"
    OVERTURN = "overturn"
    APPEAL = "appeal"


@dataclass(frozen=True, slots=True)
class VerdictState:
    """A rule's verdict for a call as it stands (machine or reviewed): ``deduction`` is
    what it takes now, ``pending`` what an uncertain one would take if it failed."""

    verdict: Verdict
    deduction: float = 0.0
    pending: float = 0.0

    def to_json(self) -> list[Any]:
        return [self.verdict.value, self.deduction, self.pending]

    @classmethod
    def from_json(cls, v: Sequence[Any]) -> VerdictState:
        """From a ``results.verdicts`` entry (``[verdict, deduction]`` or, uncertain,
        ``[verdict, deduction, pending, detail]``) or :meth:`to_json`."""
        pending = float(v[2]) if len(v) > 2 and isinstance(v[2], (int, float)) else 0.0
        return cls(Verdict(v[0]), float(v[1] or 0.0), pending)


def machine_verdicts(verdicts_json: Mapping[str, Sequence[Any]]) -> dict[str, VerdictState]:
    """rule id -> verdict, from a ``results`` row's ``verdicts`` JSON object."""
    return {rid: VerdictState.from_json(v) for rid, v in verdicts_json.items()}


@dataclass(frozen=True, slots=True)
class Decision:
    """One reviewer decision on one verdict (``to``: the verdict it is overturned to), or an
    agent's appeal of it (``action`` appeal, ``comment`` the reason)."""

    rule_id: str
    action: Action
    to: Verdict | None = None
    comment: str = ""

    def __post_init__(self) -> None:
        if self.action is Action.OVERTURN and self.to not in (Verdict.PASSED, Verdict.FAILED):
            raise ReviewError(
                f"{self.rule_id}: a verdict is overturned to passed or failed, not {self.to}"
            )
        if self.action is not Action.OVERTURN and self.to is not None:
            raise ReviewError(f"{self.rule_id}: only an overturn names a verdict")


def _check_rule(pack: RulePack, rule_id: str) -> None:
    if rule_id not in pack.rule_ids:
        raise ReviewError(
            f"rule {rule_id} is not in rule pack {pack.name} {pack.version}: review with the "
            f"pack the call was scored with"
        )


def apply_decisions(
    pack: RulePack, current: Mapping[str, VerdictState], decisions: Iterable[Decision]
) -> dict[str, VerdictState]:
    """The verdicts after ``decisions`` (reviews; appeals change nothing). Raises
    :class:`ReviewError` naming the rule for a rule the call has no verdict of, an overturn
    to the verdict it already has, or a rule the pack does not know."""
    out = dict(current)
    for d in decisions:
        v = out.get(d.rule_id)
        if v is None:
            raise ReviewError(f"the call has no verdict of rule {d.rule_id}")
        if d.action is Action.APPEAL:
            if v.verdict not in (Verdict.FAILED, Verdict.UNCERTAIN):
                raise ReviewError(
                    f"{d.rule_id} is {v.verdict.value}: only a failed or uncertain verdict "
                    f"can be appealed"
                )
            continue
        if d.action is Action.CONFIRM:
            if v.verdict is Verdict.UNCERTAIN:  # the failure it stood for is confirmed
                out[d.rule_id] = VerdictState(Verdict.FAILED, v.pending, v.pending)
            continue
        if d.to is v.verdict:
            raise ReviewError(f"{d.rule_id} is already {v.verdict.value}: confirm it instead")
        if d.to is Verdict.PASSED:
            out[d.rule_id] = VerdictState(Verdict.PASSED, 0.0, v.pending)
        else:
            _check_rule(pack, d.rule_id)
            cost = v.pending if v.verdict is Verdict.UNCERTAIN and v.pending else None
            if cost is None:
                cost = fround(pack.rule(d.rule_id).deduction(1), 2)
            out[d.rule_id] = VerdictState(Verdict.FAILED, cost, v.pending)
    return out


@dataclass(frozen=True, slots=True)
class ReviewedScore:
    score: float
    grade: str
    failed: bool


def reviewed_score(pack: RulePack, verdicts: Mapping[str, VerdictState]) -> ReviewedScore:
    """Score, grade and pass/fail of these verdicts as the engine scores a call: the sum of
    the failed verdicts' deductions off 100, failed when a critical rule failed, the pack's
    grade. ``uncertain`` verdicts take nothing (as in a machine scorecard)."""
    total = 0.0
    failed = False
    for rid, v in verdicts.items():
        if v.verdict is not Verdict.FAILED:
            continue
        _check_rule(pack, rid)
        total += v.deduction
        if pack.rule(rid).critical:
            failed = True
    score = score_from(total)
    return ReviewedScore(score, pack.plan.grade(score, failed), failed)


@dataclass(frozen=True, slots=True)
class Entry:
    """Why a machine result enters the queue: its reasons, and the rules that need a
    reviewer's decision before the item is done."""

    reasons: tuple[Reason, ...]
    rules: tuple[str, ...] = field(default=())


def queue_reasons(
    verdicts: Mapping[str, VerdictState],
    findings: Iterable[Mapping[str, Any]],
    score: float | None,
    *,
    below: float | None,
) -> Entry:
    """Why a machine result (its verdicts, its findings as stored, its score) belongs in
    the review queue: uncertain verdicts, a critical finding, a score below ``below``
    (``None``: no score threshold). No reasons: it does not."""
    reasons: list[Reason] = []
    rules: list[str] = []
    unsure = [rid for rid, v in verdicts.items() if v.verdict is Verdict.UNCERTAIN]
    if unsure:
        reasons.append(Reason.UNCERTAIN)
        rules += unsure
    critical = sorted(
        {str(f["rule_id"]) for f in findings if f.get("severity") == "critical"} - set(rules)
    )
    if critical:
        reasons.append(Reason.CRITICAL)
        rules += critical
    if below is not None and score is not None and score < below:
        reasons.append(Reason.LOW_SCORE)
    return Entry(tuple(reasons), tuple(rules))
