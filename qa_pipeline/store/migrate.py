"""Numbered SQL migrations, applied in order and recorded in ``schema_migrations``.

``migrations/<sqlite|postgres>/NNNN_name.sql``: one file per step and dialect, the same
number on both. A writer applies what is missing when it opens the store (and ``qa-pipeline
store migrate`` does it on purpose), all pending steps in one transaction under a lock
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-level advisory lock), so several
processes opening a fresh store at once apply each step exactly once. A step may have a
Python part (:data:`AFTER`) that runs in the same transaction after its SQL, e.g. filling
new tables from old columns.

Number ranges (one owner each): the store 0001-0099 (0001 = the schema before numbered
migrations, adopted as it is: its statements are all ``IF NOT EXISTS``), search 0100-0199,
review/appeal 0200-0299, acknowledgements/recordings 0300-0399.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from ..errors import QAError

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x51415354  # "QAST": the advisory lock migrations hold on PostgreSQL


class Connection(Protocol):
    dialect: str

    def execute(self, sql: str, params: Any = None) -> Any: ...
    def executemany(self, sql: str, rows: Any) -> Any: ...
    def begin(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def has_table(self, name: str) -> bool: ...
    @property
    def in_transaction(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


#: Python steps run after a migration's SQL, in its transaction (version -> function).
AFTER: dict[int, Callable[[Connection], None]] = {}


def migrations(dialect: str) -> list[Migration]:
    """The migration files of a dialect, by number (a gap or a duplicate is an error)."""
    folder = resources.files(__package__).joinpath("migrations", dialect)
    out: list[Migration] = []
    for entry in folder.iterdir():
        m = _FILE.match(entry.name)
        if m is None:
            if entry.name.endswith(".sql"):
                raise QAError(f"migration file {entry.name}: name it NNNN_name.sql")
            continue
        out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise QAError(f"{dialect} migrations: a number is used twice ({versions})")
    return out


def statements(sql: str) -> list[str]:
    """A migration file's statements: split at ``;`` ending a line (comments dropped)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*$", body, flags=re.M) if s.strip()]


def applied(conn: Connection) -> dict[int, str]:
    """Recorded migrations (version -> name); empty for a store without the table."""
    if not conn.has_table("schema_migrations"):
        return {}
    return dict(conn.execute("SELECT version, name FROM schema_migrations").fetchall())


def pending(conn: Connection) -> list[Migration]:
    done = applied(conn)
    return [m for m in migrations(conn.dialect) if m.version not in done]


def migrate(conn: Connection, *, upto: int | None = None) -> list[Migration]:
    """Apply what is missing (up to version ``upto``, default all), in one transaction;
    returns what was applied."""
    todo = [m for m in migrations(conn.dialect) if upto is None or m.version <= upto]
    if conn.in_transaction:
        raise RuntimeError("migrate: the store has uncommitted writes")
    if conn.has_table("schema_migrations") and set(applied(conn)) >= {m.version for m in todo}:
        return []  # the usual open: nothing to do, no lock taken
    real = "REAL" if conn.dialect == "sqlite" else "DOUBLE PRECISION"
    conn.begin()
    try:
        if conn.dialect == "postgres":
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            f"name TEXT NOT NULL, applied_at {real} NOT NULL)"
        )
        done = applied(conn)  # again, under the lock: another process may have been first
        ran = []
        for m in todo:
            if m.version in done:
                continue
            for stmt in statements(m.sql):
                conn.execute(stmt)
            step = AFTER.get(m.version)
            if step is not None:
                step(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (m.version, m.name, time.time()),
            )
            ran.append(m)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return ran
