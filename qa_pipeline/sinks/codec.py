"""Read findings and scorecards back from their ``to_dict`` form (event payloads, JSON).

The inverse of ``messages.to_dict`` for the messages sinks carry, so stored or embedded
results (a ``score --json`` document, test data) can be replayed through the sinks.
"""

from __future__ import annotations

from typing import Any

from ..messages import Evidence, Finding, Role, RuleVerdict, Scorecard, Severity, Verdict


def evidence_from_dict(d: dict[str, Any]) -> Evidence:
    role = d.get("role")
    idx = d.get("utterance_index")
    return Evidence(
        start=float(d.get("start", 0.0)),
        end=float(d.get("end", 0.0)),
        utterance_index=int(idx) if idx is not None else None,
        role=Role(role) if role else None,
        text=str(d.get("text", "")),
        matched=str(d.get("matched", "")),
    )


def finding_from_dict(d: dict[str, Any], call_id: str | None = None) -> Finding:
    return Finding(
        call_id=str(d.get("call_id") or call_id or ""),
        rule_id=str(d["rule_id"]),
        severity=Severity(d["severity"]),
        message=str(d.get("message", "")),
        evidence=tuple(evidence_from_dict(e) for e in d.get("evidence") or ()),
        decided_at=float(d.get("decided_at", 0.0)),
        weight=float(d.get("weight", 0.0)),
        suggestion=d.get("suggestion"),
    )


def verdict_from_dict(d: dict[str, Any]) -> RuleVerdict:
    return RuleVerdict(
        rule_id=str(d["rule_id"]),
        verdict=Verdict(d["verdict"]),
        severity=Severity(d["severity"]),
        weight=float(d.get("weight", 0.0)),
        description=str(d.get("description", "")),
        deduction=float(d.get("deduction", 0.0)),
        detail=str(d.get("detail", "")),
        pending_deduction=float(d.get("pending_deduction", 0.0)),
        evidence=tuple(evidence_from_dict(e) for e in d.get("evidence") or ()),
    )


def scorecard_from_dict(d: dict[str, Any], call_id: str | None = None) -> Scorecard:
    cid = str(d.get("call_id") or call_id or "")
    return Scorecard(
        call_id=cid,
        score=float(d["score"]),
        grade=str(d.get("grade", "")),
        failed=bool(d.get("failed", False)),
        verdicts=tuple(verdict_from_dict(v) for v in d.get("verdicts") or ()),
        findings=tuple(finding_from_dict(f, cid) for f in d.get("findings") or ()),
        rule_pack=str(d.get("rule_pack", "")),
        rule_pack_version=str(d.get("rule_pack_version", "")),
        duration=float(d.get("duration", 0.0)),
        extras=tuple((str(k), float(v)) for k, v in d.get("extras") or ()),
        review=bool(d.get("review", False)),
        complete=bool(d.get("complete", True)),
        incomplete_reasons=tuple(str(r) for r in d.get("incomplete_reasons") or ()),
    )
