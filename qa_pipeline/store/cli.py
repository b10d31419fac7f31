"""``qa-pipeline store``: the store's schema (``store migrate``); a re-score's run made
the record (``store promote``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..errors import QAError
from .base import DEFAULT_STORE, Store, database_errors, store_exists, store_label
from .migrate import applied, migrations

store_app = typer.Typer(help="The transcript store: schema migrations, promoting a re-score.")

_STORE_HELP = "a SQLite file, sqlite:///path or postgresql://user@host:port/db URL"


@store_app.command("migrate")
def migrate_command(
    store: Annotated[
        str,
        typer.Option(
            "--store",
            "-s",
            help=_STORE_HELP,
        ),
    ] = str(DEFAULT_STORE),
) -> None:
    """Apply the schema migrations a store lacks (in order, in one transaction; the row
    tables are back-filled from stored results and transcripts); prints each one applied
    and the version the store is at."""
    from ..cli_errors import fail

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


@store_app.command("promote")
def promote_command(
    run_id: Annotated[
        str,
        typer.Argument(help="the run to promote (rescore prints it: run_id)", show_default=False),
    ],
    store: Annotated[str, typer.Option("--store", "-s", help=_STORE_HELP)] = str(DEFAULT_STORE),
    by: Annotated[
        str | None,
        typer.Option("--by", help="who promotes it (kept with the run; default: the login name)"),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
) -> None:
    """Make a re-score's run count: its role becomes 'active' (recorded with who and when),
    so that its results are the current scores of the calls it scored, unless an active
    result written after it or a reviewed score stands over them (README, "Which score
    counts"). A run not finished or with error results is refused; promoting a run twice
    changes nothing."""
    import getpass
    import json

    from ..cli_errors import fail
    from .promote import promote_run

    errors: tuple[type[BaseException], ...] = (QAError, OSError, *database_errors())
    label = store_label(store)
    try:
        if not store_exists(store):
            raise QAError(f"{label}: no such store")
        who = by or _login(getpass)
        with Store(store) as st:
            p = promote_run(st, run_id, by=who)
    except errors as e:
        fail(e)
    if json_out:
        fields = ("run_id", "pack", "promoted_from", "promoted_by", "promoted_at", "changed")
        out = {k: getattr(p, k) for k in fields}
        out.update(store=label, results=p.results, current=p.current)
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if p.changed:
        head = f"{label}: run {p.run_id} ({p.pack}, was {p.promoted_from}) now counts"
    elif p.promoted_by is not None:
        head = (
            f"{label}: run {p.run_id} ({p.pack}) already counts: promoted by "
            f"{p.promoted_by} at {_when(p.promoted_at)}; nothing changed"
        )
    else:
        head = f"{label}: run {p.run_id} ({p.pack}) is active already; nothing changed"
    typer.echo(head)
    later = p.results - p.current
    tail = f"; {later} keep an active result written after it" if later else ""
    typer.echo(f"  {p.results} calls scored, {p.current} with it as their current result{tail}")


def _login(getpass: Any) -> str:
    try:
        return str(getpass.getuser())
    except (OSError, KeyError) as e:
        raise QAError("who promotes the run? no login name here: pass --by NAME") from e


def _when(at: float | None) -> str:
    from datetime import UTC, datetime

    if at is None:
        return "?"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
