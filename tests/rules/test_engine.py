"""Incremental evaluation, scoring, grades and invariants."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from datetime import datetime

from qa_pipeline.messages import CallEnded, CallInfo, Role, Severity, Utterance, Verdict, to_dict
from qa_pipeline.rules import CallEvaluator, RulePack, score_transcript
from qa_pipeline.testing import make_call

from .conftest import transcript, verdict

MakePack = Callable[..., RulePack]

PACK = """\
rules:
  - id: BAN-X
    description: 禁语
    severity: critical
    weight: 20
    scope: {role: agent}
    forbid: {keyword: [公司规定]}
    suggestion: 非常抱歉，请您谅解。
  - id: GREET-X
    description: 问候
    severity: major
    weight: 8
    scope: {role: agent, first_turns: 2, first_seconds: 10}
    require: {fuzzy: [您好]}
  - id: CLOSE-X
    description: 道别
    severity: minor
    weight: 3
    scope: {role: agent, last_turns: 1}
    require: {keyword: [再见]}
  - id: OUT-X
    description: 外呼确认
    severity: minor
    weight: 3
    scope: {direction: outbound}
    require: {keyword: [方便]}
  - id: GAP-X
    description: 应答
    severity: minor
    weight: 2
    deduct: per_occurrence
    max_deduction: 5
    forbid: {response_gap: {over: 3}}
"""


def utt(i: int, role: str, s: float, e: float, text: str) -> Utterance:
    r = Role.AGENT if role == "a" else Role.CUSTOMER
    return Utterance(
        call_id="c", index=i, channel=0 if r == Role.AGENT else 1, role=r, start=s, end=e, text=text
    )


def test_banned_phrase_emitted_by_its_feed(make_pack: MakePack) -> None:
    ev = CallEvaluator(make_pack(PACK), CallInfo(call_id="c"))
    assert [f.rule_id for f in ev.feed(utt(0, "a", 0, 2, "您好"))] == []
    out = ev.feed(utt(1, "a", 2.5, 4, "这是公司规定"))
    assert [f.rule_id for f in out] == ["BAN-X"]
    f = out[0]
    assert f.severity == Severity.CRITICAL and f.weight == 20 and f.decided_at == 4
    assert f.suggestion == "非常抱歉，请您谅解。"
    (e,) = f.evidence
    assert (e.utterance_index, e.role, e.start, e.end) == (1, Role.AGENT, 2.5, 4)
    assert e.text == "这是公司规定" and e.matched == "公司规定"
    assert "禁语" in f.message


def test_missing_greeting_emitted_when_window_closes_by_turns(make_pack: MakePack) -> None:
    ev = CallEvaluator(make_pack(PACK), CallInfo(call_id="c"))
    assert ev.feed(utt(0, "a", 0, 1, "喂")) == []
    assert ev.feed(utt(1, "a", 1.5, 2.5, "说话")) == []
    out = ev.feed(utt(2, "a", 3, 4, "嗯"))  # third agent turn closes 'first 2 turns'
    assert [f.rule_id for f in out] == ["GREET-X"]
    assert out[0].decided_at == 4
    assert [e.text for e in out[0].evidence] == ["喂", "说话"]


def test_missing_greeting_emitted_by_advance(make_pack: MakePack) -> None:
    pack = make_pack(PACK)
    ev = CallEvaluator(pack, CallInfo(call_id="c"))
    assert ev.feed(utt(0, "c", 0, 2, "喂？")) == []
    grace = pack.settings.window_grace_seconds
    assert ev.advance(10 + grace - 0.5) == []
    out = ev.advance(10 + grace)
    assert [f.rule_id for f in out] == ["GREET-X"]
    card = ev.end(CallEnded(call_id="c", end=20))
    assert [f.rule_id for f in card.findings].count("GREET-X") == 1


def test_end_of_call_rules_decided_at_end(make_pack: MakePack) -> None:
    ev = CallEvaluator(make_pack(PACK), CallInfo(call_id="c"))
    found = ev.feed(utt(0, "a", 0, 2, "您好")) + ev.feed(utt(1, "a", 3, 4, "好的"))
    assert found == []
    card = ev.end(CallEnded(call_id="c", end=5))
    assert [f.rule_id for f in card.findings] == ["CLOSE-X"]
    assert card.findings[0].decided_at == 5


def test_not_applicable_and_every_rule_has_a_verdict(make_pack: MakePack) -> None:
    pack = make_pack(PACK)
    card = score_transcript(pack, transcript([("a", 0, 1, "您好"), ("a", 2, 3, "再见")]))
    assert [v.rule_id for v in card.verdicts] == pack.rule_ids
    assert verdict(card, "OUT-X") == "not_applicable"
    assert (
        verdict(card, "GREET-X") == verdict(card, "CLOSE-X") == verdict(card, "BAN-X") == "passed"
    )
    assert card.score == 100 and card.grade == "非常满意" and not card.failed
    out = score_transcript(
        pack, transcript([("a", 0, 1, "您好"), ("a", 2, 3, "再见")], direction="outbound")
    )
    assert verdict(out, "OUT-X") == "failed"


def test_scoring_critical_and_per_occurrence(make_pack: MakePack) -> None:
    pack = make_pack(PACK)
    turns = [
        ("a", 0, 1, "您好"),
        ("c", 1, 2, "嗯"),
        ("a", 6, 7, "公司规定"),
        ("c", 7, 8, "啊"),
        ("a", 12, 13, "嗯"),
        ("c", 13, 14, "哦"),
        ("a", 18, 19, "再见"),
    ]
    card = score_transcript(pack, transcript(turns))
    d = {v.rule_id: v.deduction for v in card.verdicts}
    assert d["BAN-X"] == 20
    assert d["GAP-X"] == 5  # 3 long gaps x 2 points, capped at 5
    assert card.score == 75
    assert card.failed  # a critical rule failed
    assert card.grade == "基本满意"  # no fail_grade in this pack: the score decides
    strict = make_pack(PACK, settings={"fail_grade": "不满意"})
    card = score_transcript(strict, transcript(turns))
    assert (card.score, card.grade, card.failed) == (75, "不满意", True)


def test_grades_from_settings(make_pack: MakePack) -> None:
    hdr = """\
name: t
version: "1"
settings:
  grades:
    - {name: 非常满意, label: very satisfied, min_score: 95}
    - {name: 满意, label: satisfied, min_score: 85}
    - {name: 基本满意, label: basically satisfied, min_score: 70}
    - {name: 不满意, label: dissatisfied, min_score: 0}
"""
    rules = """\
rules:
  - {id: A-A, description: a, severity: major, weight: 10, forbid: {keyword: [甲]}}
  - {id: B-B, description: b, severity: major, weight: 10, forbid: {keyword: [乙]}}
  - {id: C-C, description: c, severity: major, weight: 20, forbid: {keyword: [丙]}}
"""
    pack = make_pack(rules, header=hdr)
    for text, score, grade in [
        ("好", 100, "非常满意"),
        ("甲", 90, "满意"),
        ("甲乙", 80, "基本满意"),
        ("甲乙丙", 60, "不满意"),
    ]:
        card = score_transcript(pack, transcript([("a", 0, 1, text)]))
        assert (card.score, card.grade) == (score, grade)
        assert not card.failed
    assert pack.grade_label("基本满意") == "basically satisfied"


def test_deductions_floor_at_zero(make_pack: MakePack) -> None:
    rules = "rules:\n" + "".join(
        f"  - {{id: R-{i}, description: d, severity: major, weight: 40, forbid: {{keyword: [坏]}}}}\n"
        for i in range(4)
    )
    card = score_transcript(make_pack(rules), transcript([("a", 0, 1, "坏")]))
    assert card.score == 0


def test_feeding_one_by_one_equals_score_transcript(default_pack: RulePack) -> None:
    rng = random.Random(3)
    for i in range(30):
        t = make_call(i, rng, 30)
        batch = score_transcript(default_pack, t)
        ev = CallEvaluator(default_pack, t.call)
        live = []
        for u in sorted(t.utterances, key=lambda u: u.end):
            live.extend(ev.feed(u))
            live.extend(ev.advance(u.end + 0.5))
        card = ev.end(t.ended)
        assert [v.verdict for v in card.verdicts] == [v.verdict for v in batch.verdicts]
        assert card.score == batch.score
        assert {(f.rule_id, f.evidence) for f in card.findings} == {
            (f.rule_id, f.evidence) for f in batch.findings
        }
        # everything emitted live is in the scorecard
        assert set(live) <= set(card.findings)


def test_invariants_on_random_calls(default_pack: RulePack) -> None:
    rng = random.Random(11)
    ids = default_pack.rule_ids
    for i in range(60):
        t = make_call(i, rng, rng.randrange(2, 60))
        a = score_transcript(default_pack, t)
        b = score_transcript(default_pack, t)
        assert a == b  # deterministic
        assert 0 <= a.score <= 100
        assert [v.rule_id for v in a.verdicts] == ids
        failed = {v.rule_id for v in a.verdicts if v.verdict == Verdict.FAILED}
        assert {f.rule_id for f in a.findings} <= failed
        assert a.failed == any(
            v.verdict == Verdict.FAILED and v.severity == Severity.CRITICAL for v in a.verdicts
        )
        assert a.rule_pack_version == default_pack.version
        for f in a.findings:
            assert f.evidence and f.decided_at >= 0
        to_dict(a)  # serialisable


def test_empty_call(default_pack: RulePack) -> None:
    """Nobody heard at all (a dead line, tones, a fax): no rule that needs speech fails
    (issue #13: non-speech gives no findings)."""
    card = score_transcript(default_pack, transcript([], duration=5.0))
    assert 0 <= card.score <= 100
    assert verdict(card, "OPEN-ANSWER") == "not_applicable"
    assert card.findings == ()


def test_utterance_order_within_end_ties_does_not_matter(default_pack: RulePack) -> None:
    t = transcript(
        [
            ("a", 0, 3, "您好，华冠客服，请问有什么可以帮您"),
            ("c", 1, 3, "喂，你好"),
            ("a", 4, 6, "感谢您的来电，再见"),
        ],
        started_at=datetime(2026, 3, 3, 15, 0),
    )
    rev = dataclasses.replace(t, utterances=tuple(reversed(t.utterances)))
    assert score_transcript(default_pack, t) == score_transcript(default_pack, rev)
