"""On real speech, with the Whisper model: ASR once, then rules only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from qa_pipeline.rescore import RescoreOptions, rescore
from qa_pipeline.store import Store, settings_hash, transcript_settings

from .conftest import CALLS

pytestmark = pytest.mark.slow


def test_settings_hash_matches_the_loaded_engine(pipeline: Any) -> None:
    cfg = pipeline.config
    assert transcript_settings(cfg)["asr"] == pipeline.engine.settings
    assert settings_hash(transcript_settings(cfg)) == settings_hash(
        transcript_settings(cfg, pipeline.engine.settings)
    )


def test_asr_once_then_rules_only(
    calls_dir: Path, pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "calls"
    shutil.copytree(calls_dir, d)
    (d / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 3)
    engine = pipeline.engine
    decodes = {"n": 0}
    real = engine.transcribe_many

    def counting(segments: Any, on_result: Any = None) -> Any:
        segs = list(segments)
        decodes["n"] += len(segs)
        return real(segs, on_result=on_result)

    monkeypatch.setattr(engine, "transcribe_many", counting)
    store = tmp_path / "qa.sqlite"
    out = tmp_path / "out"
    first = rescore(RescoreOptions(inputs=[d], store=store, out=out, progress=False),
                    pipeline=pipeline)  # fmt: skip
    assert first.transcribed == len(CALLS) and decodes["n"] >= 4
    assert [e.call_id for e in first.errors] == ["corrupt"]
    with Store(store) as st:
        t = st.transcript("rs-call-1")
        assert t is not None and t.call.agent_id == "A01"
        text = "".join(u.text for u in t.utterances)
        assert "交易" in text and "跑步" in text  # the clips' words (甚至出现交易…, 我认为跑步…)
        assert {u.role.value for u in t.utterances} == {"agent", "customer"}

    decodes["n"] = 0
    second = rescore(RescoreOptions(inputs=[d], store=store, out=out, progress=False),
                     pipeline=pipeline)  # fmt: skip
    assert decodes["n"] == 0, "cached transcripts must not be decoded again"
    assert second.cached == len(CALLS) and second.transcribed == 0
    assert second.reused == len(CALLS)  # same run (inputs + pack): results kept
    assert [e.call_id for e in second.errors] == ["corrupt"]

    rows = [json.loads(x) for x in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["call_id"] for r in rows] == ["corrupt", *sorted(CALLS)]
    assert rows[0]["status"] == "error"
    assert all(r["status"] == "ok" and 0 <= r["score"] <= 100 for r in rows[1:])
    html = (out / "report.html").read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in html and html.count("<svg") >= 4
    assert "开头语" in html or "服务禁语" in html or "不推诿" in html  # Chinese descriptions
    assert "A01" in html and "2026-03-02" in html  # by agent, by day
