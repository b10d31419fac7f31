"""Retention enforced: delete what is older than the ``retention:`` settings allow.

Where kept data lives, and how each place is purged (one kind's cut-off per place):

=======  ==============================================  ======================================
where    what                                            how
=======  ==============================================  ======================================
store    transcripts, calls, scorecards (results), runs  :meth:`~qa_pipeline.store.Store.purge`
         (SQLite or PostgreSQL: ``--store`` or           by the call's start time, one
         ``retention.store``)                            transaction
store    the dashboard's alert acknowledgements          the scorecards' cut-off by when the
         (``alert_acks``)                                alert was acknowledged
spool    events waiting for Kafka                        :meth:`~qa_pipeline.sinks.spool.Spool.
         (``sinks.kafka.spool.directory``)               purge` by the envelope's produced_at,
                                                         counted as drops (reason retention)
jsonl    rotated JSONL files                             whole files whose day is over before
         ``<kind>.<YYYY-MM-DD>.<NNN>.jsonl``             the cut-off (``events.*``, which mixes
         (``sinks.jsonl.directory``)                     kinds: the shorter of transcripts and
                                                         scorecards)
store    recordings (rows of kept audio, migration       the audio cut-off by the row's
         0350) and their files                           created_at: row and file go together
audio    audio files under ``retention.audio_dirs``      by file modification time; only audio
         (and ``live.record.dir`` in ``serve``)          suffixes (.wav, .flac, ...) are taken
=======  ==============================================  ======================================

JSONL: the file being written (``transcript.jsonl``...) is never touched — the sink holds
it open and rotates it at the first write of each day (``rotate_daily``, the default), so
at most a day's lines wait there; lines inside a rotated file are not rewritten, the file
goes whole once all of its day is past the cut-off.

``qa-pipeline purge`` runs it once (``--dry-run`` counts without deleting); ``serve`` runs
it every ``retention.interval_s`` (first after ``first_delay_s``) on a worker thread,
purging its own Kafka spool through the open sink (the spool has one owner: a separate
``purge`` skips a spool a running service holds, and says so). Each place is purged on
its own: a failure in one (a locked store, an unreadable directory) is reported, counted
and logged, and the others are still purged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer

from .retention import AUDIO_SUFFIXES, EVENT_KINDS, KINDS, Kind, RetentionConfig, iso_utc
from .sinks.spool import Spool, SpoolInUse
from .store import DEFAULT_STORE, Store, store_exists, store_label
from .store.recordings import purge_recordings

log = logging.getLogger("qa_pipeline.purge")

_ROTATED = re.compile(r"^(?P<stem>.+)\.(?P<day>\d{4}-\d{2}-\d{2})\.\d+\.jsonl$")


@dataclass(frozen=True, slots=True)
class Removed:
    """``count`` items of retention ``kind`` removed from ``where`` (``store``, ``spool``,
    ``jsonl``, ``audio``); ``what`` names the table, event kind, or directory."""

    kind: Kind
    where: str
    what: str
    count: int


@dataclass
class PurgeReport:
    cutoffs: dict[Kind, datetime]
    dry_run: bool = False
    removed: list[Removed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # places skipped, and why
    errors: list[tuple[str, str]] = field(default_factory=list)  # (where, message)

    def total(self, kind: Kind | None = None) -> int:
        return sum(r.count for r in self.removed if kind is None or r.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "cutoffs": {k: iso_utc(v) for k, v in self.cutoffs.items()},
            "removed": [
                {"kind": r.kind, "where": r.where, "what": r.what, "count": r.count}
                for r in self.removed
            ],
            "totals": {k: self.total(k) for k in KINDS},
            "notes": list(self.notes),
            "errors": [{"where": w, "error": m} for w, m in self.errors],
        }

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        parts = [f"{r.count} {r.what} ({r.where})" for r in self.removed if r.count] or ["nothing"]
        return f"purge {verb} " + ", ".join(parts)


# -- the places -----------------------------------------------------------------------------

_STORE_KINDS: dict[str, Kind] = {
    "transcripts": "transcripts",
    "calls": "transcripts",
    "scorecards": "scorecards",
    "runs": "scorecards",
    "acks": "scorecards",  # the dashboard's alert acknowledgements (alert_acks)
}


def purge_store(
    path: str | Path,
    cutoffs: dict[Kind, datetime],
    report: PurgeReport,
    *,
    dry_run: bool = False,
) -> None:
    """A store: a SQLite file (skipped with a note when absent) or a PostgreSQL URL."""
    if not store_exists(path):
        report.notes.append(f"store: no store at {store_label(path)}")
        return
    before: dict[Kind, datetime] = {
        k: v for k, v in cutoffs.items() if k in ("transcripts", "scorecards")
    }
    if not before and "audio" not in cutoffs:
        return
    with Store(path) as db:
        counts = db.purge(before, dry_run=dry_run) if before else {}
        if "audio" in cutoffs:  # recordings: the row and its file
            n = purge_recordings(db, cutoffs["audio"], dry_run=dry_run)
            report.removed.append(Removed("audio", "store", "recordings", n))
    for table, n in counts.items():
        report.removed.append(Removed(_STORE_KINDS[table], "store", table, n))


def purge_spool(
    spool: Spool | Path, cutoffs: dict[Kind, datetime], report: PurgeReport, *, dry_run: bool
) -> None:
    """A spool directory (opened, unless a running service owns it) or an open spool."""
    before = {
        event: iso_utc(cutoffs[kind]) for event, kind in EVENT_KINDS.items() if kind in cutoffs
    }
    if not before:
        return
    if isinstance(spool, Spool):
        counts = spool.purge(before, dry_run=dry_run)
    else:
        if not (spool / "spool.sqlite3").is_file():
            report.notes.append(f"spool: no spool in {spool}")
            return
        try:
            opened = Spool(spool, name="kafka")
        except SpoolInUse:
            report.notes.append(
                f"spool: {spool} is held by a running service, which purges it itself"
            )
            return
        try:
            counts = opened.purge(before, dry_run=dry_run)
        finally:
            opened.close()
    for event in EVENT_KINDS:
        if event in before:
            report.removed.append(Removed(EVENT_KINDS[event], "spool", event, counts.get(event, 0)))


def _local_naive(when: datetime) -> datetime:
    return when.astimezone().replace(tzinfo=None)


def purge_jsonl(
    directory: Path, cutoffs: dict[Kind, datetime], report: PurgeReport, *, dry_run: bool
) -> None:
    """Rotated JSONL files whose (local) day ended before their kind's cut-off."""
    if not directory.is_dir():
        report.notes.append(f"jsonl: no directory {directory}")
        return
    text_kinds: list[tuple[datetime, Kind]] = [
        (cutoffs[k], k) for k in ("transcripts", "scorecards") if k in cutoffs
    ]
    counts: dict[Kind, int] = {}
    for path in sorted(directory.iterdir()):
        m = _ROTATED.match(path.name)
        if m is None or not path.is_file() or path.is_symlink():
            continue
        stem = m.group("stem")
        if stem == "events":  # layout 'single': every kind in one file, the shorter wins
            if not text_kinds:
                continue
            cutoff, kind = max(text_kinds, key=lambda ck: ck[0])  # latest cut-off
        elif stem in EVENT_KINDS and EVENT_KINDS[stem] in cutoffs:
            kind = EVENT_KINDS[stem]
            cutoff = cutoffs[kind]
        else:
            continue
        try:
            day = date.fromisoformat(m.group("day"))
        except ValueError:
            continue
        if datetime.combine(day + timedelta(days=1), time()) > _local_naive(cutoff):
            continue
        if not dry_run:
            path.unlink()
        counts[kind] = counts.get(kind, 0) + 1
    for kind in ("transcripts", "scorecards"):
        if kind in cutoffs:
            report.removed.append(Removed(kind, "jsonl", "files", counts.get(kind, 0)))


def purge_audio(
    directories: Iterable[Path], cutoff: datetime, report: PurgeReport, *, dry_run: bool
) -> None:
    """Audio files (by suffix; links not followed) modified before ``cutoff``."""
    limit = cutoff.timestamp()
    for top in directories:
        if not top.is_dir():
            report.notes.append(f"audio: no directory {top}")
            continue
        n = 0
        for root, _dirs, files in os.walk(top):
            for name in files:
                path = Path(root, name)
                if path.suffix.lower() not in AUDIO_SUFFIXES:
                    continue
                try:
                    st = path.lstat()
                    if not stat.S_ISREG(st.st_mode) or st.st_mtime >= limit:
                        continue  # a link (not followed), a device..., or young
                    if not dry_run:
                        path.unlink()
                except FileNotFoundError:  # gone meanwhile (another purge, a clean-up)
                    continue
                n += 1
        report.removed.append(Removed("audio", "audio", str(top), n))


# -- all of them ----------------------------------------------------------------------------


def run_purge(
    retention: RetentionConfig,
    *,
    store: str | Path | None = None,
    spool: Spool | Path | None = None,
    jsonl_dir: Path | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PurgeReport:
    """Purge each place given (and ``retention.audio_dirs``); failures are recorded in the
    report's ``errors`` and logged, the other places are still purged."""
    cutoffs = retention.cutoffs(now or datetime.now(UTC))
    report = PurgeReport(cutoffs, dry_run=dry_run)

    def attempt(where: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # one place failing must not stop the others
            report.errors.append((where, f"{type(exc).__name__}: {exc}"))
            log.error("purge of %s failed: %r", where, exc)

    if store is not None:
        attempt("store", lambda: purge_store(store, cutoffs, report, dry_run=dry_run))
    if spool is not None:
        attempt("spool", lambda: purge_spool(spool, cutoffs, report, dry_run=dry_run))
    if jsonl_dir is not None:
        attempt("jsonl", lambda: purge_jsonl(jsonl_dir, cutoffs, report, dry_run=dry_run))
    if retention.audio_dirs and "audio" in cutoffs:
        dirs = [Path(d) for d in retention.audio_dirs]
        attempt("audio", lambda: purge_audio(dirs, cutoffs["audio"], report, dry_run=dry_run))
    undelivered = sum(r.count for r in report.removed if r.where == "spool")
    if undelivered and not dry_run:
        log.warning(
            "purge removed %d event(s) never delivered to Kafka from the spool (older than "
            "retention)",
            undelivered,
        )
    log.info(report.summary())
    return report


# -- the service's schedule -----------------------------------------------------------------


class PurgeObserver(Protocol):
    def on_purged(self, kind: str, where: str, count: int) -> None: ...

    def on_purge_error(self, where: str) -> None: ...

    def on_purge_finished(self) -> None: ...


def spool_of(sinks: Iterable[tuple[str, object]]) -> Spool | None:
    """The open spool of a sink in this fan-out (the Kafka sink's), if any."""
    for _, sink in sinks:
        spool = getattr(sink, "spool", None)
        if isinstance(spool, Spool):
            return spool
    return None


async def purge_loop(
    retention: RetentionConfig,
    purge: Callable[[], PurgeReport],
    observer: PurgeObserver,
    on_report: Callable[[PurgeReport], None] | None = None,
) -> None:
    """Run ``purge`` on a worker thread after ``first_delay_s``, then every ``interval_s``,
    until cancelled. Errors are counted (``observer.on_purge_error``) and logged; they never
    end the loop."""
    interval = retention.interval_s
    if interval is None:
        return
    await asyncio.sleep(retention.first_delay_s)
    while True:
        try:
            report = await asyncio.to_thread(purge)
        except Exception as exc:
            log.exception("retention purge failed: %r", exc)
            observer.on_purge_error("purge")
        else:
            for r in report.removed:
                observer.on_purged(r.kind, r.where, r.count)
            for where, _ in report.errors:
                observer.on_purge_error(where)
            observer.on_purge_finished()
            if on_report is not None:
                on_report(report)
        await asyncio.sleep(interval)


# -- qa-pipeline purge ----------------------------------------------------------------------


def purge_command(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="config with the retention: section (and sinks:)"),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help=f"store to purge: a SQLite file, sqlite:///path or postgresql:// URL "
            f"(default: retention.store, else {DEFAULT_STORE} if present)",
        ),
    ] = None,
    spool: Annotated[
        Path | None,
        typer.Option("--spool", help="Kafka spool directory (default: sinks.kafka.spool)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would go, delete nothing")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Delete transcripts, scorecards and audio older than the retention: settings allow
    (store, Kafka spool, rotated JSONL files, audio directories)."""
    from rich.console import Console
    from rich.table import Table

    from .cli_errors import fail
    from .config import load_config
    from .errors import QAError

    try:
        cfg = load_config(config)
    except QAError as e:
        fail(e)
    retention = cfg.retention
    store_path: str | Path = store or retention.store or DEFAULT_STORE
    kafka = cfg.sinks.kafka
    spool_dir = spool or (Path(kafka.spool.directory) if kafka is not None else None)
    jsonl = cfg.sinks.jsonl
    jsonl_dir = Path(jsonl.directory) if jsonl is not None and jsonl.directory else None
    report = run_purge(
        retention, store=store_path, spool=spool_dir, jsonl_dir=jsonl_dir, dry_run=dry_run
    )
    if json_out:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        out = Console()
        title = "retention purge" + (" (dry run: nothing deleted)" if dry_run else "")
        table = Table(title=title)
        for col in ("kind", "days", "before", "where"):
            table.add_column(col, no_wrap=True)
        table.add_column("what")
        table.add_column("to remove" if dry_run else "removed", justify="right", no_wrap=True)
        for r in report.removed:
            days = retention.days(r.kind)
            table.add_row(
                r.kind,
                str(days),
                _local_naive(report.cutoffs[r.kind]).date().isoformat(),
                r.where,
                r.what,
                str(r.count),
            )
        for kind in KINDS:
            if kind not in report.cutoffs:
                table.add_row(kind, "forever", "-", "-", "-", "0")
        out.print(table)
        for note in report.notes:
            out.print(f"note: {note}")
        for where, msg in report.errors:
            out.print(f"[red]error[/red]: {where}: {msg}")
    raise typer.Exit(1 if report.errors else 0)
