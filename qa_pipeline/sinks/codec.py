"""Read findings and scorecards back from their ``to_dict`` form (event payloads, JSON).

The inverse of ``messages.to_dict`` for the messages sinks carry, so stored or embedded
results (a ``score --json`` document, test data) can be replayed through the sinks. The
fields come from the message types (``messages.from_dict``); only the document's own rules
are written here: a finding embedded in a scorecard or document may leave out its call id.
"""

from __future__ import annotations

from typing import Any

from ..messages import Evidence, Finding, RuleVerdict, Scorecard, from_dict


def evidence_from_dict(d: dict[str, Any]) -> Evidence:
    return from_dict(d, Evidence)


def _with_call_id(d: dict[str, Any], call_id: str | None) -> dict[str, Any]:
    return d if d.get("call_id") else {**d, "call_id": call_id or ""}


def finding_from_dict(d: dict[str, Any], call_id: str | None = None) -> Finding:
    return from_dict(_with_call_id(d, call_id), Finding)


def verdict_from_dict(d: dict[str, Any]) -> RuleVerdict:
    return from_dict(d, RuleVerdict)


def scorecard_from_dict(d: dict[str, Any], call_id: str | None = None) -> Scorecard:
    d = _with_call_id(d, call_id)
    findings = d.get("findings")
    if findings and any(not f.get("call_id") for f in findings):
        d = {**d, "findings": [_with_call_id(f, d["call_id"]) for f in findings]}
    return from_dict(d, Scorecard)
