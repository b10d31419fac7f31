"""The embedded backend: one SQLite file (stdlib ``sqlite3``), WAL journal."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

DIALECT = "sqlite"


class SqliteConnection:
    """A ``sqlite3`` connection behind the store's connection interface (``?`` placeholders
    as SQLite takes them; a transaction begins at the first write, as ``sqlite3`` does)."""

    dialect = DIALECT

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self.raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.raw = sqlite3.connect(str(path), timeout=60)
            self.raw.execute("PRAGMA journal_mode=WAL")
            self.raw.execute("PRAGMA synchronous=NORMAL")

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> sqlite3.Cursor:
        return self.raw.execute(sql, params or ())

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        return self.raw.executemany(sql, rows)

    def begin(self) -> None:
        """Open a write transaction now (taking the write lock)."""
        self.raw.execute("BEGIN IMMEDIATE")

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    #: a file's connection is not lost the way a server's is (an unreadable file fails
    #: each statement; a new connection fails the same)
    broken = False

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        self.raw.rollback()

    def close(self) -> None:
        self.raw.close()

    def has_table(self, name: str) -> bool:
        row = self.raw.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    @staticmethod
    def json_text(column: str, *path: str) -> str:
        """SQL for a JSON column's value at ``path`` (keys), as text."""
        return f"json_extract({column}, '$.{'.'.join(path)}')"
