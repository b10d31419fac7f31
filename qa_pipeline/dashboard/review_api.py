"""The dashboard's review queue (复核队列) and appeals (申诉): the JSON routes over
:mod:`qa_pipeline.review`, on the store the dashboard holds (:class:`.StoreWorker`).

=================================================  =============================================
``GET /review``                                    the queue and review page
                                                   (:mod:`.review_page`)
``GET /api/review/queue?reason=&state=&team=``     queue items (call, agent, team, reasons,
                                                   state, assignee, entered at), oldest first;
                                                   ``state`` defaults to open and in review
                                                   (``all``: every state)
``GET /api/review/mine``                           an agent's own stored calls (current score,
                                                   failed verdicts, queue state)
``GET /api/review/calls/<id>``                     a call for review: transcript, verdicts
                                                   (machine, now, deduction, pending), findings
                                                   with evidence, queue item, every version;
                                                   ``audio``: its clips can be played (from the
                                                   server's ``/api/calls/<id>/audio``)
``POST /api/review/calls/<id>/claim``              JSON ``{}``: take the item (in review, yours)
``POST /api/review/calls/<id>/decide``             JSON ``{"base_version": n, "decisions":
                                                   [{"rule_id", "action": "confirm" |
                                                   "overturn", "to": "passed" | "failed",
                                                   "comment"}]}``: a new version
``POST /api/review/calls/<id>/appeal``             JSON ``{"rule_ids": [...], "reason": ...}``
=================================================  =============================================

**Who may do what.** ``qa`` and ``admin`` review: they see the whole queue and decide.
A ``supervisor`` sees its teams' queue and calls (as on the live page) but does not decide:
a reviewed score counts in the team's figures the supervisor answers for, so the decision
stays with QA (``403``). An ``agent`` never sees the queue (``403``); it opens its own calls
(``/api/review/mine``) and appeals a failed or uncertain verdict of its own call with a
reason; another agent's call is ``404``, as for a call that is not stored. A ``viewer``
(no transcript text) and API keys (which act for no one a version could name) may not open
calls for review or write (``403``); an API key may read the queue.

**Writes** are checked like ``POST /api/alerts/ack``: a request from another site's page is
``403`` (``Sec-Fetch-Site`` / ``Origin``), only ``application/json`` bodies are taken (``415``:
no cross-site HTML form can send one), a malformed body is ``400`` naming the field. The
reviewer or appellant is the logged-in user. A decision names the version it was made on
(``base_version``): when someone recorded another meanwhile, ``409`` says who, and nothing
is written (two writers racing on the same number: the store's primary key refuses the
second, also ``409``). Every opening of a call (its transcript) and every claim, review and
appeal is appended to the audit log.

**The queue is filled** by :func:`qa_pipeline.review.repo.scan` when the dashboard starts and
every ``scan_every_s`` seconds after (scored calls flagged for review, failed, or below
``below``); an appeal enters its call at once. The scan at start reads every call; the
periodic ones only the calls with a result written since the mark taken before the last
scan, less :data:`SCAN_OVERLAP_S` (a writer's clock behind ours, a batch committed after
its rows were stamped), and every :data:`FULL_SCAN_EVERY` th scan reads all again (what a
writer stamped further back still enters, within the hour). On 20,000 stored calls a full
scan with nothing to queue took ~50 ms (SQLite) / ~60 ms (PostgreSQL), and ~220 ms on
100,000 (SQLite), growing with the store, while the review routes wait for the store's one
connection; an incremental one reads the calls changed only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..errors import QAError
from ..messages import Verdict
from ..review import repo
from ..review.model import Action, Decision, QueueState, Reason, ReviewError
from ..review.views import call_view, item_json, version_json, when
from ..rules import RulePack, load_pack
from ..store import Store, database_errors
from ..store.recordings import Recording
from .audit import AuditLog, audit_opened
from .auth import Principal, call_visible
from .history_api import store_unavailable
from .store_worker import StoreWorker
from .users import UserDirectory, UserRole

__all__ = ["DECIDE_ROLES", "Host", "ReviewApi"]

log = logging.getLogger("qa_pipeline.dashboard")

#: roles that decide (confirm / overturn); supervisors see their teams' queue only
DECIDE_ROLES = frozenset({UserRole.QA, UserRole.ADMIN})
#: roles that see the queue (supervisors: their teams' items)
QUEUE_ROLES = frozenset({UserRole.QA, UserRole.ADMIN, UserRole.SUPERVISOR})
MAX_COMMENT = 2000
MAX_DECISIONS = 200
MAX_MINE = 100  # an agent's latest calls listed


@dataclass(frozen=True)
class Host:
    """What the review routes use of the dashboard's web app (passed in by the server, so
    this module does not import it)."""

    who: Callable[[web.Request], Principal | web.Response | None]
    unauthorized: Callable[[], web.Response]
    read_body: Callable[[web.Request], Awaitable[bytes | web.Response]]
    cross_site: Callable[[web.Request], bool]
    error: Callable[..., web.Response]
    respond: Callable[..., web.Response]
    page: Callable[[], web.Response]  # the review page (its HTML under the server's CSP)
    users: UserDirectory
    audit: AuditLog | None
    #: the call's recording, as the server's clip route finds it
    recording: Callable[[str], Awaitable[Recording | None]]


class _Refused(Exception):
    """A request refused with ``status`` and a message (raised inside handlers)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


#: a store that cannot answer (down, gone, unreadable, behind the code's migrations)
_STORE_DOWN: tuple[type[BaseException], ...] = (*database_errors(), QAError)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _is_conflict(e: ReviewError) -> bool:
    """A version number taken meanwhile: the review module raises it from the store's
    refusal of the write (a primary-key clash), the one database error it turns into a
    :class:`ReviewError`."""
    return isinstance(e.__cause__, database_errors())


#: seconds an incremental scan reaches back before the last scan's mark
SCAN_OVERLAP_S = 600.0
#: every this many periodic scans one reads every call (hourly at the default 60 s)
FULL_SCAN_EVERY = 60


class ReviewApi:
    """The review routes on ``store``; ``pack``: the rule pack the stored calls were scored
    with (``None``: ``configs/rules/``, loaded at the first decision); ``below``: queue
    machine scores below this too (``None``: no score threshold)."""

    def __init__(
        self,
        host: Host,
        store: StoreWorker,
        *,
        pack: RulePack | None = None,
        below: float | None = 60.0,
        scan_every_s: float = 60.0,
        scan_mark: float | None = None,
    ) -> None:
        self.host = host
        self.store = store
        self._pack = pack
        self.below = below
        self.scan_every_s = scan_every_s
        self._scanner: asyncio.Task[None] | None = None
        #: repo.scan_mark before the last full or incremental scan (None: the next is full);
        #: read and written in the store's thread only
        self.scan_mark = scan_mark
        self.scans = 0  # periodic scans done

    # -- wiring ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """The routes (before the server's catch-all ones) and the periodic scan."""
        r = app.router
        r.add_get("/review", self.page)
        r.add_get("/api/review/queue", self.queue)
        r.add_get("/api/review/mine", self.mine)
        r.add_get("/api/review/calls/{call_id}", self.call)
        r.add_post("/api/review/calls/{call_id}/claim", self.claim)
        r.add_post("/api/review/calls/{call_id}/decide", self.decide)
        r.add_post("/api/review/calls/{call_id}/appeal", self.appeal)
        app.on_startup.append(self._start_scanning)
        app.on_cleanup.append(self._stop_scanning)

    def scan(self, st: Store) -> list[str]:
        """Queue the stored calls that call for review (in the store's thread): those with
        a result since the last scan's mark (less :data:`SCAN_OVERLAP_S`), or all of them
        at every :data:`FULL_SCAN_EVERY` th scan and while there is no mark."""
        self.scans += 1
        full = self.scan_mark is None or self.scans % FULL_SCAN_EVERY == 0
        since = None if full or self.scan_mark is None else self.scan_mark - SCAN_OVERLAP_S
        mark = repo.scan_mark(st)  # before the scan: a result written meanwhile is next
        added = repo.scan(st, below=self.below, since=since)
        self.scan_mark = mark
        if added:
            log.info("dashboard: %d calls entered the review queue", len(added))
        return added

    async def _start_scanning(self, app: web.Application) -> None:
        if self.scan_every_s > 0:
            self._scanner = asyncio.create_task(self._scan_loop())

    async def _stop_scanning(self, app: web.Application) -> None:
        if self._scanner is not None:
            self._scanner.cancel()

    async def _scan_loop(self) -> None:
        while True:
            await asyncio.sleep(self.scan_every_s)
            try:
                await self.store.run(self.scan)
            except Exception as e:  # a store that went away: say so, try again later
                log.error("dashboard: review queue scan failed: %s", e)

    def pack(self) -> RulePack:
        if self._pack is None:
            self._pack = load_pack()
        return self._pack

    # -- helpers --------------------------------------------------------------------------

    def _refusal(self, e: _Refused) -> web.Response:
        return self.host.error(e.status, e.error, e.detail)

    def _principal(self, request: web.Request) -> Principal:
        p = self.host.who(request)
        if isinstance(p, web.Response):
            raise _Respond(p)
        if p is None:
            raise _Respond(self.host.unauthorized())
        return p

    def _visible(self, p: Principal, call: dict[str, Any]) -> bool:
        return call_visible(p, call, self.host.users.teams_of_agent)

    def _audit(
        self, request: web.Request, p: Principal, call_id: str, extra: dict[str, Any] | None
    ) -> None:
        audit_opened(self.host.audit, p, (call_id,), request.path, request.remote, extra)

    async def _json_body(self, request: web.Request, what: str) -> dict[str, Any]:
        """The JSON object of a write, checked like an acknowledgement's."""
        if request.content_type != "application/json":
            raise _Refused(415, "unsupported media type", f"send the {what} as JSON")
        raw = await self.host.read_body(request)
        if isinstance(raw, web.Response):
            raise _Respond(raw)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _Refused(400, "bad request", f"the body is not JSON: send the {what}") from None
        if not isinstance(doc, dict):
            raise _Refused(400, "bad request", f"the body must be a JSON object: the {what}")
        return doc

    def _write_checks(self, request: web.Request, what: str) -> Principal:
        if self.host.cross_site(request):
            raise _Refused(
                403, "cross-site request", f"{what} must come from this dashboard's page"
            )
        p = self._principal(request)
        if p.kind != "user":
            raise _Refused(403, "forbidden", f"an API key acts for no one: {what} needs a login")
        return p

    @staticmethod
    def _call_id(request: web.Request) -> str:
        return request.match_info["call_id"]  # decoded once by the router (%2F: a slash)

    @staticmethod
    def _call_row(st: Store, call_id: str) -> dict[str, Any] | None:
        row = st.execute(
            "SELECT call_id, agent_id, team FROM calls WHERE call_id = ?", (call_id,)
        ).fetchone()
        return {"call_id": row[0], "agent_id": row[1], "team": row[2]} if row else None

    def _seen_call(self, st: Store, p: Principal, call_id: str) -> dict[str, Any]:
        """The stored call ``p`` may see, else a 404 (as for a call not stored)."""
        call = self._call_row(st, call_id)
        if call is None or not self._visible(p, call):
            raise _Refused(404, "no such call", f"no stored call {call_id!r} is yours to see")
        return call

    async def _handle(
        self, request: web.Request, fn: Callable[[], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await fn()
        except _Respond as r:
            return r.response
        except _Refused as e:
            return self._refusal(e)
        except ReviewError:
            raise
        except _STORE_DOWN as e:  # the store is down, gone or unreadable
            return store_unavailable(e, self.store.url, "the review queue")

    # -- routes ---------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        return self.host.page()

    async def queue(self, request: web.Request) -> web.StreamResponse:
        async def go() -> web.StreamResponse:
            p = self._principal(request)
            if p.role not in QUEUE_ROLES:
                raise _Refused(
                    403, "forbidden", f"the {p.role.value} role does not see the review queue"
                )
            q = request.query
            state = q.get("state") or ""
            reason = q.get("reason") or ""
            team = q.get("team") or ""
            try:
                states = (
                    list(QueueState)
                    if state == "all"
                    else [QueueState(state)]
                    if state
                    else [QueueState.OPEN, QueueState.IN_REVIEW]
                )
            except ValueError:
                raise _Refused(
                    400, "bad request", f"state: {state!r} is not open, in_review, done or all"
                ) from None
            try:
                want = Reason(reason) if reason else None
            except ValueError:
                names = ", ".join(r.value for r in Reason)
                raise _Refused(
                    400, "bad request", f"reason: {reason!r} is not one of {names}"
                ) from None

            def read(st: Store) -> list[dict[str, Any]]:
                items = repo.queue(st, states)
                who = self._call_rows(st, [i.call_id for i in items])
                out = []
                for i in items:
                    call = who.get(i.call_id) or {"call_id": i.call_id}
                    teams = self._teams(call)
                    if not self._visible(p, call):
                        continue
                    if want is not None and want not in i.reasons:
                        continue
                    if team and team not in teams:
                        continue
                    d = item_json(i)
                    d.update(agent_id=call.get("agent_id"), teams=sorted(teams))
                    out.append(d)
                return out

            items = await self.store.run(read)
            return self.host.respond(200, _dumps({"items": items}))

        return await self._handle(request, go)

    def _teams(self, call: dict[str, Any]) -> frozenset[str]:
        team = call.get("team")
        return frozenset((team,)) if team else self.host.users.teams_of_agent(call.get("agent_id"))

    @staticmethod
    def _call_rows(st: Store, ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for cid, agent, team in st.execute(
                f"SELECT call_id, agent_id, team FROM calls WHERE call_id IN ({marks})", chunk
            ).fetchall():
                out[cid] = {"call_id": cid, "agent_id": agent, "team": team}
        return out

    async def mine(self, request: web.Request) -> web.StreamResponse:
        async def go() -> web.StreamResponse:
            p = self._principal(request)
            if p.role is not UserRole.AGENT or not p.agent_id:
                raise _Refused(403, "forbidden", "only an agent has calls of its own")
            agent = p.agent_id

            def read(st: Store) -> list[dict[str, Any]]:
                rows = st.current_results(agent_id=agent)[-MAX_MINE:]
                out = []
                for r in reversed(rows):
                    cid = r["call_id"]
                    item = repo.queue_item(st, cid)
                    try:
                        m, now, version = repo.current_verdicts(st, cid)
                    except ReviewError:
                        continue
                    failed = sorted(
                        rid
                        for rid, v in now.items()
                        if v.verdict in (Verdict.FAILED, Verdict.UNCERTAIN)
                    )
                    out.append(
                        {
                            "call_id": cid,
                            "started_epoch": r["started_epoch"],
                            "score": r["score"],
                            "grade": r["grade"],
                            "machine_score": m.score,
                            "reviewed": bool(r["reviewed"]),
                            "version": version,
                            "failed_rules": failed,
                            "queue_state": item.state.value if item else None,
                        }
                    )
                return out

            calls = await self.store.run(read)
            return self.host.respond(200, _dumps({"agent_id": agent, "calls": calls}))

        return await self._handle(request, go)

    def _view(self, st: Store, call_id: str) -> dict[str, Any]:
        """:func:`call_view` plus what the page shows beside it: each verdict's pending
        deduction and rule text, every version, the latest version number."""
        try:
            view = call_view(st, call_id)
            _, now, version = repo.current_verdicts(st, call_id)
            versions = repo.history(st, call_id)
        except ReviewError as e:
            raise _Refused(404, "not scored", str(e)) from None
        pack = self._pack
        if pack is not None and view["pack"] != f"{pack.name} {pack.version}":
            pack = None
        for rid, v in view["verdicts"].items():
            v["pending"] = now[rid].pending
            if pack is not None and rid in pack.rule_ids:
                spec = pack.rule(rid).spec
                v["description"] = spec.description
                v["severity"] = str(getattr(spec.severity, "value", spec.severity))
        view["version"] = version
        view["versions"] = [version_json(v) for v in versions]
        reviews = [v for v in versions if v.kind == "review"]  # an appeal changes no score
        last = reviews[-1] if reviews else None
        view["current"] = (
            {"score": last.score, "grade": last.grade, "failed": last.failed, "reviewed": True}
            if last
            else {**view["machine"], "reviewed": False}
        )
        return view

    async def call(self, request: web.Request) -> web.StreamResponse:
        async def go() -> web.StreamResponse:
            p = self._principal(request)
            if not p.text or p.kind != "user":
                raise _Refused(
                    403, "forbidden", "opening a call for review needs a login that sees text"
                )
            call_id = self._call_id(request)

            def read(st: Store) -> dict[str, Any]:
                call = self._seen_call(st, p, call_id)
                view = self._view(st, call_id)
                view["agent_id"] = call["agent_id"]
                view["teams"] = sorted(self._teams(call))
                return view

            view = await self.store.run(read)
            try:
                rec = await self.host.recording(call_id)
            except Exception as e:  # no audio then; the review goes on
                log.error("dashboard: recording of %s not looked up: %r", call_id, e)
                rec = None
            view["audio"] = rec is not None and rec.redacted
            view["may_decide"] = p.role in DECIDE_ROLES
            view["may_appeal"] = p.role is UserRole.AGENT
            self._audit(request, p, call_id, None)
            return self.host.respond(200, _dumps(view))

        return await self._handle(request, go)

    def _reviewer(self, request: web.Request, what: str) -> Principal:
        p = self._write_checks(request, what)
        if p.role not in DECIDE_ROLES:
            raise _Refused(
                403,
                "forbidden",
                f"the {p.role.value} role does not review: QA analysts and admins decide"
                + (
                    " (a supervisor sees its teams' queue)" if p.role is UserRole.SUPERVISOR else ""
                ),
            )
        return p

    async def claim(self, request: web.Request) -> web.StreamResponse:
        async def go() -> web.StreamResponse:
            p = self._reviewer(request, "taking a queue item")
            await self._json_body(request, "claim ({})")
            call_id = self._call_id(request)

            def write(st: Store) -> dict[str, Any]:
                self._seen_call(st, p, call_id)
                try:
                    return item_json(repo.claim(st, call_id, p.name))
                except ReviewError as e:
                    raise _Refused(404, "not queued", str(e)) from None

            item = await self.store.run(write)
            self._audit(request, p, call_id, {"action": "claim"})
            return self.host.respond(200, _dumps({"queue": item}))

        return await self._handle(request, go)

    async def decide(self, request: web.Request) -> web.StreamResponse:
        async def go() -> web.StreamResponse:
            p = self._reviewer(request, "a review decision")
            doc = await self._json_body(request, "decisions")
            base, decisions = _decisions_of(doc)
            call_id = self._call_id(request)
            pack = await asyncio.to_thread(self.pack)

            def write(st: Store) -> dict[str, Any]:
                self._seen_call(st, p, call_id)
                try:
                    history = repo.history(st, call_id)
                except ReviewError as e:
                    raise _Refused(404, "not scored", str(e)) from None
                latest = history[-1] if history else None
                if (latest.version if latest else 0) != base:
                    by = (
                        f"version {latest.version} was recorded by {latest.actor} at "
                        f"{when(latest.recorded_at)}"
                        if latest
                        else "the call has no version yet"
                    )
                    raise _Refused(
                        409,
                        "conflict",
                        f"call {call_id}: you decided on version {base}, but {by}; "
                        "look at the call again",
                    )
                try:
                    v = repo.review(st, pack, call_id, p.name, decisions)
                except ReviewError as e:
                    if _is_conflict(e):
                        raise _Refused(409, "conflict", str(e)) from None
                    raise _Refused(400, "bad request", str(e)) from None
                return {"version": version_json(v), "view": self._view(st, call_id)}

            out = await self.store.run(write)
            version = out["version"]
            self._audit(
                request,
                p,
                call_id,
                {
                    "action": "review",
                    "version": version["version"],
                    "score": version["score"],
                    "rules": [d["rule_id"] for d in version["decisions"]],
                },
            )
            return self.host.respond(200, _dumps(out))

        return await self._handle(request, go)

    async def appeal(self, request: web.Request) -> web.StreamResponse:
        async def go() -> web.StreamResponse:
            p = self._write_checks(request, "an appeal")
            if p.role is not UserRole.AGENT:
                raise _Refused(
                    403, "forbidden", "an appeal (申诉) is the agent's, on a call of its own"
                )
            doc = await self._json_body(request, "appeal")
            rules = doc.get("rule_ids")
            reason = doc.get("reason")
            if (
                not isinstance(rules, list)
                or not rules
                or len(rules) > MAX_DECISIONS
                or not all(isinstance(r, str) and r for r in rules)
            ):
                raise _Refused(400, "bad request", "rule_ids: a non-empty list of rule ids")
            if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_COMMENT:
                raise _Refused(
                    400,
                    "bad request",
                    f"reason: a non-empty text of at most {MAX_COMMENT} characters",
                )
            call_id = self._call_id(request)
            pack = await asyncio.to_thread(self.pack)

            def write(st: Store) -> dict[str, Any]:
                self._seen_call(st, p, call_id)
                try:
                    v = repo.appeal(st, pack, call_id, p.name, rules, reason.strip())
                except ReviewError as e:
                    if _is_conflict(e):
                        raise _Refused(409, "conflict", str(e)) from None
                    raise _Refused(400, "bad request", str(e)) from None
                item = repo.queue_item(st, call_id)
                return {
                    "version": version_json(v),
                    "queue": item_json(item) if item else None,
                }

            out = await self.store.run(write)
            self._audit(
                request,
                p,
                call_id,
                {"action": "appeal", "version": out["version"]["version"], "rules": rules},
            )
            return self.host.respond(200, _dumps(out))

        return await self._handle(request, go)


class _Respond(Exception):
    """A ready response to return (a 401, a 429, a 408 from the host's helpers)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _decisions_of(doc: dict[str, Any]) -> tuple[int, list[Decision]]:
    """``base_version`` and the decisions of a ``decide`` body, or a 400 naming the field."""
    base = doc.get("base_version")
    if not isinstance(base, int) or isinstance(base, bool) or base < 0:
        raise _Refused(
            400,
            "bad request",
            "base_version: the version number the decisions were made on (0: none yet)",
        )
    raw = doc.get("decisions")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_DECISIONS:
        raise _Refused(400, "bad request", f"decisions: a list of 1 to {MAX_DECISIONS} decisions")
    out = []
    for n, d in enumerate(raw):
        at = f"decisions[{n}]"
        if not isinstance(d, dict):
            raise _Refused(400, "bad request", f"{at}: an object")
        rid, action, to, comment = d.get("rule_id"), d.get("action"), d.get("to"), d.get("comment")
        if not isinstance(rid, str) or not rid:
            raise _Refused(400, "bad request", f"{at}.rule_id: a rule id")
        if action not in (Action.CONFIRM.value, Action.OVERTURN.value):
            raise _Refused(400, "bad request", f"{at}.action: confirm or overturn, not {action!r}")
        if not isinstance(comment, str) or not comment.strip() or len(comment) > MAX_COMMENT:
            raise _Refused(
                400,
                "bad request",
                f"{at}.comment: every decision needs a comment (at most {MAX_COMMENT} characters)",
            )
        if action == Action.OVERTURN.value:
            if to not in (Verdict.PASSED.value, Verdict.FAILED.value):
                raise _Refused(400, "bad request", f"{at}.to: passed or failed, not {to!r}")
            verdict: Verdict | None = Verdict(to)
        elif to is not None:
            raise _Refused(400, "bad request", f"{at}.to: only an overturn names a verdict")
        else:
            verdict = None
        try:
            out.append(Decision(rid, Action(action), verdict, comment.strip()))
        except ReviewError as e:
            raise _Refused(400, "bad request", f"{at}: {e}") from None
    return base, out
