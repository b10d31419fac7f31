"""The store's schema: numbered migrations on both backends, a store written before them
adopted and migrated forward, the row tables back-filled from the JSON columns."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from qa_pipeline.cli import app
from qa_pipeline.errors import QAError
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.store import Store, doc_key, error_row, result_row
from qa_pipeline.store.migrate import migrate, migrations
from qa_pipeline.transcript import transcript_to_dict

from .synth import OLD_LINE, make_call


def v1_schema() -> str:
    """The store's DDL before numbered migrations (schema v1), as the old code ran it: the
    real migration 0001 (the v1 schema, adopted as it is), read from the package rather
    than copied here, so the store this test builds cannot drift from it."""
    init = resources.files("qa_pipeline.store").joinpath("migrations", "sqlite", "0001_init.sql")
    return init.read_text(encoding="utf-8")


def _old_rows(n: int = 3) -> tuple[list[Any], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Transcripts (docs), calls rows and results rows as the old code wrote them: a
    ``score --store`` run (role ``score``) and a re-score run (role ``new``)."""
    rng = random.Random(7)
    pack = load_pack()
    docs, calls, results = [], [], []
    now = time.time()
    for i in range(n):
        t = make_call(i, rng, agent_old=True)
        doc = transcript_to_dict(t)
        doc["call"]["metadata"] = {"team": "T1" if i % 2 == 0 else "T2"}
        docs.append(doc)
        key = doc_key(doc)
        call = doc["call"]
        calls.append(
            (call["call_id"], key, "h1", None, call["started_at"], call["agent_id"],
             json.dumps(call, ensure_ascii=False), now)
        )  # fmt: skip
        card = score_transcript(pack, t)
        for run in ("scored:v1", "rescore-1"):
            results.append(tuple(result_row(run, call["call_id"], f"{key}:h1", card, now + i)))
    return docs, calls, results


def _write_v1(path: Path) -> tuple[list[Any], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    docs, calls, results = _old_rows()
    db = sqlite3.connect(path)
    db.executescript(v1_schema())  # its last statement: meta's schema_version 1
    # 0001 is adopted as it is, so it must stay the v1 schema: v1's tables, no others
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"meta", "settings", "transcripts", "calls", "runs", "results"}
    db.execute("INSERT INTO settings VALUES ('h1', '{}')")
    for doc, call in zip(docs, calls, strict=True):
        db.execute(
            "INSERT INTO transcripts VALUES (?, 'h1', ?, ?, ?)",
            (call[1], call[0], json.dumps(doc, ensure_ascii=False), time.time()),
        )
    db.executemany("INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)", calls)
    db.execute("INSERT INTO runs VALUES ('scored:v1', 'p', 'v1', 'score', '', '{}', 1, NULL)")
    db.execute("INSERT INTO runs VALUES ('rescore-1', 'p', 'v1', 'new', '[]', '{}', 1, 2)")
    db.executemany(f"INSERT INTO results VALUES ({','.join('?' * 12)})", results)
    db.commit()
    db.close()
    return docs, calls, results


def _check_backfilled(st: Store, docs: list[Any], results: list[tuple[Any, ...]]) -> None:
    # verdict rows: one per rule of each result, as its JSON says; findings in order
    for r in results:
        verdicts = json.loads(r[10])
        got = {
            rule: (v, d)
            for rule, v, d in st.execute(
                "SELECT rule_id, verdict, deduction FROM verdicts WHERE run_id = ? AND call_id = ?",
                (r[0], r[1]),
            )
        }
        assert got == {k: (v[0], v[1]) for k, v in verdicts.items()}
        findings = json.loads(r[9])
        rows = st.execute(
            "SELECT seq, rule_id, severity, message, utterance_index FROM findings "
            "WHERE run_id = ? AND call_id = ? ORDER BY seq",
            (r[0], r[1]),
        ).fetchall()
        assert [tuple(x) for x in rows] == [
            (i, f["rule_id"], f["severity"], f["message"], f["evidence"][0]["utterance_index"])
            for i, f in enumerate(findings)
        ]
        assert findings, "the synthetic calls break a rule: there is something to back-fill"
    # the failed rules' severity comes from their findings
    sev = st.execute("SELECT DISTINCT severity FROM verdicts WHERE verdict = 'failed'").fetchall()
    assert sev and all(s[0] for s in sev)
    # utterances: the call's transcript, text as stored
    for doc in docs:
        cid = doc["call"]["call_id"]
        texts = [
            t
            for (t,) in st.execute(
                "SELECT text FROM utterances WHERE call_id = ? ORDER BY idx", (cid,)
            )
        ]
        assert texts == [u["text"] for u in doc["utterances"]]
        assert any(OLD_LINE in t for t in texts)
    # calls: the filter columns from the call object
    team, epoch = st.execute(
        "SELECT team, started_epoch FROM calls WHERE call_id = ?", (docs[0]["call"]["call_id"],)
    ).fetchone()
    from datetime import datetime

    assert team == "T1"
    assert epoch == pytest.approx(datetime.fromisoformat(docs[0]["call"]["started_at"]).timestamp())
    # results: complete, review derived (ok rows are complete)
    flags = st.execute("SELECT DISTINCT complete FROM results").fetchall()
    assert [tuple(f) for f in flags] == [(1,)]


def test_a_store_written_before_migrations_is_adopted_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    docs, calls, results = _write_v1(path)
    with Store(path) as st:
        expect = [(m.version, m.name) for m in migrations("sqlite")]
        assert expect[:2] == [(1, "init"), (2, "row_tables")]
        assert [m.version for m in st.applied] == [v for v, _ in expect]
        versions = st.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
        assert [tuple(v) for v in versions] == expect
        # the old rows are all there, read through today's code
        for doc in docs:
            assert st.transcript_doc(doc["call"]["call_id"]) == doc
        assert len(st.results("scored:v1")) == len(docs) == len(st.results("rescore-1"))
        assert st.execute("SELECT value FROM meta").fetchone()[0] == "1"
        # a 'score' run was the pack in service: it is now 'active'
        role = st.execute("SELECT role FROM runs WHERE run_id = 'scored:v1'").fetchone()[0]
        assert role == "active"
        _check_backfilled(st, docs, results)
        cur = st.current_results()
        assert {r["call_id"] for r in cur} == {c[0] for c in calls}
        assert {r["run_id"] for r in cur} == {"scored:v1"}  # the candidate run never counts
    with Store(path) as st:
        assert st.applied == []  # nothing left to do


def test_migrations_are_recorded_once_on_both_backends(store_url: str) -> None:
    with Store(store_url) as st:
        expect = [m.version for m in migrations(st.dialect)]
        assert [m.version for m in st.applied] == expect
        assert st.dialect == ("sqlite" if "://" not in store_url else "postgres")
    with Store(store_url) as st:
        assert st.applied == []
        rows = st.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert [r[0] for r in rows] == expect
        assert migrate(st.db) == []
    # both dialects have the same steps
    assert [(m.version, m.name) for m in migrations("sqlite")] == [
        (m.version, m.name) for m in migrations("postgres")
    ]


def test_backfill_fills_the_row_tables_on_both_backends(store_url: str) -> None:
    """A store at 0001 holding results and transcripts (JSON only) gets its rows from
    migration 0002, on SQLite and on PostgreSQL."""
    docs, calls, results = _old_rows()
    with Store(store_url, migrate=False) as st:
        migrate(st.db, upto=1)
        st.execute("INSERT INTO settings VALUES ('h1', '{}')")
        for doc, call in zip(docs, calls, strict=True):
            st.execute(
                "INSERT INTO transcripts VALUES (?, 'h1', ?, ?, ?)",
                (call[1], call[0], json.dumps(doc, ensure_ascii=False), time.time()),
            )
        st.executemany("INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)", calls)
        st.execute("INSERT INTO runs VALUES ('scored:v1', 'p', 'v1', 'score', '', '{}', 1, NULL)")
        st.execute("INSERT INTO runs VALUES ('rescore-1', 'p', 'v1', 'new', '[]', '{}', 1, 2)")
        st.executemany(f"INSERT INTO results VALUES ({','.join('?' * 12)})", results)
        st.commit()
    res = CliRunner().invoke(app, ["store", "migrate", "--store", store_url])
    assert res.exit_code == 0, res.output
    assert "applied 0002_row_tables" in res.output and "0001" not in res.output
    last = migrations("sqlite")[-1].version
    with Store(store_url) as st:
        _check_backfilled(st, docs, results)
    res = CliRunner().invoke(app, ["store", "migrate", "--store", store_url])
    assert res.exit_code == 0 and f"up to date (schema {last:04d})" in res.output


def test_a_bad_store_name_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(QAError, match="mysql://db/x"):
        Store("mysql://db/x")
    res = CliRunner().invoke(app, ["store", "migrate", "--store", "mysql://db/x"])
    assert res.exit_code != 0 and "mysql://db/x" in res.output
    res = CliRunner().invoke(
        app, ["store", "migrate", "--store", "postgresql://nobody@127.0.0.1:1/none"]
    )
    assert res.exit_code != 0 and "cannot connect" in res.output


# -- the row tables, written with what they come from -----------------------------------------


class _Pack:
    def __init__(self, version: str) -> None:
        self.name, self.version = "default", version


def _scored(i: int, **kw: Any) -> tuple[Any, Any]:
    t = make_call(i, random.Random(i), agent_old=True, **kw)
    return t, score_transcript(load_pack(), t)


def test_writes_keep_the_row_tables_with_their_json(store_url: str) -> None:
    t, card = _scored(1)
    doc = transcript_to_dict(t)
    cid = t.call.call_id
    with Store(store_url) as st:
        h = st.put_settings({"asr": {"model": "x"}})
        stored = st.put_transcript(t, audio_sha="abc", settings_hash_=h)
        utts = st.execute(
            "SELECT idx, channel, role, start_s, end_s, text FROM utterances WHERE call_id = ? "
            "ORDER BY idx",
            (cid,),
        ).fetchall()
        assert [tuple(u) for u in utts] == [
            (u["index"], u["channel"], u["role"], u["start"], u["end"], u["text"])
            for u in doc["utterances"]
        ]
        run = st.record_score(t, card, _Pack("v1"), key=stored.transcript_key)
        st.record_score(t, card, _Pack("v1"), key=stored.transcript_key)  # again: replaced
        verdicts = st.execute(
            "SELECT rule_id, verdict, severity, deduction FROM verdicts WHERE run_id = ?", (run,)
        ).fetchall()
        assert sorted(tuple(v) for v in verdicts) == sorted(
            (v.rule_id, v.verdict.value, v.severity.value, v.deduction) for v in card.verdicts
        )
        n = st.execute("SELECT count(*) FROM findings WHERE run_id = ?", (run,)).fetchone()[0]
        assert n == len(card.findings) > 0
        assert st.execute(
            "SELECT complete, review FROM results WHERE run_id = ?", (run,)
        ).fetchone() == (1, int(card.review))
        # the same recording under a second call id: its utterances follow the pointer
        st.put_call(dict(doc["call"], call_id="other"), audio_sha="abc", settings_hash_=h)
        st.commit()
        assert st.execute("SELECT count(*) FROM utterances WHERE call_id = 'other'").fetchone()[
            0
        ] == len(doc["utterances"])
        # a new transcript of the call: its rows are rewritten, none left over
        short = dict(doc, utterances=doc["utterances"][:2])
        st.put_transcript(short, audio_sha="def", settings_hash_=h)
        texts = [r[0] for r in st.execute("SELECT text FROM utterances WHERE call_id = ?", (cid,))]
        assert texts == [u["text"] for u in doc["utterances"][:2]]


def test_an_uncommitted_batch_leaves_no_rows(store_url: str) -> None:
    t, card = _scored(2)
    with Store(store_url) as st:
        h = st.put_settings({})
        stored = st.put_transcript(t, audio_sha="abc", settings_hash_=h)
        st.put_results([result_row("r1", t.call.call_id, stored.transcript_key, card, 1.0)],
                       commit=False)  # fmt: skip
        st.rollback()
        for table in ("results", "verdicts", "findings"):
            assert st.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


# -- which score counts ------------------------------------------------------------------


def test_current_results_take_the_latest_active_complete_result(store_url: str) -> None:
    from qa_pipeline.messages import replace

    with Store(store_url) as st:
        h = st.put_settings({})
        cards: dict[str, Any] = {}
        for i in range(6):
            t, card = _scored(i)
            doc = transcript_to_dict(t)
            doc["call"]["metadata"] = {"team": "north" if i < 3 else "south"}
            key = st.put_transcript(doc, audio_sha=f"a{i}", settings_hash_=h).transcript_key
            cards[t.call.call_id] = (t, card, key)
        ids = sorted(cards)
        # v1 in service scored all; v2 (later) re-scored the first two; a candidate pack
        # scored everything 0; call 3 was scored from part of its audio; call 4 is an error
        for cid in ids:
            t, card, key = cards[cid]
            if cid == ids[3]:
                card = replace(card, complete=False, incomplete_reasons=("shutdown",))
            st.record_score(t, card, _Pack("v1"), key=key)
        time.sleep(0.01)
        for cid in ids[:2]:
            t, card, key = cards[cid]
            st.record_score(t, replace(card, score=55.0), _Pack("v2"), key=key)
        st.start_run("cand", pack_name="x", pack_version="9", role="new", inputs="",
                     args={}, fresh=True)  # fmt: skip
        st.put_results(
            result_row("cand", cid, cards[cid][2], replace(cards[cid][1], score=0.0), 9e9)
            for cid in ids
        )
        st.put_results([error_row("scored:v1", ids[4], cards[ids[4]][2], "boom", 9e9)])
        st.commit()

        rows = {r["call_id"]: r for r in st.current_results()}
        assert set(rows) == {ids[0], ids[1], ids[2], ids[5]}
        assert rows[ids[0]]["score"] == rows[ids[1]]["score"] == 55.0
        assert rows[ids[0]]["run_id"] == "scored:v2"
        assert rows[ids[2]]["score"] == round(cards[ids[2]][1].score, 2)
        assert rows[ids[5]]["team"] == "south" and rows[ids[0]]["team"] == "north"
        # filters
        assert {r["call_id"] for r in st.current_results(team="north")} == {ids[0], ids[1], ids[2]}
        agent = cards[ids[0]][0].call.agent_id
        assert {r["call_id"] for r in st.current_results(agent_id=agent)} == {
            c for c in rows if cards[c][0].call.agent_id == agent
        }
        starts = sorted(r["started_epoch"] for r in rows.values())
        mid = starts[2]
        assert all(r["started_epoch"] >= mid for r in st.current_results(since=mid))
        assert len(st.current_results(since=mid)) == 2
        assert len(st.current_results(until=mid)) == 2
        # violation counts per rule: uncertain verdicts are never among them
        vs = st.current_verdicts()
        assert vs and {v["call_id"] for v in vs} == set(rows)
        assert "uncertain" not in {v["verdict"] for v in vs}

        # a reviewed score overrides the machine's, for an incomplete call too
        # (call_reviews: the review work's migration 0200)
        st.executemany(
            "INSERT INTO call_reviews VALUES (?, 'scored:v2', 1, ?, ?, ?, 'qa1', 1.0)",
            [(ids[0], 99.0, "优秀", 0), (ids[3], 70.0, "合格", 0)],
        )
        st.commit()
        rows = {r["call_id"]: r for r in st.current_results()}
        assert rows[ids[0]]["score"] == 99.0 and rows[ids[0]]["reviewed"] == 1
        assert (rows[ids[0]]["grade"], rows[ids[0]]["failed"]) == ("优秀", 0)
        assert rows[ids[3]]["score"] == 70.0 and rows[ids[3]]["complete"] == 0
        assert rows[ids[1]]["reviewed"] == 0


def test_a_reader_of_a_store_behind_the_code_is_told_to_migrate(store_url: str) -> None:
    with Store(store_url, migrate=False) as st:
        migrate(st.db, upto=1)
    with pytest.raises(QAError, match="lacks migration 0002_row_tables.*store migrate"):
        Store(store_url, readonly=True)
    with Store(store_url):
        pass
    with Store(store_url, readonly=True) as st:
        assert st.current_results() == []
