"""Every operator, each on a tiny pack and call."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from qa_pipeline.rules import RulePack, score_transcript

from .conftest import transcript, verdict

MakePack = Callable[..., RulePack]


def rule(body: str, extra: str = "", rid: str = "R-T") -> str:
    return f"""\
rules:
  - id: {rid}
    description: test rule
    severity: major
    weight: 10
{extra}    {body}
"""


def run(pack: RulePack, turns: list, **kw: object) -> str:  # type: ignore[type-arg]
    return verdict(score_transcript(pack, transcript(turns, **kw)), "R-T")


def test_keyword_any_all_at_least_none(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {keyword: [坏话, 脏话]}"))
    assert run(p, [("a", 0, 1, "这是坏话")]) == "failed"
    assert run(p, [("a", 0, 1, "这是好话")]) == "passed"
    p = make_pack(rule("forbid: {keyword: {all: [公司, 规定]}}"))
    assert run(p, [("a", 0, 1, "规定是公司的")]) == "failed"
    assert run(p, [("a", 0, 1, "公司很好")]) == "passed"
    p = make_pack(rule("forbid: {keyword: {at_least: 2, of: [请, 谢谢, 抱歉]}}"))
    assert run(p, [("a", 0, 1, "请稍候，谢谢")]) == "failed"
    assert run(p, [("a", 0, 1, "请稍候")]) == "passed"
    p = make_pack(rule("forbid: {role: agent, keyword: {none: [您, 你]}}"))
    assert run(p, [("a", 0, 1, "好的")]) == "failed"
    assert run(p, [("a", 0, 1, "您好")]) == "passed"


def test_keyword_at_start_and_whole(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {keyword: {any: [喂], at: start}}"))
    assert run(p, [("a", 0, 1, "喂，您好")]) == "failed"
    assert run(p, [("a", 0, 1, "您好，喂")]) == "passed"
    p = make_pack(rule("forbid: {keyword: {any: [不知道], at: whole}}"))
    assert run(p, [("a", 0, 1, "不知道。")]) == "failed"
    assert run(p, [("a", 0, 1, "我不知道您的地址")]) == "passed"


def test_regex_with_exclusion(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {regex: {pattern: '保证', exclude: '不能保证'}}"))
    assert run(p, [("a", 0, 1, "我保证")]) == "failed"
    assert run(p, [("a", 0, 1, "我不能保证")]) == "passed"


def test_fuzzy_and_similar(make_pack: MakePack) -> None:
    p = make_pack(rule("require: {fuzzy: {phrases: [请您稍等], threshold: 85}}"))
    assert run(p, [("a", 0, 1, "千年少等")]) == "passed"
    assert run(p, [("a", 0, 1, "今天天气")]) == "failed"
    p = make_pack(rule("require: {similar: {examples: [请问还有其他问题吗], threshold: 70}}"))
    assert run(p, [("a", 0, 1, "请问您还有其他的问题吗")]) == "passed"
    assert run(p, [("a", 0, 1, "再见")]) == "failed"


def test_role_scope_and_operator(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {keyword: [投诉]}", "    scope: {role: agent}\n"))
    assert run(p, [("c", 0, 1, "我要投诉")]) == "passed"
    assert run(p, [("a", 0, 1, "您要投诉吗")]) == "failed"
    p = make_pack(rule("forbid: {role: customer, keyword: [投诉]}"))
    assert run(p, [("c", 0, 1, "我要投诉")]) == "failed"


def test_position(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {keyword: [好的], position: {index: [0]}}"))
    assert run(p, [("a", 0, 1, "好的"), ("a", 2, 3, "嗯")]) == "failed"
    assert run(p, [("a", 0, 1, "嗯"), ("a", 2, 3, "好的")]) == "passed"
    p = make_pack(rule("forbid: {keyword: [好的], position: {index: [-1]}}"))
    assert run(p, [("a", 0, 1, "嗯"), ("a", 2, 3, "好的")]) == "failed"
    assert run(p, [("a", 0, 1, "好的"), ("a", 2, 3, "嗯")]) == "passed"
    p = make_pack(rule("forbid: {keyword: [好的], position: {first_seconds: 5}}"))
    assert run(p, [("a", 1, 2, "好的")]) == "failed"
    assert run(p, [("a", 6, 7, "好的")]) == "passed"
    p = make_pack(rule("forbid: {keyword: [好的], position: {last_seconds: 5}}"))
    assert run(p, [("a", 1, 2, "好的"), ("a", 30, 31, "嗯")]) == "passed"
    assert run(p, [("a", 1, 2, "嗯"), ("a", 30, 31, "好的")]) == "failed"
    p = make_pack(rule("forbid: {keyword: [好的], position: {last_turns: 1}}"))
    assert run(p, [("a", 1, 2, "好的"), ("a", 30, 31, "嗯")]) == "passed"


def test_proximity(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {proximity: {a: [退款], b: [不行], within: 4}}"))
    assert run(p, [("a", 0, 1, "退款这个不行")]) == "failed"
    assert run(p, [("a", 0, 1, "退款的事情我们需要很多天才能知道行不行，不行")]) == "passed"
    p = make_pack(rule("forbid: {proximity: {a: [退款], b: [不行], within: 4, ordered: true}}"))
    assert run(p, [("a", 0, 1, "不行退款")]) == "passed"


def test_negation(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {negation: {phrases: [满意], within: 2}}"))
    assert run(p, [("c", 0, 1, "我很不满意")]) == "failed"
    assert run(p, [("c", 0, 1, "我很满意")]) == "passed"
    p = make_pack(rule("forbid: {keyword: [保证], not: {negation: {phrases: [保证]}}}"))
    assert run(p, [("a", 0, 1, "我保证")]) == "failed"
    assert run(p, [("a", 0, 1, "我不能保证")]) == "passed"


def test_entity(make_pack: MakePack) -> None:
    p = make_pack(rule("require: {role: agent, entity: mobile}"))
    assert run(p, [("a", 0, 1, "您的手机号是13812345678对吗")]) == "passed"
    assert run(p, [("a", 0, 1, "好的")]) == "failed"


def test_sequence_missing_and_found(make_pack: MakePack) -> None:
    seq = """forbid:
      sequence:
        first: {role: customer, keyword: [投诉]}
        then: {role: agent, keyword: [抱歉]}
        within_turns: 1
        turn_role: agent
        missing: true"""
    p = make_pack(rule(seq))
    assert run(p, [("c", 0, 1, "我要投诉"), ("a", 2, 3, "很抱歉")]) == "passed"
    assert run(p, [("c", 0, 1, "我要投诉"), ("a", 2, 3, "这个")]) == "failed"
    assert (
        run(p, [("c", 0, 1, "我要投诉"), ("c", 1.5, 2, "真的"), ("a", 2, 3, "很抱歉")]) == "passed"
    )
    p = make_pack(rule(seq.replace("within_turns: 1", "within_seconds: 5")))
    assert run(p, [("c", 0, 1, "我要投诉"), ("a", 20, 21, "很抱歉")]) == "failed"
    assert run(p, [("c", 0, 1, "我要投诉"), ("a", 3, 4, "很抱歉")]) == "passed"


def test_response_gap(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {response_gap: {over: 5}}"))
    assert run(p, [("c", 0, 2, "你好"), ("a", 8, 9, "您好")]) == "failed"
    assert run(p, [("c", 0, 2, "你好"), ("a", 3, 4, "您好")]) == "passed"
    card = score_transcript(p, transcript([("c", 0, 2, "你好"), ("a", 8, 9, "您好")]))
    ev = card.findings[0].evidence[0]
    assert (ev.start, ev.end) == (2, 8)
    assert dict(card.extras)["response_gap_max"] == 6


def test_silence_and_tolerance(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {silence: {over: 5}}"))
    assert run(p, [("a", 0, 1, "您好"), ("c", 8, 9, "喂")]) == "failed"
    assert run(p, [("a", 0, 1, "您好"), ("c", 3, 9, "喂")]) == "passed"
    p = make_pack(rule("forbid: {silence: {over: 5}}", "    tolerance: 1\n"))
    assert run(p, [("a", 0, 1, "您好"), ("c", 8, 9, "喂")]) == "passed"
    p = make_pack(rule("forbid: {silence: {total_over: 5}}"))
    assert run(p, [("a", 0, 1, "a"), ("c", 4, 5, "b"), ("a", 8, 9, "c")]) == "failed"
    p = make_pack(rule("forbid: {silence: {over: 5, except_after: {fuzzy: [请您稍等]}}}"))
    assert run(p, [("a", 0, 1, "请您稍等"), ("a", 10, 11, "好了")]) == "passed"


def test_silence_waits_for_the_other_channel() -> None:
    # a long customer utterance arriving late fills what looked like a silence
    from qa_pipeline.messages import CallInfo, Role, Utterance
    from qa_pipeline.rules.runtime.nodes import CallContext, UttCtx
    from qa_pipeline.rules.runtime.textindex import TextIndex
    from qa_pipeline.rules.runtime.timeline import Timeline

    ix = TextIndex()
    ix.finish()
    tl = Timeline(2, 30.0, {"silence": 0.0})

    def x(ch: int, s: float, e: float) -> UttCtx:
        role = Role.AGENT if ch == 0 else Role.CUSTOMER
        u = Utterance(call_id="c", index=0, channel=ch, role=role, start=s, end=e, text="x")
        return UttCtx(u, ix.analyse("x"), 0, 0, CallContext(), u.role, u.start, u.end)

    _ = CallInfo
    evs = tl.push(x(0, 0, 2), 2) + tl.push(x(0, 12, 13), 13) + tl.push(x(1, 1, 14), 14)
    evs += tl.flush()
    assert [e for e in evs if e.kind == "silence"] == []


def test_hold(make_pack: MakePack) -> None:
    hold = "forbid: {hold: {min_seconds: 10, notice: {fuzzy: [请您稍等]}, thanks: {fuzzy: [让您久等了]}}}"
    p = make_pack(rule(hold))
    good = [("a", 0, 2, "请您稍等"), ("a", 20, 22, "让您久等了")]
    assert run(p, good) == "passed"
    assert run(p, [("a", 0, 2, "好的"), ("a", 20, 22, "让您久等了")]) == "failed"
    assert run(p, [("a", 0, 2, "请您稍等"), ("a", 20, 22, "查到了")]) == "failed"
    # the customer talking for a long time is not a hold
    assert (
        run(p, [("a", 0, 2, "好的"), ("c", 2.5, 19, "我说一下"), ("a", 20, 22, "明白")]) == "passed"
    )


def test_talk_over(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {talk_over: {min_overlap_ms: 500}}"))
    assert run(p, [("c", 0, 5, "我说一下情况"), ("a", 3, 6, "你听我说")]) == "failed"
    assert run(p, [("c", 0, 5, "我说一下情况"), ("a", 4.8, 6, "嗯")]) == "passed"
    assert run(p, [("c", 0, 5, "我说一下情况"), ("a", 5.5, 6, "好的")]) == "passed"


def test_metrics(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {duration: {over: 60}}"))
    assert run(p, [("a", 0, 1, "好")], duration=90) == "failed"
    assert run(p, [("a", 0, 1, "好")], duration=30) == "passed"
    p = make_pack(rule("forbid: {speech_rate: {role: agent, over: 300}}"))
    assert run(p, [("a", 0, 1, "一二三四五六七八")]) == "failed"  # 480 chars/min
    assert run(p, [("a", 0, 4, "一二三四五六七八")]) == "passed"  # 120
    p = make_pack(rule("forbid: {volume: {role: agent, over: -6, under: -40}}"))
    assert run(p, [("a", 0, 1, "好", -3.0)]) == "failed"
    assert run(p, [("a", 0, 1, "好", -20.0)]) == "passed"
    assert run(p, [("a", 0, 1, "好")]) == "passed"  # no level known
    p = make_pack(rule("forbid: {utterance_count: {role: customer, over: 2}}"))
    assert run(p, [("c", 0, 1, "a"), ("c", 2, 3, "b"), ("c", 4, 5, "c")]) == "failed"
    assert run(p, [("c", 0, 1, "a"), ("c", 2, 3, "b")]) == "passed"


def test_repetition(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {repetition: {role: customer, times: 3}}"))
    rep = [("c", i * 3, i * 3 + 2, "我要退款我要退款") for i in range(3)]
    assert run(p, rep) == "failed"
    assert run(p, rep[:2]) == "passed"


def test_time_of_day_calendar_direction(make_pack: MakePack) -> None:
    p = make_pack(
        rule("forbid: {direction: outbound, time_of_day: ['22:00-24:00', '00:00-07:30']}")
    )
    late = datetime(2026, 3, 3, 23, 0)
    assert run(p, [("a", 0, 1, "您好")], direction="outbound", started_at=late) == "failed"
    assert run(p, [("a", 0, 1, "您好")], direction="inbound", started_at=late) == "passed"
    assert (
        run(p, [("a", 0, 1, "您好")], direction="outbound", started_at=datetime(2026, 3, 3, 10, 0))
        == "passed"
    )
    hdr = """\
name: t
version: "1"
settings:
  holidays: [{name: 元旦, date: 2026-01-01, greeting: [新年好]}]
"""
    body = "require: {holiday_greeting: {}}"
    p = make_pack(rule(body, "    when: {calendar: {holiday: true}}\n"), header=hdr)
    ny = datetime(2026, 1, 1, 9, 0)
    assert run(p, [("a", 0, 1, "新年好")], started_at=ny) == "passed"
    assert run(p, [("a", 0, 1, "您好")], started_at=ny) == "failed"
    assert run(p, [("a", 0, 1, "您好")], started_at=datetime(2026, 1, 2, 9, 0)) == "not_applicable"
    p = make_pack(rule("forbid: {calendar: {weekday: [sat, sun]}}"))
    assert run(p, [("a", 0, 1, "x")], started_at=datetime(2026, 3, 7, 9, 0)) == "failed"
    assert run(p, [("a", 0, 1, "x")], started_at=datetime(2026, 3, 9, 9, 0)) == "passed"


def test_count_and_share(make_pack: MakePack) -> None:
    p = make_pack(rule("require: {count: {of: {keyword: [谢谢]}, at_least: 2}}"))
    assert run(p, [("a", 0, 1, "谢谢"), ("a", 2, 3, "谢谢您")]) == "passed"
    assert run(p, [("a", 0, 1, "谢谢")]) == "failed"
    p = make_pack(rule("forbid: {share: {of: [你], among: [您], over: 0.5, min_total: 2}}"))
    assert run(p, [("a", 0, 1, "你好，你说")]) == "failed"
    assert run(p, [("a", 0, 1, "您好，您说，你说")]) == "passed"
    assert run(p, [("a", 0, 1, "你好")]) == "passed"  # below min_total


def test_hangup(make_pack: MakePack) -> None:
    p = make_pack(rule("forbid: {hangup: {first: agent}}"))
    assert run(p, [("a", 0, 1, "再见")], channel_ends=(10.0, 12.0), duration=12) == "failed"
    assert run(p, [("a", 0, 1, "再见")], channel_ends=(12.0, 10.0), duration=12) == "passed"


def test_all_any_not_across_utterances(make_pack: MakePack) -> None:
    body = "require: {all: [{exists: {keyword: [华冠]}}, {exists: {keyword: [工号]}}]}"
    p = make_pack(rule(body))
    assert run(p, [("a", 0, 1, "华冠客服"), ("a", 2, 3, "我的工号1001")]) == "passed"
    assert run(p, [("a", 0, 1, "华冠客服")]) == "failed"
    p = make_pack(rule("require: {all: [{keyword: [华冠]}, {keyword: [工号]}]}"))  # same utterance
    assert run(p, [("a", 0, 1, "华冠客服"), ("a", 2, 3, "我的工号1001")]) == "failed"
    assert run(p, [("a", 0, 1, "华冠客服工号1001")]) == "passed"
    p = make_pack(rule("require: {any: [{keyword: [甲]}, {response_gap: {over: 100}}]}"))
    assert run(p, [("a", 0, 1, "甲")]) == "passed"
    p = make_pack(rule("forbid: {not: {keyword: [再见]}}"))
    assert run(p, [("a", 0, 1, "好")]) == "failed"
    assert run(p, [("a", 0, 1, "再见")]) == "passed"


def test_stages_and_verdicts(make_pack: MakePack) -> None:
    rules = """\
rules:
  - id: R-T
    description: stages
    severity: minor
    weight: 1
    require:
      stages:
        stages:
          - {name: e, match: {keyword: [了解]}}
          - {name: o, match: {keyword: [建议]}}
    suggestion: 先了解再建议
  - id: R-C
    description: composite
    severity: minor
    weight: 1
    require: {verdicts: [R-T]}
"""
    p = make_pack(rules)
    card = score_transcript(p, transcript([("a", 0, 1, "我了解"), ("a", 2, 3, "我建议")]))
    assert verdict(card, "R-T") == verdict(card, "R-C") == "passed"
    card = score_transcript(p, transcript([("a", 0, 1, "我建议"), ("a", 2, 3, "我了解")]))
    assert verdict(card, "R-T") == verdict(card, "R-C") == "failed"
    f = [f for f in card.findings if f.rule_id == "R-T"][0]
    assert "顺序" in f.message and f.suggestion == "先了解再建议"
    assert "R-T" in [f for f in card.findings if f.rule_id == "R-C"][0].message
    # in order = a chain of occurrences, not first occurrences: an offer phrase before the
    # exploring (a greeting's 有什么我可以为您服务的) does not hide the offer after it
    card = score_transcript(
        p, transcript([("a", 0, 1, "我建议"), ("a", 2, 3, "我了解"), ("a", 4, 5, "我建议")])
    )
    assert verdict(card, "R-T") == "passed"
    card = score_transcript(p, transcript([("a", 0, 1, "我了解，我建议")]))  # one utterance
    assert verdict(card, "R-T") == "passed"
    card = score_transcript(p, transcript([("a", 0, 1, "我建议，我了解")]))  # one utterance:
    assert verdict(card, "R-T") == "passed"  # stages are utterances, not positions in one
