"""The replay runnable and the sinks config, without any server (the embedded default)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa_pipeline.sinks import JsonlSink, SinksConfig, build_sinks
from qa_pipeline.sinks.replay import main

CALLS = Path(__file__).parent / "data" / "calls"


def test_default_sinks_are_jsonl_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fan = build_sinks(SinksConfig.from_mapping(None))
    assert [(name, type(s)) for name, s in fan.sinks] == [("jsonl", JsonlSink)]
    fan.close()
    with pytest.raises(ValueError):
        SinksConfig.from_mapping({"kafak": {}})


def test_replay_writes_jsonl_and_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "events"
    rc = main(["--transcripts", str(CALLS), "--jsonl", str(out), "--stdout", "--metrics-port", "0"])
    assert rc == 0
    captured = capsys.readouterr()
    status = [
        json.loads(line.split(" ", 1)[1])
        for line in captured.err.splitlines()
        if line.startswith("replay-status ")
    ]
    assert status[0]["status"] == "ready" and status[0]["metrics_port"] > 0
    assert status[-1] == {"status": "done", "events": 40, "spooled": 0}
    printed = [json.loads(x) for x in captured.out.splitlines()]
    assert len(printed) == 40
    written = sum(len(p.read_text().splitlines()) for p in out.glob("*.jsonl"))
    assert written == 40
    alerts = [e for e in printed if e["kind"] == "alert"]
    assert {a["call_id"] for a in alerts} == {"call-001", "call-003"}
