"""Issue 7 against a real broker: `rescore --kafka` reads the transcripts topic that the
Kafka sink wrote, de-duplicates it and scores every call with the rule pack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from replayed_calls import CALLS_DIR

from qa_pipeline.rescore.run import RescoreOptions, rescore
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.transcript import transcript_from_dict


def test_rescore_reads_the_transcripts_topic(
    kafka_server: Any, replay_test_calls: Any, tmp_path: Path
) -> None:
    prefix = "rescore."
    for _ in range(2):  # the same calls twice: the reader must de-duplicate
        replay_test_calls(kafka_server.bootstrap, prefix)

    summary = rescore(
        RescoreOptions(
            kafka=kafka_server.bootstrap,
            topic=prefix + "transcripts",
            store=tmp_path / "qa.sqlite",
            out=tmp_path / "out",
            progress=False,
            workers=1,
            kafka_idle_timeout_s=20.0,
        )
    )
    docs = {
        p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(CALLS_DIR.glob("*.json"))
    }
    assert summary.kafka["kept"] == len(docs)
    assert summary.kafka["duplicates"] >= len(docs)
    rows = {
        row["call_id"]: row
        for row in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())
    }
    pack = load_pack()
    expected = {}
    for doc in docs.values():
        t = transcript_from_dict(doc)
        expected[t.call.call_id] = score_transcript(pack, t)
    assert set(rows) == set(expected)
    for call_id, card in expected.items():
        assert rows[call_id]["score"] == round(card.score, 2)
        assert rows[call_id]["grade"] == card.grade
