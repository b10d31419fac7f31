"""Promoting a re-score's run so that it counts (``qa-pipeline store promote RUN_ID``).

``rescore`` writes its results under runs whose role is ``new`` (the pack re-scored with)
or ``baseline`` (the pack compared against): candidates, which never count in
:meth:`~qa_pipeline.store.base.Store.current_results`. A QA analyst who re-scored the
archives with a changed pack and accepts the result promotes the run: its role becomes
``active``, with who promoted it, when, and the role it had before (``runs.promoted_by``,
``promoted_at``, ``promoted_from``: migration 0003; its calls are marked for the search
index, whose score and verdict filters follow the current result). Its results then take
part in the "latest result of an active run" rule like the live runs' results: for each
call it scored, it is the current result unless an active result written after it (a live
call scored again, a later promoted run) or a reviewed score stands over it.

Refused, with an error naming the run: a run the store does not have; a run not finished
(its ``rescore`` was killed or is still running: resuming it finishes it); a run with no
result; a run with ``error`` results (an unreadable recording: the error would become the
call's current result and take the call out of the trends). Promoting an ``active`` run
again changes nothing.

A promoted run is the record from then on: ``rescore`` never writes into it again (the same
inputs and pack re-scored later get a new candidate run, :func:`candidate_run_id`).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import QAError
from .base import DEFAULT_STORE, Store, store_label

#: the role of runs that count
ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class Promotion:
    """What :func:`promote_run` did (or found done)."""

    run_id: str
    pack: str  # "name version"
    #: the role the run had before ('new' / 'baseline'); for a run already active, the role
    #: it was promoted from, or None when it was active from the start
    promoted_from: str | None
    promoted_by: str | None
    promoted_at: float | None
    #: False: the run was active already and nothing was written
    changed: bool
    #: the run's results (one per call it scored)
    results: int
    #: of those, the calls whose current result is now this run's (the others have an
    #: active result written after it; a reviewed score still stands over either)
    current: int


def promote_run(st: Store, run_id: str, *, by: str, at: float | None = None) -> Promotion:
    """Make ``run_id`` count (see the module docstring), in one transaction."""
    label = store_label(st.url)
    row = st.execute(
        "SELECT role, finished, pack_name, pack_version, promoted_by, promoted_at, "
        "promoted_from FROM runs WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    if row is None:
        raise QAError(
            f"run {run_id!r}: no such run in {label} (a rescore prints its run id, and the "
            "command that promotes it)"
        )
    role, finished, pack_name, pack_version, p_by, p_at, p_from = row
    pack = f"{pack_name} {pack_version}"
    ok, errors = _counts(st, run_id)
    if role == ACTIVE:
        return Promotion(run_id, pack, p_from, p_by, p_at, False, ok + errors, _current(st, run_id))
    problem = _refusal(st, run_id, finished, ok, errors)
    if problem is not None:
        raise QAError(f"run {run_id!r} ({pack}) {problem}")
    when = time.time() if at is None else at
    changed = st.execute(
        "UPDATE runs SET role = ?, promoted_by = ?, promoted_at = ?, promoted_from = ? "
        "WHERE run_id = ? AND role = ?",
        (ACTIVE, by, when, role, run_id, role),
    ).rowcount
    if changed == 1:  # the search index's filter columns (score, run) follow the calls'
        st.execute(  # current results: its calls are marked for the next sync
            "INSERT INTO search_dirty (call_id, text) SELECT DISTINCT call_id, 0 FROM results "
            "WHERE run_id = ? ON CONFLICT (call_id) DO NOTHING",
            (run_id,),
        )
    st.commit()
    if changed != 1:  # another promote was first: report what it recorded
        return promote_run(st, run_id, by=by, at=at)
    return Promotion(run_id, pack, role, by, when, True, ok, _current(st, run_id))


def refusal(st: Store, run_id: str) -> str | None:
    """Why :func:`promote_run` would refuse ``run_id`` (a phrase to follow "run X"), or
    None when it would promote it (or it counts already)."""
    row = st.execute("SELECT role, finished FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return "does not exist"
    if row[0] == ACTIVE:
        return None
    return _refusal(st, run_id, row[1], *_counts(st, run_id))


def _refusal(st: Store, run_id: str, finished: float | None, ok: int, errors: int) -> str | None:
    if finished is None:
        return (
            "is incomplete: the rescore writing it did not finish (it was stopped, or is "
            "still running); run the same rescore again to resume it, then promote it"
        )
    if errors:
        sample = [
            r[0]
            for r in st.execute(
                "SELECT call_id FROM results WHERE run_id = ? AND status <> 'ok' "
                "ORDER BY call_id LIMIT 5",
                (run_id,),
            ).fetchall()
        ]
        more = f" and {errors - len(sample)} more" if errors > len(sample) else ""
        return (
            f"failed for {errors} call(s) ({', '.join(sample)}{more}): promoted, their error "
            "results would become the calls' current results and take them out of the "
            "trends; fix or remove those recordings and re-score (--no-resume), then "
            "promote the new run"
        )
    if ok == 0:
        return "has no result to promote"
    return None


def _counts(st: Store, run_id: str) -> tuple[int, int]:
    ok, bad = st.execute(
        "SELECT COALESCE(SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN status = 'ok' THEN 0 ELSE 1 END), 0) "
        "FROM results WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    return int(ok), int(bad)


def _current(st: Store, run_id: str) -> int:
    """How many calls' latest active result is this run's."""
    row = st.execute(
        f"{st._latest_active()} SELECT COUNT(*) FROM latest WHERE rn = 1 AND run_id = ?",
        (run_id,),
    ).fetchone()
    return int(row[0])


def candidate_run_id(st: Store, run_id: str) -> str:
    """The run id a ``rescore`` writes under: ``run_id`` (derived from its inputs and
    pack, so that a stopped run resumes), unless that run was promoted: a promoted run is
    the record and is never written again, so the re-score goes to ``<run_id>-2`` (``-3``,
    ... while those were promoted too), a candidate like any other."""
    rid, n = run_id, 1
    while True:
        row = st.execute("SELECT role FROM runs WHERE run_id = ?", (rid,)).fetchone()
        if row is None or row[0] != ACTIVE:
            return rid
        n += 1
        rid = f"{run_id}-{n}"


def promote_command(run_id: str, store: str | Path) -> str:
    """The command line that promotes ``run_id`` in ``store`` (a URL's password masked;
    ``--store`` left out for the default store)."""
    cmd = f"qa-pipeline store promote {shlex.quote(run_id)}"
    if str(store) != str(DEFAULT_STORE):
        cmd += f" --store {shlex.quote(store_label(store))}"
    return cmd
