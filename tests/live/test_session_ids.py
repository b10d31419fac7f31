"""A live call's events carry the session id minted when the call starts: the same call
id on the line again (a reused AudioSocket UUID) is a new session with new event ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from qa_pipeline.asr.engine import AsrResult
from qa_pipeline.config import VadConfig
from qa_pipeline.live.metrics import LiveMetrics
from qa_pipeline.live.session import CallSession
from qa_pipeline.messages import CallInfo, Role, SpeechSegment
from qa_pipeline.rules import load_pack


def _run_call(pack_file: Path, call_id: str) -> tuple[CallSession, list[Any]]:
    events: list[Any] = []
    s = CallSession(
        CallInfo(call_id),
        8000,
        vad=VadConfig(),
        pack=load_pack(str(pack_file)),
        emit=events.append,
        metrics=LiveMetrics(CollectorRegistry()),
        source="test",
    )
    segs = [
        SpeechSegment(call_id, 0, Role.AGENT, t, t + 1, np.zeros(16000, np.float32))
        for t in (0.0, 2.0)
    ]
    for j in s._jobs(segs):
        s.resolve(j, AsrResult(j.segment, f"第{j.seq}句", "", 1.0, 0.0, "zh", 1, 0.0), None)
    s.end()
    return s, events


def test_a_reused_call_id_is_a_new_session(tmp_path: Path) -> None:
    pack_file = tmp_path / "p.yaml"
    pack_file.write_text(
        'name: t\nversion: "1"\nrules:\n  - {id: T-ANY, description: x, severity: minor, '
        "weight: 1, forbid: {regex: '.'}, max_findings: 100}\n",
        encoding="utf-8",
    )
    s1, first = _run_call(pack_file, "same-uuid")
    s2, second = _run_call(pack_file, "same-uuid")
    assert len(first) == len(second) > 3  # utterances, findings, scorecard
    assert s1.call.session_id and s2.call.session_id != s1.call.session_id
    assert {e.session_id for e in first} == {s1.call.session_id}
    assert {e.session_id for e in second} == {s2.call.session_id}
    assert [e.seq for e in first] == [e.seq for e in second]
    assert not {e.event_id for e in first} & {e.event_id for e in second}
