"""The dashboard's history routes (``/api/history/...``), answered from the store
(:mod:`.history`); the server hands them the request's principal after its own checks.

==========================================  ====================================================
``GET /api/history/calls``                   stored calls, newest first, paged: filters ``agent,
                                             team, since, until, rule, verdict, score_min,
                                             score_max, direction``; ``page``, ``per_page``
``GET /api/history/calls/<id>``              a stored call: transcript, findings, verdicts,
                                             current score, reviewed (audited like a live one);
                                             ``audio``: a redacted recording can be played
                                             (clips: ``/api/calls/<id>/audio``, the server's)
``GET /api/history/trends``                  score trend per ``group`` (agent|team) per
                                             ``bucket`` (day|week) and violations per rule,
                                             with their SVG charts; ``agent, team, since, until``
``GET /api/history/agents/<id>``             an agent's page (calls, trend, top violations,
                                             reviews)
``GET /api/history/export.csv`` / ``.xlsx``  the filtered call list (all pages) as CSV (UTF-8
                                             with BOM) or XLSX; each call exported is audited
``GET /api/history/search``                  full-text search: ``q`` (terms, all said in the
                                             call) and the list's filters; hits link to the
                                             call at the utterance (``#u<idx>``); audited
==========================================  ====================================================

Every route applies the principal's scope (:func:`.history.scope_of`); a call or agent it
may not see is ``404``, as one not stored. A bad parameter is ``400`` naming it. A store
that cannot be read (the server down, the database gone, a file that is no database, a
schema behind the code) is ``503`` whose ``detail`` names the store (its URL without the
password) and the database's own words; the live dashboard goes on meanwhile, and the next
request reads the store again (a connection the server ended is replaced).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from ..errors import QAError
from ..store.base import database_errors, store_problem
from ..store.recordings import Recording, get_recording
from .audit import AuditLog, audit_opened
from .auth import Principal
from .charts import line_chart
from .history import (
    HistoryQueryError,
    HistoryStore,
    Scope,
    agent_page,
    call_detail,
    call_visible,
    export_bytes,
    export_rows,
    list_calls,
    parse_filter,
    parse_trend,
    scope_of,
    score_trend,
    search_calls,
    violation_trend,
)
from .recordings import RecordingLookup
from .users import UserDirectory, UserRole

log = logging.getLogger("qa_pipeline.dashboard")

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_UNAVAILABLE: tuple[type[BaseException], ...] = (*database_errors(), QAError)
#: rules drawn in a violations chart (the most violated; the JSON has them all)
CHART_RULES = 8
_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _json_response(status: int, data: Any) -> web.Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return web.Response(
        status=status,
        body=body,
        headers={**_HEADERS, "Content-Type": "application/json; charset=utf-8"},
    )


def _error(status: int, error: str, detail: str) -> web.Response:
    return _json_response(status, {"error": error, "detail": detail})


def store_unavailable(e: BaseException, url: str, what: str) -> web.Response:
    """A ``503`` for a store that cannot answer (down, not there, unreadable, behind the
    code's migrations), logged; its detail names the store and its problem, without the
    URL's password (:func:`~qa_pipeline.store.base.store_problem`), so whoever reads it on
    the page can tell a database that is down from one that is gone."""
    problem = store_problem(e, url)
    log.error("dashboard: %s cannot be read: %s", what, problem)
    return _error(503, "store unavailable", f"{what} cannot be read now: {problem}")


def trend_charts(scores: dict[str, Any], violations: dict[str, Any], prefix: str) -> None:
    """Add each trend's SVG (``svg``) to it: the score trend on a 0-100 axis, the
    violations of the :data:`CHART_RULES` most violated rules (``charted``)."""
    scores["svg"] = line_chart(
        f"{prefix}-score-chart",
        scores["buckets"],
        scores["series"],
        value="mean",
        integer=True,
        fixed_max=100,
    )
    totals = violations["totals"]
    top = sorted(totals, key=lambda r: (-totals[r], r))[:CHART_RULES]
    violations["charted"] = sorted(top)
    violations["svg"] = line_chart(
        f"{prefix}-violation-chart",
        violations["buckets"],
        [s for s in violations["series"] if s["key"] in top],
        value="count",
        integer=True,
    )


class HistoryApi:
    """The history routes over one store."""

    def __init__(
        self,
        history: HistoryStore,
        users: UserDirectory,
        audit: AuditLog | None,
        recordings: RecordingLookup | None = None,
        sync_search: Callable[[], int] | None = None,
    ) -> None:
        self.history = history
        self.users = users
        self.audit = audit
        self.recordings = recordings
        #: brings the search index up to date before a search (a writer's); None: as it is
        self.sync_search = sync_search

    def scope(self, p: Principal) -> Scope:
        return scope_of(p, self.users.agent_teams())

    def _audit(
        self, request: web.Request, p: Principal, ids: Any, extra: dict[str, Any] | None = None
    ) -> None:
        audit_opened(self.audit, p, ids, request.path, request.remote, extra)

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.wrap_future(self.history.submit(fn, *args, **kwargs))

    async def handle(self, request: web.Request, p: Principal) -> web.StreamResponse:
        tail = request.raw_path.split("?", 1)[0][len("/api/history/") :]
        q = {k: request.query.get(k, "") for k in request.query}
        scope = self.scope(p)
        try:
            if tail == "calls":
                return _json_response(200, await self._run(list_calls, parse_filter(q), scope))
            if tail.startswith("calls/"):
                call_id = unquote(tail[len("calls/") :])
                detail = await self._run(call_detail, call_id, scope, text=p.text)
                if detail is None:
                    return _error(404, "no such call", "no stored call with this id")
                detail["audio"] = False
                if p.text:
                    await asyncio.to_thread(self._audit, request, p, (call_id,))
                    rec = await self.recording(call_id)
                    detail["audio"] = rec is not None and rec.redacted
                return _json_response(200, detail)
            if tail == "trends":
                t = parse_trend(q)
                scores = await self._run(score_trend, t, scope)
                violations = await self._run(violation_trend, t, scope)
                trend_charts(scores, violations, "trend")
                return _json_response(200, {"scores": scores, "violations": violations})
            if tail.startswith("agents/"):
                agent_id = unquote(tail[len("agents/") :])
                if p.role is UserRole.AGENT and agent_id != p.agent_id:
                    return _error(404, "no such agent", "no agent with this id is visible")
                t = parse_trend({"bucket": q.get("bucket", ""), "tz": q.get("tz", "")})
                page = await self._run(agent_page, agent_id, scope, bucket=t.bucket, tz=t.tz)
                if page["calls"]["total"] == 0:
                    return _error(404, "no such agent", "no stored call of this agent is visible")
                trend_charts(page["trend"], page["violations"], "agent")
                return _json_response(200, page)
            if tail in ("export.csv", "export.xlsx"):
                return await self.export(request, p, scope, q, tail.rsplit(".", 1)[1])
            if tail == "search":
                terms = q.get("q", "").strip()
                if not terms:
                    return _error(400, "bad request", "q: give one or more terms to search for")
                f = parse_filter(q)
                if self.sync_search is not None:
                    await asyncio.to_thread(self.sync_search)
                found = await self._run(search_calls, terms, f, scope, text=p.text)
                if p.text and found["hits"]:
                    await asyncio.to_thread(
                        self._audit, request, p, [h["call_id"] for h in found["hits"]]
                    )
                return _json_response(200, found)
        except HistoryQueryError as e:
            return _error(400, "bad request", str(e))
        except _UNAVAILABLE as e:  # down, not there yet, behind the code's migrations
            return self.unavailable(e)
        return _error(404, "not found", "no such resource")

    def unavailable(self, e: BaseException) -> web.Response:
        """``503`` naming what is wrong with the store (its URL without the password)."""
        return store_unavailable(e, self.history.url, "the call history")

    async def recording(self, call_id: str) -> Recording | None:
        """The call's recording: the server's lookup (``serve``: the store's row, else the
        kept file) first, else the store's ``recordings`` row."""
        if self.recordings is not None:
            found = await asyncio.to_thread(self.recordings, call_id)
            if found is not None:
                return found
        rec: Recording | None = await self._run(get_recording, call_id)
        return rec

    async def visible(self, p: Principal, call_id: str) -> bool:
        """Whether the call is stored and ``p``'s scope sees it (raises the store's errors)."""
        seen: bool = await self._run(call_visible, call_id, self.scope(p))
        return seen

    async def export(
        self, request: web.Request, p: Principal, scope: Scope, q: dict[str, str], fmt: str
    ) -> web.StreamResponse:
        f = parse_filter(q)
        rows = await self._run(export_rows, f, scope)
        data = await asyncio.to_thread(export_bytes, rows, fmt, text=p.text)
        ids = [r["call_id"] for r in rows]
        await asyncio.to_thread(
            self._audit,
            request,
            p,
            ids,
            {"action": "export", "format": fmt, "filters": f.query()},
        )
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        name = f"qa-calls-{stamp}.{fmt}"
        ctype = "text/csv; charset=utf-8" if fmt == "csv" else _XLSX
        return web.Response(
            status=200,
            body=data,
            headers={
                **_HEADERS,
                "Content-Type": ctype,
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            },
        )
