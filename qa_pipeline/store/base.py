"""The store's logic, the same on both backends (SQL written once, ``?`` placeholders,
portable upserts: ``INSERT ... ON CONFLICT``)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import QAError
from ..retention import Kind, as_epoch, parse_time
from ..transcript import Transcript, transcript_from_dict, transcript_to_dict
from . import migrate as migrations
from .keys import StoredCall, canonical_json, compact_json, settings_hash
from .postgres import PostgresConnection, redact_url, url_secrets
from .rows import (
    call_columns,
    finding_rows,
    merge_call,
    merge_doc,
    result_flags,
    result_row,
    utterance_rows,
    verdict_rows,
)
from .sqlite import SqliteConnection

DEFAULT_STORE = Path("out") / "qa-store.sqlite"
STORE_SCHEMA_VERSION = 1  # the ``meta`` version of stores before numbered migrations

#: The table of reviewed scores that :meth:`Store.current_results` lets override the
#: machine score: ``call_reviews(call_id, score, ...)``, one row per call holding its
#: current reviewed score (written by the review work; created by migration 0200, so every
#: store this code opens has it: a writer migrates, a reader refuses a store behind).
REVIEWED_SCORES = "call_reviews"

_PG_PREFIXES = ("postgresql://", "postgres://")


def team_scope_sql(
    teams: Iterable[str], team_agents: Iterable[str] = (), *, col: str = "c."
) -> tuple[str, list[Any]]:
    """The team scope of a supervisor as one SQL condition on a row with ``team`` and
    ``agent_id`` columns (``col``: their prefix, ``c.`` for ``calls c``, ``s.`` for the
    search index's ``search_calls s``), and its parameters: the calls whose team is one of
    ``teams``, or, for a call without a team, whose agent is one of ``team_agents`` (the
    agents of those teams). No team: no call. The history pages and the search share it.
    """
    t = sorted(set(teams))
    a = sorted(set(team_agents))
    if not t:
        return "1 = 0", []
    cond = f"{col}team IN ({','.join('?' * len(t))})"
    if a:
        cond += f" OR ({col}team IS NULL AND {col}agent_id IN ({','.join('?' * len(a))}))"
    return f"({cond})", [*t, *a]


def is_url(target: str | Path) -> bool:
    """Whether a ``--store`` value names a server (PostgreSQL) rather than a file."""
    return isinstance(target, str) and target.startswith(_PG_PREFIXES)


def store_path(target: str | Path) -> Path | None:
    """The SQLite file a ``--store`` value names (a path or ``sqlite:///path``), or None
    for a PostgreSQL URL. Another ``scheme://`` is an error naming the value."""
    if isinstance(target, Path):
        return target
    if target.startswith(_PG_PREFIXES):
        return None
    if target.startswith("sqlite:///"):
        return Path(target[len("sqlite:///") :])
    if "://" in target:
        raise QAError(
            f"{target}: not a store (a file path, sqlite:///path or postgresql://... URL)"
        )
    return Path(target)


def store_exists(target: str | Path) -> bool:
    """A SQLite file that exists, or any PostgreSQL URL (the server says at open)."""
    path = store_path(target)
    return path is None or path.is_file()


def store_label(target: str | Path) -> str:
    path = store_path(target)
    return str(path) if path is not None else redact_url(str(target))


#: characters of an error kept in :func:`store_problem`'s message
PROBLEM_CHARS = 400


def store_problem(error: BaseException, target: str | Path) -> str:
    """What is wrong with the store ``target``, for a message that leaves the process (an
    HTTP answer): the store's label (a URL without its password) and the error's text on
    one line, at most :data:`PROBLEM_CHARS` characters of it, with the URL's secrets masked
    wherever the database's message repeats them."""
    label = store_label(target)
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > PROBLEM_CHARS:
        text = text[: PROBLEM_CHARS - 3] + "..."
    if not text.startswith(label):
        text = f"{label}: {text}"
    for secret in url_secrets(str(target)) if is_url(target) else ():
        text = text.replace(secret, "***")
    return text


def database_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a store's database may raise (for commands that report them)."""
    errors: list[type[BaseException]] = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


_UPSERT_CALL = (
    "INSERT INTO calls (call_id, audio_sha256, settings_hash, source, started_at, agent_id, "
    "call, updated_at, team, direction, started_epoch, duration_s) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE SET "
    "audio_sha256 = excluded.audio_sha256, settings_hash = excluded.settings_hash, "
    "source = excluded.source, started_at = excluded.started_at, "
    "agent_id = excluded.agent_id, call = excluded.call, updated_at = excluded.updated_at, "
    "team = excluded.team, direction = excluded.direction, "
    "started_epoch = excluded.started_epoch, duration_s = excluded.duration_s"
)
_UPSERT_RESULT = (
    "INSERT INTO results (run_id, call_id, transcript_key, status, error, score, grade, "
    "failed, failed_rules, findings, verdicts, created_at, complete, review) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, call_id) DO UPDATE "
    "SET transcript_key = excluded.transcript_key, status = excluded.status, "
    "error = excluded.error, score = excluded.score, grade = excluded.grade, "
    "failed = excluded.failed, failed_rules = excluded.failed_rules, "
    "findings = excluded.findings, verdicts = excluded.verdicts, "
    "created_at = excluded.created_at, complete = excluded.complete, review = excluded.review"
)
_INSERT_VERDICT = (
    "INSERT INTO verdicts (run_id, call_id, rule_id, verdict, severity, deduction, "
    "pending_deduction) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_FINDING = (
    "INSERT INTO findings (run_id, call_id, seq, rule_id, severity, message, "
    "utterance_index, start_s, end_s, matched) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_UTTERANCE = (
    "INSERT INTO utterances (call_id, idx, channel, role, start_s, end_s, text) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def write_result_rows(db: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """Results rows and their ``verdicts`` / ``findings`` rows (replacing a call's earlier
    ones in the same run), in the caller's transaction."""
    keys = [(r[0], r[1]) for r in rows]
    db.executemany(_UPSERT_RESULT, [(*r[:12], *result_flags(r)) for r in rows])
    db.executemany("DELETE FROM verdicts WHERE run_id = ? AND call_id = ?", keys)
    db.executemany("DELETE FROM findings WHERE run_id = ? AND call_id = ?", keys)
    vrows = [v for r in rows for v in verdict_rows(r)]
    frows = [f for r in rows for f in finding_rows(r)]
    if vrows:
        db.executemany(_INSERT_VERDICT, vrows)
    if frows:
        db.executemany(INSERT_FINDING, frows)


def write_utterances(db: Any, call_id: str, doc: dict[str, Any]) -> None:
    """A call's ``utterances`` rows rewritten from its (redacted) transcript document."""
    db.execute("DELETE FROM utterances WHERE call_id = ?", (call_id,))
    rows = utterance_rows(call_id, doc)
    if rows:
        db.executemany(_INSERT_UTTERANCE, rows)


def backfill(db: Any) -> None:
    """Migration 0002's Python part: the row tables and the calls' new columns filled from
    the JSON columns of what is stored (results, transcripts, calls)."""
    for cid, call_text in db.execute("SELECT call_id, call FROM calls").fetchall():
        cols = call_columns(json.loads(call_text))
        db.execute(
            "UPDATE calls SET team = ?, direction = ?, started_epoch = ?, duration_s = ? "
            "WHERE call_id = ?",
            (*cols, cid),
        )
    cur = db.execute("SELECT * FROM results")
    names = [d[0] for d in cur.description]
    idx = [names.index(c) for c in _RESULT_COLUMNS_12]
    rows = [tuple(r[i] for i in idx) for r in cur.fetchall()]
    for i in range(0, len(rows), 500):
        write_result_rows(db, rows[i : i + 500])
    docs = db.execute(
        "SELECT c.call_id, t.doc FROM calls c JOIN transcripts t "
        "ON t.audio_sha256 = c.audio_sha256 AND t.settings_hash = c.settings_hash"
    ).fetchall()
    for cid, doc_text in docs:
        write_utterances(db, cid, json.loads(doc_text))


_RESULT_COLUMNS_12 = (
    "run_id", "call_id", "transcript_key", "status", "error", "score", "grade", "failed",
    "failed_rules", "findings", "verdicts", "created_at",
)  # fmt: skip

migrations.AFTER[2] = backfill


class Store:
    """A store: a SQLite file (a path, or ``sqlite:///path``) or a PostgreSQL database
    (``postgresql://...``). Not thread-safe: one ``Store`` per thread / process.

    A writer applies pending migrations when it opens (``migrate=False`` leaves them to
    ``qa-pipeline store migrate``). ``execute`` / ``executemany`` take ``?`` placeholders
    on both backends; writes gather in a transaction until :meth:`commit`."""

    def __init__(self, target: str | Path, *, readonly: bool = False, migrate: bool = True) -> None:
        path = store_path(target)
        self.path = path
        self.url = str(target) if path is None else f"sqlite:///{path}"
        self.db: SqliteConnection | PostgresConnection
        if path is not None:
            self.db = SqliteConnection(path, readonly=readonly)
        else:
            self.db = PostgresConnection(str(target), readonly=readonly)
        self.dialect: str = self.db.dialect
        self.applied: list[migrations.Migration] = []
        try:
            if readonly:
                self._check_schema()
            elif migrate:
                self.applied = migrations.migrate(self.db)
        except BaseException:
            self.db.close()
            raise

    def _check_schema(self) -> None:
        """A reader cannot migrate: a store behind this code is an error that says what to
        run (rather than a missing column somewhere later)."""
        missing = migrations.pending(self.db)
        if missing:
            raise QAError(
                f"{store_label(self.url)}: the store's schema lacks migration "
                f"{missing[0].version:04d}_{missing[0].name}: run "
                "'qa-pipeline store migrate --store ...' (or open it for writing once)"
            )

    def close(self) -> None:
        self.db.close()

    @property
    def broken(self) -> bool:
        """The connection to the server was lost: this store answers no more (open anew)."""
        return self.db.broken

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SQL on either backend ------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement (``?`` placeholders); returns a cursor."""
        return self.db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self.db.executemany(sql, rows)

    def commit(self) -> None:
        self.db.commit()

    def rollback(self) -> None:
        self.db.rollback()

    def has_table(self, name: str) -> bool:
        return self.db.has_table(name)

    def json_text(self, column: str, *path: str) -> str:
        """SQL for the text at ``path`` (object keys) in a JSON text column."""
        return self.db.json_text(column, *path)

    # -- settings and transcripts -------------------------------------------------------

    def put_settings(self, settings: dict[str, Any]) -> str:
        h = settings_hash(settings)
        self.db.execute(
            "INSERT INTO settings (settings_hash, settings) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (h, canonical_json(settings)),
        )
        return h

    def get_settings(self, settings_hash_: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT settings FROM settings WHERE settings_hash = ?", (settings_hash_,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def has_transcript(self, audio_sha: str, settings_hash_: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM transcripts WHERE audio_sha256 = ? AND settings_hash = ?",
            (audio_sha, settings_hash_),
        ).fetchone()
        return row is not None

    def cached_keys(self, settings_hash_: str) -> set[str]:
        """Audio hashes that have a transcript for these settings."""
        return {
            r[0]
            for r in self.db.execute(
                "SELECT audio_sha256 FROM transcripts WHERE settings_hash = ?", (settings_hash_,)
            )
        }

    def put_transcript(
        self,
        transcript: Transcript | dict[str, Any],
        *,
        audio_sha: str,
        settings_hash_: str,
        commit: bool = True,
    ) -> StoredCall:
        """Store a transcript (cache row) and make it the transcript of its call (its
        ``utterances`` rows rewritten)."""
        doc = transcript if isinstance(transcript, dict) else transcript_to_dict(transcript)
        call = doc["call"]
        self.db.execute(
            "INSERT INTO transcripts (audio_sha256, settings_hash, call_id, doc, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (audio_sha256, settings_hash) DO UPDATE SET "
            "call_id = excluded.call_id, doc = excluded.doc, created_at = excluded.created_at",
            (audio_sha, settings_hash_, call["call_id"], compact_json(doc), time.time()),
        )
        stored = self._put_call(call, audio_sha, settings_hash_)
        write_utterances(self.db, stored.call_id, doc)
        if commit:
            self.db.commit()
        return stored

    def put_call(self, call: dict[str, Any], *, audio_sha: str, settings_hash_: str) -> StoredCall:
        """Point a call at a cached transcript, with (possibly new) call metadata; the
        call's ``utterances`` rows follow when it now points at another transcript."""
        before = self.db.execute(
            "SELECT audio_sha256, settings_hash FROM calls WHERE call_id = ?",
            (call["call_id"],),
        ).fetchone()
        stored = self._put_call(call, audio_sha, settings_hash_)
        if before is None or tuple(before) != (audio_sha, settings_hash_):
            doc = self.cached_doc(audio_sha, settings_hash_)
            if doc is not None:
                write_utterances(self.db, stored.call_id, doc)
            else:
                self.db.execute("DELETE FROM utterances WHERE call_id = ?", (stored.call_id,))
        return stored

    def _put_call(self, call: dict[str, Any], audio_sha: str, settings_hash_: str) -> StoredCall:
        self.db.execute(
            _UPSERT_CALL,
            (
                call["call_id"],
                audio_sha,
                settings_hash_,
                call.get("source"),
                call.get("started_at"),
                call.get("agent_id"),
                compact_json(call),
                time.time(),
                *call_columns(call),
            ),
        )
        return StoredCall(str(call["call_id"]), audio_sha, settings_hash_)

    def transcript_doc(self, call_id: str) -> dict[str, Any] | None:
        """A call's transcript document (its current metadata applied)."""
        row = self.db.execute(
            "SELECT t.doc, c.call FROM calls c JOIN transcripts t "
            "ON t.audio_sha256 = c.audio_sha256 AND t.settings_hash = c.settings_hash "
            "WHERE c.call_id = ?",
            (call_id,),
        ).fetchone()
        return merge_call(row[0], row[1]) if row else None

    def transcript(self, call_id: str) -> Transcript | None:
        doc = self.transcript_doc(call_id)
        return transcript_from_dict(doc) if doc else None

    def cached_doc(self, audio_sha: str, settings_hash_: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT doc FROM transcripts WHERE audio_sha256 = ? AND settings_hash = ?",
            (audio_sha, settings_hash_),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def calls(self) -> list[StoredCall]:
        """Every call that has a transcript, by call id."""
        return [
            StoredCall(*r)
            for r in self.db.execute(
                "SELECT c.call_id, c.audio_sha256, c.settings_hash FROM calls c "
                "JOIN transcripts t ON t.audio_sha256 = c.audio_sha256 "
                "AND t.settings_hash = c.settings_hash ORDER BY c.call_id"
            )
        ]

    def iter_docs(self, call_ids: Sequence[str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """``(call_id, transcript_key, document with metadata applied)`` for these calls,
        in one query per 900 ids (bulk read for rules-only re-scoring)."""
        for i in range(0, len(call_ids), 900):
            part = list(call_ids[i : i + 900])
            marks = ",".join("?" * len(part))
            rows = self.db.execute(
                "SELECT c.call_id, c.audio_sha256 || ':' || c.settings_hash, t.doc, c.call "
                "FROM calls c JOIN transcripts t ON t.audio_sha256 = c.audio_sha256 "
                f"AND t.settings_hash = c.settings_hash WHERE c.call_id IN ({marks})",
                part,
            ).fetchall()
            for cid, key, doc, call in rows:
                yield cid, key, merge_doc(doc, call)

    # -- runs and results ----------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        *,
        pack_name: str,
        pack_version: str,
        role: str,
        inputs: str,
        args: dict[str, Any],
        fresh: bool,
    ) -> None:
        """Register a run; ``fresh`` drops its committed results (no resume). A run
        resumed is unfinished again until :meth:`finish_run` (``store promote`` refuses an
        unfinished run)."""
        if fresh:
            for table in ("verdicts", "findings", "results", "runs"):
                self.db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        self._insert_run(run_id, pack_name, pack_version, role, inputs, compact_json(args))
        self.db.execute("UPDATE runs SET finished = NULL WHERE run_id = ?", (run_id,))
        self.db.commit()

    def _insert_run(
        self, run_id: str, name: str, version: str, role: str, inputs: str, args: str
    ) -> None:
        self.db.execute(
            "INSERT INTO runs (run_id, pack_name, pack_version, role, inputs, args, started, "
            "finished) VALUES (?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT DO NOTHING",
            (run_id, name, version, role, inputs, args, time.time()),
        )

    def finish_run(self, run_id: str) -> None:
        self.db.execute("UPDATE runs SET finished = ? WHERE run_id = ?", (time.time(), run_id))
        self.db.commit()

    def done(self, run_id: str) -> dict[str, str]:
        """Committed results of a run: call id -> transcript key it was scored from."""
        return dict(
            self.db.execute(
                "SELECT call_id, transcript_key FROM results WHERE run_id = ?", (run_id,)
            ).fetchall()
        )

    def put_results(self, rows: Iterable[tuple[Any, ...]], *, commit: bool = True) -> None:
        """Rows in ``results`` column order (see :data:`RESULT_COLUMNS`; a
        :class:`~qa_pipeline.store.rows.ResultRow` also says complete/review/severity),
        with their ``verdicts`` and ``findings`` rows, in one transaction."""
        batch = list(rows)
        if batch:
            write_result_rows(self.db, batch)
        if commit:
            self.db.commit()

    def record_score(self, transcript: Transcript, card: Any, pack: Any, *, key: str) -> str:
        """Keep a call scored by ``qa-pipeline score`` (or a live service): its transcript
        must already be stored under ``key``; the scorecard goes under the run
        ``scored:<pack version>``, whose role is ``active`` (the pack in service: its
        latest result is the call's current score). Returns the run id."""
        run_id = f"scored:{pack.version}"
        self._insert_run(run_id, pack.name, pack.version, "active", "", "{}")
        row = result_row(run_id, transcript.call.call_id, key, card, time.time())
        self.put_results([row])
        return run_id

    def results(self, run_id: str) -> list[dict[str, Any]]:
        """A run's results joined with call metadata, by call id."""
        cur = self.db.execute(
            "SELECT r.call_id, r.transcript_key, r.status, r.error, r.score, r.grade, "
            "r.failed, r.failed_rules, r.findings, r.verdicts, c.agent_id, c.started_at, "
            "c.source FROM results r LEFT JOIN calls c ON c.call_id = r.call_id "
            "WHERE r.run_id = ? ORDER BY r.call_id",
            (run_id,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    # -- which score counts ----------------------------------------------------------------

    def current_results(
        self,
        *,
        agent_id: str | None = None,
        team: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        """Each call's **current score**, the rows that trends and agent averages use.

        * A call's score is its **reviewed score** when a reviewer gave one (the
          :data:`REVIEWED_SCORES` table: this method is the one place a reviewed score
          overrides the machine's), else the score of the **latest
          result** (``created_at``) among the runs whose ``role`` is ``active`` — the pack
          in service (``serve``, ``score --store``: :meth:`record_score`). Runs of a
          candidate or baseline pack (``rescore``: roles ``new`` / ``baseline``) never count.
        * Left out: calls whose current result is an ``error``; **incomplete** calls
          (``results.complete = 0``: scored from part of the audio) unless reviewed.
        * ``uncertain`` verdicts take no deduction (the machine score counts failed
          verdicts only); :meth:`current_verdicts` leaves them out of violation counts.

        Filters: ``agent_id``, ``team`` (the call's ``team``), ``since`` / ``until`` (UTC
        epoch seconds of the call's start, ``since <= started_epoch < until``). Each row:
        ``call_id, run_id, score, grade, failed, review, complete, reviewed (1/0),
        agent_id, team, direction, started_epoch, duration_s``, by start time.
        """
        where, params = self._call_filters(agent_id, team, since, until)
        is_reviewed = "CASE WHEN v.score IS NULL THEN 0 ELSE 1 END"
        cur = self.db.execute(
            f"{self._latest_active()} SELECT r.call_id, r.run_id, "
            "COALESCE(v.score, r.score) AS score, COALESCE(v.grade, r.grade) AS grade, "
            f"COALESCE(v.failed, r.failed) AS failed, r.review, r.complete, {is_reviewed} "
            "AS reviewed, c.agent_id, c.team, c.direction, c.started_epoch, c.duration_s "
            "FROM latest r JOIN calls c ON c.call_id = r.call_id "
            f"LEFT JOIN {REVIEWED_SCORES} v ON v.call_id = r.call_id "
            f"WHERE r.rn = 1 AND r.status = 'ok' AND (r.complete = 1 OR {is_reviewed} = 1)"
            f"{where} ORDER BY c.started_epoch, r.call_id",
            params,
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def current_verdicts(
        self,
        *,
        agent_id: str | None = None,
        team: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        """The verdict rows of the calls' current results (:meth:`current_results`'s rows,
        machine verdicts), ``uncertain`` ones left out: what violation trends per rule
        count (``verdict`` is ``passed``, ``failed`` or ``not_applicable``)."""
        where, params = self._call_filters(agent_id, team, since, until)
        cur = self.db.execute(
            f"{self._latest_active()} SELECT v.call_id, v.run_id, v.rule_id, v.verdict, "
            "v.severity, v.deduction, c.agent_id, c.team, c.started_epoch FROM latest r "
            "JOIN calls c ON c.call_id = r.call_id "
            "JOIN verdicts v ON v.run_id = r.run_id AND v.call_id = r.call_id "
            "WHERE r.rn = 1 AND r.status = 'ok' AND r.complete = 1 "
            f"AND v.verdict <> 'uncertain'{where} ORDER BY c.started_epoch, v.call_id, v.rule_id",
            params,
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    @staticmethod
    def _latest_active() -> str:
        return (
            "WITH latest AS (SELECT r.run_id, r.call_id, r.status, r.score, r.grade, "
            "r.failed, r.review, r.complete, ROW_NUMBER() OVER (PARTITION BY r.call_id "
            "ORDER BY r.created_at DESC, r.run_id DESC) AS rn FROM results r "
            "JOIN runs u ON u.run_id = r.run_id WHERE u.role = 'active')"
        )

    @staticmethod
    def _call_filters(
        agent_id: str | None, team: str | None, since: float | None, until: float | None
    ) -> tuple[str, list[Any]]:
        where, params = "", []
        for sql, value in (
            ("c.agent_id = ?", agent_id),
            ("c.team = ?", team),
            ("c.started_epoch >= ?", since),
            ("c.started_epoch < ?", until),
        ):
            if value is not None:
                where += f" AND {sql}"
                params.append(value)
        return where, params

    # -- retention -----------------------------------------------------------------------

    def purge(self, before: Mapping[Kind, datetime], *, dry_run: bool = False) -> dict[str, int]:
        """Delete what is older than its kind's cut-off, in one transaction; rows removed
        per table (``transcripts``, ``calls``, ``scorecards`` = results, ``runs``,
        ``acks`` = the dashboard's alert acknowledgements).

        ``before`` maps ``transcripts`` and/or ``scorecards`` to a cut-off (a naive time is
        local); a kind not given is kept. A call's age is its start time when known, else
        when its transcript was stored (a result of a call not in ``calls``: when the result
        was stored). A transcript row shared by several call ids goes when the youngest of
        them expires. A scorecard may outlive its transcript: the call's metadata row stays
        while any scorecard of it is kept. A run goes when it is older than the scorecard
        cut-off and has no result left. ``dry_run`` counts the same and rolls back. The row
        tables go with what they were derived from: a scorecard's ``verdicts`` and
        ``findings`` with it, a call's ``utterances`` with its transcript. An alert
        acknowledgement (``alert_acks``) is scorecard data too: it goes when it was made
        before the scorecard cut-off (its alert, older still, is gone everywhere by then).

        SQLite: deleted rows are overwritten on disk (``secure_delete``) and the WAL is
        truncated, so purged text does not linger in free pages. PostgreSQL: the tables
        are vacuumed after a purge (dead rows' space is marked free and reused; the
        server's own files are the operator's to protect)."""
        counts = {"transcripts": 0, "calls": 0, "scorecards": 0, "runs": 0, "acks": 0}
        ct, cs = before.get("transcripts"), before.get("scorecards")
        if ct is None and cs is None:
            return counts
        db = self.db
        if db.in_transaction:
            raise RuntimeError("purge: the store has uncommitted writes")
        sqlite = isinstance(db, SqliteConnection)
        secure = 0
        if sqlite:
            secure = db.execute("PRAGMA secure_delete").fetchone()[0]
            db.execute("PRAGMA secure_delete = ON")
        try:
            db.begin()
            self._purge_ages()
            if cs is not None:
                cut = as_epoch(cs)
                counts["scorecards"] = db.execute(
                    "DELETE FROM results WHERE COALESCE((SELECT g.at FROM _purge_age g "
                    "WHERE g.call_id = results.call_id), created_at) < ?",
                    (cut,),
                ).rowcount
                for table in ("verdicts", "findings"):
                    db.execute(
                        f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM results r "
                        f"WHERE r.run_id = {table}.run_id AND r.call_id = {table}.call_id)"
                    )
                counts["runs"] = db.execute(
                    "DELETE FROM runs WHERE started < ? AND NOT EXISTS "
                    "(SELECT 1 FROM results r WHERE r.run_id = runs.run_id)",
                    (cut,),
                ).rowcount
                counts["acks"] = db.execute("DELETE FROM alert_acks WHERE at < ?", (cut,)).rowcount
            if ct is not None:
                cut = as_epoch(ct)
                counts["transcripts"] = db.execute(
                    "DELETE FROM transcripts WHERE COALESCE((SELECT MAX(g.at) FROM _purge_age g "
                    "WHERE g.a = transcripts.audio_sha256 AND g.s = transcripts.settings_hash), "
                    "created_at) < ?",
                    (cut,),
                ).rowcount
                counts["calls"] = db.execute(
                    "DELETE FROM calls WHERE call_id IN "
                    "(SELECT call_id FROM _purge_age WHERE at < ?) AND NOT EXISTS "
                    "(SELECT 1 FROM results r WHERE r.call_id = calls.call_id)",
                    (cut,),
                ).rowcount
                db.execute(
                    "DELETE FROM utterances WHERE NOT EXISTS (SELECT 1 FROM calls c "
                    "JOIN transcripts t ON t.audio_sha256 = c.audio_sha256 "
                    "AND t.settings_hash = c.settings_hash WHERE c.call_id = utterances.call_id)"
                )
            db.execute("DROP TABLE _purge_age")
        except BaseException:
            db.rollback()
            raise
        else:
            if dry_run:
                db.rollback()
            else:
                db.commit()
        finally:
            if sqlite:
                db.execute(f"PRAGMA secure_delete = {int(secure)}")
        if not dry_run and any(counts.values()):
            if sqlite:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                for table in (
                    "results",
                    "verdicts",
                    "findings",
                    "transcripts",
                    "calls",
                    "alert_acks",
                ):
                    db.execute(f"VACUUM {table}")
                db.execute("VACUUM utterances")
        return counts

    def _purge_ages(self) -> None:
        """A temporary table of each call's age (its start, else its transcript's or its
        row's time), computed here so that both backends read a time as retention does."""
        db = self.db
        sqlite = db.dialect == "sqlite"
        real = "REAL" if sqlite else "DOUBLE PRECISION"
        db.execute(f"CREATE TEMP TABLE _purge_age (call_id TEXT, a TEXT, s TEXT, at {real})")
        rows = db.execute(
            "SELECT c.call_id, c.audio_sha256, c.settings_hash, c.started_at, t.created_at, "
            "c.updated_at FROM calls c LEFT JOIN transcripts t "
            "ON t.audio_sha256 = c.audio_sha256 AND t.settings_hash = c.settings_hash"
        ).fetchall()
        ages = [
            (cid, a, s, next(x for x in (parse_time(st), tc, up) if x is not None))
            for cid, a, s, st, tc, up in rows
        ]
        if ages:
            db.executemany("INSERT INTO _purge_age VALUES (?, ?, ?, ?)", ages)
        schema = "temp." if sqlite else ""
        db.execute(f"CREATE INDEX {schema}_purge_age_call ON _purge_age (call_id)")
        db.execute(f"CREATE INDEX {schema}_purge_age_key ON _purge_age (a, s)")
