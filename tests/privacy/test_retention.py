"""Retention: ``retention:`` days per kind, enforced on the store, the Kafka spool, rotated
JSONL files and audio directories, by ``qa-pipeline purge`` and daily by ``serve``."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from qa_pipeline.cli import app
from qa_pipeline.config import load_config
from qa_pipeline.errors import ConfigError
from qa_pipeline.purge import PurgeReport, purge_audio, purge_jsonl, run_purge
from qa_pipeline.retention import RetentionConfig
from qa_pipeline.sinks.base import Event, EventKind
from qa_pipeline.sinks.spool import Spool
from qa_pipeline.store import Store, error_row

NOW = datetime.now(UTC)
RET = RetentionConfig(audio=90, transcripts=365, scorecards=730)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def local_iso(days: float) -> str:
    """A call's ``started_at`` as sources write it: naive local time."""
    return ago(days).astimezone().replace(tzinfo=None).isoformat(timespec="seconds")


# -- the store -------------------------------------------------------------------------------


def put_call(
    db: Store,
    call_id: str,
    *,
    started_days: float | None,
    stored_days: float,
    audio: str | None = None,
) -> str:
    """A call with its transcript; ``stored_days`` ago is when the transcript was stored."""
    call: dict[str, Any] = {"call_id": call_id, "agent_id": f"A-{call_id}"}
    if started_days is not None:
        call["started_at"] = local_iso(started_days)
    doc = {"call": call, "utterances": [{"text": f"{call_id} 的通话"}]}
    sha = audio or f"sha-{call_id}"
    stored = db.put_transcript(doc, audio_sha=sha, settings_hash_="s1")
    db.db.execute(
        "UPDATE transcripts SET created_at = ? WHERE audio_sha256 = ?",
        (ago(stored_days).timestamp(), sha),
    )
    db.db.execute(
        "UPDATE calls SET updated_at = ? WHERE call_id = ?", (ago(stored_days).timestamp(), call_id)
    )
    db.db.commit()
    return stored.transcript_key


def put_run(db: Store, run_id: str, started_days: float) -> None:
    db.start_run(
        run_id, pack_name="p", pack_version="1", role="rescore", inputs="", args={}, fresh=True
    )
    db.db.execute(
        "UPDATE runs SET started = ? WHERE run_id = ?", (ago(started_days).timestamp(), run_id)
    )
    db.db.commit()


def put_result(db: Store, run_id: str, call_id: str, key: str, stored_days: float) -> None:
    """A scorecard with one failed rule (a verdict row and a finding row of its own)."""
    at = ago(stored_days).timestamp()
    finding = [
        {"rule_id": "R1", "severity": "major", "message": f"{call_id} 说错了", "evidence": []}
    ]
    db.put_results(
        [(run_id, call_id, key, "ok", None, 90.0, "A", 1, '["R1"]', json.dumps(finding),
          '{"R1":["failed",10.0]}', at)]
    )  # fmt: skip


def put_error(db: Store, run_id: str, call_id: str, key: str, stored_days: float) -> None:
    db.put_results([error_row(run_id, call_id, key, "x", ago(stored_days).timestamp())])


def table_counts(path: str | Path) -> dict[str, int]:
    with Store(path) as st:
        return {
            t: st.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("transcripts", "calls", "results", "runs", "alert_acks")
        }


def row_keys(db: Store, table: str, cols: str) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in db.execute(f"SELECT DISTINCT {cols} FROM {table}").fetchall()}


def build_store(path: str | Path) -> None:
    """Calls at several ages (transcripts kept 365 days, scorecards 730)."""
    with Store(path) as db:
        k_old = put_call(db, "old", started_days=800, stored_days=800)
        k_mid = put_call(db, "mid", started_days=500, stored_days=500)
        put_call(db, "mid_unscored", started_days=500, stored_days=500)
        k_young = put_call(db, "young", started_days=10, stored_days=10)
        # no start time: its age is when it was stored
        put_call(db, "nostart_old", started_days=None, stored_days=400)
        put_call(db, "nostart_young", started_days=None, stored_days=10)
        # an old call transcribed (stored) recently: its start time counts
        put_call(db, "imported_old", started_days=400, stored_days=1)
        # one recording under two call ids: the row stays for the younger one
        put_call(db, "shared_old", started_days=500, stored_days=500, audio="sha-shared")
        put_call(db, "shared_young", started_days=5, stored_days=5, audio="sha-shared")
        put_run(db, "r_old", 800)  # only old results: goes with them
        put_result(db, "r_old", "old", k_old, 800)
        put_run(db, "r_mixed", 800)  # an old run with a result still kept: stays
        put_result(db, "r_mixed", "mid", k_mid, 500)
        # re-scored today, but the call started 800 days ago: the scorecard goes
        put_result(db, "r_mixed", "old", k_old, 0)
        put_result(db, "r_mixed", "young", k_young, 10)
        # a result whose call is unknown here: aged by when it was stored
        put_result(db, "r_mixed", "ghost_old", "k", 800)
        put_error(db, "r_mixed", "ghost_young", "k", 100)
        put_run(db, "r_empty_young", 3)  # no results, but young: stays
        # the dashboard's alert acknowledgements: aged by when they were made
        for event_id, days in (("old:1", 800), ("mid:1", 731), ("young:1", 10)):
            db.db.execute(
                "INSERT INTO alert_acks (event_id, user_name, at) VALUES (?, 'wang', ?)",
                (event_id, ago(days).timestamp()),
            )
        db.db.commit()


EXPECTED = {"transcripts": 5, "calls": 5, "scorecards": 3, "runs": 1, "acks": 2}
# transcripts: old, mid, mid_unscored, nostart_old, imported_old (shared row kept)
# calls: old, mid_unscored, nostart_old, imported_old, shared_old (mid keeps its scorecard)
# scorecards: r_old/old, r_mixed/old, r_mixed/ghost_old; runs: r_old; acks: old:1, mid:1


def test_store_purge_removes_exactly_what_is_older_per_kind(store_url: str) -> None:
    path = store_url
    build_store(path)
    before = table_counts(path)
    with Store(path) as db:
        dry = db.purge(RET.cutoffs(NOW), dry_run=True)
        assert dry == EXPECTED
        assert table_counts(path) == before  # a dry run deletes nothing
        assert db.purge(RET.cutoffs(NOW)) == EXPECTED
        calls = {c.call_id for c in db.calls()}
        assert calls == {"young", "nostart_young", "shared_young"}
        assert db.transcript_doc("mid") is None
        assert db.transcript_doc("shared_young") is not None
        mixed = {r["call_id"]: r for r in db.results("r_mixed")}
        assert set(mixed) == {"mid", "young", "ghost_young"}
        # the scorecard outlives its transcript and still names its agent and day
        assert mixed["mid"]["agent_id"] == "A-mid"
        assert mixed["mid"]["started_at"] == local_iso(500)
        assert db.results("r_old") == []
        runs = {r[0] for r in db.db.execute("SELECT run_id FROM runs")}
        assert runs == {"r_mixed", "r_empty_young"}
        assert row_keys(db, "alert_acks", "event_id") == {("young:1",)}
        # the row tables went with what they came from: a scorecard's verdicts and
        # findings with it, a call's utterances with its transcript
        kept = row_keys(db, "results", "run_id, call_id") - {("r_mixed", "ghost_young")}
        assert row_keys(db, "verdicts", "run_id, call_id") == kept
        assert row_keys(db, "findings", "run_id, call_id") == kept
        assert row_keys(db, "utterances", "call_id") == {
            ("young",),
            ("nostart_young",),
            ("shared_young",),
        }
        # a second purge finds nothing more
        assert db.purge(RET.cutoffs(NOW)) == dict.fromkeys(EXPECTED, 0)
    after = table_counts(path)
    assert {k: before[k] - after[k] for k in after} == {
        "transcripts": 5,
        "calls": 5,
        "results": 3,
        "runs": 1,
        "alert_acks": 2,
    }


def test_store_purge_leaves_no_purged_text_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    build_store(path)
    with Store(path) as db:
        db.db.execute("PRAGMA secure_delete = OFF")  # as SQLite builds without it default
        db.purge(RET.cutoffs(NOW))
        assert db.db.execute("PRAGMA secure_delete").fetchone()[0] == 0  # restored
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("store"))
    assert "old 的通话".encode() not in raw  # overwritten, not left in free pages or the WAL
    assert "young 的通话".encode() in raw


def test_later_scorecard_cutoff_keeps_calls_until_their_scorecards_go(store_url: str) -> None:
    path = store_url
    build_store(path)
    with Store(path) as db:
        only_transcripts = db.purge({"transcripts": ago(365)})
        assert only_transcripts["scorecards"] == only_transcripts["runs"] == 0
        assert only_transcripts["acks"] == 0  # acknowledgements go with scorecards
        # "old" keeps its call row while its scorecards are kept
        assert only_transcripts["calls"] == 4
        later = db.purge({"scorecards": ago(730), "transcripts": ago(365)})
        assert later == {"transcripts": 0, "calls": 1, "scorecards": 3, "runs": 1, "acks": 2}


def test_forever_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    build_store(path)
    forever = RetentionConfig(audio=None, transcripts=None, scorecards=None)
    assert forever.cutoffs(NOW) == {}
    with Store(path) as db:
        assert set(db.purge(forever.cutoffs(NOW)).values()) == {0}


def test_retention_config_rejects_nonsense(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("retention:\n  audio: 0\n  transcript: 10\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    lines = {loc.line for loc, _ in e.value.problems}
    assert lines == {2, 3}
    assert load_config().retention == RetentionConfig()


# -- the spool -------------------------------------------------------------------------------


class Observer:
    def __init__(self) -> None:
        self.dropped: list[tuple[str, str, int]] = []

    def on_event_dropped(self, sink: str, reason: str, count: int = 1) -> None:
        self.dropped.append((sink, reason, count))

    def on_spool(self, sink: str, events: int, size_bytes: int) -> None:
        self.spool = (events, size_bytes)

    def on_sink_error(self, sink: str, reason: str) -> None: ...

    def on_sink_delivered(self, sink: str, count: int) -> None: ...

    def on_drop(self, stage: str, reason: str, count: int = 1) -> None: ...


def event(kind: EventKind, call_id: str, days: float) -> tuple[str, str, bytes]:
    produced = ago(days).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    ev = Event("e" + call_id + kind.value, kind, call_id, 0, "1.0", produced, {"x": call_id})
    return kind.value, call_id, ev.to_json()


def fill_spool(directory: Path, observer: Any = None) -> Spool:
    sp = Spool(directory, name="kafka", observer=observer)
    sp.append_many(
        [
            event(EventKind.TRANSCRIPT, "t-old", 400),
            event(EventKind.UTTERANCE, "u-old", 366),
            event(EventKind.UTTERANCE, "u-young", 364),
            event(EventKind.FINDING, "f-mid", 400),  # a scorecard-kind event: kept 730 days
            event(EventKind.ALERT, "a-old", 731),
            event(EventKind.SCORECARD, "s-old", 900),
            event(EventKind.SCORECARD, "s-young", 1),
        ]
    )
    sp.append("scorecard", "garbled", b"not json")  # no readable time: kept
    return sp


def test_spool_purge_counts_and_reports_every_removed_event(tmp_path: Path) -> None:
    obs = Observer()
    sp = fill_spool(tmp_path / "spool", obs)
    try:
        report = run_purge(RET, spool=sp, now=NOW, dry_run=True)
        assert report.total() == 4 and len(sp) == 8 and obs.dropped == []
        report = run_purge(RET, spool=sp, now=NOW)
        got = {r.what: r.count for r in report.removed if r.where == "spool"}
        assert got == {"transcript": 1, "utterance": 1, "finding": 0, "alert": 1, "scorecard": 1}
        assert report.total("transcripts") == 2 and report.total("scorecards") == 2
        assert len(sp) == 4
        assert sorted(r.key for r in sp.peek()) == ["f-mid", "garbled", "s-young", "u-young"]
        assert sp.dropped == {"retention": 4}
        assert sum(n for _, reason, n in obs.dropped if reason == "retention") == 4
        assert obs.spool[0] == 4  # the spool gauge follows
        assert sp.size_bytes == sum(r.size for r in sp.peek())
    finally:
        sp.close()


def test_purge_of_a_spool_directory_skips_one_a_service_holds(tmp_path: Path) -> None:
    held = fill_spool(tmp_path / "spool")
    try:
        report = run_purge(RET, spool=tmp_path / "spool", now=NOW)
        assert report.total() == 0 and not report.errors
        assert any("held by a running service" in n for n in report.notes)
    finally:
        held.close()
    report = run_purge(RET, spool=tmp_path / "spool", now=NOW)
    assert report.total() == 4 and not report.notes
    reopened = Spool(tmp_path / "spool")
    try:
        assert len(reopened) == 4
    finally:
        reopened.close()


# -- JSONL files and audio -------------------------------------------------------------------


def day_name(stem: str, days: float) -> str:
    day = ago(days).astimezone().date().isoformat()
    return f"{stem}.{day}.001.jsonl"


def test_rotated_jsonl_files_go_whole_when_their_day_is_past(tmp_path: Path) -> None:
    d = tmp_path / "events"
    d.mkdir()
    names = {
        day_name("transcript", 400): False,
        day_name("utterance", 367): False,
        day_name("utterance", 364): True,  # its day is not over at the cut-off
        day_name("finding", 400): True,  # scorecard kinds: 730 days
        day_name("scorecard", 800): False,
        day_name("events", 400): False,  # mixed kinds: the shorter retention
        "transcript.jsonl": True,  # the file being written: never touched
        "notes.2020-01-01.001.txt": True,
    }
    for name in names:
        (d / name).write_text("{}\n")
    old = ago(1000).timestamp()
    os.utime(d / "transcript.jsonl", (old, old))
    report = PurgeReport(RET.cutoffs(NOW))
    purge_jsonl(d, report.cutoffs, report, dry_run=True)
    assert report.total() == 4 and all((d / n).exists() for n in names)
    report = PurgeReport(RET.cutoffs(NOW))
    purge_jsonl(d, report.cutoffs, report, dry_run=False)
    assert {n for n in names if (d / n).exists()} == {n for n, kept in names.items() if kept}
    assert report.total("transcripts") == 3 and report.total("scorecards") == 1


def test_audio_files_go_by_age_and_only_audio(tmp_path: Path) -> None:
    rec = tmp_path / "recordings"
    (rec / "2026" / "03").mkdir(parents=True)
    outside = tmp_path / "elsewhere.wav"
    files = {
        rec / "old.wav": (100, False),
        rec / "2026" / "03" / "old.FLAC": (91, False),
        rec / "young.wav": (89, True),
        rec / "old.json": (100, True),  # not audio: left alone
        outside: (100, True),
    }
    for f, (days, _) in files.items():
        f.write_bytes(b"RIFF")
        t = ago(days).timestamp()
        os.utime(f, (t, t))
    (rec / "link.wav").symlink_to(outside)
    report = PurgeReport(RET.cutoffs(NOW))
    purge_audio([rec, tmp_path / "missing"], report.cutoffs["audio"], report, dry_run=False)
    assert {f for f in files if f.exists()} == {f for f, (_, kept) in files.items() if kept}
    assert (rec / "link.wav").is_symlink()
    assert report.total("audio") == 2
    assert any("missing" in n for n in report.notes)


# -- qa-pipeline purge -----------------------------------------------------------------------


def test_purge_command(tmp_path: Path, store_url: str) -> None:
    store = store_url  # a SQLite file or a PostgreSQL URL: --store takes either
    build_store(store)
    events = tmp_path / "events"
    events.mkdir()
    (events / day_name("transcript", 400)).write_text("{}\n")
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "a.wav").write_bytes(b"RIFF")
    t = ago(120).timestamp()
    os.utime(rec / "a.wav", (t, t))
    fill_spool(tmp_path / "spool").close()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"retention: {{audio_dirs: ['{rec}']}}\n"
        f"sinks: {{jsonl: {{directory: '{events}'}}, kafka: {{bootstrap_servers: [x:9092], security_protocol: PLAINTEXT, "
        f"spool: {{directory: '{tmp_path / 'spool'}'}}}}}}\n"
    )
    runner = CliRunner()
    before = table_counts(store)
    dry = runner.invoke(app, ["purge", "-c", str(cfg), "--store", str(store), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "to remove" in dry.output and "transcripts" in dry.output and "acks" in dry.output
    assert table_counts(store) == before and (rec / "a.wav").exists()
    res = runner.invoke(app, ["purge", "-c", str(cfg), "--store", str(store), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    # store 5 transcripts + 5 calls, spool 2, jsonl 1; store 3 + 1 run + 2 acks, spool 2;
    # audio 1
    assert doc["totals"] == {"audio": 1, "transcripts": 13, "scorecards": 8}
    acks = [r for r in doc["removed"] if r["what"] == "acks"]
    assert acks == [{"kind": "scorecards", "where": "store", "what": "acks", "count": 2}]
    assert not doc["errors"] and not (rec / "a.wav").exists()
    assert table_counts(store)["transcripts"] == before["transcripts"] - 5
    again = runner.invoke(app, ["purge", "-c", str(cfg), "--store", str(store), "--json"])
    assert json.loads(again.stdout)["totals"] == {"audio": 0, "transcripts": 0, "scorecards": 0}


def test_purge_command_reports_a_failed_place_and_purges_the_others(tmp_path: Path) -> None:
    bad = tmp_path / "store.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "a.wav").write_bytes(b"RIFF")
    t = ago(120).timestamp()
    os.utime(rec / "a.wav", (t, t))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"retention: {{audio_dirs: ['{rec}']}}\nsinks: {{jsonl: null}}\n")
    res = CliRunner().invoke(app, ["purge", "-c", str(cfg), "--store", str(bad)])
    assert res.exit_code == 1
    assert "error" in res.output and "store" in res.output
    assert not (rec / "a.wav").exists()


# -- serve: the daily purge ------------------------------------------------------------------


def corrupt(store: Path) -> None:
    for f in store.parent.glob(store.name + "*"):
        f.unlink()
    store.write_bytes(b"this is not a database" * 100)


def test_service_purges_on_its_schedule_and_survives_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import CollectorRegistry

    import qa_pipeline.live.service as service
    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.sinks import FanOut
    from qa_pipeline.testing import FakeDecoder, Recorder, wait_for

    monkeypatch.setattr(service, "LiveDecoder", FakeDecoder(""))
    store = tmp_path / "store.sqlite"
    build_store(store)
    rec = tmp_path / "rec"
    rec.mkdir()
    pack = tmp_path / "pack.yaml"
    pack.write_text(
        "name: t\nversion: '1'\nrules:\n  - id: R\n    description: 测试\n    severity: minor\n    weight: 1\n"
        "    forbid: {keyword: [交易]}\n",
        encoding="utf-8",
    )
    cfg = load_serve_config(
        None,
        {
            "sources": [],
            "live": {"warmup": False},
            "rules": {"pack": str(pack)},
            "sinks": {"jsonl": None},
            "retention": {
                "store": str(store),
                "audio_dirs": [str(rec)],
                "interval_s": 0.1,
                "first_delay_s": 0,
            },
        },
    )
    metrics = LiveMetrics(CollectorRegistry())
    spool = fill_spool(tmp_path / "spool")
    kafka_like = SimpleNamespace(
        spool=spool, emit=lambda e: None, flush=lambda t=None: None, close=lambda: None
    )
    svc = service.LiveService(
        cfg,
        engine=SimpleNamespace(config=SimpleNamespace(workers=1, beam_size=1)),  # type: ignore[arg-type]
        sinks=FanOut([("memory", Recorder()), ("kafka", kafka_like)]),
        sources=[],
        metrics=metrics,
    )
    registry = metrics.registry

    def purged(kind: str, where: str) -> float:
        v = registry.get_sample_value("qa_retention_purged_total", {"kind": kind, "where": where})
        return v or 0.0

    async def main() -> None:
        await svc.start()
        try:
            await wait_for(lambda: len(svc.purges) >= 1, 10)
            assert table_counts(store)["transcripts"] == 8 - 5  # 9 calls, one row shared
            assert len(spool) == 4
            assert purged("transcripts", "store") == 10 and purged("scorecards", "spool") == 2
            last = registry.get_sample_value("qa_retention_last_purge_timestamp_seconds")
            assert last is not None and abs(last - time.time()) < 60  # purged just now
            # an audio file that ages past the limit while serving goes at the next purge
            (rec / "late.wav").write_bytes(b"RIFF")
            t = ago(91).timestamp()
            os.utime(rec / "late.wav", (t, t))
            await wait_for(lambda: not (rec / "late.wav").exists(), 10)
            # a failing place is counted and logged; the service and its schedule go on
            corrupt(store)
            n = len(svc.purges)
            await wait_for(lambda: len(svc.purges) >= n + 2, 10)
            errors = registry.get_sample_value(
                "qa_retention_purge_errors_total", {"where": "store"}
            )
            assert errors is not None and errors >= 2
            assert svc.accepting
            assert purged("audio", "audio") == 1
        finally:
            await svc.shutdown(drain_s=5)

    asyncio.run(main())
    assert svc._purger is not None and svc._purger.done()
    spool.close()
