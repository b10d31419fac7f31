"""``qa-pipeline search`` on a store of each backend: JSON lines and the table."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_search import add_call
from typer.testing import CliRunner

from qa_pipeline.cli import app
from qa_pipeline.store import Store as Db
from qa_pipeline.store import search as S


def _url(db: Db) -> str:
    return db.url


def test_search_command(db: Db) -> None:
    add_call(db, "call/1", ["您好", "我要投诉，退款还没到"], agent="A7", epoch=1_767_312_000.0)
    add_call(db, "call-2", ["我要退款"], agent="A8", direction="outbound", epoch=1_767_398_400.0)
    runner = CliRunner()
    res = runner.invoke(app, ["search", "退款", "--store", _url(db), "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines[-1]["total_calls"] == 2
    hits = {h["call_id"]: h for h in lines[:-1]}
    assert hits["call/1"]["utterance_index"] == 1
    assert hits["call/1"]["link"] == "/calls/call%2F1#u1"
    assert hits["call/1"]["snippet"] == "我要投诉，【退款】还没到"
    assert hits["call-2"]["agent_id"] == "A8"

    res = runner.invoke(
        app,
        ["search", "退款", "--store", _url(db), "--json", "--direction", "outbound",
         "--since", "2026-01-02", "--until", "2026-01-04"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [h["call_id"] for h in lines[:-1]] == ["call-2"]

    res = runner.invoke(app, ["search", "投诉", "退款", "--store", _url(db)])
    assert res.exit_code == 0, res.output
    assert "call/1" in res.stdout and "/calls/call%2F1#u1" in res.stdout
    assert "1 call(s) match" in res.stdout


def test_a_second_query_of_a_current_index_does_not_sync(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ``qa-pipeline search`` opens the store; the first finds the new call not yet
    indexed and syncs, the second finds the index up to date and does not (no write
    transaction); a call added since makes the next one sync again."""
    synced: list[int] = []
    real = S._sync

    def spy(conn: Any, batch: int) -> int:
        synced.append(real(conn, batch))  # calls looked at
        return synced[-1]

    monkeypatch.setattr(S, "_sync", spy)
    add_call(db, "s1", ["我要退款"])

    def calls() -> list[str]:
        res = CliRunner().invoke(app, ["search", "退款", "--store", _url(db), "--json"])
        assert res.exit_code == 0, res.output
        return [json.loads(x).get("call_id") for x in res.stdout.splitlines()[:-1]]

    assert calls() == ["s1"] and synced == [1]
    assert calls() == ["s1"] and synced == [1]  # up to date: no sync
    add_call(db, "s2", ["退款到账了吗"])
    assert calls() == ["s2", "s1"] and synced == [1, 1]


def test_search_command_bad_input(db: Db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    res = runner.invoke(app, ["search", "退款", "--store", _url(db), "--verdict", "maybe"])
    assert res.exit_code == 2 and "verdict 'maybe'" in res.stderr
    res = runner.invoke(app, ["search", "退款", "--store", _url(db), "--since", "yesterday"])
    assert res.exit_code == 2 and "'yesterday' is not a date" in res.stderr
    missing = tmp_path / "nope.sqlite"
    res = runner.invoke(app, ["search", "退款", "--store", str(missing)])
    assert res.exit_code == 2 and f"no store at {missing}" in res.stderr


def test_a_read_only_store_is_searched_as_indexed_and_says_so(pg_database: str) -> None:
    """A store ``qa-pipeline search`` cannot write (a PostgreSQL database whose
    transactions are read-only, as on a standby server) and whose index is behind: the
    search reads what is indexed, and says on stderr which store is behind by how much
    and what brings it up to date (the JSON's totals line says it too)."""
    from urllib.parse import urlsplit

    import psycopg

    with Db(pg_database) as db:
        add_call(db, "r1", ["我要退款"])
        S.sync_index(db)
        add_call(db, "r2", ["退款到账了吗"])
    name = urlsplit(pg_database).path.lstrip("/")
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    runner = CliRunner()
    res = runner.invoke(app, ["search", "退款", "--store", pg_database, "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [h["call_id"] for h in lines[:-1]] == ["r1"]
    assert lines[-1] == {"total_calls": 1, "offset": 0, "limit": 20, "index_behind": 1}
    note = " ".join(res.stderr.split())
    assert f"{pg_database}: the search index is behind by 1 call(s)" in note
    assert "read-only" in note and "with write access" in note
    res = runner.invoke(app, ["search", "退款", "--store", pg_database])
    assert res.exit_code == 0 and "1 call(s) match" in res.stdout
    assert "behind by 1 call(s)" in " ".join(res.stderr.split())
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute("SET default_transaction_read_only = off")  # this session may write
        admin.execute(f"ALTER DATABASE {name} RESET default_transaction_read_only")
    res = runner.invoke(app, ["search", "退款", "--store", pg_database, "--json"])
    assert json.loads(res.stdout.splitlines()[-1])["index_behind"] == 0
    assert res.stderr == ""
