"""Uncertain verdicts: a rule that would fail only on speech heard with low confidence, or on
a call whose speakers' roles are unknown (mono), is ``uncertain``: no finding, no deduction
(``pending_deduction`` shows it), no failed call, the scorecard flagged for review."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable
from pathlib import Path

from qa_pipeline.messages import (
    CallEnded,
    CallInfo,
    Role,
    Scorecard,
    Utterance,
    Verdict,
    replace,
    to_dict,
)
from qa_pipeline.rules import CallEvaluator, RulePack, score_transcript
from qa_pipeline.rules.fixtures import default_fixtures_dir, load_fixtures, run_fixtures
from qa_pipeline.sinks.codec import scorecard_from_dict
from qa_pipeline.transcript import Transcript

MakePack = Callable[..., RulePack]

PACK = """\
rules:
  - id: BAN-X
    description: 禁语
    severity: critical
    weight: 20
    scope: {role: agent}
    forbid: {keyword: [公司规定]}
  - id: BAN-N
    description: 禁语（按次扣分）
    severity: minor
    weight: 2
    deduct: per_occurrence
    scope: {role: agent}
    forbid: {keyword: [不知道]}
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
  - id: SHORT-X
    description: 时长
    severity: minor
    weight: 2
    forbid: {duration: {under: 30}}
"""


def utt(i: int, role: str, s: float, e: float, text: str, conf: float = 0.9) -> Utterance:
    r = {"a": Role.AGENT, "c": Role.CUSTOMER, "u": Role.UNKNOWN}[role]
    return Utterance(
        call_id="c",
        index=i,
        channel=1 if r == Role.CUSTOMER else 0,
        role=r,
        start=s,
        end=e,
        text=text,
        confidence=conf,
    )


def call(utts: list[Utterance], end: float = 40.0, mono: bool = False) -> Transcript:
    channels = (Role.UNKNOWN,) if mono else (Role.AGENT, Role.CUSTOMER)
    return Transcript(
        call=CallInfo(call_id="c", channels=channels),
        utterances=tuple(utts),
        ended=CallEnded(call_id="c", end=end),
    )


def by_id(card: Scorecard, rule_id: str) -> tuple[Verdict, float, float, str]:
    v = next(v for v in card.verdicts if v.rule_id == rule_id)
    return v.verdict, v.deduction, v.pending_deduction, v.detail


def test_missing_greeting_in_a_low_confidence_turn_is_uncertain(make_pack: MakePack) -> None:
    pack = make_pack(PACK)
    ev = CallEvaluator(pack, CallInfo(call_id="c"))
    out = ev.feed(utt(0, "a", 0, 2, "农好，华冠客服", conf=0.25))
    out += ev.feed(utt(1, "a", 2.5, 4, "请问有什么事"))
    out += ev.feed(utt(2, "a", 5, 6, "好的"))  # the window closes: no finding, live or at end
    card = ev.end(CallEnded(call_id="c", end=40))
    assert out == [] and [f.rule_id for f in card.findings] == ["CLOSE-X"]
    v = next(v for v in card.verdicts if v.rule_id == "GREET-X")
    assert v.verdict is Verdict.UNCERTAIN
    assert v.deduction == 0 and v.pending_deduction == 8
    assert [e.utterance_index for e in v.evidence] == [0]  # the doubtful turn, not turn 1
    assert "0.25" in v.detail and "农好" in v.detail
    assert card.review and card.score == 97 and not card.failed
    # CLOSE-X (last agent turn "好的", heard clearly) fails as before
    assert by_id(card, "CLOSE-X")[:2] == (Verdict.FAILED, 3)


def test_confident_or_out_of_window_turns_still_fail(make_pack: MakePack) -> None:
    pack = make_pack(PACK)
    turns = [utt(0, "a", 0, 2, "农好"), utt(1, "a", 2.5, 4, "请问"), utt(2, "a", 5, 6, "再见")]
    card = score_transcript(pack, call(turns))
    assert by_id(card, "GREET-X")[:2] == (Verdict.FAILED, 8)
    assert not card.review and [f.rule_id for f in card.findings] == ["GREET-X"]
    # a low-confidence turn outside the window (the third agent turn) does not help
    turns[2] = utt(2, "a", 5, 6, "再见", conf=0.1)
    card = score_transcript(pack, call(turns))
    assert by_id(card, "GREET-X")[0] is Verdict.FAILED


def test_last_turns_scope(make_pack: MakePack) -> None:
    pack = make_pack(PACK)
    low_last = [utt(0, "a", 0, 2, "您好"), utt(1, "a", 3, 4, "拜拜", conf=0.2)]
    assert by_id(score_transcript(pack, call(low_last)), "CLOSE-X")[0] is Verdict.UNCERTAIN
    low_first = [utt(0, "a", 0, 2, "您好", conf=0.2), utt(1, "a", 3, 4, "拜拜")]
    assert by_id(score_transcript(pack, call(low_first)), "CLOSE-X")[0] is Verdict.FAILED


def test_banned_phrase_heard_with_low_confidence(make_pack: MakePack) -> None:
    pack = make_pack(PACK)
    ev = CallEvaluator(pack, CallInfo(call_id="c"))
    found = ev.feed(utt(0, "a", 0, 2, "您好"))
    found += ev.feed(utt(1, "a", 3, 5, "这是公司规定", conf=0.3))
    card = ev.end(CallEnded(call_id="c", end=40))
    assert found == [] and card.findings == ()
    verdict, deduction, pending, detail = by_id(card, "BAN-X")
    assert (verdict, deduction, pending) == (Verdict.UNCERTAIN, 0, 20)
    assert "公司规定" in detail and "0.30" in detail
    # a critical banned phrase heard badly fails no call until reviewed
    assert not card.failed and card.review and card.score == 100


def test_confident_hits_fail_and_only_they_count(make_pack: MakePack) -> None:
    pack = make_pack(PACK)
    turns = [
        utt(0, "a", 0, 2, "您好"),
        utt(1, "a", 3, 5, "我不知道", conf=0.2),
        utt(2, "a", 6, 8, "不知道啊"),
        utt(3, "a", 9, 11, "真不知道"),
        utt(4, "a", 12, 14, "公司规定"),
        utt(5, "a", 15, 16, "再见"),
    ]
    card = score_transcript(pack, call(turns))
    assert by_id(card, "BAN-N")[:2] == (Verdict.FAILED, 4)  # 2 confident hits x 2 points
    assert [f.evidence[0].utterance_index for f in card.findings if f.rule_id == "BAN-N"] == [2, 3]
    assert by_id(card, "BAN-X")[0] is Verdict.FAILED and card.failed
    assert not card.review


def test_threshold_is_a_pack_setting(make_pack: MakePack) -> None:
    turns = [utt(0, "a", 0, 2, "这是公司规定", conf=0.3), utt(1, "a", 3, 4, "您好再见")]
    off = make_pack(PACK, settings={"uncertain_confidence": 0})
    assert by_id(score_transcript(off, call(turns)), "BAN-X")[0] is Verdict.FAILED
    low = make_pack(PACK, settings={"uncertain_confidence": 0.2})
    assert by_id(score_transcript(low, call(turns)), "BAN-X")[0] is Verdict.FAILED
    high = make_pack(PACK, settings={"uncertain_confidence": 0.5})
    assert by_id(score_transcript(high, call(turns)), "BAN-X")[0] is Verdict.UNCERTAIN


def test_unknown_roles_are_uncertain_not_failed(make_pack: MakePack) -> None:
    pack = make_pack(PACK)
    turns = [utt(0, "u", 0, 2, "喂"), utt(1, "u", 3, 5, "这是公司规定"), utt(2, "u", 6, 8, "嗯")]
    card = score_transcript(pack, call(turns, end=10, mono=True))
    for rid in ("BAN-X", "BAN-N", "GREET-X", "CLOSE-X"):
        verdict, deduction, _, detail = by_id(card, rid)
        assert verdict is Verdict.UNCERTAIN and deduction == 0 and "角色未知" in detail, rid
    # a rule not scoped to a role is decided as before (a 10 s call is too short)
    assert by_id(card, "SHORT-X")[:2] == (Verdict.FAILED, 2)
    assert [f.rule_id for f in card.findings] == ["SHORT-X"]
    assert card.score == 98 and card.review


def test_mono_mix_of_a_well_conducted_call(default_pack: RulePack) -> None:
    """The default pack's model call mixed to one unknown channel: no agent rule fails."""
    fx = next(f for f in load_fixtures(default_fixtures_dir()) if f.name == "inbound-model-call")
    dual = fx.transcript()
    card = score_transcript(default_pack, dual)
    assert card.score == 100 and not card.review
    mono = dataclasses.replace(
        dual,
        call=replace(dual.call, channels=(Role.UNKNOWN,)),
        utterances=tuple(replace(u, role=Role.UNKNOWN, channel=0) for u in dual.utterances),
        ended=replace(dual.ended, channel_ends=(max(dual.ended.channel_ends),)),
    )
    card = score_transcript(default_pack, mono)
    assert card.findings == () and card.score == 100 and card.review
    verdicts = {v.rule_id: v.verdict for v in card.verdicts}
    assert Verdict.FAILED not in verdicts.values()
    for rid in ("OPEN-GREET", "OPEN-IDENT", "BAN-POLICY", "COURT-WORDS", "CLOSE-THANKS"):
        assert verdicts[rid] is Verdict.UNCERTAIN, rid
    assert verdicts["FIVE-VOICES"] is Verdict.UNCERTAIN  # rests on uncertain verdicts
    for rid in ("DEAD-AIR", "DURATION", "RESP-GAP", "NO-INTERRUPT", "CLOSE-HANGUP"):
        assert verdicts[rid] is Verdict.PASSED, rid
    assert verdicts["OUT-CONFIRM"] is Verdict.NOT_APPLICABLE
    n = sum(v.verdict is Verdict.UNCERTAIN for v in card.verdicts)
    assert n >= 9


def test_verdicts_rule_on_a_confident_failure_still_fails(default_pack: RulePack) -> None:
    """FIVE-VOICES is uncertain only when every verdict it misses is uncertain."""
    fx = next(f for f in load_fixtures(default_fixtures_dir()) if f.name == "inbound-model-call")
    t = fx.transcript()
    utts = list(t.utterances)
    utts[0] = replace(
        utts[0], text="农好，华夏客服，我是工号1023，请问有什么可以帮您？", confidence=0.2
    )
    card = score_transcript(default_pack, dataclasses.replace(t, utterances=tuple(utts)))
    assert by_id(card, "OPEN-GREET")[0] is Verdict.UNCERTAIN
    assert by_id(card, "FIVE-VOICES")[0] is Verdict.UNCERTAIN
    utts[-2] = replace(utts[-2], text="好的，那就这样")  # no farewell, heard clearly
    card = score_transcript(default_pack, dataclasses.replace(t, utterances=tuple(utts)))
    assert by_id(card, "CLOSE-THANKS")[0] is Verdict.FAILED
    assert by_id(card, "FIVE-VOICES")[0] is Verdict.FAILED


def test_scorecard_json_round_trip(make_pack: MakePack) -> None:
    pack = make_pack(PACK)
    card = score_transcript(pack, call([utt(0, "a", 0, 2, "公司规定", conf=0.1)]))
    d = to_dict(card)
    assert d["review"] is True
    v = next(v for v in d["verdicts"] if v["rule_id"] == "BAN-X")
    assert v["verdict"] == "uncertain" and v["pending_deduction"] == 20 and v["deduction"] == 0
    assert v["evidence"][0]["utterance_index"] == 0
    assert scorecard_from_dict(d) == card


def test_fixtures_can_expect_uncertain(default_pack: RulePack, tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(
        textwrap.dedent(
            """\
            fixtures:
              - name: low-confidence-ban
                turns:
                  - [agent, 1.0, 3.0, 您好，华夏客服]
                  - {role: agent, start: 4.0, end: 6.0, text: 这是公司规定, confidence: 0.2}
                expect: {BAN-POLICY: uncertain, OPEN-GREET: ok}
              - name: confident-ban
                turns:
                  - [agent, 1.0, 3.0, 您好，华夏客服]
                  - {role: agent, start: 4.0, end: 6.0, text: 这是公司规定, confidence: 0.9}
                expect: {BAN-POLICY: uncertain}
            """
        ),
        encoding="utf-8",
    )
    got = {
        (o.fixture, o.rule_id): (o.actual, o.ok)
        for o in run_fixtures(default_pack, load_fixtures(tmp_path))
    }
    assert got[("low-confidence-ban", "BAN-POLICY")] == ("uncertain", True)
    assert got[("low-confidence-ban", "OPEN-GREET")] == ("ok", True)
    assert got[("confident-ban", "BAN-POLICY")] == ("fire", False)
    # the default pack's own fixtures include uncertain expectations, and they hold
    default = run_fixtures(default_pack, load_fixtures(default_fixtures_dir()))
    unsure = [o for o in default if o.expected == "uncertain"]
    assert len(unsure) >= 5 and all(o.ok for o in unsure)


def test_a_call_where_nobody_spoke_fails_no_agent(make_pack: MakePack) -> None:
    """A dead line, a fax or music on hold gives no utterances: the missing greeting and
    closing are not applicable, not failures (and no finding reaches a supervisor)."""
    from qa_pipeline.rules import load_pack

    for pack in (make_pack(PACK), load_pack()):
        call = CallInfo("silent", channels=(Role.AGENT, Role.CUSTOMER))
        t = Transcript(call=call, utterances=(), ended=CallEnded("silent", 60.0, (60.0, 60.0)))
        card = score_transcript(pack, t)
        assert card.findings == ()
        assert not card.failed and card.score == 100.0
        verdicts = {v.rule_id: v for v in card.verdicts}
        assert Verdict.FAILED not in {v.verdict for v in verdicts.values()}
        greet = verdicts.get("GREET-X") or verdicts["OPEN-GREET"]
        assert greet.verdict is Verdict.NOT_APPLICABLE and "没有听到语音" in greet.detail
