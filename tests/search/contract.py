"""The store contract's row tables, for the search tests and benchmark until the store
package's own migrations and fixtures are on main: a minimal ``Db`` over sqlite3 / psycopg
with ``?`` placeholders, the contract's DDL, and the search migration applied on top."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

MIGRATIONS = Path(__file__).resolve().parents[2] / "qa_pipeline" / "store" / "migrations"
PG_ADMIN = os.environ.get("QA_SEARCH_PG", "postgresql://postgres@127.0.0.1:55400/postgres")

CONTRACT = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY, audio_sha256 TEXT NOT NULL, settings_hash TEXT NOT NULL,
    source TEXT, started_at TEXT, agent_id TEXT, call TEXT NOT NULL, updated_at {real} NOT NULL,
    team TEXT, direction TEXT, started_epoch {real}, duration_s {real}
);
CREATE INDEX IF NOT EXISTS calls_agent ON calls (agent_id, started_epoch);
CREATE INDEX IF NOT EXISTS calls_team ON calls (team, started_epoch);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, pack_name TEXT NOT NULL, pack_version TEXT NOT NULL,
    role TEXT NOT NULL, inputs TEXT NOT NULL, args TEXT NOT NULL, started {real} NOT NULL,
    finished {real}
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL, call_id TEXT NOT NULL, transcript_key TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT, score {real}, grade TEXT, failed INTEGER,
    failed_rules TEXT, findings TEXT, verdicts TEXT, created_at {real} NOT NULL,
    complete INTEGER, review INTEGER, PRIMARY KEY (run_id, call_id)
);
CREATE INDEX IF NOT EXISTS results_call_id ON results (call_id);
CREATE TABLE IF NOT EXISTS verdicts (
    run_id TEXT NOT NULL, call_id TEXT NOT NULL, rule_id TEXT NOT NULL, verdict TEXT NOT NULL,
    severity TEXT, deduction {real}, pending_deduction {real},
    PRIMARY KEY (run_id, call_id, rule_id)
);
CREATE INDEX IF NOT EXISTS verdicts_rule ON verdicts (rule_id, verdict);
CREATE INDEX IF NOT EXISTS verdicts_call ON verdicts (call_id);
CREATE TABLE IF NOT EXISTS utterances (
    call_id TEXT NOT NULL, idx INTEGER NOT NULL, channel INTEGER, role TEXT, start_s {real},
    end_s {real}, text TEXT, PRIMARY KEY (call_id, idx)
);
"""


class Db:
    """``execute``/``executemany`` with ``?`` placeholders, ``commit``, ``dialect``."""

    def __init__(self, conn: Any, dialect: str, url: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.url = url

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else re.sub(r"\?", "%s", sql)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        if self.dialect == "sqlite":
            return self.conn.executemany(sql, rows)
        with self.conn.cursor() as cur:
            cur.executemany(self._sql(sql), list(rows))

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def migrate(db: Db) -> None:
    """The contract's tables and the search migration, once (recorded in
    ``schema_migrations`` as the store's runner does)."""
    real = "REAL" if db.dialect == "sqlite" else "DOUBLE PRECISION"
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        f"name TEXT NOT NULL, applied_at {real} NOT NULL)"
    )
    if db.execute("SELECT 1 FROM schema_migrations WHERE version = 100").fetchone():
        db.commit()
        return
    ddl = CONTRACT.format(real=real)
    search = (MIGRATIONS / db.dialect / "0100_search.sql").read_text(encoding="utf-8")
    if db.dialect == "sqlite":
        db.conn.executescript(ddl + search)
    else:
        db.conn.execute(ddl)
        db.conn.execute(search)
    db.execute("INSERT INTO schema_migrations VALUES (100, 'search', 0)")
    db.commit()


def open_sqlite(path: str | Path) -> Db:
    conn = sqlite3.connect(str(path), isolation_level="DEFERRED")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    db = Db(conn, "sqlite", str(path))
    migrate(db)
    return db


def pg_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def create_pg_database(name: str, *, drop: bool = True) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        if drop:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')
    return pg_url(name)


def open_postgres(url: str) -> Db:
    import psycopg

    db = Db(psycopg.connect(url), "postgres", url)
    migrate(db)
    return db
