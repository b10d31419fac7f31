"""Review and appeal in the store: the queue, the versions, the decisions (migration
``0200_reviews``; tables described there).

Every function takes a :class:`Db` (the store: ``execute`` with ``?`` placeholders on both
backends, ``commit``, ``rollback``) and, where a score is computed, the rule pack the call
was scored with (:mod:`.model` does the scoring). A review or appeal is one transaction: a
new ``review_versions`` row (version = the call's last + 1; two writers racing for the same
number: the second fails on the primary key, nothing is overwritten), its
``review_decisions`` rows, the queue item's state and, for a review, the call's row in
``call_reviews`` (its latest reviewed score, which the store's current score takes over
the machine's). Comments and appeal reasons are
stored redacted (the default redactor: ``[手机号]``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..messages import Verdict
from ..privacy import default_redactor
from ..rules import RulePack
from ..transcript import Transcript
from .model import (
    Action,
    Decision,
    Entry,
    QueueState,
    Reason,
    ReviewError,
    VerdictState,
    apply_decisions,
    machine_verdicts,
    queue_reasons,
    reviewed_score,
)

__all__ = [
    "Db",
    "MachineResult",
    "QueueItem",
    "Version",
    "appeal",
    "claim",
    "current_verdicts",
    "enqueue",
    "history",
    "machine_result",
    "overturned",
    "queue",
    "review",
    "scan",
    "scan_mark",
    "transcript",
]


class Db(Protocol):
    """What this module needs of a store."""

    @property
    def dialect(self) -> str: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def transcript(self, call_id: str) -> Transcript | None: ...


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _verdicts_json(v: dict[str, VerdictState]) -> str:
    return _dumps({k: s.to_json() for k, s in v.items()})


@dataclass(frozen=True, slots=True)
class MachineResult:
    """A call's machine scorecard as stored (a ``results`` row of status ok)."""

    call_id: str
    run_id: str
    pack_name: str
    pack_version: str
    score: float
    grade: str
    failed: bool
    verdicts: dict[str, VerdictState]
    findings: list[dict[str, Any]]


# the machine result a review starts from, unless a run is named: the latest result of the
# pack in service (runs.role 'active'; 'score' in stores written before roles were named so),
# as the store's current_results picks it; runs of candidate or baseline packs never count
_RESULT_SQL = (
    "SELECT r.call_id, r.run_id, u.pack_name, u.pack_version, r.score, r.grade, r.failed, "
    "r.verdicts, r.findings FROM results r JOIN runs u ON u.run_id = r.run_id "
    "WHERE r.status = 'ok' AND r.call_id = ?{run} "
    "ORDER BY r.created_at DESC, r.run_id DESC LIMIT 1"
)
_IN_SERVICE = " AND u.role IN ('active', 'score')"


def _machine(row: Sequence[Any]) -> MachineResult:
    cid, run, pname, pver, score, grade, failed, verdicts, findings = row
    return MachineResult(
        cid,
        run,
        pname,
        pver,
        float(score),
        grade,
        bool(failed),
        machine_verdicts(json.loads(verdicts or "{}")),
        json.loads(findings or "[]"),
    )


def machine_result(db: Db, call_id: str, run_id: str | None = None) -> MachineResult:
    """The machine result of ``call_id`` (of ``run_id`` when given). Raises
    :class:`ReviewError` when there is none."""
    sql = _RESULT_SQL.format(run=" AND r.run_id = ?" if run_id else _IN_SERVICE)
    params = (call_id, run_id) if run_id else (call_id,)
    row = db.execute(sql, params).fetchone()
    if row is None:
        where = f" in run {run_id}" if run_id else " by the pack in service (an active run)"
        raise ReviewError(f"call {call_id}: no scored result in the store{where}")
    return _machine(row)


def transcript(db: Db, call_id: str) -> Transcript | None:
    """The call's stored (redacted) transcript, its current metadata applied."""
    return db.transcript(call_id)


# -- the queue --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueItem:
    call_id: str
    run_id: str
    state: QueueState
    reasons: tuple[Reason, ...]
    pending_rules: tuple[str, ...]
    machine_score: float | None
    assignee: str | None
    entered_at: float
    updated_at: float


_QUEUE_COLS = (
    "call_id, run_id, state, reasons, pending_rules, machine_score, assignee, entered_at, "
    "updated_at"
)


def _item(row: Sequence[Any]) -> QueueItem:
    cid, run, state, reasons, pending, score, who, entered, updated = row
    return QueueItem(
        cid,
        run,
        QueueState(state),
        tuple(Reason(r) for r in json.loads(reasons)),
        tuple(json.loads(pending)),
        None if score is None else float(score),
        who,
        float(entered),
        float(updated),
    )


def queue_item(db: Db, call_id: str) -> QueueItem | None:
    row = db.execute(
        f"SELECT {_QUEUE_COLS} FROM review_queue WHERE call_id = ?", (call_id,)
    ).fetchone()
    return _item(row) if row else None


def queue(db: Db, states: Iterable[QueueState] | None = None) -> list[QueueItem]:
    """Queue items, oldest first (all states, or those given)."""
    wanted = list(states) if states is not None else list(QueueState)
    marks = ",".join("?" * len(wanted))
    rows = db.execute(
        f"SELECT {_QUEUE_COLS} FROM review_queue WHERE state IN ({marks}) "
        "ORDER BY entered_at, call_id",
        [s.value for s in wanted],
    ).fetchall()
    return [_item(r) for r in rows]


def _put_item(
    db: Db, call_id: str, run_id: str, entry: Entry, score: float | None, now: float
) -> None:
    """Add ``entry`` to the call's queue item (made open if new or done)."""
    old = queue_item(db, call_id)
    if old is None:
        db.execute(
            f"INSERT INTO review_queue ({_QUEUE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                call_id,
                run_id,
                QueueState.OPEN.value,
                _dumps([r.value for r in entry.reasons]),
                _dumps(list(entry.rules)),
                score,
                None,
                now,
                now,
            ),
        )
        return
    reasons = list(old.reasons) + [r for r in entry.reasons if r not in old.reasons]
    pending = list(old.pending_rules) + [r for r in entry.rules if r not in old.pending_rules]
    state = QueueState.OPEN if old.state is QueueState.DONE else old.state
    db.execute(
        "UPDATE review_queue SET state = ?, reasons = ?, pending_rules = ?, updated_at = ? "
        "WHERE call_id = ?",
        (state.value, _dumps([r.value for r in reasons]), _dumps(pending), now, call_id),
    )


def enqueue(db: Db, result: MachineResult, *, below: float | None) -> QueueItem | None:
    """Put the call of ``result`` in the queue if its verdicts, findings or score call for
    it; the item (or None: nothing calls for review)."""
    entry = queue_reasons(result.verdicts, result.findings, result.score, below=below)
    if not entry.reasons:
        return None
    try:
        _put_item(db, result.call_id, result.run_id, entry, result.score, time.time())
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return queue_item(db, result.call_id)


def scan(
    db: Db, *, below: float | None, run_id: str | None = None, since: float | None = None
) -> list[str]:
    """Queue every scored call not in the queue yet whose machine result (the one
    :func:`machine_result` picks, or of ``run_id``) calls for review: one query (each
    call's latest result, those flagged for review, failed or below ``below``), one
    transaction. ``since``: only the calls with a result written (``created_at``) at or
    after it (an incremental scan: :func:`scan_mark` before the last one, less a margin
    for writers' clocks and commits; index ``results_created``); ``None``: every call. The
    call ids queued."""
    low = " OR score < ?" if below is not None else ""
    params: list[Any] = [run_id] if run_id else []
    changed = ""
    if since is not None:
        changed = " AND r.call_id IN (SELECT call_id FROM results WHERE created_at >= ?)"
        params.append(since)
    if below is not None:
        params.append(below)
    rows = db.execute(
        "WITH latest AS (SELECT r.call_id, r.run_id, u.pack_name, u.pack_version, r.score, "
        "r.grade, r.failed, r.verdicts, r.findings, r.review, ROW_NUMBER() OVER "
        "(PARTITION BY r.call_id ORDER BY r.created_at DESC, r.run_id DESC) AS rn "
        "FROM results r JOIN runs u ON u.run_id = r.run_id WHERE r.status = 'ok'"
        + (" AND r.run_id = ?" if run_id else _IN_SERVICE)
        + changed
        + " AND NOT EXISTS (SELECT 1 FROM review_queue q WHERE q.call_id = r.call_id)) "
        "SELECT call_id, run_id, pack_name, pack_version, score, grade, failed, verdicts, "
        f"findings FROM latest WHERE rn = 1 AND (review = 1 OR failed = 1{low}) "
        "ORDER BY call_id",
        params,
    ).fetchall()
    now = time.time()
    items: list[tuple[Any, ...]] = []
    for row in rows:
        m = _machine(row)
        entry = queue_reasons(m.verdicts, m.findings, m.score, below=below)
        if entry.reasons:
            reasons = _dumps([r.value for r in entry.reasons])
            state = QueueState.OPEN.value
            items.append(
                (m.call_id, m.run_id, state, reasons, _dumps(list(entry.rules)), m.score)
                + (None, now, now)
            )
    if not items:
        return []
    try:
        # new items only (the query left out the queued calls); one another scan (a second
        # dashboard on the store) queued meanwhile stays as it is
        db.executemany(
            f"INSERT INTO review_queue ({_QUEUE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (call_id) DO NOTHING",
            items,
        )
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return [item[0] for item in items]


def scan_mark(db: Db) -> float | None:
    """Where the next incremental :func:`scan` may start (taken before a scan): the latest
    result's ``created_at``, or the time now when that is later (a writer whose clock is
    ahead stamps results in the future: a mark there would pass over the results other
    writers stamp meanwhile); ``None``: no result yet."""
    row = db.execute("SELECT MAX(created_at) FROM results").fetchone()
    return None if row is None or row[0] is None else min(float(row[0]), time.time())


def claim(db: Db, call_id: str, reviewer: str) -> QueueItem:
    """A reviewer takes a queue item: in review, assigned to them."""
    item = queue_item(db, call_id)
    if item is None:
        raise ReviewError(f"call {call_id} is not in the review queue")
    state = QueueState.IN_REVIEW if item.state is QueueState.OPEN else item.state
    db.execute(
        "UPDATE review_queue SET state = ?, assignee = ?, updated_at = ? WHERE call_id = ?",
        (state.value, reviewer, time.time(), call_id),
    )
    db.commit()
    got = queue_item(db, call_id)
    assert got is not None
    return got


# -- versions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecisionRow:
    rule_id: str
    action: Action
    verdict_before: Verdict
    verdict_after: Verdict
    comment: str


@dataclass(frozen=True, slots=True)
class Version:
    """One review or appeal of a call, as kept."""

    call_id: str
    version: int
    run_id: str
    kind: str  # review | appeal
    actor: str
    recorded_at: float
    why: str
    pack_name: str
    pack_version: str
    verdicts_before: dict[str, VerdictState]
    verdicts_after: dict[str, VerdictState]
    score: float
    grade: str
    failed: bool
    decisions: tuple[DecisionRow, ...] = ()


_VERSION_COLS = (
    "call_id, version, run_id, kind, actor, recorded_at, why, pack_name, pack_version, "
    "verdicts_before, verdicts_after, score, grade, failed"
)


def _version(row: Sequence[Any], decisions: tuple[DecisionRow, ...] = ()) -> Version:
    cid, ver, run, kind, actor, at, why, pname, pver, before, after, score, grade, failed = row
    return Version(
        cid,
        int(ver),
        run,
        kind,
        actor,
        float(at),
        why,
        pname,
        pver,
        machine_verdicts(json.loads(before)),
        machine_verdicts(json.loads(after)),
        float(score),
        grade,
        bool(failed),
        decisions,
    )


def history(db: Db, call_id: str) -> list[Version]:
    """Every version of the call's reviews and appeals, oldest first, with decisions."""
    dec: dict[int, list[DecisionRow]] = {}
    for ver, rid, action, before, after, comment in db.execute(
        "SELECT version, rule_id, action, verdict_before, verdict_after, comment "
        "FROM review_decisions WHERE call_id = ? ORDER BY version, rule_id",
        (call_id,),
    ).fetchall():
        dec.setdefault(int(ver), []).append(
            DecisionRow(rid, Action(action), Verdict(before), Verdict(after), comment)
        )
    rows = db.execute(
        f"SELECT {_VERSION_COLS} FROM review_versions WHERE call_id = ? ORDER BY version",
        (call_id,),
    ).fetchall()
    return [_version(r, tuple(dec.get(int(r[1]), ()))) for r in rows]


def _latest(db: Db, call_id: str) -> Version | None:
    row = db.execute(
        f"SELECT {_VERSION_COLS} FROM review_versions WHERE call_id = ? "
        "ORDER BY version DESC LIMIT 1",
        (call_id,),
    ).fetchone()
    return _version(row) if row else None


def current_verdicts(
    db: Db, call_id: str, run_id: str | None = None
) -> tuple[MachineResult, dict[str, VerdictState], int]:
    """The machine result a call's reviews rest on, its verdicts as they stand now (after
    the latest version), and the latest version number (0: none yet). A call's versions
    stay with the run of the first one."""
    last = _latest(db, call_id)
    if last is not None:
        return machine_result(db, call_id, last.run_id), last.verdicts_after, last.version
    m = machine_result(db, call_id, run_id)
    return m, m.verdicts, 0


def _record(
    db: Db,
    pack: RulePack,
    call_id: str,
    kind: str,
    actor: str,
    decisions: Sequence[Decision],
    why: str,
    run_id: str | None,
) -> Version:
    if not actor.strip():
        raise ReviewError(
            f"call {call_id}: who {'reviews' if kind == 'review' else 'appeals'} must be named"
        )
    if not decisions:
        raise ReviewError(f"call {call_id}: no verdict named")
    seen = [d.rule_id for d in decisions]
    if len(set(seen)) != len(seen):
        raise ReviewError(f"call {call_id}: a rule named twice in one {kind}")
    try:
        m, before, last = current_verdicts(db, call_id, run_id)
        if m.pack_name != pack.name:
            raise ReviewError(
                f"call {call_id} was scored by rule pack {m.pack_name}, not {pack.name}"
            )
        after = apply_decisions(pack, before, decisions)
        s = reviewed_score(pack, after)
    except ReviewError:
        db.rollback()  # the reads' transaction (PostgreSQL): nothing was written
        raise
    now = time.time()
    version = last + 1
    try:
        db.execute(
            f"INSERT INTO review_versions ({_VERSION_COLS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                call_id,
                version,
                m.run_id,
                kind,
                actor,
                now,
                _redacted(why),
                pack.name,
                pack.version,
                _verdicts_json(before),
                _verdicts_json(after),
                s.score,
                s.grade,
                int(s.failed),
            ),
        )
        for d in decisions:
            db.execute(
                "INSERT INTO review_decisions (call_id, version, rule_id, action, "
                "verdict_before, verdict_after, comment) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    call_id,
                    version,
                    d.rule_id,
                    d.action.value,
                    before[d.rule_id].verdict.value,
                    after[d.rule_id].verdict.value,
                    _redacted(d.comment),
                ),
            )
        if kind == "appeal":
            entry = Entry((Reason.APPEAL,), tuple(seen))
            _put_item(db, call_id, m.run_id, entry, m.score, now)
        else:
            db.execute(_UPSERT_REVIEWED, (call_id, m.run_id, version, s.score, s.grade,
                                          int(s.failed), actor, now))  # fmt: skip
            item = queue_item(db, call_id)
            if item is not None:
                pending = [r for r in item.pending_rules if r not in seen]
                state = QueueState.IN_REVIEW if pending else QueueState.DONE
                db.execute(
                    "UPDATE review_queue SET state = ?, pending_rules = ?, assignee = ?, "
                    "updated_at = ? WHERE call_id = ?",
                    (state.value, _dumps(pending), actor, now, call_id),
                )
        db.commit()
    except BaseException as e:
        db.rollback()
        if _is_conflict(db, e):
            raise ReviewError(
                f"call {call_id}: version {version} was recorded by someone else meanwhile; "
                "look at the call again"
            ) from e
        raise
    return history(db, call_id)[-1]


_UPSERT_REVIEWED = (
    "INSERT INTO call_reviews (call_id, run_id, version, score, grade, failed, reviewer, "
    "reviewed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE SET "
    "run_id = excluded.run_id, version = excluded.version, score = excluded.score, "
    "grade = excluded.grade, failed = excluded.failed, reviewer = excluded.reviewer, "
    "reviewed_at = excluded.reviewed_at"
)


def _redacted(text: str) -> str:
    """A comment or an appeal's reason with personal data masked (a reviewer may quote the
    number the customer said): the store only ever holds redacted text."""
    return default_redactor().text(text)


def _is_conflict(db: Db, e: BaseException) -> bool:
    """Whether ``e`` is a primary-key clash (another writer took the version number)."""
    if db.dialect == "postgres":
        import psycopg

        return isinstance(e, psycopg.errors.UniqueViolation)
    import sqlite3

    return isinstance(e, sqlite3.IntegrityError)


def review(
    db: Db,
    pack: RulePack,
    call_id: str,
    reviewer: str,
    decisions: Sequence[Decision],
    *,
    run_id: str | None = None,
) -> Version:
    """A reviewer's decisions on some of the call's verdicts: a new version with the
    reviewed score; the queue item loses the decided rules (done when none is left)."""
    for d in decisions:
        if d.action is Action.APPEAL:
            raise ReviewError(f"{d.rule_id}: an appeal is not a review decision")
    why = "; ".join(f"{d.rule_id}: {d.comment}" for d in decisions if d.comment)
    return _record(db, pack, call_id, "review", reviewer, decisions, why, run_id)


def appeal(
    db: Db,
    pack: RulePack,
    call_id: str,
    agent: str,
    rule_ids: Sequence[str],
    reason: str,
    *,
    run_id: str | None = None,
) -> Version:
    """An agent's appeal (申诉) of failed or uncertain verdicts: a version that changes no
    verdict, and the call back in the queue (reason ``appeal``, the rules pending)."""
    if not reason.strip():
        raise ReviewError(f"call {call_id}: an appeal needs a reason")
    decisions = [Decision(r, Action.APPEAL, comment=reason) for r in rule_ids]
    return _record(db, pack, call_id, "appeal", agent, decisions, reason, run_id)


# -- exports ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overturn:
    """A verdict a reviewer overturned, as it stands after the call's latest version."""

    call_id: str
    run_id: str
    rule_id: str
    machine: Verdict
    reviewed: Verdict
    version: int
    reviewer: str
    recorded_at: float
    comment: str


def overturned(db: Db, since: float | None = None) -> list[Overturn]:
    """Every (call, rule) a review overturned (at or after ``since``, epoch seconds) whose
    reviewed verdict still differs from the machine's, with the last overturn's comment."""
    rows = db.execute(
        "SELECT d.call_id, d.rule_id, d.version, v.actor, v.recorded_at, d.comment "
        "FROM review_decisions d JOIN review_versions v "
        "ON v.call_id = d.call_id AND v.version = d.version "
        "WHERE d.action = 'overturn'"
        + (" AND v.recorded_at >= ?" if since is not None else "")
        + " ORDER BY d.call_id, d.rule_id, d.version",
        (since,) if since is not None else (),
    ).fetchall()
    last: dict[tuple[str, str], Sequence[Any]] = {}
    for r in rows:
        last[(r[0], r[1])] = r
    out = []
    state: dict[str, tuple[MachineResult, dict[str, VerdictState]]] = {}
    for (cid, rid), (_, _, ver, actor, at, comment) in last.items():
        if cid not in state:
            m, now, _ = current_verdicts(db, cid)
            state[cid] = (m, now)
        m, now = state[cid]
        mv, rv = m.verdicts.get(rid), now.get(rid)
        if mv is None or rv is None or mv.verdict is rv.verdict:
            continue
        out.append(
            Overturn(
                cid, m.run_id, rid, mv.verdict, rv.verdict, int(ver), actor, float(at), comment
            )
        )
    return out
