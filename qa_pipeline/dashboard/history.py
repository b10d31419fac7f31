"""Call history from the store: the dashboard's stored calls, a call's detail, trends, an
agent's page, exports and alert acknowledgements, read from (and, for acknowledgements,
written to) the transcript store (:mod:`qa_pipeline.store`, SQLite or PostgreSQL).

The live page shows the calls in memory (the last ``max_calls``, gone at a restart); this
module answers for everything the store holds, so history survives restarts. What it shows:

* **The call list** (:func:`list_calls`): every stored call, newest first, paged, with its
  current score as "Which score counts" says (README): the reviewed score, else the latest
  result of an ``active`` run; candidate runs never. Filters: agent, team, start time range
  (``since`` <= start < ``until``, UTC), rule and verdict (of the current result: a call
  with ``rule`` failed, or any rule ``uncertain``), score range, direction.
* **A call** (:func:`call_detail`): its (redacted) transcript, the current result's findings
  with their evidence, every verdict including ``uncertain``, the current score, whether a
  reviewer scored it and how many review versions it has.
* **Trends** (:func:`score_trend`, :func:`violation_trend`): mean current score per agent or
  team per day or ISO week (in the viewer's ``tz``, UTC by default), from :meth:`Store.current_results` (complete calls, current
  score, candidate runs out), and failed verdicts per rule per bucket from
  :meth:`Store.current_verdicts` (``uncertain`` left out).
* **An agent** (:func:`agent_page`): calls, score trend, top violations, reviews and appeals.

**Who sees what** is the live dashboard's rule (:mod:`.auth`), applied in SQL
(:class:`Scope`): an agent its own calls (``agent_id``), a supervisor the calls whose
``team`` is one of its teams, or, for a call without a team, whose agent belongs to one of
them (the users file); the other roles all calls. The store holds redacted text only; a
principal without transcript text (``viewer``) gets no utterance text, finding messages or
matched phrases.

Connections: a store is not thread-safe, so :class:`HistoryStore` keeps a few read-only
connections and lends one per query (queries run in worker threads).
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, TypeVar
from urllib.parse import quote

from ..errors import QAError
from ..exports import (
    FINDING_COLUMNS,
    RESULT_COLUMNS,
    Sheet,
    csv_bytes,
    finding_records,
    result_record,
    xlsx_bytes,
)
from ..store import Store
from ..store.base import REVIEWED_SCORES, database_errors, store_label, team_scope_sql
from ..store.search import Filters, SearchError, search
from .acks import Ack
from .auth import Principal
from .store_worker import StoreWorker
from .users import UserRole

T = TypeVar("T")

#: calls per page at most, and in one export at most
MAX_PER_PAGE = 200
MAX_EXPORT = 50_000
VERDICTS = ("passed", "failed", "not_applicable", "uncertain")
DIRECTIONS = ("inbound", "outbound")
BUCKETS = ("day", "week")
GROUPS = ("agent", "team")


class HistoryQueryError(QAError):
    """A bad query parameter (the message names it)."""


# ---------------------------------------------------------------- filters and scope


@dataclass(frozen=True)
class CallFilter:
    """The call list's filters; ``None`` = not filtered on."""

    agent_id: str | None = None
    team: str | None = None
    since: float | None = None
    until: float | None = None
    rule_id: str | None = None
    verdict: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    direction: str | None = None
    page: int = 1
    per_page: int = 50

    def query(self) -> dict[str, str]:
        """As query parameters (what :func:`parse_filter` reads back), paging left out."""
        out: dict[str, str] = {}
        for key, value in (
            ("agent", self.agent_id),
            ("team", self.team),
            ("since", self.since),
            ("until", self.until),
            ("rule", self.rule_id),
            ("verdict", self.verdict),
            ("score_min", self.score_min),
            ("score_max", self.score_max),
            ("direction", self.direction),
        ):
            if value is not None:
                out[key] = str(value)
        return out


def parse_tz(q: Mapping[str, str]) -> timezone:
    """The ``tz`` parameter: the viewer's offset from UTC in minutes east (Beijing: 480),
    which dates and day/week buckets are read in; UTC when not given."""
    raw = (q.get("tz") or "").strip()
    return timezone(timedelta(minutes=_int("tz", raw, -720, 840))) if raw else UTC


def parse_time_param(name: str, value: str, *, end: bool = False, tz: tzinfo = UTC) -> float:
    """A time parameter: epoch seconds, ``YYYY-MM-DD`` (a day in ``tz``; as ``until`` the
    day is included: its end) or an ISO 8601 time (naive = in ``tz``)."""
    v = value.strip()
    try:
        return float(v)
    except ValueError:
        pass
    try:
        if len(v) == 10:
            day = datetime.strptime(v, "%Y-%m-%d").replace(tzinfo=tz)
            return (day + timedelta(days=1) if end else day).timestamp()
        t = datetime.fromisoformat(v)
    except ValueError:
        raise HistoryQueryError(
            f"{name}={value!r}: not a time (YYYY-MM-DD, an ISO 8601 time or epoch seconds)"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    return t.timestamp()


def _number(name: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise HistoryQueryError(f"{name}={value!r}: not a number") from None
    if not math.isfinite(x):
        raise HistoryQueryError(f"{name}={value!r}: not a finite number")
    return x


def _int(name: str, value: str, lo: int, hi: int) -> int:
    try:
        x = int(value)
    except ValueError:
        raise HistoryQueryError(f"{name}={value!r}: not a whole number") from None
    if not lo <= x <= hi:
        raise HistoryQueryError(f"{name}={value!r}: must be between {lo} and {hi}")
    return x


def _choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise HistoryQueryError(f"{name}={value!r}: one of {', '.join(choices)}")
    return value


def parse_filter(q: Mapping[str, str]) -> CallFilter:
    """The call list's filters from query parameters (``agent, team, since, until, rule,
    verdict, score_min, score_max, direction, page, per_page``, dates read in ``tz``);
    empty ones are ignored."""
    g = {k: v.strip() for k, v in q.items() if v is not None and v.strip()}
    tz = parse_tz(g)
    f = CallFilter(
        agent_id=g.get("agent"),
        team=g.get("team"),
        since=parse_time_param("since", g["since"], tz=tz) if "since" in g else None,
        until=parse_time_param("until", g["until"], end=True, tz=tz) if "until" in g else None,
        rule_id=g.get("rule"),
        verdict=_choice("verdict", g["verdict"], VERDICTS) if "verdict" in g else None,
        score_min=_number("score_min", g["score_min"]) if "score_min" in g else None,
        score_max=_number("score_max", g["score_max"]) if "score_max" in g else None,
        direction=_choice("direction", g["direction"], DIRECTIONS) if "direction" in g else None,
        page=_int("page", g["page"], 1, 1_000_000) if "page" in g else 1,
        per_page=_int("per_page", g["per_page"], 1, MAX_PER_PAGE) if "per_page" in g else 50,
    )
    if f.since is not None and f.until is not None and f.until <= f.since:
        raise HistoryQueryError("until must be later than since")
    return f


@dataclass(frozen=True)
class Scope:
    """Which stored calls a principal sees (the live dashboard's rule, :func:`.auth.call_visible`):
    ``agent_id`` set: that agent's calls only; ``teams`` set: calls of those teams, or
    without a team whose agent is one of ``team_agents``; neither: all calls. ``nothing``:
    no call at all (an agent user without an agent id)."""

    agent_id: str | None = None
    teams: frozenset[str] | None = None
    team_agents: frozenset[str] = frozenset()
    nothing: bool = False

    def sql(self, alias: str = "c") -> tuple[str, list[Any]]:
        """A condition (`` AND ...``) on the ``calls`` row ``alias``, and its parameters."""
        if self.nothing:
            return " AND 1 = 0", []
        if self.agent_id is not None:
            return f" AND {alias}.agent_id = ?", [self.agent_id]
        if self.teams is not None:
            cond, params = team_scope_sql(self.teams, self.team_agents, col=f"{alias}.")
            return f" AND {cond}", params
        return "", []

    def sees(self, row: Mapping[str, Any]) -> bool:
        """The same rule on a row with ``agent_id`` and ``team``."""
        if self.nothing:
            return False
        if self.agent_id is not None:
            return bool(row.get("agent_id") == self.agent_id)
        if self.teams is not None:
            team = row.get("team")
            if team:
                return team in self.teams
            return row.get("agent_id") in self.team_agents
        return True


def scope_of(p: Principal, agent_teams: Iterable[tuple[str, Iterable[str]]]) -> Scope:
    """The scope of ``p``; ``agent_teams``: each agent id with its teams (the users file's
    agent users), which places a call without a team."""
    if p.role is UserRole.AGENT:
        return Scope(agent_id=p.agent_id) if p.agent_id else Scope(nothing=True)
    if p.role is UserRole.SUPERVISOR:
        agents = frozenset(a for a, teams in agent_teams if set(teams) & p.teams)
        return Scope(teams=frozenset(p.teams), team_agents=agents)
    return Scope()


# ---------------------------------------------------------------- connections


class HistoryStore:
    """Read-only connections to a store for the history routes: queries run on a pool of
    ``size`` threads of its own, each with its own connection (a store connection belongs
    to the thread that opened it), opened when the thread first needs it (a store not
    there yet, or behind the code's migrations, fails that query, not the dashboard); a
    connection whose query failed is closed and the next one opens afresh (a restarted
    server)."""

    def __init__(self, url: str, *, size: int = 4) -> None:
        self.url = url
        self.label = store_label(url)
        self._local = threading.local()
        self._all: list[Store] = []
        self._lock = threading.Lock()
        self._size = size
        self._pool = ThreadPoolExecutor(size, thread_name_prefix="qa-history")

    def _store(self) -> Store:
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = Store(self.url, readonly=True)
            self._local.store = store
            with self._lock:
                self._all.append(store)
        return store

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        store = self._store()
        try:
            out = fn(store, *args, **kwargs)
        except database_errors():
            self._drop(store)
            if not store.broken:
                raise
            # the server ended this connection (restarted, or the database went away
            # meanwhile): a read is tried once more on a new one, which answers or says
            # what is wrong now
            store = self._store()
            try:
                out = fn(store, *args, **kwargs)
            except database_errors():
                self._drop(store)
                raise
        if store.dialect == "sqlite":  # no read transaction left open: see new writes
            store.rollback()
        return out

    def _drop(self, store: Store) -> None:
        """Forget this thread's connection (the next query opens a new one)."""
        self._local.store = None
        with self._lock:
            if store in self._all:
                self._all.remove(store)
        with suppress(*database_errors()):
            store.close()

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """``fn(store, *args, **kwargs)`` on one of the pool's threads."""
        return self._pool.submit(self._call, fn, args, kwargs)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        """Each thread closes its own connection, then the pool ends."""

        def close_mine() -> None:
            store = getattr(self._local, "store", None)
            if store is not None:
                self._local.store = None
                store.close()

        with self._lock:
            self._all.clear()
        n = self._size  # one task per thread: each waits at the barrier until all have one
        barrier = threading.Barrier(n)

        def close_one() -> None:
            close_mine()
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)

        for f in [self._pool.submit(close_one) for _ in range(n)]:
            f.result()
        self._pool.shutdown(wait=True)


# ---------------------------------------------------------------- the call list


#: the run of a call's current machine result (``c``: the ``calls`` row): the latest result
#: (``created_at``) of an ``active`` run, as :meth:`Store.current_results` takes it; looked
#: up per call through the results' call index, so a page of the list reads only its calls
CURRENT_RUN = (
    "(SELECT r2.run_id FROM results r2 JOIN runs u2 ON u2.run_id = r2.run_id "
    "WHERE r2.call_id = c.call_id AND u2.role = 'active' "
    "ORDER BY r2.created_at DESC, r2.run_id DESC LIMIT 1)"
)


def _newest_first(store: Store) -> str:
    """Newest first, calls of unknown start last (the ``calls_started`` index of migration
    0301 serves it on each backend)."""
    if store.dialect == "postgres":
        return " ORDER BY c.started_epoch DESC NULLS LAST, c.call_id DESC"
    return " ORDER BY c.started_epoch DESC, c.call_id DESC"  # NULL is least in SQLite


def _select(store: Store) -> tuple[str, str, str]:
    """(columns, FROM ... joins, score expression) of the call list: a reviewer's score,
    grade and failed flag (``v``) over the current machine result's (``r``)."""
    score = "COALESCE(v.score, r.score)"
    cols = (
        "c.call_id, c.agent_id, c.team, c.direction, c.started_at, c.started_epoch, "
        f"c.duration_s, r.run_id, r.status, {score} AS score, COALESCE(v.grade, r.grade) "
        "AS grade, COALESCE(v.failed, r.failed) AS failed, r.failed_rules, r.review, "
        "r.complete, CASE WHEN v.score IS NULL THEN 0 ELSE 1 END AS reviewed"
    )
    joins = (
        f"FROM calls c LEFT JOIN results r ON r.call_id = c.call_id AND r.run_id = {CURRENT_RUN} "
        f"LEFT JOIN {REVIEWED_SCORES} v ON v.call_id = c.call_id "
    )
    return cols, joins, score


def _needs_result(f: CallFilter) -> bool:
    """Whether a filter reads the current result (else the calls alone answer a count)."""
    return any(x is not None for x in (f.score_min, f.score_max, f.rule_id, f.verdict))


def _where(f: CallFilter, scope: Scope, score: str) -> tuple[str, list[Any]]:
    where = " WHERE 1 = 1"
    params: list[Any] = []
    for sql, value in (
        ("c.agent_id = ?", f.agent_id),
        ("c.team = ?", f.team),
        ("c.started_epoch >= ?", f.since),
        ("c.started_epoch < ?", f.until),
        ("c.direction = ?", f.direction),
        (f"{score} >= ?", f.score_min),
        (f"{score} <= ?", f.score_max),
    ):
        if value is not None:
            where += f" AND {sql}"
            params.append(value)
    if f.rule_id is not None or f.verdict is not None:
        cond = "x.run_id = r.run_id AND x.call_id = c.call_id"
        if f.rule_id is not None:
            cond += " AND x.rule_id = ?"
            params.append(f.rule_id)
        # a rule named without a verdict: the calls that failed it
        cond += " AND x.verdict = ?"
        params.append(f.verdict or "failed")
        where += f" AND EXISTS (SELECT 1 FROM verdicts x WHERE {cond})"
    s_sql, s_params = scope.sql()
    return where + s_sql, params + s_params


def _rows(cur: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _call_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A call list row as the API sends it."""
    score = row.get("score")
    return {
        "call_id": row["call_id"],
        "agent_id": row.get("agent_id"),
        "team": row.get("team"),
        "direction": row.get("direction"),
        "started_at": row.get("started_at"),
        "started_epoch": row.get("started_epoch"),
        "duration_s": row.get("duration_s"),
        "score": None if score is None else round(float(score), 2),
        "grade": row.get("grade"),
        "failed": None if row.get("failed") is None else bool(row["failed"]),
        "failed_rules": json.loads(row.get("failed_rules") or "[]"),
        "status": row.get("status"),  # None: no result of the pack in service
        "complete": None if row.get("complete") is None else bool(row["complete"]),
        "review": bool(row.get("review")),
        "reviewed": bool(row.get("reviewed")),
    }


def list_calls(store: Store, f: CallFilter, scope: Scope) -> dict[str, Any]:
    """One page of stored calls, newest first: ``{"calls", "total", "page", "per_page",
    "pages"}``."""
    cols, joins, score = _select(store)
    where, params = _where(f, scope, score)
    counted = joins if _needs_result(f) else "FROM calls c "
    total = int(store.execute(f"SELECT COUNT(*) {counted}{where}", params).fetchone()[0])
    cur = store.execute(
        f"SELECT {cols} {joins}{where}{_newest_first(store)} LIMIT ? OFFSET ?",
        [*params, f.per_page, (f.page - 1) * f.per_page],
    )
    return {
        "calls": [_call_view(r) for r in _rows(cur)],
        "total": total,
        "page": f.page,
        "per_page": f.per_page,
        "pages": max(1, math.ceil(total / f.per_page)),
    }


def export_rows(store: Store, f: CallFilter, scope: Scope) -> list[dict[str, Any]]:
    """The filtered calls (no paging, at most :data:`MAX_EXPORT`, newest first) as result
    rows :mod:`qa_pipeline.exports` takes (findings and verdicts JSON of the current result)."""
    cols, joins, score = _select(store)
    where, params = _where(f, scope, score)
    cur = store.execute(
        f"SELECT {cols}, r.findings, r.verdicts {joins}{where}{_newest_first(store)} LIMIT ?",
        [*params, MAX_EXPORT + 1],
    )
    rows = _rows(cur)
    if len(rows) > MAX_EXPORT:
        raise HistoryQueryError(
            f"more than {MAX_EXPORT} calls match: narrow the filters (a date range) to export"
        )
    for r in rows:
        if r["status"] is None:
            r["status"] = "unscored"
    return rows


def export_bytes(rows: Sequence[Mapping[str, Any]], fmt: str, *, text: bool) -> bytes:
    """CSV (UTF-8 with BOM) or XLSX of export rows; without ``text`` (a viewer) the
    findings sheet, which quotes the calls, is left out of the workbook."""
    if fmt == "csv":
        return csv_bytes(RESULT_COLUMNS, map(result_record, rows))
    sheets = [Sheet("results", RESULT_COLUMNS, [result_record(r) for r in rows])]
    if text:
        sheets.append(
            Sheet("findings", FINDING_COLUMNS, [x for r in rows for x in finding_records(r)])
        )
    return xlsx_bytes(sheets)


# ---------------------------------------------------------------- search


def search_calls(
    store: Store, terms: str, f: CallFilter, scope: Scope, *, text: bool
) -> dict[str, Any]:
    """Full-text search (:mod:`qa_pipeline.store.search`: every term said in the call) with
    the call list's filters, in ``scope``: ``{"hits", "total", "page", "per_page",
    "pages"}``, each hit linking to the call at its first matching utterance
    (``/history/calls/<id>#u<idx>``). The index is read as it is (the caller syncs it). A
    rule named without a verdict means the calls that failed it, as in the list. The
    scope is a filter of the search's own SQL (an agent's id; a supervisor's teams, and
    team-less calls by agent: :meth:`Scope.sql`'s condition), so the page and the total
    are exact."""
    if scope.nothing or (scope.agent_id is not None and f.agent_id not in (None, scope.agent_id)):
        return {"hits": [], "total": 0, "page": f.page, "per_page": f.per_page, "pages": 1}
    try:
        filters = Filters(
            agent=scope.agent_id if scope.agent_id is not None else f.agent_id,
            team=f.team,
            teams=tuple(scope.teams) if scope.teams is not None else None,
            team_agents=tuple(scope.team_agents),
            direction=f.direction,
            since=f.since,
            until=f.until,
            rule=f.rule_id,
            verdict=f.verdict or ("failed" if f.rule_id is not None else None),
            min_score=f.score_min,
            max_score=f.score_max,
        )
        offset = (f.page - 1) * f.per_page
        page = search(store, terms, filters, limit=f.per_page, offset=offset, sync=False)
        hits, total = page.hits, page.total_calls
    except SearchError as e:
        raise HistoryQueryError(f"q: {e}") from None
    out = []
    for h in hits:
        d = h.as_dict()
        d["link"] = f"/history/calls/{quote(h.call_id, safe='')}#u{h.first.index}"
        for m in d["matches"]:
            m["link"] = f"/history/calls/{quote(h.call_id, safe='')}#u{m['utterance_index']}"
            if not text:
                m["snippet"] = None
        if not text:
            d["snippet"] = None
        out.append(d)
    return {
        "hits": out,
        "total": int(total),
        "page": f.page,
        "per_page": f.per_page,
        "pages": max(1, math.ceil(total / f.per_page)),
    }


# ---------------------------------------------------------------- one call


def call_detail(store: Store, call_id: str, scope: Scope, *, text: bool) -> dict[str, Any] | None:
    """A stored call as ``scope`` may see it (``None``: not stored, or not visible)."""
    cols, joins, score = _select(store)
    s_sql, s_params = scope.sql()
    rows = _rows(
        store.execute(
            f"SELECT {cols} {joins}WHERE c.call_id = ?{s_sql}",
            [call_id, *s_params],
        )
    )
    if not rows:
        return None
    row = rows[0]
    doc = store.transcript_doc(call_id) or {}
    utterances = [
        {
            "index": int(u.get("index", i)),
            "role": u.get("role"),
            "channel": u.get("channel"),
            "start": u.get("start"),
            "end": u.get("end"),
            "text": u.get("text") if text else None,
        }
        for i, u in enumerate(doc.get("utterances") or ())
    ]
    findings: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    run_id = row.get("run_id")
    if run_id is not None:
        res = store.execute(
            "SELECT findings FROM results WHERE run_id = ? AND call_id = ?", (run_id, call_id)
        ).fetchone()
        for fd in json.loads((res[0] if res else None) or "[]"):
            findings.append(_finding_view(fd, text))
        verdicts = _rows(
            store.execute(
                "SELECT rule_id, verdict, severity, deduction, pending_deduction FROM verdicts "
                "WHERE run_id = ? AND call_id = ? ORDER BY rule_id",
                (run_id, call_id),
            )
        )
    reviews = int(
        store.execute(
            "SELECT COUNT(*) FROM review_versions WHERE call_id = ?", (call_id,)
        ).fetchone()[0]
    )
    return {
        "call": _call_view(row),
        "utterances": utterances,
        "findings": findings,
        "verdicts": verdicts,
        "review_versions": reviews,
        "text": text,
    }


def call_visible(store: Store, call_id: str, scope: Scope) -> bool:
    """Whether the call is stored and ``scope`` sees it."""
    s_sql, s_params = scope.sql()
    row = store.execute(
        f"SELECT 1 FROM calls c WHERE c.call_id = ?{s_sql}", [call_id, *s_params]
    ).fetchone()
    return row is not None


def _finding_view(fd: Mapping[str, Any], text: bool) -> dict[str, Any]:
    evidence = []
    for ev in fd.get("evidence") or ():
        e = {
            "utterance_index": ev.get("utterance_index"),
            "start": ev.get("start"),
            "end": ev.get("end"),
        }
        if text:
            e["text"] = ev.get("text")
            e["matched"] = ev.get("matched")
        evidence.append(e)
    return {
        "rule_id": fd.get("rule_id"),
        "severity": fd.get("severity"),
        "message": fd.get("message") if text else None,
        "deduction": fd.get("deduction"),
        "evidence": evidence,
    }


# ---------------------------------------------------------------- trends


def bucket_start(epoch: float, bucket: str, tz: tzinfo = UTC) -> str:
    """The day (``YYYY-MM-DD``) or ISO week's Monday of a time, in ``tz``."""
    d = datetime.fromtimestamp(epoch, tz).date()
    if bucket == "week":
        d = d - timedelta(days=d.weekday())
    return d.isoformat()


@dataclass(frozen=True)
class TrendQuery:
    group: str = "agent"  # agent | team
    bucket: str = "day"  # day | week
    agent_id: str | None = None
    team: str | None = None
    since: float | None = None
    until: float | None = None
    tz: tzinfo = UTC  # the days and weeks are the viewer's


def parse_trend(q: Mapping[str, str]) -> TrendQuery:
    g = {k: v.strip() for k, v in q.items() if v is not None and v.strip()}
    tz = parse_tz(g)
    t = TrendQuery(
        group=_choice("group", g["group"], GROUPS) if "group" in g else "agent",
        bucket=_choice("bucket", g["bucket"], BUCKETS) if "bucket" in g else "day",
        agent_id=g.get("agent"),
        team=g.get("team"),
        since=parse_time_param("since", g["since"], tz=tz) if "since" in g else None,
        until=parse_time_param("until", g["until"], end=True, tz=tz) if "until" in g else None,
        tz=tz,
    )
    if t.since is not None and t.until is not None and t.until <= t.since:
        raise HistoryQueryError("until must be later than since")
    return t


def _filtered(rows: list[dict[str, Any]], scope: Scope) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("started_epoch") is not None and scope.sees(r)]


def _scoped_agent(t: TrendQuery, scope: Scope) -> str | None:
    return scope.agent_id if scope.agent_id is not None else t.agent_id


def _trend_sql(store: Store, t: TrendQuery, scope: Scope) -> tuple[str, str, list[Any]]:
    """(day number expression, conditions, parameters) shared by the trends: the day of a
    call's start in ``t.tz`` (days since 1970-01-01), the trend's filters and ``scope``."""
    offset = (t.tz.utcoffset(None) or timedelta(0)).total_seconds()
    day = "FLOOR((c.started_epoch + ?) / 86400.0)"
    if store.dialect == "sqlite":
        day = "CAST((c.started_epoch + ?) / 86400.0 AS INTEGER)"  # epochs after 1970
    where = " AND c.started_epoch IS NOT NULL"
    params: list[Any] = [offset]
    for sql, value in (
        ("c.agent_id = ?", _scoped_agent(t, scope)),
        ("c.team = ?", t.team),
        ("c.started_epoch >= ?", t.since),
        ("c.started_epoch < ?", t.until),
    ):
        if value is not None:
            where += f" AND {sql}"
            params.append(value)
    s_sql, s_params = scope.sql()
    return day, where + s_sql, params + s_params


def _bucket_of(day_number: Any, bucket: str) -> str:
    d = _EPOCH_DAY + timedelta(days=int(day_number))
    if bucket == "week":
        d -= timedelta(days=d.weekday())
    return d.isoformat()


_EPOCH_DAY = datetime(1970, 1, 1).date()


def score_trend(store: Store, t: TrendQuery, scope: Scope) -> dict[str, Any]:
    """Mean current score per ``group`` (agent or team) per bucket: ``{"buckets": [...],
    "series": [{"key", "points": [{"bucket", "mean", "calls"}]}]}``. The scores are
    :meth:`Store.current_results`' (the reviewed score, else the current machine result of
    an ``active`` run; complete calls or reviewed ones; no error), summed in the database
    per key and day (the store's method hands over every call's row); days fold into weeks
    here. A call without a team counts under ``—``."""
    day, where, params = _trend_sql(store, t, scope)
    key = "c.agent_id" if t.group == "agent" else "c.team"
    score = "COALESCE(v.score, r.score)"
    rows = store.execute(
        f"SELECT {key}, {day}, SUM({score}), COUNT({score}) FROM calls c "
        f"JOIN results r ON r.call_id = c.call_id AND r.run_id = {CURRENT_RUN} "
        f"LEFT JOIN {REVIEWED_SCORES} v ON v.call_id = c.call_id "
        f"WHERE r.status = 'ok' AND (r.complete = 1 OR v.score IS NOT NULL){where} GROUP BY 1, 2",
        params,
    ).fetchall()
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    for k, d, total, n in rows:
        if not n:
            continue
        acc = sums[k or "—"][_bucket_of(d, t.bucket)]
        acc[0] += float(total)
        acc[1] += int(n)
    buckets = sorted({b for per in sums.values() for b in per})
    series = [
        {
            "key": k,
            "points": [
                {"bucket": b, "mean": round(tot / n, 2), "calls": int(n)}
                for b, (tot, n) in sorted(per.items())
            ],
        }
        for k, per in sorted(sums.items())
    ]
    return {"group": t.group, "bucket": t.bucket, "buckets": buckets, "series": series}


def violation_trend(store: Store, t: TrendQuery, scope: Scope) -> dict[str, Any]:
    """Failed verdicts per rule per bucket: ``{"buckets", "series": [{"key": rule,
    "points": [{"bucket", "count"}]}], "totals": {rule: n}}``. The verdicts counted are
    :meth:`Store.current_verdicts`' (the current machine result of complete calls, not an
    error; ``uncertain`` out), counted in the database per rule and day (the store's
    method hands over every verdict row: 10 s for 100,000 calls); days fold into weeks
    here."""
    day, where, params = _trend_sql(store, t, scope)
    rows = store.execute(
        f"SELECT v.rule_id, {day}, COUNT(*) FROM calls c "
        f"JOIN results r ON r.call_id = c.call_id AND r.run_id = {CURRENT_RUN} "
        "JOIN verdicts v ON v.run_id = r.run_id AND v.call_id = c.call_id "
        f"WHERE v.verdict = 'failed' AND r.status = 'ok' AND r.complete = 1{where} "
        "GROUP BY 1, 2",
        params,
    ).fetchall()
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for rule, d, n in rows:
        counts[rule][_bucket_of(d, t.bucket)] += int(n)
    buckets = sorted({b for c in counts.values() for b in c})
    series = [
        {"key": rule, "points": [{"bucket": b, "count": n} for b, n in sorted(c.items())]}
        for rule, c in sorted(counts.items())
    ]
    totals = {rule: sum(c.values()) for rule, c in counts.items()}
    return {"bucket": t.bucket, "buckets": buckets, "series": series, "totals": totals}


# ---------------------------------------------------------------- an agent


def agent_page(
    store: Store,
    agent_id: str,
    scope: Scope,
    *,
    bucket: str = "day",
    tz: tzinfo = UTC,
    per_page: int = 20,
) -> dict[str, Any]:
    """An agent's page: its latest calls, score trend, top violations (failed verdicts of
    current results, by rule), and reviews: review and appeal versions of its calls, calls
    open in the review queue."""
    f = CallFilter(agent_id=agent_id, per_page=per_page)
    calls = list_calls(store, f, scope)
    t = TrendQuery(group="agent", bucket=bucket, agent_id=agent_id, tz=tz)
    trend = score_trend(store, t, scope)
    violations = violation_trend(store, t, scope)
    top = sorted(violations["totals"].items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    scores = [
        float(r["score"])
        for r in _filtered(store.current_results(agent_id=agent_id), scope)
        if r.get("score") is not None
    ]
    reviews = {"reviews": 0, "appeals": 0, "queued": 0}
    s_sql, s_params = scope.sql()
    for kind, n in store.execute(
        "SELECT rv.kind, COUNT(*) FROM review_versions rv JOIN calls c "
        f"ON c.call_id = rv.call_id WHERE c.agent_id = ?{s_sql} GROUP BY rv.kind",
        [agent_id, *s_params],
    ).fetchall():
        reviews["reviews" if kind == "review" else "appeals"] += int(n)
    reviews["queued"] = int(
        store.execute(
            "SELECT COUNT(*) FROM review_queue q JOIN calls c ON c.call_id = q.call_id "
            f"WHERE c.agent_id = ? AND q.state <> 'done'{s_sql}",
            [agent_id, *s_params],
        ).fetchone()[0]
    )
    return {
        "agent_id": agent_id,
        "calls": calls,
        "mean_score": round(sum(scores) / len(scores), 2) if scores else None,
        "scored_calls": len(scores),
        "trend": trend,
        "violations": violations,
        "top_violations": [{"rule_id": r, "count": n} for r, n in top],
        "reviews": reviews,
    }


# ---------------------------------------------------------------- acknowledgements


class StoreAckStore:
    """Alert acknowledgements in the store's ``alert_acks`` table (migration
    ``0300_acks``): the first acknowledgement of an event stands (``INSERT ... ON CONFLICT
    DO NOTHING``, so two dashboards on one PostgreSQL store agree). Written through the
    dashboard's one writer, its :class:`.StoreWorker` (the review queue's); given a URL
    instead, it opens a worker of its own (applying pending migrations) and closes it."""

    def __init__(self, store: StoreWorker | str) -> None:
        self._own = not isinstance(store, StoreWorker)
        self.worker = StoreWorker(store) if isinstance(store, str) else store
        if self._own:
            self.worker.open()

    def ack(self, event_id: str, user: str, at: float) -> Ack:
        def ack(s: Store) -> Ack:
            s.execute(
                "INSERT INTO alert_acks (event_id, user_name, at) VALUES (?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING",
                (event_id, user, at),
            )
            s.commit()
            row = s.execute(
                "SELECT event_id, user_name, at FROM alert_acks WHERE event_id = ?", (event_id,)
            ).fetchone()
            return Ack(str(row[0]), str(row[1]), float(row[2]))

        return self.worker.call(ack)

    def acks(self) -> Mapping[str, Ack]:
        def read(s: Store) -> dict[str, Ack]:
            rows = s.execute("SELECT event_id, user_name, at FROM alert_acks").fetchall()
            return {str(e): Ack(str(e), str(u), float(a)) for e, u, a in rows}

        return self.worker.call(read)

    def close(self) -> None:
        """Closes the worker if it opened one (the dashboard closes its own)."""
        if self._own:
            self.worker.close()
