"""A call's review as JSON-able data: what ``qa-pipeline review show --json`` prints and
the dashboard's review page reads."""

from __future__ import annotations

import datetime as dt
from typing import Any

from . import repo
from .model import VerdictState

__all__ = ["call_view", "item_json", "version_json", "when"]


def when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def verdicts_json(v: dict[str, VerdictState]) -> dict[str, Any]:
    return {k: {"verdict": s.verdict.value, "deduction": s.deduction} for k, s in v.items()}


def version_json(v: repo.Version) -> dict[str, Any]:
    return {
        "version": v.version,
        "kind": v.kind,
        "by": v.actor,
        "at": when(v.recorded_at),
        "why": v.why,
        "run_id": v.run_id,
        "pack": f"{v.pack_name} {v.pack_version}",
        "score": v.score,
        "grade": v.grade,
        "failed": v.failed,
        "decisions": [
            {
                "rule_id": d.rule_id,
                "action": d.action.value,
                "before": d.verdict_before.value,
                "after": d.verdict_after.value,
                "comment": d.comment,
            }
            for d in v.decisions
        ],
    }


def item_json(i: repo.QueueItem) -> dict[str, Any]:
    return {
        "call_id": i.call_id,
        "run_id": i.run_id,
        "state": i.state.value,
        "reasons": [r.value for r in i.reasons],
        "pending_rules": list(i.pending_rules),
        "machine_score": i.machine_score,
        "assignee": i.assignee,
        "entered_at": when(i.entered_at),
    }


def call_view(db: repo.Db, call_id: str) -> dict[str, Any]:
    """Everything a reviewer opens: the machine result (score, findings with evidence),
    each verdict as the machine gave it and as it stands now, the latest version, the queue
    item, and the redacted transcript. Raises ``ReviewError`` for a call with no scored
    result."""
    m, now, _ = repo.current_verdicts(db, call_id)
    t = repo.transcript(db, call_id)
    item = repo.queue_item(db, call_id)
    versions = repo.history(db, call_id)
    return {
        "call_id": call_id,
        "run_id": m.run_id,
        "pack": f"{m.pack_name} {m.pack_version}",
        "machine": {"score": m.score, "grade": m.grade, "failed": m.failed},
        "reviewed": version_json(versions[-1]) if versions else None,
        "queue": item_json(item) if item else None,
        "verdicts": {
            rid: {
                "machine": m.verdicts[rid].verdict.value,
                "now": v.verdict.value,
                "deduction": v.deduction,
            }
            for rid, v in now.items()
            if rid in m.verdicts
        },
        "findings": m.findings,
        "transcript": [
            {"index": u.index, "role": u.role.value, "start": u.start, "end": u.end, "text": u.text}
            for u in (t.utterances if t else ())
        ],
    }
