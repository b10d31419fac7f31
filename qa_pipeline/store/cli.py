"""``qa-pipeline store``: the store's schema (``store migrate``)."""

from __future__ import annotations

from typing import Annotated

import typer

from .base import DEFAULT_STORE, Store, database_errors, store_label
from .migrate import applied, migrations

store_app = typer.Typer(help="The transcript store: schema migrations.")


@store_app.command("migrate")
def migrate_command(
    store: Annotated[
        str,
        typer.Option(
            "--store",
            "-s",
            help="a SQLite file, sqlite:///path or postgresql://user@host:port/db URL",
        ),
    ] = str(DEFAULT_STORE),
) -> None:
    """Apply the schema migrations a store lacks (in order, in one transaction; the row
    tables are back-filled from stored results and transcripts); prints each one applied
    and the version the store is at."""
    from ..cli_errors import fail
    from ..errors import QAError

    errors: tuple[type[BaseException], ...] = (QAError, OSError, *database_errors())
    try:
        with Store(store) as st:
            ran = st.applied
            done = applied(st.db)
            latest = max(m.version for m in migrations(st.dialect))
    except errors as e:
        fail(e)
    label = store_label(store)
    for m in ran:
        typer.echo(f"{label}: applied {m.version:04d}_{m.name}")
    version = max(done) if done else 0
    if not ran:
        typer.echo(f"{label}: up to date (schema {version:04d})")
    elif version != latest:  # pragma: no cover - migrate applies all or raises
        typer.echo(f"{label}: at {version:04d}, expected {latest:04d}")
