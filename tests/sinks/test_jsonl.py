from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qa_pipeline.sinks import EventKind, JsonlSink, JsonlSinkConfig, events_for_call


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


LoadCall = Callable[[str], Any]


def test_per_kind_files(tmp_path: Path, call_data: LoadCall) -> None:
    t, findings, sc = call_data("call-001")
    events = events_for_call(t, findings, sc)
    sink = JsonlSink(JsonlSinkConfig(directory=str(tmp_path)))
    for e in events:
        sink.emit(e)
    sink.flush()
    sink.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"{k.value}.jsonl" for k in EventKind)
    alerts = _read(tmp_path / "alert.jsonl")
    assert [a["payload"]["rule_id"] for a in alerts] == ["BAN-POLICY"]
    utts = _read(tmp_path / "utterance.jsonl")
    assert [u["seq"] for u in utts] == sorted(u["seq"] for u in utts)
    assert sum(len(_read(p)) for p in tmp_path.iterdir()) == len(events)
    with pytest.raises(RuntimeError):
        sink.emit(events[0])


def test_single_file_stdout_and_kind_filter(tmp_path: Path, call_data: LoadCall) -> None:
    t, findings, sc = call_data("call-003")
    events = events_for_call(t, findings, sc)
    out = io.StringIO()
    cfg = JsonlSinkConfig(
        directory=str(tmp_path),
        layout="single",
        stdout=True,
        kinds=(EventKind.FINDING, EventKind.ALERT, EventKind.SCORECARD),
    )
    sink = JsonlSink(cfg, stdout=out)
    for e in events:
        sink.emit(e)
    sink.close()
    lines = _read(tmp_path / "events.jsonl")
    assert [x["kind"] for x in lines] == ["finding", "alert", "finding", "scorecard"]
    assert out.getvalue().splitlines() == (tmp_path / "events.jsonl").read_text().splitlines()


def test_stdout_only(call_data: LoadCall) -> None:
    t, findings, sc = call_data("call-002")
    out = io.StringIO()
    sink = JsonlSink(JsonlSinkConfig(directory=None, stdout=True), stdout=out)
    for e in events_for_call(t, findings, sc):
        sink.emit(e)
    sink.close()
    assert len(out.getvalue().splitlines()) == len(events_for_call(t, findings, sc))


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError):
        JsonlSinkConfig.model_validate({"directory": "x", "fsync": True})
