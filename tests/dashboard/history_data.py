"""A store filled as ``score --store`` fills it (``put_transcript`` + ``record_score``), for
the history tests: five generated calls over two weeks, two teams, one call without a team,
an incomplete call, an uncertain verdict, a reviewed call and a candidate run."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

from generated_calls import generated_call

from qa_pipeline.messages import Direction, Verdict, replace
from qa_pipeline.rules import load_pack
from qa_pipeline.store import Store
from qa_pipeline.store.rows import result_row

SETTINGS = "0" * 16


def _at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


#: call id -> (scenario, agent, team, start, direction)
CALLS: dict[str, tuple[str, str, str | None, datetime, Direction]] = {
    "h-1": ("perfect", "A1", "north", _at(20, 9), Direction.INBOUND),
    "h-2": ("stonewalling", "A1", "north", _at(21, 9), Direction.INBOUND),
    "h-3": ("missing_greeting", "B1", "east", _at(21, 10), Direction.OUTBOUND),
    "h-4": ("perfect", "B1", "east", _at(27, 9), Direction.INBOUND),  # incomplete
    "h-5": ("stonewalling", "C1", None, _at(28, 9), Direction.INBOUND),  # + an uncertain verdict
}
NEWEST_FIRST = ["h-5", "h-4", "h-3", "h-2", "h-1"]
UNCERTAIN_RULE = "OPEN-GREET"  # made uncertain on h-5 (it passed there)
REVIEWED = ("h-2", 95.0)  # a reviewer's score of h-2


def fill_store(url: str) -> dict[str, Any]:
    """Fill the store; returns what the tests expect: each call's machine score and failed
    rules, and the rule ids."""
    pack = load_pack()
    out: dict[str, Any] = {"score": {}, "failed": {}}
    with Store(url) as store:
        for n, (cid, (scenario, agent, team, start, direction)) in enumerate(CALLS.items()):
            meta = (("team", team),) if team else ()
            transcript, card = generated_call(scenario, cid, agent_id=agent, metadata=meta)
            call = replace(transcript.call, started_at=start, direction=direction)
            transcript = dataclasses.replace(transcript, call=call)
            if cid == "h-4":
                card = replace(card, complete=False, incomplete_reasons=("shutdown",))
            if cid == "h-5":
                verdicts = tuple(
                    replace(v, verdict=Verdict.UNCERTAIN, pending_deduction=5.0)
                    if v.rule_id == UNCERTAIN_RULE
                    else v
                    for v in card.verdicts
                )
                assert any(v.verdict is Verdict.UNCERTAIN for v in verdicts), "rule id changed?"
                card = replace(card, verdicts=verdicts, review=True)
            sha = f"{n + 1:064x}"
            store.put_transcript(transcript, audio_sha=sha, settings_hash_=SETTINGS)
            store.record_score(transcript, card, pack, key=f"{sha}:{SETTINGS}")
            out["score"][cid] = round(card.score, 2)
            out["failed"][cid] = sorted(
                v.rule_id for v in card.verdicts if v.verdict is Verdict.FAILED
            )
            if cid == "h-1":  # a candidate pack's re-score: never the current score
                bad = replace(card, score=10.0, grade="D")
                store.start_run(
                    "rescore:new",
                    pack_name=pack.name,
                    pack_version="9.9",
                    role="new",
                    inputs="",
                    args={},
                    fresh=True,
                )
                store.put_results(
                    [result_row("rescore:new", cid, f"{sha}:{SETTINGS}", bad, time.time() + 60)]
                )
        # a reviewer's score of h-2 (the review work's tables, migration 0200)
        cid, score = REVIEWED
        run = store.execute("SELECT run_id FROM results WHERE call_id = ?", (cid,)).fetchone()[0]
        now = time.time()
        store.execute(
            "INSERT INTO call_reviews (call_id, run_id, version, score, grade, failed, reviewer, "
            "reviewed_at) VALUES (?, ?, 1, ?, 'A', 0, 'qa', ?)",
            (cid, run, score, now),
        )
        store.execute(
            "INSERT INTO review_versions (call_id, version, run_id, kind, actor, recorded_at, "
            "why, pack_name, pack_version, verdicts_before, verdicts_after, score, grade, "
            "failed) VALUES (?, 1, ?, 'review', 'qa', ?, '复核', ?, ?, '{}', '{}', ?, 'A', 0)",
            (cid, run, now, pack.name, pack.version, score),
        )
        store.commit()
    return out
