"""The server backend: PostgreSQL through psycopg 3 (``pip install 'qa-pipeline[postgres]'``).

The store's SQL is written with ``?`` placeholders (SQLite's); they become psycopg's
``%s`` here (outside string literals; a literal ``%`` is doubled). The connection runs in
autocommit mode and the store opens a transaction at its first write (``BEGIN``), as
``sqlite3`` does, so a reader never sits idle inside a transaction holding locks.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from ..errors import QAError

DIALECT = "postgres"
# statements that open no transaction (reads, and what cannot run inside one)
_NO_TX = ("SELECT", "WITH", "SHOW", "VALUES", "EXPLAIN", "VACUUM", "SET", "CREATE DATABASE")


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders as ``%s`` (not inside '...' or "..."), ``%`` as ``%%``."""
    out: list[str] = []
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        out.append("%%" if ch == "%" else ch)
    return "".join(out)


class PostgresConnection:
    """A psycopg 3 connection behind the store's connection interface."""

    dialect = DIALECT

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - the extra is part of the test set
            raise QAError(
                "a PostgreSQL store needs psycopg: pip install 'qa-pipeline[postgres]'"
            ) from e
        self.url = url
        try:
            self.raw = psycopg.connect(url, autocommit=True, connect_timeout=30)
        except psycopg.Error as e:
            raise QAError(f"{redact_url(url)}: cannot connect to the store: {e}") from e
        self._tx = False
        if readonly:
            self.raw.execute("SET default_transaction_read_only = on")

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        self._maybe_begin(sql)
        if params is None:
            return self.raw.execute(sql)
        return self.raw.execute(to_pyformat(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        self._maybe_begin(sql)
        cur = self.raw.cursor()
        cur.executemany(to_pyformat(sql), rows)
        return cur

    def _maybe_begin(self, sql: str) -> None:
        if not self._tx and not sql.lstrip()[:15].upper().startswith(_NO_TX):
            self.raw.execute("BEGIN")
            self._tx = True

    def begin(self) -> None:
        if not self._tx:
            self.raw.execute("BEGIN")
            self._tx = True

    @property
    def in_transaction(self) -> bool:
        return self._tx

    @property
    def broken(self) -> bool:
        """The connection was lost (the server ended it, the network went away): it serves
        no more statements; a new one is needed."""
        return bool(self.raw.closed)

    def commit(self) -> None:
        if self._tx:
            self._tx = False
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self._tx:
            self._tx = False
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        if self._tx and not self.raw.closed:
            with contextlib.suppress(Exception):
                self.rollback()  # as sqlite3 does: what was not committed is not kept
        self.raw.close()

    def has_table(self, name: str) -> bool:
        row = self.raw.execute("SELECT to_regclass(%s)", (name,)).fetchone()
        return row is not None and row[0] is not None

    @staticmethod
    def json_text(column: str, *path: str) -> str:
        """SQL for a JSON (text) column's value at ``path`` (keys), as text."""
        return f"(({column})::jsonb #>> '{{{','.join(path)}}}')"


def redact_url(url: str) -> str:
    """A URL without its password (in the user part or a ``password`` query parameter),
    for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@")
    query = _SECRET_PARAM.sub(r"\1***", parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


#: libpq parameters holding a secret, as ``name=value`` in a URL's query
_SECRET_PARAM = re.compile(r"((?:^|&)(?:password|sslpassword)=)[^&]*", re.IGNORECASE)


def url_secrets(url: str) -> list[str]:
    """The secrets a URL holds (its password, as written and decoded; ``password`` query
    parameters), to be masked wherever they might show up in a message."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in ("password", "sslpassword")]
    except ValueError:  # not a URL: nothing found in it
        return []
    out = {x for s in found if s for x in (s, unquote(s))}
    return sorted(out, key=len, reverse=True)
