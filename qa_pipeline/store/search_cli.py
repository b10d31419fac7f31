"""``qa-pipeline search``: full-text search of the stored transcripts with filters."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from ..cli_errors import fail
from ..errors import QAError

DEFAULT_URL = "out/qa-store.sqlite"


def _epoch(value: str | None, name: str) -> float | None:
    """A date (``2026-03-01``) or time (``2026-03-01T08:00``, UTC unless it says) as epoch."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date or time (2026-03-01, 2026-03-01T08:00)", param_hint=name
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def search_command(
    terms: Annotated[
        list[str], typer.Argument(help="words to find, all in the same call (投诉 退款)")
    ],
    agent: Annotated[str | None, typer.Option(help="agent id")] = None,
    team: Annotated[str | None, typer.Option(help="team")] = None,
    since: Annotated[
        str | None, typer.Option(help="calls started at or after (2026-03-01, UTC)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="calls started before (UTC)")] = None,
    rule: Annotated[str | None, typer.Option(help="rule id (with --verdict: that verdict)")] = None,
    verdict: Annotated[
        str | None, typer.Option(help="passed | failed | not_applicable | uncertain")
    ] = None,
    min_score: Annotated[float | None, typer.Option(help="current score at least")] = None,
    max_score: Annotated[float | None, typer.Option(help="current score at most")] = None,
    direction: Annotated[str | None, typer.Option(help="inbound | outbound")] = None,
    store: Annotated[
        str, typer.Option("--store", help="store: a SQLite path or a postgresql:// URL")
    ] = DEFAULT_URL,
    limit: Annotated[int, typer.Option(help="calls per page")] = 20,
    offset: Annotated[int, typer.Option(help="calls skipped (the page start)")] = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON lines: one per call, then the totals")
    ] = False,
) -> None:
    """Find calls by what was said, with filters; each hit links to the call at its first
    matching utterance (``/calls/<id>#u<index>``)."""
    from . import search as S

    try:
        filters = S.Filters(
            agent=agent,
            team=team,
            direction=direction,
            since=_epoch(since, "--since"),
            until=_epoch(until, "--until"),
            rule=rule,
            verdict=verdict,
            min_score=min_score,
            max_score=max_score,
        )
        db = S.open_store_for_search(store)
        try:
            page = S.search(db, terms, filters, limit=limit, offset=offset)
        finally:
            db.close()
    except (QAError, S.SearchError, OSError) as e:
        fail(e)
    if page.index_behind:
        from .base import store_label

        typer.echo(
            f"note: {store_label(store)}: the search index is behind by {page.index_behind} "
            "call(s) and this store cannot be written here (read-only), so it was searched "
            "as indexed: changes to those calls are not seen. A search with write access "
            "to the store (or the dashboard's) brings the index up to date.",
            err=True,
        )
    if json_out:
        for h in page.hits:
            sys.stdout.write(json.dumps(h.as_dict(), ensure_ascii=False) + "\n")
        total = {
            "total_calls": page.total_calls,
            "offset": offset,
            "limit": limit,
            "index_behind": page.index_behind,
        }
        sys.stdout.write(json.dumps(total) + "\n")
        return
    _print(page)


def _print(page: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = Console(width=None if sys.stdout.isatty() else 200)  # a pipe gets whole links
    table = Table(show_lines=False)
    for col in ("call", "utt", "at s", "role", "snippet", "agent", "score", "link"):
        table.add_column(col, no_wrap=col in ("call", "link"))
    for h in page.hits:
        u = h.first
        snip = escape(u.snippet).replace("【", "[bold red]").replace("】", "[/bold red]")
        more = f" (+{len(h.utterances) - 1})" if len(h.utterances) > 1 else ""
        table.add_row(
            escape(h.call_id),
            str(u.index),
            f"{u.start_s:.1f}" if u.start_s is not None else "",
            u.role or "",
            snip + more,
            escape(h.agent_id or ""),
            f"{h.score:g}" if h.score is not None else "",
            escape(h.link),
        )
    out.print(table)
    first = page.offset + 1 if page.hits else 0
    out.print(f"{page.total_calls} call(s) match; showing {first}-{page.offset + len(page.hits)}")
