"""The replay runnable and the sinks config, without any server (the embedded default)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa_pipeline.replay import main
from qa_pipeline.sinks import JsonlSink, SinksConfig, build_sinks

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


def test_replaying_a_document_again_is_the_same_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stored document replayed twice gives the same event ids (it is one session); the
    same call id in a different document is another session with new ids."""
    src = json.loads((CALLS / "call-002.json").read_text(encoding="utf-8"))
    other = json.loads(json.dumps(src))
    other["utterances"] = other["utterances"][:-1]  # another call that reused the id
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.json").write_text(json.dumps(src), encoding="utf-8")
    (docs / "b.json").write_text(json.dumps(other), encoding="utf-8")

    def ids(path: Path) -> list[dict[str, str]]:
        capsys.readouterr()
        jsonl = str(tmp_path / "events")
        assert (
            main(["--transcripts", str(path), "--jsonl", jsonl, "--stdout", "--repeat", "2"]) == 0
        )
        return [json.loads(x) for x in capsys.readouterr().out.splitlines()]

    a = ids(docs / "a.json")
    half = len(a) // 2
    assert [e["event_id"] for e in a[:half]] == [e["event_id"] for e in a[half:]]
    assert len({e["session_id"] for e in a}) == 1
    assert [e["event_id"] for e in ids(docs / "a.json")] == [e["event_id"] for e in a]
    b = ids(docs / "b.json")
    assert {e["call_id"] for e in b} == {e["call_id"] for e in a}
    assert not {e["event_id"] for e in a} & {e["event_id"] for e in b}
    src["call"]["session_id"] = "s" * 32  # a document that carries its session keeps it
    (docs / "a.json").write_text(json.dumps(src), encoding="utf-8")
    assert {e["session_id"] for e in ids(docs / "a.json")} == {"s" * 32}
