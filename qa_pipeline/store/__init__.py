"""The transcript store: every scored call's transcript, findings and scorecard, in SQLite
(embedded, the default) or PostgreSQL (a server many writers and readers share).

``Store(target)`` / :func:`open_store`: a path or ``sqlite:///path`` is a SQLite file, a
``postgresql://user@host:port/db`` URL a PostgreSQL database (psycopg 3, the ``postgres``
extra). ``Store.dialect`` is ``"sqlite"`` or ``"postgres"``; ``Store.execute`` /
``executemany`` take ``?`` placeholders on both; writes gather in one transaction until
``commit()`` (a batch of results is committed at once or not at all, on both).

Package layout: ``writer`` (ended live calls written off the caller's thread), ``keys``
(settings hash, content keys, JSON forms), ``rows`` (a scorecard
as a result row; the row tables derived from the JSON columns), ``sqlite`` / ``postgres``
(the two connections behind one interface), ``migrate`` (the migrations runner), ``base``
(:class:`Store`, the same SQL on both backends).

**Migrations: numbered SQL files** (``migrations/<sqlite|postgres>/NNNN_name.sql``,
applied in order and recorded in ``schema_migrations``), not Alembic: the schema is a few
plain tables, every step is a short script a reader can check against the other dialect,
and there is no ORM whose models Alembic would diff; a step needing Python (filling new
tables from old JSON) registers a function run in the same transaction. A store written
before numbered migrations (schema v1, the ``meta`` table) is adopted as 0001 and
migrated forward when a writer opens it. Number ranges: store 0001-0099, search
0100-0199, review/appeal 0200-0299, acknowledgements/recordings 0300-0399.

Why SQLite as the default (over DuckDB or Parquet):

* it is in the standard library (no new dependency, no server) and one file (``out/qa-store.sqlite``)
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

Tables (0001; 0002 adds the row tables below)::

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

0002: ``calls`` gains ``team`` (metadata ``team``), ``direction``, ``started_epoch`` (epoch
seconds of ``started_at``; a naive time is local), ``duration_s``; ``results`` gains
``complete`` and ``review`` (1/0); and the JSON becomes rows, written in the same
transaction as the row they come from (and back-filled for stores written before)::

    verdicts     (run_id, call_id, rule_id, verdict, severity, deduction,
                  pending_deduction)                          one per rule and result
    findings     (run_id, call_id, seq, rule_id, severity, message, utterance_index,
                  start_s, end_s, matched)                    one per finding, at its first
                                                              evidence
    utterances   (call_id, idx, channel, role, start_s, end_s, text)
                                                              the call's current transcript
                                                              (redacted text), rewritten
                                                              with it

Live calls (:mod:`.writer`): ``serve`` and ``qa-pipeline evaluate`` write every ended call
through a writer thread (bounded queue, batched commits, retries, counted drops) as a result
of the run ``live:<pack name>:<pack version>`` (role ``active``: one run per pack version,
shared by every process and restart, so a call written again replaces its rows).

Which score counts: :meth:`Store.current_results` (the reviewed score, else the latest
result of an ``active`` run; candidate runs, incomplete calls and uncertain verdicts stay
out of trends and agent averages) — see the README, "Which score counts". A re-score's
candidate run is made to count by promoting it (:mod:`.promote`, ``qa-pipeline store
promote``: role ``active``; 0003 adds ``runs.promoted_by``, ``promoted_at``,
``promoted_from``).

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

from pathlib import Path

from .base import (
    DEFAULT_STORE,
    REVIEWED_SCORES,
    STORE_SCHEMA_VERSION,
    Store,
    database_errors,
    is_url,
    store_exists,
    store_label,
    store_path,
    store_problem,
)
from .keys import (
    StoredCall,
    asr_settings,
    canonical_json,
    compact_json,
    doc_key,
    settings_hash,
    transcript_settings,
)
from .rows import (
    RESULT_COLUMNS,
    ResultRow,
    error_row,
    finding_dict,
    merge_call,
    result_row,
)

__all__ = [
    "DEFAULT_STORE",
    "RESULT_COLUMNS",
    "REVIEWED_SCORES",
    "STORE_SCHEMA_VERSION",
    "ResultRow",
    "Store",
    "StoredCall",
    "asr_settings",
    "canonical_json",
    "compact_json",
    "database_errors",
    "doc_key",
    "error_row",
    "finding_dict",
    "is_url",
    "merge_call",
    "open_store",
    "result_row",
    "settings_hash",
    "store_exists",
    "store_label",
    "store_path",
    "store_problem",
    "transcript_settings",
]


def open_store(target: str | Path, *, readonly: bool = False, migrate: bool = True) -> Store:
    """A :class:`Store` for a path, ``sqlite:///path`` or ``postgresql://...`` URL."""
    return Store(target, readonly=readonly, migrate=migrate)
