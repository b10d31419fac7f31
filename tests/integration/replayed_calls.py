"""The test calls the replay sends to Kafka (tests/sinks/data/calls) and the events it sends
for them: ids are deterministic (each document is one session, see
``replay.document_session_id``), so tests can compare what a consumer reads with these."""

from __future__ import annotations

import json
from pathlib import Path

from qa_pipeline.replay import with_document_session
from qa_pipeline.sinks import Event, events_for_call
from qa_pipeline.sinks.codec import finding_from_dict, scorecard_from_dict
from qa_pipeline.transcript import transcript_from_dict

CALLS_DIR = Path(__file__).resolve().parents[1] / "sinks" / "data" / "calls"


def replayed_events() -> list[Event]:
    """Every event of every test call, in the order the replay emits them."""
    out: list[Event] = []
    for path in sorted(CALLS_DIR.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        t = with_document_session(doc, transcript_from_dict(doc))
        findings = [finding_from_dict(f, t.call.call_id) for f in doc["findings"]]
        out += events_for_call(t, findings, scorecard_from_dict(doc["scorecard"], t.call.call_id))
    return out
