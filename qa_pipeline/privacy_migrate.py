"""``qa-pipeline privacy migrate``: redact what was written before redaction existed.

* a **store** (``qa_pipeline/store``, SQLite or PostgreSQL): transcript documents, call metadata, findings'
  evidence, verdict details and error messages, in one transaction (a killed run leaves the
  store as it was). Transcripts imported from documents are keyed by a hash of the document
  (``doc:<sha256>``), which a guess of the digits could be checked against: they are keyed
  again by the redacted document.
* a Kafka sink's **spool** (``spool.sqlite3``, events not yet delivered): each event's JSON,
  in one transaction, holding the spool's lock (stop the service that owns it first).
* **JSONL / JSON files** (event files of the JSONL sink, ``transcribe --json`` and
  ``score --json`` documents, re-score ``results.jsonl``): each written to a temporary file
  beside it and renamed over it (atomic).

Idempotent: redacted data is left as it is, so a second run changes nothing. What it
cannot reach: Kafka topics (records stay until the topic's retention drops them) and
re-score reports (``results.csv``, ``report.html``: run ``rescore`` again on the migrated
store).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import QAError
from .privacy import Redactor, redact_json, redact_text
from .store import (
    RESULT_COLUMNS,
    Store,
    compact_json,
    database_errors,
    doc_key,
    store_exists,
    store_label,
)
from .store.base import INSERT_FINDING, write_utterances
from .store.rows import finding_rows

__all__ = ["MigrateCounts", "migrate_jsonl", "migrate_spool", "migrate_store", "privacy_app"]


@dataclass
class MigrateCounts:
    """What one migration looked at and what it changed (by table or file)."""

    target: str
    seen: dict[str, int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)

    def add(self, what: str, changed: bool) -> None:
        self.seen[what] = self.seen.get(what, 0) + 1
        if changed:
            self.changed[what] = self.changed.get(what, 0) + 1

    def line(self) -> str:
        parts = [f"{k}: {self.changed.get(k, 0)} of {n} redacted" for k, n in self.seen.items()]
        return f"{self.target}: " + ("; ".join(parts) if parts else "nothing to redact")


def _json_cell(text: str | None, redactor: Redactor) -> tuple[str | None, bool]:
    if not text:
        return text, False
    try:
        obj = json.loads(text)
    except ValueError:
        new = redact_text(text, redactor).text
        return new, new != text
    if redact_json(obj, redactor) + _details(obj, redactor):
        return compact_json(obj), True
    return text, False


def _details(obj: Any, redactor: Redactor) -> int:
    """A store's ``verdicts`` cell: rule id -> [verdict, deduction, pending, detail]."""
    n = 0
    if isinstance(obj, dict):
        for v in obj.values():
            if isinstance(v, list) and len(v) >= 4 and isinstance(v[3], str):
                new = redact_text(v[3], redactor).text
                if new != v[3]:
                    v[3] = new
                    n += 1
    return n


def migrate_store(target: str | Path, redactor: Redactor) -> MigrateCounts:
    """Redact a store in place (a SQLite file or a PostgreSQL URL), in one transaction;
    the row tables derived from what changed (findings, utterances) are derived again."""
    if not store_exists(target):
        raise QAError(f"{store_label(target)}: no such store")
    counts = MigrateCounts(store_label(target))
    with Store(target) as st:  # a writer: migrated forward first, so the row tables exist
        db = st.db
        sqlite = st.dialect == "sqlite"
        if sqlite:
            db.execute("PRAGMA secure_delete=ON")  # replaced text is overwritten, not freed
        db.begin()
        try:
            _redact_store(db, redactor, counts)
        except BaseException:
            db.rollback()
            raise
        db.commit()
        if counts.changed:
            if sqlite:
                _compact(db, counts)
            else:
                for table in ("transcripts", "calls", "results", "findings", "utterances"):
                    db.execute(f"VACUUM {table}")
    return counts


def _redact_store(db: Any, redactor: Redactor, counts: MigrateCounts) -> None:
    rekey: dict[str, str] = {}
    redacted_docs: list[tuple[str, str, dict[str, Any]]] = []
    rows = db.execute("SELECT audio_sha256, settings_hash, doc FROM transcripts").fetchall()
    for sha, h, doc_text in rows:
        doc = json.loads(doc_text)
        changed = bool(redact_json(doc, redactor))
        new_sha = sha
        if sha.startswith("doc:"):
            new_sha = doc_key(doc)
            if new_sha != sha:
                rekey[f"{sha}:{h}"] = f"{new_sha}:{h}"
                changed = True
        counts.add("transcripts", changed)
        if changed:
            if new_sha != sha:  # the redacted document's key may be taken: it replaces it
                db.execute(
                    "DELETE FROM transcripts WHERE audio_sha256 = ? AND settings_hash = ?",
                    (new_sha, h),
                )
            db.execute(
                "UPDATE transcripts SET audio_sha256 = ?, doc = ? "
                "WHERE audio_sha256 = ? AND settings_hash = ?",
                (new_sha, compact_json(doc), sha, h),
            )
            if new_sha != sha:
                db.execute(
                    "UPDATE calls SET audio_sha256 = ? WHERE audio_sha256 = ? AND settings_hash = ?",
                    (new_sha, sha, h),
                )
            redacted_docs.append((new_sha, h, doc))
    for cid, call_text, source in db.execute("SELECT call_id, call, source FROM calls").fetchall():
        new_call, changed = _json_cell(call_text, redactor)
        new_source = redact_text(source, redactor).text if source else source
        changed = changed or new_source != source
        counts.add("calls", changed)
        if changed:
            db.execute(
                "UPDATE calls SET call = ?, source = ? WHERE call_id = ?",
                (new_call, new_source, cid),
            )
    for sha, h, doc in redacted_docs:  # the calls' utterance rows: the redacted text
        for (cid,) in db.execute(
            "SELECT call_id FROM calls WHERE audio_sha256 = ? AND settings_hash = ?", (sha, h)
        ).fetchall():
            write_utterances(db, cid, doc)
    for row in db.execute(f"SELECT {', '.join(RESULT_COLUMNS)} FROM results").fetchall():
        run_id, cid, key, error, findings, verdicts = (row[i] for i in (0, 1, 2, 4, 9, 10))
        new_f, cf = _json_cell(findings, redactor)
        new_v, cv = _json_cell(verdicts, redactor)
        new_e = redact_text(error, redactor).text if error else error
        new_key = rekey.get(key, key)
        changed = cf or cv or new_e != error or new_key != key
        counts.add("results", changed)
        if changed:
            db.execute(
                "UPDATE results SET transcript_key = ?, error = ?, findings = ?, "
                "verdicts = ? WHERE run_id = ? AND call_id = ?",
                (new_key, new_e, new_f, new_v, run_id, cid),
            )
        if cf:  # the finding rows hold the findings' text (verdict rows hold none)
            new_row = (*row[:9], new_f, *row[10:])
            db.execute("DELETE FROM findings WHERE run_id = ? AND call_id = ?", (run_id, cid))
            frows = finding_rows(new_row)
            if frows:
                db.executemany(INSERT_FINDING, frows)


def _compact(db: Any, counts: MigrateCounts) -> None:
    """After a change (SQLite): the old text out of the file's free pages and the journal
    too."""
    if counts.changed:
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def migrate_spool(directory: Path, redactor: Redactor) -> MigrateCounts:
    """Redact the events waiting in a Kafka sink's spool, holding its lock."""
    db_path = directory / "spool.sqlite3"
    if not db_path.is_file():
        raise QAError(f"{directory}: no spool here (spool.sqlite3)")
    counts = MigrateCounts(str(directory))
    fd = os.open(directory / "spool.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise QAError(f"{directory}: the spool is in use (stop its service first)") from e
        db = sqlite3.connect(str(db_path), timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA secure_delete=ON")
            db.execute("BEGIN IMMEDIATE")
            for rid, value in db.execute("SELECT id, value FROM events").fetchall():
                text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
                new, changed = _json_cell(text, redactor)
                counts.add("events", changed)
                if changed and new is not None:
                    db.execute(
                        "UPDATE events SET value = ? WHERE id = ?", (new.encode("utf-8"), rid)
                    )
            db.execute("COMMIT")
            _compact(db, counts)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()
    finally:
        os.close(fd)  # releases the lock
    return counts


def _json_line(line: str, redactor: Redactor) -> tuple[str, bool]:
    body = line.rstrip("\n")
    try:
        obj = json.loads(body)
    except ValueError:
        new = redact_text(body, redactor).text  # not JSON (a torn line): as text
    else:
        if not redact_json(obj, redactor):
            return line, False
        new = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return new + line[len(body) :], new != body


def migrate_jsonl(path: Path, redactor: Redactor) -> MigrateCounts:
    """Redact a JSONL file (one JSON value a line) or a JSON document, replaced atomically
    (only when something changed)."""
    counts = MigrateCounts(str(path))
    text = path.read_text(encoding="utf-8")
    what = "lines"
    if path.suffix == ".json":
        what = "documents"
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise QAError(f"{path}: not a JSON document: {e}") from e
        changed = bool(redact_json(obj, redactor))
        counts.add(what, changed)
        out = json.dumps(obj, ensure_ascii=False, indent=2) + "\n" if changed else text
    else:
        parts = []
        for line in text.splitlines(keepends=True):
            new, changed = _json_line(line, redactor)
            counts.add(what, changed)
            parts.append(new)
        out = "".join(parts)
    if out != text:
        _replace(path, out)
    return counts


def _replace(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the command ------------------------------------------------------------------------

privacy_app = typer.Typer(help="Personal data: redact what was written before redaction.")


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file()
                    and f.suffix in (".jsonl", ".json")
                    and not f.name.startswith(".")
                )
            )
        else:
            out.append(p)
    return out


@privacy_app.command("migrate")
def migrate_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="JSONL / JSON files, or directories of them (e.g. out/events)"),
    ] = None,
    store: Annotated[
        list[str] | None,
        typer.Option(
            "--store",
            help="a store to redact: a SQLite file or a postgresql:// URL (repeatable)",
        ),
    ] = None,
    spool: Annotated[
        list[Path] | None,
        typer.Option("--spool", help="a Kafka sink's spool directory (repeatable)"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="config whose privacy: section masks")
    ] = None,
) -> None:
    """Redact stores, spools and JSONL/JSON files written before redaction, in place
    (atomically, idempotent); prints what each held and what changed."""
    from .cli_errors import fail
    from .config import load_config

    if not (paths or store or spool):
        typer.echo("error: name a --store, a --spool or files to migrate", err=True)
        raise typer.Exit(2)
    errors: tuple[type[BaseException], ...] = (QAError, OSError, *database_errors())
    try:
        cfg = load_config(config)
        redactor = Redactor(cfg.privacy)
        if not redactor.config.redact:
            raise QAError("privacy.redact is false in this config: nothing would be masked")
        results = [migrate_store(p, redactor) for p in store or ()]
        results += [migrate_spool(p, redactor) for p in spool or ()]
        results += [migrate_jsonl(p, redactor) for p in _files(list(paths or ()))]
    except errors as e:
        fail(e)
    for c in results:
        typer.echo(c.line())
