"""A rescore run's summary (:class:`RescoreSummary`, what ``rescore`` returns and the CLI
prints) and what the outputs add up from result rows: the report's aggregates, each
rule's description, the rules a call was uncertain on.

Its own module so that the run (:mod:`.run`), the files it writes (:mod:`.outputs`) and the
HTML report (:mod:`.html`) all read it without importing one another in a circle.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..rules import RulePack


@dataclass
class CallError:
    call_id: str
    source: str
    message: str


@dataclass
class RescoreSummary:
    run_id: str
    baseline_run_id: str | None
    pack: str
    baseline_pack: str | None
    calls: int = 0
    scored: int = 0
    resumed: int = 0  # calls with every result already committed (nothing to do)
    reused: int = 0  # (call, pack) results already committed and kept
    transcribed: int = 0
    cached: int = 0
    imported: int = 0
    errors: list[CallError] = field(default_factory=list)
    workers: int = 1
    asr_seconds: float = 0.0
    audio_seconds: float = 0.0
    score_seconds: float = 0.0
    seconds: float = 0.0
    outputs: dict[str, Path] = field(default_factory=dict)
    diff: dict[str, Any] = field(default_factory=dict)
    kafka: dict[str, int] = field(default_factory=dict)
    #: the decoder bias version the pack and config give now, and the calls whose stored
    #: transcript was decoded with another one (asr.bias): kept, not re-transcribed
    bias_version: str | None = None
    stale_bias: list[str] = field(default_factory=list)
    #: the same for the verification decode's phrase lists (asr.verify, qa_pipeline/verify.py)
    verify_version: str | None = None
    stale_verify: list[str] = field(default_factory=list)
    #: the command that makes the run count (``qa-pipeline store promote ...``), or None
    #: and why it would be refused (error results: unreadable recordings)
    promote: str | None = None
    promote_refused: str | None = None


def uncertain_rules(r: dict[str, Any]) -> list[str]:
    """The rules of a result row whose verdict is ``uncertain`` (the call needs review)."""
    text = r.get("verdicts") or ""
    if '"uncertain"' not in text:
        return []
    return [rid for rid, v in json.loads(text).items() if v and v[0] == "uncertain"]


def rule_info(pack: RulePack) -> dict[str, dict[str, Any]]:
    return {
        r.spec.id: {
            "description": r.spec.description,
            "severity": r.spec.severity.value,
            "weight": r.spec.weight,
            "window": scope_window(r.spec.scope.role, r.spec.scope),
        }
        for r in pack.rules
    }


def scope_window(role: str, scope: Any) -> str | None:
    """A rule scope's window in words (``the agent's last 30 s of the call``), None for the
    whole call: the report says which turns a window rule's evidence is."""
    who = {"agent": "the agent's", "customer": "the customer's"}.get(role, "all")
    for attr, what in (
        ("last_seconds", "last {} s of the call"),
        ("last_turns", "last {} turns"),
        ("first_seconds", "first {} s of the call"),
        ("first_turns", "first {} turns"),
    ):
        v = getattr(scope, attr, None)
        if v is not None:
            return f"{who} {what.format(f'{v:g}')}"
    return None


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the report's charts show."""
    ok = [r for r in rows if r["status"] == "ok"]
    bins = [0] * 10
    grades: Counter[str] = Counter()
    by_rule: Counter[str] = Counter()
    unsure_by_rule: Counter[str] = Counter()
    review = 0
    agents: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "calls": 0,
            "score_sum": 0.0,
            "failed": 0,
            "review": 0,
            "violations": 0,
            "rules": Counter(),
        }
    )
    days: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"calls": 0, "score_sum": 0.0, "violations": 0, "failed": 0}
    )
    for r in ok:
        score = float(r["score"])
        bins[min(int(score // 10), 9)] += 1
        grades[r["grade"]] += 1
        fr = json.loads(r["failed_rules"] or "[]")
        by_rule.update(fr)
        unsure = uncertain_rules(r)
        unsure_by_rule.update(unsure)
        review += int(bool(unsure))
        a = agents[r.get("agent_id") or "(unknown)"]
        a["calls"] += 1
        a["score_sum"] += score
        a["failed"] += int(bool(r["failed"]))
        a["review"] += int(bool(unsure))
        a["violations"] += len(fr)
        a["rules"].update(fr)
        day = (r.get("started_at") or "")[:10] or "(unknown)"
        d = days[day]
        d["calls"] += 1
        d["score_sum"] += score
        d["violations"] += len(fr)
        d["failed"] += int(bool(r["failed"]))
    return {
        "ok": len(ok),
        "errors": [r for r in rows if r["status"] != "ok"],
        "bins": bins,
        "grades": grades,
        "by_rule": by_rule,
        "uncertain_by_rule": unsure_by_rule,
        "review": review,
        "agents": dict(agents),
        "days": dict(sorted(days.items())),
        "mean": sum(float(r["score"]) for r in ok) / len(ok) if ok else 0.0,
        "failed": sum(1 for r in ok if r["failed"]),
    }
