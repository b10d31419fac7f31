"""The JSON document and the terminal tables show uncertain verdicts apart from failures."""

from __future__ import annotations

import json

from rich.console import Console

from qa_pipeline.messages import CallEnded, CallInfo, Role, Utterance
from qa_pipeline.pipeline import AsrStats, CallResult
from qa_pipeline.report import print_scorecard, result_document
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.transcript import Transcript


def _result() -> CallResult:
    def u(i: int, s: float, text: str, conf: float) -> Utterance:
        return Utterance("c", i, 0, Role.AGENT, s, s + 2, text, text, conf)

    t = Transcript(
        call=CallInfo(call_id="c"),
        utterances=(
            u(0, 1.0, "您好，华夏客服，我是工号1023，请问有什么可以帮您？", 0.8),
            u(1, 4.0, "这是公司规定", 0.3),  # a critical banned phrase, heard badly
            u(2, 7.0, "感谢您的来电，再见", 0.8),
        ),
        ended=CallEnded(call_id="c", end=10.0),
    )
    card = score_transcript(load_pack(), t)
    return CallResult(t, AsrStats(10.0, 6.0, 1.0, 1.0, 3), card)


def test_json_document_has_uncertain_verdicts_and_review() -> None:
    doc = json.loads(json.dumps(result_document(_result()), ensure_ascii=False))
    assert doc["schema_version"] == "1.0"
    assert doc["score"]["review"] is True and doc["score"]["failed"] is False
    ban = next(v for v in doc["verdicts"] if v["rule_id"] == "BAN-POLICY")
    assert ban["verdict"] == "uncertain" and ban["deduction"] == 0
    assert ban["pending_deduction"] == 20 and "0.30" in ban["detail"]
    assert ban["evidence"][0]["utterance_index"] == 1
    assert all(f["rule_id"] != "BAN-POLICY" for f in doc["findings"])
    passed = next(v for v in doc["verdicts"] if v["rule_id"] == "OPEN-GREET")
    assert passed["verdict"] == "passed" and passed["pending_deduction"] == 0


def test_table_shows_uncertain_apart() -> None:
    card = _result().scorecard
    assert card is not None
    console = Console(record=True, width=160)
    print_scorecard(console, card)
    text = console.export_text()
    line = next(x for x in text.splitlines() if "BAN-POLICY" in x)
    assert "uncertain" in line and "(-20)" in line
    unsure = [v for v in card.verdicts if v.verdict == "uncertain"]
    pending = sum(v.pending_deduction for v in unsure)
    assert f"REVIEW: {len(unsure)} uncertain verdict(s), up to -{pending:g} pending" in text
    score_line = next(x for x in text.splitlines() if x.startswith("Score"))
    assert score_line.rstrip().endswith("passed")  # a critical rule uncertain: not failed


def test_json_scorecard_has_the_call_measures() -> None:
    """``score --json`` carries what configs/rules/README.md promises in ``extras``:
    response gaps, silence, talk-over, the agent's pace and level; and completeness."""

    def u(i: int, role: Role, s: float, e: float, text: str) -> Utterance:
        ch = 0 if role == Role.AGENT else 1
        return Utterance("m", i, ch, role, s, e, text, text, 0.9, level_dbfs=-20.0)

    t = Transcript(
        call=CallInfo(call_id="m"),
        utterances=(
            u(0, Role.AGENT, 0.5, 4.5, "您好，华夏客服，我是工号1023，请问有什么可以帮您？"),
            u(1, Role.CUSTOMER, 5.0, 8.0, "我的快递三天了还没到"),
            u(2, Role.AGENT, 11.0, 14.0, "好的，我帮您查一下这个快递"),  # 3 s after the customer
            u(3, Role.CUSTOMER, 14.5, 17.0, "单号是一二三四五"),
            u(4, Role.AGENT, 16.0, 20.0, "感谢您的来电，再见"),  # 1 s inside the customer
        ),
        ended=CallEnded(call_id="m", end=21.0),
    )
    card = score_transcript(load_pack(), t)
    doc = json.loads(json.dumps(result_document(CallResult(t, AsrStats(21, 15, 1, 1, 5), card))))
    score = doc["score"]
    assert score["complete"] is True and score["incomplete_reasons"] == []
    assert score["duration"] == 21.0
    x = score["extras"]
    assert x["agent_utterances"] == 3 and x["customer_utterances"] == 2
    assert x["response_gap_max"] == 3.0  # customer ends 8.0, agent starts 11.0
    assert x["silence_max"] == 3.0 and x["silence_total"] >= 3.0  # 8-11 nobody speaks
    assert x["talk_over_count"] == 1  # the agent starts inside the customer's turn
    assert x["agent_level_dbfs"] == -20.0
    # pace: the agent's characters (punctuation aside) per minute of the agent's 11 s
    chars = sum(c.isalnum() for v in t.utterances if v.role == Role.AGENT for c in v.text)
    assert x["agent_chars_per_minute"] == round(chars / 11.0 * 60, 1)
