"""Generated calls for the dashboard and notifier tests: a scenario of the sample-call
generator laid out on the call clock (text as written, ~0.22 s per character), scored by the
real rule engine, turned into the live-order events a pipeline emits."""

from __future__ import annotations

from datetime import datetime

from qa_pipeline.messages import CallEnded, CallInfo, Direction, Role, Scorecard, Utterance
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.samples.generate import layout, load_scenarios
from qa_pipeline.sinks.base import Event, events_for_call
from qa_pipeline.transcript import Transcript

SECONDS_PER_CHAR = 0.22


def generated_call(
    scenario_id: str,
    call_id: str | None = None,
    *,
    agent_id: str | None = None,
    metadata: tuple[tuple[str, str], ...] = (),
) -> tuple[Transcript, Scorecard]:
    """The scenario's call (its agent id unless ``agent_id`` is given; ``metadata`` for its
    CallInfo), scored."""
    sc = next(s for s in load_scenarios() if s.id == scenario_id)
    placed = layout(sc, [max(0.6, len(t.text) * SECONDS_PER_CHAR) for t in sc.turns])
    cid = call_id or sc.id
    call = CallInfo(
        call_id=cid,
        started_at=datetime.fromisoformat(sc.call["started_at"]),
        direction=Direction(sc.call.get("direction", "inbound")),
        agent_id=agent_id or sc.call.get("agent_id"),
        source=f"generated:{sc.id}",
        metadata=metadata,
    )
    utts = tuple(
        Utterance(
            call_id=cid,
            index=i,
            channel=p.channel,
            role=Role(p.turn.role),
            start=round(p.start, 3),
            end=round(p.end, 3),
            text=p.turn.text,
            raw_text=p.turn.text,
            confidence=0.9,
            language="zh",
        )
        for i, p in enumerate(placed)
    )
    end = max(u.end for u in utts) + sc.tail
    transcript = Transcript(call, utts, CallEnded(cid, end, (end, end)))
    return transcript, score_transcript(load_pack(), transcript)


def call_events(
    scenario_id: str,
    call_id: str | None = None,
    *,
    agent_id: str | None = None,
    metadata: tuple[tuple[str, str], ...] = (),
) -> list[Event]:
    transcript, card = generated_call(scenario_id, call_id, agent_id=agent_id, metadata=metadata)
    return events_for_call(transcript, card.findings, card)
