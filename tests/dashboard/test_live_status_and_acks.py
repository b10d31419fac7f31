"""A call in progress (no score until its scorecard) and each finding shown once."""

from __future__ import annotations

from typing import Any

from generated_calls import call_events

from qa_pipeline.dashboard import DashboardState
from qa_pipeline.messages import Scorecard
from qa_pipeline.sinks.base import EventFactory, EventKind

CID = "call-north-7"


# -- live and ended ------------------------------------------------------------------------------


def test_a_live_call_has_no_score_or_grade_until_its_scorecard() -> None:
    state = DashboardState()
    sub, _ = state.subscribe(full=True)
    events = call_events("stonewalling", CID)
    card_at = next(i for i, e in enumerate(events) if e.kind is EventKind.SCORECARD)
    state.apply_all(events[:card_at])
    call = state.snapshot()["calls"][0]
    assert call["status"] == "live" and call["final"] is False
    assert call["score"] is None and call["grade"] is None and call["grade_en"] is None
    assert call["failed"] is None  # failing is the scorecard's verdict
    assert call["findings"] == 9 and call["critical"] == 2  # findings so far, counted
    assert call["provisional_deduction"] == 41.0
    detail = state.detail(CID)
    assert detail is not None and detail["call"]["status"] == "live"
    pushed = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
    assert pushed and all(m["call"]["status"] == "live" for m in pushed)
    assert all(m["call"]["score"] is None for m in pushed)
    state.apply_all(events[card_at:])
    call = state.snapshot()["calls"][0]
    assert call["status"] == "ended" and call["final"] is True
    assert (call["score"], call["grade"], call["failed"]) == (59.0, "不满意", True)
    assert call["provisional_deduction"] is None
    last = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())][-1]
    assert last["call"]["status"] == "ended" and last["call"]["score"] == 59.0


def test_a_call_scored_on_part_of_it_is_incomplete() -> None:
    state = DashboardState()
    card = Scorecard("cut-1", 20.0, "不满意", True, complete=False, incomplete_reasons=("asr",))
    state.apply(EventFactory("cut-1").scorecard(card))
    call = state.snapshot()["calls"][0]
    assert call["status"] == "incomplete" and call["final"] and call["score"] == 20.0


def test_each_finding_is_placed_once() -> None:
    """A missing phrase's evidence is every agent turn searched: the finding is one card (its
    turns inside), not one under each turn; a phrase said is shown at its utterance."""
    state = DashboardState()
    state.apply_all(call_events("stonewalling", CID))
    detail = state.detail(CID)
    assert detail is not None
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for f in detail["findings"]:
        by_rule.setdefault(f["rule_id"], []).append(f)
    (name,) = by_rule["OPEN-NAME"]  # the greeting never asked the customer's name
    assert name["placement"] == "call" and name["utterance_indexes"] == [0, 2, 4]
    assert [e["utterance_index"] for e in name["evidence"]] == [0, 2, 4]
    assert all(f["placement"] == "utterance" for f in by_rule["BAN-POLICY"])
    assert [f["utterance_indexes"] for f in by_rule["BAN-POLICY"]] == [[2], [4]]
    (solution,) = by_rule["SOLUTION"]  # the whole call: no utterance
    assert solution["placement"] == "call" and solution["utterance_indexes"] == []
