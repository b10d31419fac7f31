"""Opening a store for review: a SQLite path (``sqlite:///path``) or a ``postgresql://``
URL, with the review tables (migration ``0200_reviews``) in place.

Stop-gap until the store package's ``open_store`` (numbered migrations applied at open)
lands: it opens the connection itself, creates today's store tables where they are missing
and applies ``0200_reviews`` when ``review_versions`` is absent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..store import _SCHEMA, Store

MIGRATIONS = Path(__file__).resolve().parent.parent / "store" / "migrations"
REVIEW_MIGRATION = "0200_reviews.sql"

__all__ = ["SqlDb", "open_db"]


class SqlDb:
    """A connection with ``?`` placeholders on both backends."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn = conn
        self._dialect = dialect

    @property
    def dialect(self) -> str:
        return self._dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._dialect == "postgres":
            sql = sql.replace("?", "%s")
        return self.conn.execute(sql, tuple(params))

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> SqlDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _has_table(db: SqlDb, name: str) -> bool:
    if db.dialect == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE name = ?"
    else:
        sql = "SELECT 1 FROM information_schema.tables WHERE table_name = ?"
    return db.execute(sql, (name,)).fetchone() is not None


def ensure_review_schema(db: SqlDb) -> None:
    """Apply ``0200_reviews`` when the review tables are missing."""
    if _has_table(db, "review_versions"):
        return
    sql = (MIGRATIONS / db.dialect / REVIEW_MIGRATION).read_text(encoding="utf-8")
    if db.dialect == "sqlite":
        db.conn.executescript(sql)
    else:
        db.conn.execute(sql)
    db.commit()


def open_db(url: str | Path) -> SqlDb:
    """The store at ``url`` (a path, ``sqlite:///path`` or ``postgresql://...``)."""
    s = str(url)
    if s.startswith(("postgresql://", "postgres://")):
        import psycopg

        db = SqlDb(psycopg.connect(s), "postgres")
        if not _has_table(db, "results"):
            db.conn.execute(_SCHEMA.replace("REAL", "DOUBLE PRECISION"))
            db.commit()
    else:
        path = s.removeprefix("sqlite:///") if s.startswith("sqlite:///") else s
        Store(path).close()  # today's tables
        db = SqlDb(sqlite3.connect(path, timeout=60), "sqlite")
    ensure_review_schema(db)
    return db
