"""A store that cannot be read while the dashboard runs (a PostgreSQL database gone, a
SQLite file overwritten): the history, review and acknowledgement routes answer ``503``
naming the store's problem, never its password; the live part keeps serving; once the
store is back, so is the history (without a restart)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from dashboard_helpers import TOKEN, Dashboard, start_test_dashboard
from history_data import NEWEST_FIRST, fill_store
from test_live_status_and_acks import first_alert, north_call, post_ack

from qa_pipeline.store import store_problem

PASSWORD = "s3cret-Pa55word"  # trust authentication: the test server ignores it


def with_password(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.replace("@", f":{PASSWORD}@", 1)))


def history_calls(d: Dashboard) -> tuple[int, Any]:
    return d.get("/api/history/calls", TOKEN)


def assert_live_part_serves(d: Dashboard, cookie: str) -> None:
    """A call fed now shows on the live snapshot, its detail opens, /healthz answers."""
    events = north_call(d, "live-while-down")
    status, snap = d.get("/api/state", TOKEN)
    assert status == 200
    assert "live-while-down" in [c["call_id"] for c in snap["calls"]]
    status, detail = d.get("/api/calls/live-while-down", cookie=cookie)
    assert status == 200 and detail["utterances"]
    assert d.get("/healthz")[0] == 200
    assert first_alert(events).event_id in {a["event_id"] for a in snap["alerts"]}


def assert_unavailable(status: int, body: Any, problem: str) -> None:
    assert status == 503, (status, body)
    assert body["error"] == "store unavailable"
    assert problem in body["detail"], body["detail"]
    assert PASSWORD not in json.dumps(body)


def test_postgres_database_gone_then_back(pg_server: Any, pg_database: str, tmp_path: Path) -> None:
    name = urlsplit(pg_database).path.lstrip("/")
    url = with_password(pg_database)
    fill_store(url)
    d = start_test_dashboard(tmp_path, store=url)
    try:
        cookie = d.session("sup-north")
        status, body = history_calls(d)
        assert status == 200 and [c["call_id"] for c in body["calls"]] == NEWEST_FIRST

        with psycopg.connect(pg_server(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")  # its connections end too

        # every route that reads the store says what is wrong with it (a read that meets
        # the connection the server ended is tried again on a new one)
        for _ in range(2):
            assert_unavailable(*history_calls(d), f'database "{name}" does not exist')
        for path in ("/api/history/calls/h-1", "/api/history/trends", "/api/history/agents/A1"):
            assert_unavailable(*d.get(path, cookie=cookie), "does not exist")
        # the review queue's connection (the dashboard's writer) meets the ended connection
        # first (what failed there is not retried: it may have written), then the news
        qa = d.session("qa")
        assert_unavailable(*d.get("/api/review/queue", cookie=qa), "terminating connection")
        assert_unavailable(*d.get("/api/review/queue", cookie=qa), "does not exist")
        assert_unavailable(*d.get("/api/calls/h-1/audio?start=0&end=1", TOKEN), "does not exist")
        # the label names the store, without its password
        status, body = history_calls(d)
        assert f"postgresql://postgres:***@{urlsplit(url).hostname}" in body["detail"]

        assert_live_part_serves(d, cookie)
        # an acknowledgement cannot be kept while the store is down: 503, not kept
        alert = first_alert(north_call(d, "ack-while-down"))
        status, body = post_ack(d, alert.event_id, cookie=cookie)
        assert_unavailable(status, body, "does not exist")
        snap = d.get("/api/state", TOKEN)[1]
        assert not [a for a in snap["alerts"] if a["event_id"] == alert.event_id and a["ack"]]

        with psycopg.connect(pg_server(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        fill_store(url)
        status, body = history_calls(d)
        assert status == 200 and [c["call_id"] for c in body["calls"]] == NEWEST_FIRST
        # the dashboard's own connection (review queue, acknowledgements) is back too
        assert d.get("/api/review/queue", cookie=d.session("qa"))[0] == 200
        status, body = post_ack(d, alert.event_id, cookie=cookie)
        assert status == 200 and body["ack"]["user"] == "sup-north"
    finally:
        d.stop()


def test_sqlite_file_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "qa-store.sqlite"
    fill_store(str(path))
    d = start_test_dashboard(tmp_path, store=str(path))
    try:
        cookie = d.session("sup-north")
        assert history_calls(d)[0] == 200
        for f in tmp_path.glob("qa-store.sqlite*"):  # the database, its WAL and index
            size = f.stat().st_size
            with f.open("r+b") as out:
                out.write(b"not a database! " * (size // 16 + 1))
        for _ in range(2):
            assert_unavailable(*history_calls(d), "not a database")
        assert str(path) in history_calls(d)[1]["detail"]
        assert_live_part_serves(d, cookie)
    finally:
        d.stop()


def test_store_problem_masks_the_urls_secrets() -> None:
    url = f"postgresql://qa:{PASSWORD}@db.internal:5432/qa?sslpassword=k3y-Secret&sslmode=require"
    said = OSError(f"could not connect\n  with password {PASSWORD} and key k3y-Secret")
    problem = store_problem(said, url)
    assert PASSWORD not in problem and "k3y-Secret" not in problem
    assert problem == (
        "postgresql://qa:***@db.internal:5432/qa?sslpassword=***&sslmode=require: "
        "could not connect with password *** and key ***"
    )
    long = store_problem(sqlite3.DatabaseError("x" * 1000), "/data/qa.sqlite")
    assert long.startswith("/data/qa.sqlite: xxx") and len(long) < 450
