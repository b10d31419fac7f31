"""``qa-pipeline privacy migrate``: a store, a Kafka spool and JSONL/JSON files written
before redaction (with the digits), redacted in place; counts printed; nothing left on disk
(free pages and journals included); a second run changes nothing; the migrated store still
serves its transcripts, with the masks' spans the ``entity`` condition reads."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace as dc_replace
from pathlib import Path

from typer.testing import CliRunner

from qa_pipeline.cli import app
from qa_pipeline.config import PipelineConfig
from qa_pipeline.messages import replace
from qa_pipeline.privacy import default_redactor, redact_json
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.sinks.base import events_for_call
from qa_pipeline.sinks.spool import Spool
from qa_pipeline.store import Store, doc_key, transcript_settings
from qa_pipeline.testing import transcript
from qa_pipeline.transcript import Transcript, transcript_to_dict

from .conftest import MOBILE, files_under, leaks, sqlite_rows

CALLER = "13812345678"
PACK = """\
name: old
version: "1"
rules:
  - id: ASKED
    description: 客户提到手机号（测试规则）
    severity: minor
    weight: 1
    forbid: {role: customer, keyword: [手机号]}
  - id: MOBILE
    description: 客户报了手机号（测试规则）
    severity: minor
    weight: 1
    forbid: {role: customer, entity: mobile}
"""


def _old_call(call_id: str) -> Transcript:
    """A transcript as written before redaction: digits in the text and the metadata."""
    t = transcript(
        [("a", 0.0, 2.0, "您好，请问有什么可以帮您"), ("c", 2.5, 5.0, f"我的手机号是{MOBILE}")],
        call_id=call_id,
        redact=False,
    )
    call = replace(t.call, source=f"/recordings/{CALLER}.wav", metadata=(("caller", CALLER),))
    return dc_replace(t, call=call)


def _write_old(
    data: Path, pack_dir: Path, store: str | None = None
) -> tuple[str | Path, Path, list[Path], int]:
    """A store (a SQLite file in ``data``, or ``store``), a spool and event files as they
    were written before redaction; and how many of the events held the digits."""
    pack = load_pack(pack_dir)
    store_path: str | Path = store or data / "qa-store.sqlite"
    t = _old_call("old-1")
    card = score_transcript(pack, t)
    assert any(MOBILE in e.text for f in card.findings for e in f.evidence)
    with Store(store_path) as store:
        h = store.put_settings(transcript_settings(PipelineConfig()))
        stored = store.put_transcript(t, audio_sha="a" * 64, settings_hash_=h)
        store.record_score(t, card, pack, key=stored.transcript_key)
        doc = transcript_to_dict(_old_call("old-2"))  # imported: keyed by its content
        store.put_transcript(doc, audio_sha=doc_key(doc), settings_hash_=h)
    events = [e.to_json() for e in events_for_call(t, card.findings, card)]
    spool_dir = data / "spool"
    spool = Spool(spool_dir)
    spool.append_many(("event", "old-1", e) for e in events)
    spool.close()
    jsonl = data / "events" / "events.jsonl"
    jsonl.parent.mkdir()
    jsonl.write_text("".join(e.decode() + "\n" for e in events), encoding="utf-8")
    doc_file = data / "events" / "call.json"
    doc_file.write_text(
        json.dumps(transcript_to_dict(t), ensure_ascii=False, indent=2), encoding="utf-8"
    )
    with_digits = sum(MOBILE.encode() in e or CALLER.encode() in e for e in events)
    return store_path, spool_dir, [jsonl, doc_file], with_digits


def test_migrate_redacts_store_spool_and_files(tmp_path: Path) -> None:
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    (pack_dir / "pack.yaml").write_text(textwrap.dedent(PACK), encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    store_path, spool_dir, files, with_digits = _write_old(data, pack_dir)
    n = len(files[0].read_text(encoding="utf-8").splitlines())
    assert 0 < with_digits < n  # the agent's utterance holds none
    assert leaks(files_under(data), [MOBILE, CALLER])  # written with the digits

    args = ["privacy", "migrate", "--store", str(store_path), "--spool", str(spool_dir)]
    res = CliRunner().invoke(app, [*args, str(data / "events")])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines == [
        f"{store_path}: transcripts: 2 of 2 redacted; calls: 2 of 2 redacted; "
        "results: 1 of 1 redacted",
        f"{spool_dir}: events: {with_digits} of {n} redacted",
        f"{data / 'events' / 'call.json'}: documents: 1 of 1 redacted",
        f"{files[0]}: lines: {with_digits} of {n} redacted",
    ]
    assert not leaks(files_under(data), [MOBILE, CALLER])

    # idempotent: nothing changes the second time
    before = {p: b for p, b in files_under(data) if not p.endswith("-shm")}
    res = CliRunner().invoke(app, [*args, str(data / "events")])
    assert res.exit_code == 0, res.output
    assert all(" 0 of " in ln for ln in res.stdout.splitlines()), res.stdout
    assert {p: b for p, b in files_under(data) if p in before} == before

    # the migrated store still serves its transcripts, masks and spans included
    with Store(store_path) as store:
        t = store.transcript("old-1")
        assert t is not None
        cust = t.utterances[1]
        assert cust.text == "我的手机号是[手机号]" and cust.entities[0].kind == "mobile"
        assert dict(t.call.metadata) == {"caller": "[手机号]"}
        assert t.call.source == "/recordings/[手机号].wav"
        card = score_transcript(load_pack(pack_dir), t)
        assert {v.rule_id: v.verdict.value for v in card.verdicts} == {
            "ASKED": "failed",
            "MOBILE": "failed",
        }
        # the document-keyed transcript is keyed by its redacted content now
        keys = {c.call_id: c.transcript_key for c in store.calls()}
        h = store.put_settings(transcript_settings(PipelineConfig()))
        doc = transcript_to_dict(_old_call("old-2"))
        old_key = f"{doc_key(doc)}:{h}"
        redact_json(doc, default_redactor())
        assert keys == {"old-1": f"{'a' * 64}:{h}", "old-2": f"{doc_key(doc)}:{h}"}
        assert keys["old-2"] != old_key and store.transcript("old-2") is not None
        run = store.results(f"scored:{load_pack(pack_dir).version}")
        assert [(r["call_id"], r["transcript_key"]) for r in run] == [("old-1", keys["old-1"])]
        assert MOBILE not in run[0]["findings"] and "[手机号]" in run[0]["findings"]
    events = [json.loads(ln) for ln in files[0].read_text(encoding="utf-8").splitlines()]
    utt = next(e["payload"] for e in events if e["kind"] == "utterance" and e["seq"] == 1)
    assert utt["text"] == "我的手机号是[手机号]" and utt["entities"][0]["kind"] == "mobile"


def test_migrate_needs_a_target() -> None:
    res = CliRunner().invoke(app, ["privacy", "migrate"])
    assert res.exit_code == 2 and "name a --store" in res.output


def test_rescore_masks_old_documents_and_file_names(tmp_path: Path) -> None:
    """A ``transcribe --json`` document written before redaction, and a broken recording
    filed under the caller's number, re-scored: the store and every report (results.jsonl,
    results.csv, report.html) hold masks, not digits. (A call id is an identifier and stays
    as given: a recording *named* by a number would keep it in its call id.)"""
    from qa_pipeline.rescore.run import RescoreOptions, rescore

    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    (pack_dir / "pack.yaml").write_text(textwrap.dedent(PACK), encoding="utf-8")
    calls = tmp_path / "calls"
    calls.mkdir()
    doc = transcript_to_dict(_old_call("old-doc"))
    (calls / "old-doc.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    (calls / CALLER).mkdir()
    (calls / CALLER / "broken.wav").write_bytes(b"not audio")
    out = tmp_path / "out"
    summary = rescore(
        RescoreOptions(
            inputs=[calls], store=tmp_path / "s.sqlite", rules=pack_dir, out=out, progress=False
        )
    )
    assert summary.imported == 1 and len(summary.errors) == 1
    assert summary.errors[0].source.endswith("[手机号]/broken.wav")
    texts = files_under(out) + sqlite_rows(tmp_path / "s.sqlite")
    assert not leaks(texts, [MOBILE, CALLER])
    results = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    got = {r["call_id"]: r for r in results}
    assert got["old-doc"]["failed_rules"] == ["ASKED", "MOBILE"]  # the spans were read


def test_migrate_redacts_a_postgres_store(tmp_path: Path, pg_database: str) -> None:
    """The same store on PostgreSQL: every table, the row tables included (findings'
    evidence, utterances), holds the masks afterwards, not the digits."""
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    (pack_dir / "pack.yaml").write_text(textwrap.dedent(PACK), encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    _write_old(data, pack_dir, store=pg_database)
    tables = ("transcripts", "calls", "results", "findings", "utterances")

    def dump() -> str:
        with Store(pg_database) as st:
            return "".join(str(st.execute(f"SELECT * FROM {t}").fetchall()) for t in tables)

    assert MOBILE in dump() and CALLER in dump()
    res = CliRunner().invoke(app, ["privacy", "migrate", "--store", pg_database])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [
        f"{pg_database}: transcripts: 2 of 2 redacted; calls: 2 of 2 redacted; "
        "results: 1 of 1 redacted"
    ]
    after = dump()
    assert MOBILE not in after and CALLER not in after and "[手机号]" in after
    with Store(pg_database) as st:
        texts = [r[0] for r in st.execute("SELECT text FROM utterances WHERE call_id = 'old-1'")]
        assert texts == ["您好，请问有什么可以帮您", "我的手机号是[手机号]"]
        matched = st.execute("SELECT message, matched FROM findings").fetchall()
        assert matched and all(MOBILE not in str(m) for m in matched)
    res = CliRunner().invoke(app, ["privacy", "migrate", "--store", pg_database])
    assert res.exit_code == 0 and " 0 of 2 redacted" in res.stdout
