"""The transcript store: every scored call's transcript, findings and scorecard, in SQLite.

Why SQLite (over DuckDB or Parquet):

* it is in the standard library (no new dependency) and one file (``out/qa-store.sqlite``)
  that can be copied, backed up and opened with any SQLite tool;
* it is transactional: a batch of results is committed at once or not at all, so a run that
  is killed (SIGKILL, power cut) leaves only whole, committed rows behind, and **resuming**
  is "skip what is committed" (WAL journal: readers never block the writer, so a report can
  be read while a re-score is running);
* the access pattern is row-wise (look up one transcript by audio hash, append one call's
  result): an OLTP store fits; DuckDB/Parquet are column stores built for scans and
  aggregations and are awkward for many small transactional writes. The aggregations the
  report needs are over at most a few hundred thousand rows, which SQLite and Python
  handle in well under a second.

Tables::

    settings     (settings_hash PK, settings JSON)           what produced a transcript
    transcripts  (audio_sha256, settings_hash, call_id, doc JSON, created_at,
                  PRIMARY KEY (audio_sha256, settings_hash))  the ASR cache
    calls        (call_id PK, audio_sha256, settings_hash, source, started_at, agent_id,
                  call JSON, updated_at)                      one row per known call
    runs         (run_id PK, pack_name, pack_version, role, inputs, args JSON, started,
                  finished)                                  one row per re-score run
    results      (run_id, call_id, transcript_key, status, error, score, grade, failed,
                  failed_rules JSON, findings JSON, verdicts JSON, created_at,
                  PRIMARY KEY (run_id, call_id))              a call's scorecard in a run

A transcript is cached by **audio content hash + settings hash**: the same audio with the
same ASR settings is never transcribed twice. The settings hash covers everything that
determines the text: the ASR engine's settings (``AsrEngine.settings``: model identity,
compute type, language, beam, temperatures, prompt, hotwords, encoder window, ...) plus the VAD settings
and the channel roles (they decide which audio is decoded, and as what). It is computed
from the configuration alone (:func:`transcript_settings`), so a fully cached run never
loads the model. Transcripts that did not come from audio here (imported from Kafka or a
JSON document) are keyed by ``doc:<sha256 of the document>`` instead of the audio hash.

A transcript document is the compact JSON of :func:`~qa_pipeline.transcript.transcript_to_dict`
(the ``transcribe --json`` format), redacted: the pipeline masks personal data before a
transcript is stored (``text``, ``raw_text``, call metadata; the masks' spans in
``entities``), so a cached transcript is reused without the digits ever having been kept;
stores written before are redacted by ``qa-pipeline privacy migrate``. The call metadata
(call id, start time, agent, ...) lives in ``calls.call`` and is applied over the cached
document's ``call`` object when read, so one recording stored under a new call id or with
corrected metadata needs no new transcription.

Retention (:meth:`Store.purge`, run by ``qa-pipeline purge`` and daily by ``serve``): a
call's age is its start time (``calls.started_at``) when known, else when its transcript
was stored. Scorecards (``results`` rows) and transcripts expire separately, scorecards
usually later: a call's metadata row (``calls``) stays while a scorecard of it is kept, so
reports still name its agent and day, and goes with its transcript otherwise.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..asr.config import AsrConfig
from ..audio import AudioConfig
from ..config import PipelineConfig
from ..messages import Finding, Scorecard, Verdict
from ..retention import Kind, as_epoch, parse_time
from ..transcript import Transcript, transcript_from_dict, transcript_to_dict

DEFAULT_STORE = Path("out") / "qa-store.sqlite"
STORE_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (
    settings_hash TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS transcripts (
    audio_sha256 TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    call_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (audio_sha256, settings_hash)
);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    audio_sha256 TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    source TEXT,
    started_at TEXT,
    agent_id TEXT,
    call TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    pack_name TEXT NOT NULL,
    pack_version TEXT NOT NULL,
    role TEXT NOT NULL,
    inputs TEXT NOT NULL,
    args TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    transcript_key TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    score REAL,
    grade TEXT,
    failed INTEGER,
    failed_rules TEXT,
    findings TEXT,
    verdicts TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, call_id)
);
CREATE INDEX IF NOT EXISTS results_call_id ON results (call_id);
"""


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: equal data gives equal text (and hash)."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def compact_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def asr_settings(config: AsrConfig) -> dict[str, object]:
    """``AsrEngine(config).settings`` computed without loading the model.

    The model's identity comes from the configuration: the embedded model's published
    checksum (``EMBEDDED_SHA256``), or a custom directory's path (checked, not loaded).
    """
    from ..asr.engine import decode_settings, pick_device
    from ..asr.model import EMBEDDED_NAME, EMBEDDED_SHA256, resolve_model

    if config.model in (EMBEDDED_NAME, "embedded"):
        name: str = EMBEDDED_NAME
        sha: str | None = EMBEDDED_SHA256
    else:
        info = resolve_model(config.model, config.cache_dir)  # a directory: checks, no load
        name, sha = info.name, info.sha256
    compute = config.compute_type
    if compute == "default":
        compute = "float16" if pick_device(config.device) == "cuda" else "int8"
    return {
        "model": name,
        "model_sha256": sha,
        "compute_type": compute,
        **decode_settings(config),
    }


def transcript_settings(
    config: PipelineConfig, engine_settings: dict[str, object] | None = None
) -> dict[str, Any]:
    """Everything that determines a recording's transcript: ASR settings (from the config,
    or a loaded engine's ``settings``), VAD settings and channel roles."""
    out: dict[str, Any] = {
        "asr": engine_settings if engine_settings is not None else asr_settings(config.asr),
        "vad": config.vad.model_dump(mode="json"),
        "channels": [r.value for r in config.audio.channels],
    }
    a, d = config.audio, AudioConfig()
    if (a.mono_roles, a.mono_split_ms) != (d.mono_roles, d.mono_split_ms):
        # mono calls are cut differently; the default adds nothing, so transcripts stored
        # before roles were inferred are still found (they carry no 'roles' field)
        out["mono"] = [a.mono_roles, a.mono_split_ms]
    return out


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(settings).encode()).hexdigest()[:20]


def doc_key(doc: dict[str, Any]) -> str:
    """Cache key of a transcript that has no audio here (imported document)."""
    return "doc:" + hashlib.sha256(canonical_json(doc).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredCall:
    call_id: str
    audio_sha256: str
    settings_hash: str

    @property
    def transcript_key(self) -> str:
        return f"{self.audio_sha256}:{self.settings_hash}"


class Store:
    """One SQLite file. Not thread-safe: one ``Store`` per thread / process."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=60)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            self.db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                (str(STORE_SCHEMA_VERSION),),
            )
            self.db.commit()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- settings and transcripts -------------------------------------------------------

    def put_settings(self, settings: dict[str, Any]) -> str:
        h = settings_hash(settings)
        self.db.execute(
            "INSERT OR IGNORE INTO settings VALUES (?, ?)", (h, canonical_json(settings))
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
        """Store a transcript (cache row) and make it the transcript of its call."""
        doc = transcript if isinstance(transcript, dict) else transcript_to_dict(transcript)
        call = doc["call"]
        now = time.time()
        self.db.execute(
            "INSERT OR REPLACE INTO transcripts VALUES (?, ?, ?, ?, ?)",
            (audio_sha, settings_hash_, call["call_id"], compact_json(doc), now),
        )
        stored = self.put_call(call, audio_sha=audio_sha, settings_hash_=settings_hash_)
        if commit:
            self.db.commit()
        return stored

    def put_call(self, call: dict[str, Any], *, audio_sha: str, settings_hash_: str) -> StoredCall:
        """Point a call at a cached transcript, with (possibly new) call metadata."""
        self.db.execute(
            "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                call["call_id"],
                audio_sha,
                settings_hash_,
                call.get("source"),
                call.get("started_at"),
                call.get("agent_id"),
                compact_json(call),
                time.time(),
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
            part = call_ids[i : i + 900]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(
                "SELECT c.call_id, c.audio_sha256 || ':' || c.settings_hash, t.doc, c.call "
                "FROM calls c JOIN transcripts t ON t.audio_sha256 = c.audio_sha256 "
                f"AND t.settings_hash = c.settings_hash WHERE c.call_id IN ({marks})",
                part,
            )
            for cid, key, doc, call in rows:
                yield cid, key, _merge_doc(doc, call)

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
        """Register a run; ``fresh`` drops its committed results (no resume)."""
        if fresh:
            self.db.execute("DELETE FROM results WHERE run_id = ?", (run_id,))
            self.db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        self.db.execute(
            "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            (run_id, pack_name, pack_version, role, inputs, compact_json(args), time.time()),
        )
        self.db.commit()

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
        """Rows in ``results`` column order (see :data:`RESULT_COLUMNS`)."""
        self.db.executemany(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        if commit:
            self.db.commit()

    def record_score(self, transcript: Transcript, card: Any, pack: Any, *, key: str) -> str:
        """Keep a call scored by ``qa-pipeline score`` (or a live service): its transcript
        must already be stored under ``key``; the scorecard goes under the run
        ``scored:<pack version>``. Returns the run id."""
        run_id = f"scored:{pack.version}"
        self.db.execute(
            "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            (run_id, pack.name, pack.version, "score", "", "{}", time.time()),
        )
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
        return [dict(zip(names, row, strict=True)) for row in cur]

    # -- retention -----------------------------------------------------------------------

    def purge(self, before: Mapping[Kind, datetime], *, dry_run: bool = False) -> dict[str, int]:
        """Delete what is older than its kind's cut-off, in one transaction; rows removed
        per table (``transcripts``, ``calls``, ``scorecards`` = results, ``runs``).

        ``before`` maps ``transcripts`` and/or ``scorecards`` to a cut-off (a naive time is
        local); a kind not given is kept. A call's age is its start time when known, else
        when its transcript was stored (a result of a call not in ``calls``: when the result
        was stored). A transcript row shared by several call ids goes when the youngest of
        them expires. A scorecard may outlive its transcript: the call's metadata row stays
        while any scorecard of it is kept. A run goes when it is older than the scorecard
        cut-off and has no result left. ``dry_run`` counts the same and rolls back.

        Deleted rows are overwritten on disk (``secure_delete``) and the WAL is truncated,
        so purged text does not linger in free pages."""
        counts = {"transcripts": 0, "calls": 0, "scorecards": 0, "runs": 0}
        ct, cs = before.get("transcripts"), before.get("scorecards")
        if ct is None and cs is None:
            return counts
        db = self.db
        if db.in_transaction:
            raise RuntimeError("purge: the store has uncommitted writes")
        db.create_function("qa_time", 1, parse_time, deterministic=True)
        secure = db.execute("PRAGMA secure_delete").fetchone()[0]
        db.execute("PRAGMA secure_delete = ON")
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "CREATE TEMP TABLE _purge_age AS SELECT c.call_id AS call_id, "
                "c.audio_sha256 AS a, c.settings_hash AS s, "
                "COALESCE(qa_time(c.started_at), t.created_at, c.updated_at) AS at "
                "FROM calls c LEFT JOIN transcripts t "
                "ON t.audio_sha256 = c.audio_sha256 AND t.settings_hash = c.settings_hash"
            )
            db.execute("CREATE INDEX temp._purge_age_call ON _purge_age (call_id)")
            db.execute("CREATE INDEX temp._purge_age_key ON _purge_age (a, s)")
            if cs is not None:
                cut = as_epoch(cs)
                counts["scorecards"] = db.execute(
                    "DELETE FROM results WHERE COALESCE((SELECT g.at FROM _purge_age g "
                    "WHERE g.call_id = results.call_id), created_at) < ?",
                    (cut,),
                ).rowcount
                counts["runs"] = db.execute(
                    "DELETE FROM runs WHERE started < ? AND NOT EXISTS "
                    "(SELECT 1 FROM results r WHERE r.run_id = runs.run_id)",
                    (cut,),
                ).rowcount
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
            db.execute("DROP TABLE temp._purge_age")
        except BaseException:
            db.rollback()
            raise
        else:
            if dry_run:
                db.rollback()
            else:
                db.commit()
        finally:
            db.execute(f"PRAGMA secure_delete = {int(secure)}")
        if not dry_run and any(counts.values()):
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return counts


RESULT_COLUMNS = (
    "run_id",
    "call_id",
    "transcript_key",
    "status",
    "error",
    "score",
    "grade",
    "failed",
    "failed_rules",
    "findings",
    "verdicts",
    "created_at",
)


# A result row (``results`` in :data:`RESULT_COLUMNS` order) from a scorecard: written by
# ``rescore`` and by :meth:`Store.record_score`; the store owns the shape of its rows.


def finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "rule_id": f.rule_id,
        "severity": f.severity.value,
        "message": f.message,
        "weight": f.weight,
        "decided_at": round(f.decided_at, 3),
        "suggestion": f.suggestion,
        "evidence": [
            {
                "utterance_index": e.utterance_index,
                "role": e.role.value if e.role is not None else None,
                "start": round(e.start, 3),
                "end": round(e.end, 3),
                "text": e.text,
                "matched": e.matched,
            }
            for e in f.evidence
        ],
    }


def result_row(run_id: str, call_id: str, key: str, card: Scorecard, now: float) -> tuple[Any, ...]:
    failed = Verdict.FAILED
    # rule id -> [verdict, deduction]; an uncertain one adds its pending deduction and why
    verdicts: dict[str, list[Any]] = {}
    for v in card.verdicts:
        if v.verdict is Verdict.UNCERTAIN:
            verdicts[v.rule_id] = [v.verdict.value, v.deduction, v.pending_deduction, v.detail]
        else:
            verdicts[v.rule_id] = [v.verdict.value, v.deduction]
    return (
        run_id,
        call_id,
        key,
        "ok",
        None,
        round(card.score, 2),
        card.grade,
        int(card.failed),
        compact_json([v.rule_id for v in card.verdicts if v.verdict is failed]),
        compact_json([finding_dict(f) for f in card.findings]),
        compact_json(verdicts),
        now,
    )


def error_row(run_id: str, call_id: str, key: str, message: str, now: float) -> tuple[Any, ...]:
    return (run_id, call_id, key, "error", message, None, None, None, "[]", "[]", "{}", now)


def merge_call(doc_text: str, call_text: str | None) -> dict[str, Any]:
    """A cached document with the call's current metadata (duration kept from the doc)."""
    doc: dict[str, Any] = json.loads(doc_text)
    if call_text:
        call = json.loads(call_text)
        if "duration" in doc["call"]:
            call["duration"] = doc["call"]["duration"]
        doc["call"] = call
    return doc


def _merge_doc(doc_text: str, call_text: str | None) -> dict[str, Any]:
    # Fast path: the document was stored with this very call object (the usual case).
    if call_text:
        i = doc_text.find('"call":')
        if i >= 0 and doc_text.startswith(call_text, i + 7):
            out: dict[str, Any] = json.loads(doc_text)
            return out
    return merge_call(doc_text, call_text)
