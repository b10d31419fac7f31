"""A store with the contract's tables and the search migration, on both backends.

Until the store package's ``store_url`` fixture is on main, PostgreSQL is the server named
by ``QA_SEARCH_PG`` (default: the dev server on 127.0.0.1:55400), a fresh database per test.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contract import PG_ADMIN, Db, create_pg_database, open_postgres, open_sqlite  # noqa: E402


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except Exception as e:  # noqa: BLE001 - any failure to reach the server is reported
        return f"PostgreSQL at {PG_ADMIN} (QA_SEARCH_PG) not reachable: {e}"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        d = open_sqlite(tmp_path / "store.sqlite")
        yield d
        d.close()
        return
    why = _pg_reachable()
    if why:
        pytest.skip(why)
    import psycopg

    name = f"search_t_{uuid.uuid4().hex[:12]}"
    d = open_postgres(create_pg_database(name))
    yield d
    d.close()
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
