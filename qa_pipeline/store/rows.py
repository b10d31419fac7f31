"""The shape of the store's rows, backend-independent: a scorecard as a ``results`` row,
and the row tables derived from what the JSON columns hold (``verdicts``, ``findings``,
``utterances``, the call's filter columns).

The JSON columns stay the record the re-score reports read; the row tables are derived
from them by one function each (:func:`verdict_rows`, :func:`finding_rows`,
:func:`utterance_rows`, :func:`call_columns`), used both when a row is written and when
migration 0002 back-fills a store written before the row tables existed, so the two can
never disagree.
"""

from __future__ import annotations

import json
from typing import Any

from ..messages import Finding, Scorecard, Verdict
from ..retention import parse_time
from .keys import compact_json

RESULT_COLUMNS = (
    "run_id",
    "call_id",
    "transcript_key",
    "status",
    "error",
    "score",
    "grade",
    "failed",
    "failed_rules",
    "findings",
    "verdicts",
    "created_at",
)
"""The columns a result row (:func:`result_row`, :func:`error_row`) holds, in order; the
``results`` table also has ``complete`` and ``review`` (see :class:`ResultRow`)."""


class ResultRow(tuple[Any, ...]):
    """A ``results`` row in :data:`RESULT_COLUMNS` order that also knows what the JSON does
    not say: whether the scorecard was ``complete``, whether it needs ``review``, and each
    verdict's ``severity``. A plain tuple is accepted by :meth:`Store.put_results` too
    (complete when ``ok``; review when a verdict is uncertain; severity from the findings).
    Picklable (rows cross from scoring worker processes)."""

    complete: bool
    review: bool
    severity: dict[str, str]

    def __new__(
        cls,
        items: Any,
        complete: bool = True,
        review: bool = False,
        severity: dict[str, str] | None = None,
    ) -> ResultRow:
        self = super().__new__(cls, items)
        self.complete = complete
        self.review = review
        self.severity = severity or {}
        return self

    def __reduce__(self) -> Any:
        return (ResultRow, (tuple(self), self.complete, self.review, self.severity))


def finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "rule_id": f.rule_id,
        "severity": f.severity.value,
        "message": f.message,
        "weight": f.weight,
        "decided_at": round(f.decided_at, 3),
        "suggestion": f.suggestion,
        "evidence": [
            {
                "utterance_index": e.utterance_index,
                "role": e.role.value if e.role is not None else None,
                "start": round(e.start, 3),
                "end": round(e.end, 3),
                "text": e.text,
                "matched": e.matched,
            }
            for e in f.evidence
        ],
    }


def result_row(run_id: str, call_id: str, key: str, card: Scorecard, now: float) -> ResultRow:
    """A result row (``results`` in :data:`RESULT_COLUMNS` order) from a scorecard: written
    by ``rescore`` and by :meth:`Store.record_score`; the store owns the shape of its rows."""
    failed = Verdict.FAILED
    # rule id -> [verdict, deduction]; an uncertain one adds its pending deduction and why
    verdicts: dict[str, list[Any]] = {}
    for v in card.verdicts:
        if v.verdict is Verdict.UNCERTAIN:
            verdicts[v.rule_id] = [v.verdict.value, v.deduction, v.pending_deduction, v.detail]
        else:
            verdicts[v.rule_id] = [v.verdict.value, v.deduction]
    row = (
        run_id,
        call_id,
        key,
        "ok",
        None,
        round(card.score, 2),
        card.grade,
        int(card.failed),
        compact_json([v.rule_id for v in card.verdicts if v.verdict is failed]),
        compact_json([finding_dict(f) for f in card.findings]),
        compact_json(verdicts),
        now,
    )
    return ResultRow(
        row,
        complete=card.complete,
        review=card.review,
        severity={v.rule_id: v.severity.value for v in card.verdicts},
    )


def error_row(run_id: str, call_id: str, key: str, message: str, now: float) -> ResultRow:
    row = (run_id, call_id, key, "error", message, None, None, None, "[]", "[]", "{}", now)
    return ResultRow(row, complete=False, review=False)


def result_flags(row: tuple[Any, ...]) -> tuple[int, int]:
    """``(complete, review)`` as the ``results`` table holds them (1/0)."""
    if isinstance(row, ResultRow):
        return int(row.complete), int(row.review)
    if row[3] != "ok":
        return 0, 0
    verdicts = json.loads(row[10] or "{}")
    return 1, int(any(v and v[0] == "uncertain" for v in verdicts.values()))


def verdict_rows(row: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """``verdicts`` rows of a result row: ``(run_id, call_id, rule_id, verdict, severity,
    deduction, pending_deduction)``. Severity: the scorecard's when the row knows it, else
    the rule's findings' (a failed verdict), else NULL (rows back-filled from old JSON)."""
    run_id, call_id = row[0], row[1]
    verdicts: dict[str, list[Any]] = json.loads(row[10] or "{}")
    if not verdicts:
        return []
    severity = row.severity if isinstance(row, ResultRow) else {}
    if not severity:
        severity = {f["rule_id"]: f.get("severity") for f in json.loads(row[9] or "[]")}
    out = []
    for rule_id, v in verdicts.items():
        pending = float(v[2]) if len(v) > 2 and v[2] is not None else 0.0
        out.append(
            (run_id, call_id, rule_id, v[0], severity.get(rule_id), float(v[1] or 0.0), pending)
        )
    return out


def finding_rows(row: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """``findings`` rows of a result row, one per finding in its order (``seq``): ``(run_id,
    call_id, seq, rule_id, severity, message, utterance_index, start_s, end_s, matched)``,
    placed at the finding's first evidence (NULLs when it has none)."""
    out = []
    for seq, f in enumerate(json.loads(row[9] or "[]")):
        ev = (f.get("evidence") or [None])[0] or {}
        out.append(
            (
                row[0],
                row[1],
                seq,
                f["rule_id"],
                f.get("severity"),
                f.get("message") or "",
                ev.get("utterance_index"),
                ev.get("start"),
                ev.get("end"),
                ev.get("matched"),
            )
        )
    return out


def call_columns(call: dict[str, Any]) -> tuple[Any, ...]:
    """``(team, direction, started_epoch, duration_s)`` of a call object: the team from
    its metadata (``team``), the start as epoch seconds (a naive time is local, as
    retention reads it; NULL when unknown)."""
    meta = call.get("metadata") or {}
    team = meta.get("team") if isinstance(meta, dict) else None
    duration = call.get("duration")
    return (
        str(team) if team is not None else None,
        call.get("direction"),
        parse_time(call.get("started_at")),
        float(duration) if duration is not None else None,
    )


def utterance_rows(call_id: str, doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    """``utterances`` rows of a (redacted) transcript document: ``(call_id, idx, channel,
    role, start_s, end_s, text)``, the text as the document holds it (normalised)."""
    out = []
    for pos, u in enumerate(doc.get("utterances") or ()):
        out.append(
            (
                call_id,
                int(u.get("index", pos)),
                u.get("channel"),
                u.get("role"),
                u.get("start"),
                u.get("end"),
                u.get("text") or "",
            )
        )
    return out


def merge_call(doc_text: str, call_text: str | None) -> dict[str, Any]:
    """A cached document with the call's current metadata (duration kept from the doc)."""
    doc: dict[str, Any] = json.loads(doc_text)
    if call_text:
        call = json.loads(call_text)
        if "duration" in doc["call"]:
            call["duration"] = doc["call"]["duration"]
        doc["call"] = call
    return doc


def merge_doc(doc_text: str, call_text: str | None) -> dict[str, Any]:
    # Fast path: the document was stored with this very call object (the usual case).
    if call_text:
        i = doc_text.find('"call":')
        if i >= 0 and doc_text.startswith(call_text, i + 7):
            out: dict[str, Any] = json.loads(doc_text)
            return out
    return merge_call(doc_text, call_text)
