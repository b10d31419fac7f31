"""The review domain without a store: queue reasons, decisions, the reviewed score."""

from __future__ import annotations

import json

import pytest

from qa_pipeline.messages import Verdict
from qa_pipeline.review import (
    Action,
    Decision,
    Reason,
    ReviewError,
    VerdictState,
    apply_decisions,
    queue_reasons,
    reviewed_score,
)
from qa_pipeline.review.model import machine_verdicts
from qa_pipeline.rules import RulePack, load_pack, score_transcript
from qa_pipeline.rules.fixtures import default_fixtures_dir, load_fixtures
from qa_pipeline.store import finding_dict, result_row

from .conftest import call_a, call_clean


def stored(card: object) -> tuple[dict[str, VerdictState], list[dict[str, object]]]:
    row = result_row("r", "c", "k", card, 0.0)  # type: ignore[arg-type]
    return machine_verdicts(json.loads(row[10])), json.loads(row[9])


def test_machine_verdicts_rescore_to_the_machine_score() -> None:
    """The reviewed score of unchanged verdicts is the engine's score, grade and pass/fail,
    on every call of the default pack's fixtures (critical failures, per-occurrence
    deductions, caps, uncertain verdicts among them)."""
    pack = load_pack()
    fixtures = load_fixtures(default_fixtures_dir())
    assert len(fixtures) > 20
    seen = set()
    for f in fixtures:
        card = score_transcript(pack, f.transcript())
        verdicts, _ = stored(card)
        got = reviewed_score(pack, verdicts)
        assert (got.score, got.grade, got.failed) == (card.score, card.grade, card.failed), f.name
        seen.add((card.failed, card.review, card.score < 100))
    assert (True, False, True) in seen and (False, False, True) in seen  # fails and deductions


def test_confirm_and_overturn(pack: RulePack) -> None:
    card = score_transcript(pack, call_a())
    v, _ = stored(card)
    assert (card.score, card.grade, card.failed) == (91.0, "非常满意", False)
    # confirming the uncertain critical verdict: it fails at its pending deduction, the call
    # fails and takes the fail grade
    after = apply_decisions(pack, v, [Decision("BAN-POLICY", Action.CONFIRM)])
    assert after["BAN-POLICY"] == VerdictState(Verdict.FAILED, 20.0, 20.0)
    s = reviewed_score(pack, after)
    assert (s.score, s.grade, s.failed) == (71.0, "不满意", True)
    # overturning it to passed instead: nothing taken, the call passes
    after = apply_decisions(
        pack, v, [Decision("BAN-POLICY", Action.OVERTURN, Verdict.PASSED, "客户原话")]
    )
    s = reviewed_score(pack, after)
    assert (s.score, s.grade, s.failed) == (91.0, "非常满意", False)
    # the per-occurrence deduction of a confirmed failure is the machine's (2 x 2), a
    # verdict overturned to failed takes the rule's deduction for one occurrence
    after = apply_decisions(
        pack,
        v,
        [
            Decision("NO-PHONE", Action.OVERTURN, Verdict.PASSED),
            Decision("BAN-N", Action.CONFIRM),
            Decision("GREET", Action.OVERTURN, Verdict.FAILED),
        ],
    )
    assert after["BAN-N"].deduction == 4.0 and after["GREET"].deduction == 10.0
    assert reviewed_score(pack, after).score == 86.0


def test_bad_decisions_are_refused(pack: RulePack) -> None:
    v, _ = stored(score_transcript(pack, call_a()))
    with pytest.raises(ReviewError, match="already failed"):
        apply_decisions(pack, v, [Decision("NO-PHONE", Action.OVERTURN, Verdict.FAILED)])
    with pytest.raises(ReviewError, match="no verdict of rule NOPE"):
        apply_decisions(pack, v, [Decision("NOPE", Action.CONFIRM)])
    with pytest.raises(ReviewError, match="passed or failed"):
        Decision("GREET", Action.OVERTURN, Verdict.NOT_APPLICABLE)
    with pytest.raises(ReviewError, match="GREET is passed"):
        apply_decisions(pack, v, [Decision("GREET", Action.APPEAL, comment="x")])
    other = load_pack()
    with pytest.raises(ReviewError, match="not in rule pack default"):
        reviewed_score(other, v)


def test_queue_reasons(pack: RulePack) -> None:
    v, f = stored(score_transcript(pack, call_a()))
    e = queue_reasons(v, f, 91.0, below=None)
    assert e.reasons == (Reason.UNCERTAIN,) and e.rules == ("BAN-POLICY",)
    e = queue_reasons(v, f, 91.0, below=95)
    assert e.reasons == (Reason.UNCERTAIN, Reason.LOW_SCORE)
    v, f = stored(score_transcript(pack, call_clean()))
    assert queue_reasons(v, f, 100.0, below=95).reasons == ()
    crit = [finding_dict_of("BAN-POLICY", "critical"), finding_dict_of("BAN-N", "minor")]
    e = queue_reasons(v, crit, 80.0, below=60)
    assert e.reasons == (Reason.CRITICAL,) and e.rules == ("BAN-POLICY",)


def finding_dict_of(rule_id: str, severity: str) -> dict[str, object]:
    from qa_pipeline.messages import Finding, Severity

    return finding_dict(Finding("c", rule_id, Severity(severity), "m"))
