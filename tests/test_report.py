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
