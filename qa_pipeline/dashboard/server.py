"""The dashboard web app: one HTML page, a JSON API and a Server-Sent Events stream.

Served by aiohttp on an event loop of its own, in its own thread, so it works the same inside
``qa-pipeline serve`` (whatever that process's event loop does) and standalone::

    state = DashboardState()
    server = start_dashboard(state, host="127.0.0.1", port=8787, users="users.yaml",
                             audit_log="dashboard-audit.jsonl", token="machine-key")
    print(server.url)          # http://127.0.0.1:8787/
    ...
    server.stop()

Routes (all data routes need a session or an API key; without one: ``401`` and no data):

=========================  ==================================================================
``GET /``                  the page (no data in it; it shows a login form until logged in)
``POST /login``            form ``name=&password=``: a server-side session; its random id in
                           the HttpOnly, SameSite=Strict cookie ``qa_dashboard_session``;
                           ``403`` for a form posted from another site (``Origin`` or
                           ``Sec-Fetch-Site``: login CSRF; a reverse proxy passes ``Host`` on)
``GET|POST /logout``       ends the session on the server, clears the cookie
``GET /api/me``            who is logged in: name, role, teams, agent id, whether it may
                           acknowledge alerts (``may_ack``)
``POST /api/alerts/ack``   JSON ``{"event_id": ...}``: the logged-in user acknowledges an
                           alert of a call it sees (roles: :data:`~.auth.ACK_ROLES`; ``403``
                           for other roles, an API key, or a request from another site;
                           ``404`` for an alert not kept or not visible); every page is
                           pushed the alert with ``ack: {user, at}``; the first one stands
``GET /api/state``         snapshot: calls, alerts, statistics, details (JSON), as the
                           principal may see them
``GET /api/calls/<id>``    one call: summary, utterances, findings (JSON); ``404`` for a call
                           the principal may not see, as for one not kept
``GET /api/calls/<id>/audio?start=S&end=E``
                           a WAV clip of the call's redacted recording around the evidence
                           span S-E seconds, for a live call or (with a ``store``) a stored
                           one, as the principal may see it (the live page, history and
                           review pages all play from here) (padded, capped: :mod:`.recordings`), for the
                           principals that see the call's text (not ``viewer``); ``404``
                           without a recording, ``409`` for one not redacted (never played),
                           ``400`` for bad bounds; audit-logged
``GET /api/events``        ``text/event-stream``: ``snapshot`` then ``update`` messages,
                           filtered per principal
``GET /api/users``         admin only: the users (no hashes)
``GET /history``           the history page: calls kept in the store (``store``), trends, an
                           agent's page (:mod:`.history_page`)
``GET /calls/<id>``        redirects to ``/history/calls/<id>`` (``qa-pipeline search``'s links)
``GET /api/history/...``   history from the store, as the principal may see it; exports
                           (:mod:`.history_api`); ``404`` without a store
``/api/review/...``        with a ``store``: the review queue (page: ``GET /review``), a
                           call's review, decisions and appeals (:mod:`.review_api`)
``GET /healthz``           ``ok`` (no data, no login)
=========================  ==================================================================

**People** log in with a name and password from the users file (:mod:`.users`: roles agent,
supervisor, qa, viewer, admin; teams; argon2id hashes). What each role sees is
:mod:`.auth`'s table, enforced here on every data route and on the event stream (a message
about a call the principal may not see is not sent; statistics are recounted over its calls).
Sessions are kept in memory (:class:`~.auth.Sessions`), not in the cookie: the cookie holds a
random 256-bit id and nothing else; idle and absolute expiry; logout ends it on the server; a
user removed from the file (or whose role changes) loses or changes access at the next
request. The cookie is marked ``Secure`` when the request came over TLS or
``secure_cookie`` is set (behind a TLS-terminating proxy).

**Machines** send the API key ``token`` (``$QA_DASHBOARD_TOKEN``) as ``Authorization: Bearer
<key>`` or ``X-API-Key: <key>``, never in a URL (a ``?token=`` is ignored): read access as
``admin``. The optional ``viewer_token`` is a read-only key of the ``viewer`` role (scores,
no transcript text). Keys are compared in constant time.

**Audit.** Every transcript sent (``/api/calls/<id>``, and each call with text in a snapshot or
first pushed on a stream) is appended to the audit log (:mod:`.audit`): time, user, role,
call id, route, client address; so is every alert acknowledged. Acknowledgements themselves
are kept by an :class:`~.acks.AckStore` (by default a JSONL file beside the audit log, read
back at start).

What one client may take is bounded (:class:`~qa_pipeline.dashboard.config.DashboardLimits`):
request heads and bodies by size (``400``/``413``, a bad ``Content-Length`` is refused before
any body is read), a connection that sends no complete request head within
``idle_timeout_s`` is closed, a body must arrive within ``body_timeout_s``, a page that takes no
data for ``write_timeout_s`` is dropped, event streams are capped in all and per user or key
(``503`` with ``Retry-After``), and a peer address that presents ``login_attempts`` wrong
passwords or API keys within ``login_window_s`` gets ``429`` for every login or key it
presents until the window passes (an IPv6 peer is counted by its /64; behind a reverse proxy
every client shares the proxy's address). Password checks (argon2, memory-hard) run in worker
threads, two at a time. A page that does not read costs a bounded buffer, not a snapshot of
its own: one encoded snapshot is shared by the pages of the same scope that open while it is
current, each then gets the changes since it (see :meth:`DashboardState.subscribe`), and the
snapshot is written in 64 KiB pieces.

Serve it behind a TLS-terminating reverse proxy when it leaves localhost (this server speaks
plain HTTP; set ``secure_cookie``).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import logging
import math
import os
import queue
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import QAError
from ..rules import RulePack
from ..store import Store
from ..store.base import database_errors
from ..store.recordings import Recording
from ..store.search import sync_index
from .acks import DEFAULT_KEEP_DAYS, AckStore, FileAckStore, acks_path_beside
from .audit import AuditLog, audit_opened
from .auth import API_KEY_USER, VIEWER_KEY_USER, Principal, Sessions, call_visible
from .config import DashboardLimits
from .history import HistoryStore, StoreAckStore
from .history_api import HistoryApi, store_unavailable
from .history_page import render_history_page
from .page import render_page
from .recordings import ClipError, RecordingLookup, clip_wav
from .review_api import Host, ReviewApi
from .review_page import render_review_page
from .state import CLOSED, DashboardState
from .store_worker import StoreWorker
from .users import USERS_ENV, UserDirectory, UserRole, dummy_verify, verify_password

log = logging.getLogger("qa_pipeline.dashboard")

TOKEN_ENV = "QA_DASHBOARD_TOKEN"
VIEWER_TOKEN_ENV = "QA_DASHBOARD_VIEWER_TOKEN"
COOKIE = "qa_dashboard_session"
#: bytes written to a client at a time (and at most this much more buffered per client)
CHUNK = 64 * 1024
#: encoded snapshots kept, one per scope (all calls with/without text, a team set, an agent)
MAX_SCOPES = 64


class DashboardError(QAError):
    """The dashboard cannot start (no token configured, port taken, ...)."""


def resolve_users(users: str | Path | None = None) -> Path | None:
    """The users file: ``users``, else ``$QA_DASHBOARD_USERS``, else none."""
    value = users or os.environ.get(USERS_ENV) or None
    return Path(value) if value else None


def resolve_tokens(
    token: str | None = None,
    viewer_token: str | None = None,
    *,
    users: str | Path | None = None,
) -> tuple[str | None, str | None]:
    """The configured API keys, falling back to ``QA_DASHBOARD_TOKEN`` /
    ``QA_DASHBOARD_VIEWER_TOKEN``. Neither a users file (``users``, else
    ``$QA_DASHBOARD_USERS``) nor an API key is an error: nobody could log in."""
    token = token or os.environ.get(TOKEN_ENV) or None
    viewer_token = viewer_token or os.environ.get(VIEWER_TOKEN_ENV) or None
    if not token and resolve_users(users) is None:
        raise DashboardError(
            f"the dashboard needs users or an API key: set dashboard.users / {USERS_ENV} "
            f"(qa-pipeline dashboard users add) or {TOKEN_ENV} / --token / dashboard.token"
        )
    if token is not None and len(token) < 8:
        raise DashboardError("the dashboard token must be at least 8 characters")
    if viewer_token is not None and len(viewer_token) < 8:
        raise DashboardError("the dashboard viewer token must be at least 8 characters")
    if (
        token is not None
        and viewer_token is not None
        and hmac.compare_digest(token.encode(), viewer_token.encode())
    ):
        raise DashboardError("the viewer token must differ from the full token")
    return token, viewer_token


#: a store that cannot answer (down, not there yet, behind the code's migrations)
_STORE_DOWN: tuple[type[BaseException], ...] = (*database_errors(), QAError)
_NO_KEY = secrets.token_bytes(32)  # compared against when a key is not configured


class Access:
    """Maps a presented API key to a principal, comparing in constant time: the ``token``
    reads as ``admin``, the ``viewer_token`` as ``viewer``."""

    def __init__(self, token: str | None, viewer_token: str | None = None) -> None:
        self._full = token.encode() if token else None
        self._viewer = viewer_token.encode() if viewer_token else None

    def principal(self, presented: str | None) -> Principal | None:
        if not presented:
            return None
        p = presented.encode("utf-8", "replace")
        # Both comparisons always run (no early exit that would reveal which one matched).
        full = hmac.compare_digest(p, self._full or _NO_KEY) and self._full is not None
        viewer = hmac.compare_digest(p, self._viewer or _NO_KEY) and self._viewer is not None
        if full:
            return Principal(API_KEY_USER, UserRole.ADMIN, kind="key")
        if viewer:
            return Principal(VIEWER_KEY_USER, UserRole.VIEWER, kind="key")
        return None


class Throttle:
    """Wrong tokens per peer address: after ``attempts`` within ``window_s`` the peer is
    refused (every token it presents, right or wrong) until the oldest of them is
    ``window_s`` old. Remembers at most ``max_peers`` addresses (least recent forgotten)."""

    def __init__(
        self, attempts: int, window_s: float, max_peers: int, clock: Callable[[], float]
    ) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.max_peers = max_peers
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, peer: str) -> float:
        """Seconds until ``peer`` may try again (0: it may now)."""
        times = self._failures.get(peer)
        if times is None:
            return 0.0
        now = self._clock()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[peer]
            return 0.0
        if len(times) < self.attempts:
            return 0.0
        return times[0] + self.window_s - now

    def failed(self, peer: str) -> bool:
        """Count a wrong token; ``True`` when it is the one that reaches the limit."""
        times = self._failures.pop(peer, None) or deque(maxlen=self.attempts)
        times.append(self._clock())
        self._failures[peer] = times
        while len(self._failures) > self.max_peers:
            self._failures.popitem(last=False)
        return len(times) == self.attempts


def peer_key(remote: str | None) -> str:
    """Whom wrong tokens are counted against: the IPv4 address, or the /64 network of an
    IPv6 one (a single host commonly has a whole /64 to pick addresses from)."""
    if not remote:
        return "?"
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _sse(name: str, payload: bytes) -> bytes:
    return f"event: {name}\ndata: ".encode() + payload + b"\n\n"


SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _response(
    status: int,
    body: bytes = b"",
    ctype: str = "application/json; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> web.Response:
    h = dict(SECURITY_HEADERS)
    h.update(headers or {})
    h["Content-Type"] = ctype
    return web.Response(status=status, body=body, headers=h)


def _error(status: int, error: str, detail: str, **headers: str) -> web.Response:
    return _response(status, _json({"error": error, "detail": detail}), headers=headers)


def _cookie(value: str, max_age: int, secure: bool = False) -> str:
    flags = "; Secure" if secure else ""
    return (
        f"{COOKIE}={quote(value, safe='')}; Path=/; HttpOnly; SameSite=Strict; "
        f"Max-Age={max_age}{flags}"
    )


def html_page(render: Callable[[str], str]) -> web.Response:
    """A page of the dashboard: ``render(nonce)``'s HTML, under a CSP that lets only the
    script and stylesheet carrying ``nonce`` run (a fresh one per response), no framing."""
    nonce = secrets.token_urlsafe(16)
    csp = (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; media-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )
    return _response(
        200,
        render(nonce).encode(),
        "text/html; charset=utf-8",
        {"Content-Security-Policy": csp, "X-Frame-Options": "DENY"},
    )


def _cross_site(request: web.Request) -> bool:
    """A form posted from another site's page (login CSRF: a victim's browser logged in as
    the attacker). Browsers send ``Sec-Fetch-Site`` with a POST, which decides; without it
    an ``Origin`` naming another host does. The page's ``Referrer-Policy: no-referrer``
    makes a browser send ``Origin: null`` even from the page itself, so ``null`` alone
    decides nothing; a request with neither header (curl, a script) is no browser's."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() != request.host.lower()


MAX_EVENT_ID = 512


def _event_id_of(raw: bytes) -> str | web.Response:
    """The ``event_id`` of an acknowledgement's JSON body, or a ``400`` naming what is wrong
    with it."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _error(400, "bad request", 'the body is not JSON: send {"event_id": "..."}')
    event_id = doc.get("event_id") if isinstance(doc, dict) else None
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_EVENT_ID:
        return _error(
            400,
            "bad request",
            f"event_id: a non-empty string of at most {MAX_EVENT_ID} characters is needed",
        )
    return event_id


def _redirect(location: str, cookie: str | None = None) -> web.Response:
    headers = {"Location": location}
    if cookie is not None:
        headers["Set-Cookie"] = cookie
    return _response(303, b"", "text/plain; charset=utf-8", headers)


class _ServerLog(logging.LoggerAdapter):
    """aiohttp's server log: a request the parser refuses (a client's error, which anyone
    can send at will) is one line at INFO, not a traceback at ERROR."""

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())
            self.logger.info("%s: %s", str(msg) % args, text[:300])
            return
        kwargs.setdefault("exc_info", True)
        self.logger.error(msg, *args, **kwargs)


class _WriteStalled(Exception):
    """A client took nothing for ``write_timeout_s``."""


def _abort(request: web.Request, resp: web.StreamResponse) -> None:
    """Drop a client that does not read (a plain close would wait to flush its buffer)."""
    resp.force_close()
    if request.transport is not None:
        request.transport.abort()


@dataclass
class _App:
    """The web app's handlers and what they share. Everything here runs on the dashboard's
    event loop (one thread) except the snapshot builders and password checks, which run in
    worker threads."""

    state: DashboardState
    access: Access
    users: UserDirectory
    sessions: Sessions
    limits: DashboardLimits
    title: str
    keepalive_s: float
    audit: AuditLog | None = None
    acks: AckStore = field(default_factory=lambda: FileAckStore(None))
    history: HistoryApi | None = None  # calls kept in the store (``store``), if any
    secure_cookie: bool = False
    # the store (start_dashboard's ``store``), used from its own thread; None: no store
    store: StoreWorker | None = None
    # the review queue and appeals (routes of .review_api), when there is a store
    review: ReviewApi | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    streams: dict[str, int] = field(default_factory=dict)  # open streams by user or key
    throttle: Throttle | None = None
    recordings: RecordingLookup | None = None  # a call's recording (evidence clips)
    # (version, encoded snapshot, call ids in it) per scope: shared by pages that open
    # meanwhile
    _snapshots: dict[tuple[Any, ...], tuple[int, bytes, tuple[str, ...]]] = field(
        default_factory=dict
    )
    _snap_lock: threading.Lock = field(default_factory=threading.Lock)
    # encoded update messages, by (id(msg), scope); holds msg so its id is not reused
    _updates: OrderedDict[tuple[int, tuple[Any, ...]], tuple[dict[str, Any], bytes | None]] = field(
        default_factory=OrderedDict
    )
    wakers: set[asyncio.Event] = field(default_factory=set)
    _verify: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    def __post_init__(self) -> None:
        lim = self.limits
        self.throttle = Throttle(
            lim.login_attempts, lim.login_window_s, lim.max_peers_tracked, time.monotonic
        )

    # -- plumbing ----------------------------------------------------------------------------

    @web.middleware
    async def guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Refuse a declared body over the limit before reading any of it."""
        length = request.content_length
        if length is not None and length > self.limits.max_body_bytes:
            resp = _error(
                413,
                "request too large",
                f"a request body may have at most {self.limits.max_body_bytes} bytes",
            )
            resp.force_close()
            return resp
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status >= 400:
                e.force_close()
            raise

    @staticmethod
    def presented_key(request: web.Request) -> str | None:
        """An API key from the headers (never from the URL)."""
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        key = request.headers.get("X-API-Key")
        return key.strip() if key else None

    @staticmethod
    def session_id(request: web.Request) -> str | None:
        raw = request.headers.get("Cookie")
        if raw:
            c: SimpleCookie = SimpleCookie()
            try:
                c.load(raw)
            except Exception:
                return None
            if COOKIE in c:
                return unquote(c[COOKIE].value)
        return None

    def throttled(self, request: web.Request) -> web.Response | None:
        """A 429 response while the peer is throttled."""
        assert self.throttle is not None
        wait = self.throttle.retry_after(peer_key(request.remote))
        if wait > 0:
            return _error(
                429,
                "too many attempts",
                "too many wrong passwords or keys from this address; try again later",
                **{"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return None

    def failed(self, request: web.Request) -> None:
        """Count a wrong password or key against the peer."""
        assert self.throttle is not None
        peer = peer_key(request.remote)
        if self.throttle.failed(peer):
            log.warning(
                "dashboard: %d wrong passwords or keys from %s within %.0f s; "
                "it gets 429 for a while",
                self.throttle.attempts,
                peer,
                self.throttle.window_s,
            )

    def user_principal(self, name: str) -> Principal | None:
        user = self.users.get(name)
        if user is None or not user.password_hash:
            return None
        return Principal(user.name, user.role, frozenset(user.teams), user.agent_id)

    def who(self, request: web.Request) -> Principal | web.Response | None:
        """The principal of a request: an API key in the headers (a wrong one is counted
        against the peer; a 429 response while it is throttled), else the session cookie;
        ``None`` for neither."""
        key = self.presented_key(request)
        if key:
            refused = self.throttled(request)
            if refused is not None:
                return refused
            p = self.access.principal(key)
            if p is None:
                self.failed(request)
            return p
        sid = self.session_id(request)
        name = self.sessions.lookup(sid)
        if name is None:
            return None
        p = self.user_principal(name)
        if p is None:  # removed from the users file (or its password cleared)
            self.sessions.end(sid)
        return p

    def visible(self, p: Principal) -> Callable[[dict[str, Any]], bool] | None:
        """The call filter of ``p`` (``None``: it sees every call)."""
        if not p.scoped:
            return None
        teams_of = self.users.teams_of_agent
        return lambda call: call_visible(p, call, teams_of)

    def record(
        self,
        request: web.Request,
        p: Principal,
        call_ids: Any,
        route: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Audit: ``p`` was sent the transcript (or audio) of ``call_ids``."""
        if p.text:
            audit_opened(self.audit, p, call_ids, route, request.remote, extra)

    async def write(self, resp: web.StreamResponse, *parts: bytes) -> None:
        """Write ``parts`` a piece at a time (no copy of them), each within
        ``write_timeout_s``. Small parts go out together, as one piece."""
        if sum(len(p) for p in parts) <= CHUNK:
            parts = (b"".join(parts),)
        for data in parts:
            view = memoryview(data)
            for i in range(0, len(view), CHUNK):
                try:
                    async with asyncio.timeout(self.limits.write_timeout_s):
                        await resp.write(view[i : i + CHUNK])
                except TimeoutError:
                    raise _WriteStalled from None

    async def send_big(self, request: web.Request, data: bytes) -> web.StreamResponse:
        """A JSON body too big to hand the transport whole (a client that does not read
        would keep a copy of it buffered)."""
        resp = web.StreamResponse(status=200, headers=SECURITY_HEADERS)
        resp.content_type = "application/json"
        resp.charset = "utf-8"
        resp.content_length = len(data)
        await resp.prepare(request)
        if request.method != "HEAD":
            try:
                await self.write(resp, data)
            except _WriteStalled:
                log.info(
                    "dashboard: %s took nothing for %.0f s; closed",
                    request.remote,
                    self.limits.write_timeout_s,
                )
                _abort(request, resp)
                return resp
            await resp.write_eof()
        return resp

    def encoded_snapshot(self, p: Principal) -> tuple[bytes, tuple[str, ...]]:
        """The current snapshot as ``p`` may see it, encoded, and the ids of its calls;
        reused while the state has not changed. (A worker thread: takes the state's lock.)"""
        key = p.scope
        with self._snap_lock:
            cached = self._snapshots.get(key)
        if cached is not None and cached[0] == self.state.version:
            return cached[1], cached[2]
        version, snap = self.state.versioned_snapshot(self.visible(p))
        data, ids = self._encode_snapshot(snap, p)
        self._keep_snapshot(key, (version, data, ids))
        return data, ids

    def _keep_snapshot(
        self, key: tuple[Any, ...], entry: tuple[int, bytes, tuple[str, ...]]
    ) -> None:
        """Cache a scope's snapshot; at most ``MAX_SCOPES`` scopes (the least recent go)."""
        with self._snap_lock:
            self._snapshots.pop(key, None)
            self._snapshots[key] = entry
            while len(self._snapshots) > MAX_SCOPES:
                del self._snapshots[next(iter(self._snapshots))]

    def _encode_snapshot(self, snap: dict[str, Any], p: Principal) -> tuple[bytes, tuple[str, ...]]:
        snap = dict(snap)
        snap["role"] = p.role.value
        ids = tuple(c["call_id"] for c in snap.get("calls") or ())
        return _json(self.state.redact(snap, p.text)), ids

    def open_stream(
        self, p: Principal, notify: Callable[[], None]
    ) -> tuple[Any, bytes, tuple[str, ...]]:
        """Subscribe; the encoded snapshot to send first (shared when still current, else
        the changes since it are already queued) and its call ids. (A worker thread.)"""
        key = p.scope
        with self._snap_lock:
            cached = self._snapshots.get(key)
        sub, snap = self.state.subscribe(
            full=p.text,
            notify=notify,
            since=cached[0] if cached else None,
            only=self.visible(p),
        )
        if snap is None:
            assert cached is not None
            return sub, cached[1], cached[2]
        data, ids = self._encode_snapshot(snap, p)
        self._keep_snapshot(key, (sub.version, data, ids))
        return sub, data, ids

    def encoded_update(self, msg: dict[str, Any], p: Principal) -> bytes | None:
        """The SSE message of ``msg`` for ``p``; ``None`` when it is about a call ``p`` may
        not see. A scoped principal's statistics are recounted over its calls."""
        key = (id(msg), p.scope)
        hit = self._updates.get(key)
        if hit is not None and hit[0] is msg:
            return hit[1]
        only = self.visible(p)
        data: bytes | None
        call = msg.get("call")
        if only is not None and (not isinstance(call, dict) or not only(call)):
            data = None
        else:
            out = msg
            if only is not None and "stats" in msg:
                out = dict(msg)
                out["stats"] = self.state.stats(only)
            data = _sse("update", _json(self.state.redact(out, p.text)))
        self._updates[key] = (msg, data)
        while len(self._updates) > 512:
            self._updates.popitem(last=False)
        return data

    def catch_up(self, call_id: str, p: Principal) -> bytes:
        """Update messages with a call's utterances and findings so far (for a stream that
        starts to see the call midway)."""
        detail = self.state.detail(call_id)
        if detail is None:
            return b""
        call = detail["call"]
        msgs: list[dict[str, Any]] = [
            {"type": "utterance", "call": call, "utterance": u} for u in detail["utterances"]
        ]
        msgs += [{"type": "finding", "call": call, "finding": f} for f in detail["findings"]]
        if detail["uncertain"]:
            msgs.append({"type": "scorecard", "call": call, "uncertain": detail["uncertain"]})
        return b"".join(_sse("update", _json(self.state.redact(m, p.text))) for m in msgs)

    # -- routes ------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return _response(200, b"ok\n", "text/plain; charset=utf-8")

    async def favicon(self, request: web.Request) -> web.StreamResponse:
        return _response(204, b"", "image/x-icon")

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.end(self.session_id(request))
        return _redirect("/", _cookie("", 0, self.secure_cookie or request.secure))

    async def page(self, request: web.Request) -> web.StreamResponse:
        return html_page(lambda nonce: render_page(nonce, self.title))

    async def history_page(self, request: web.Request) -> web.StreamResponse:
        """``/history``, ``/history/calls/<id>``, ``/history/agents/<id>``: the history page
        (no data in it; it reads ``/api/history/...``; it says when no store is configured)."""
        return html_page(lambda nonce: render_history_page(nonce, self.title))

    async def call_link(self, request: web.Request) -> web.StreamResponse:
        """``/calls/<id>`` (the links ``qa-pipeline search`` prints): the stored call on the
        history page (a browser keeps the ``#u<idx>`` of the link across the redirect)."""
        tail = request.raw_path.split("?", 1)[0][len("/calls/") :]
        return _redirect("/history/calls/" + quote(unquote(tail), safe=""))

    async def check_password(self, name: str, password: str) -> bool:
        """Argon2 in a worker thread, two at a time (each takes ~64 MiB and tens of ms); an
        unknown name costs the same as a wrong password."""
        user = self.users.get(name) if name else None
        async with self._verify:
            if user is None or not user.password_hash:
                await asyncio.to_thread(dummy_verify, password)
                return False
            return await asyncio.to_thread(verify_password, user.password_hash, password)

    async def login(self, request: web.Request) -> web.StreamResponse:
        if _cross_site(request):
            return _error(
                403, "cross-site login", "a login must come from this dashboard's own page"
            )
        raw = await self.read_body(request)
        if isinstance(raw, web.Response):
            return raw
        form = parse_qs(raw.decode("utf-8", "replace"))
        name = (form.get("name") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        refused = self.throttled(request)
        if refused is not None:
            return refused
        if not name or not password or not await self.check_password(name, password):
            self.failed(request)
            await asyncio.sleep(0.2)  # slow down guessing a little
            return _redirect("/?login=failed")
        sid = self.sessions.create(name)
        log.info("dashboard: %s logged in from %s", name, request.remote)
        max_age = int(self.sessions.max_age_s)
        return _redirect("/", _cookie(sid, max_age, self.secure_cookie or request.secure))

    async def read_body(self, request: web.Request) -> bytes | web.Response:
        """The request body, or a ``408`` when it does not arrive within
        ``body_timeout_s``."""
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                return await request.read()
        except TimeoutError:
            resp = _error(408, "request timeout", "the request body did not arrive in time")
            resp.force_close()
            return resp

    async def ack(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/alerts/ack``: the logged-in user acknowledges an alert (see the
        module's route table). Checked like a login (another site's page may not post it;
        the session cookie is SameSite=Strict anyway), and only JSON is taken, which a
        cross-site HTML form cannot send."""
        if _cross_site(request):
            return _error(
                403,
                "cross-site request",
                "an acknowledgement must come from this dashboard's own page",
            )
        p = self.who(request)
        if isinstance(p, web.Response):
            return p
        if p is None:
            return self.unauthorized()
        if not p.may_ack:
            who = "an API key" if p.kind == "key" else f"the {p.role.value} role"
            return _error(403, "forbidden", f"{who} may not acknowledge alerts")
        if request.content_type != "application/json":
            return _error(
                415, "unsupported media type", 'send the event id as JSON: {"event_id": ...}'
            )
        raw = await self.read_body(request)
        if isinstance(raw, web.Response):
            return raw
        event_id = _event_id_of(raw)
        if isinstance(event_id, web.Response):
            return event_id
        alert = self.state.alert(event_id)
        only = self.visible(p)
        if alert is None or (only is not None and not only(alert)):
            return _error(404, "no such alert", f"no alert with event_id {event_id!r} is kept")
        now = time.time()
        try:
            ack = await asyncio.to_thread(self.acks.ack, event_id, p.name, now)
        except OSError as e:
            log.error("dashboard: cannot keep an acknowledgement: %s", e)
            return _error(500, "not kept", "the acknowledgement could not be written")
        except _STORE_DOWN as e:  # kept in the store (StoreAckStore), which cannot answer
            assert self.store is not None
            return store_unavailable(e, self.store.url, "the acknowledgements")
        shown = self.state.acknowledge(ack.event_id, ack.user, ack.at) or alert
        if (ack.user, ack.at) == (p.name, now) and self.audit is not None:  # this one: new
            try:
                self.audit.record(
                    user=p.name,
                    role=p.role.value,
                    call_ids=(str(alert["call_id"]),),
                    route=request.path,
                    client=request.remote,
                    extra={"action": "ack", "event_id": event_id},
                )
            except OSError as e:
                log.error("dashboard: cannot write the audit log %s: %s", self.audit.path, e)
        body = {"alert": self.state.redact({"alert": shown}, p.text)["alert"], "ack": ack.view()}
        return _response(200, _json(body))

    def unauthorized(self) -> web.Response:
        return _error(
            401,
            "unauthorized",
            "log in, or send an API key (Authorization: Bearer or X-API-Key)",
            **{"WWW-Authenticate": 'Bearer realm="qa-dashboard"'},
        )

    async def api(self, request: web.Request) -> web.StreamResponse:
        p = self.who(request)
        if isinstance(p, web.Response):
            return p
        if p is None:
            return self.unauthorized()
        path = request.path
        if path.startswith("/api/history/"):
            if self.history is None:
                return _error(404, "no store", "this dashboard keeps no history (no store)")
            return await self.history.handle(request, p)
        if path == "/api/state":
            data, ids = await asyncio.to_thread(self.encoded_snapshot, p)
            if p.text and ids:
                await asyncio.to_thread(self.record, request, p, ids, path)
            return await self.send_big(request, data)
        raw = request.raw_path.split("?", 1)[0]
        if raw.startswith("/api/calls/") and raw.endswith("/audio"):
            return await self.audio(request, p, unquote(raw[len("/api/calls/") : -len("/audio")]))
        if path.startswith("/api/calls/"):
            call_id = unquote(request.raw_path.split("?", 1)[0][len("/api/calls/") :])
            detail = self.state.detail(call_id)
            only = self.visible(p)
            if detail is None or (only is not None and not only(detail["call"])):
                return _error(404, "no such call", "no call with this id is kept")
            body = _json(self.state.redact({"detail": detail}, p.text)["detail"])
            self.record(request, p, (call_id,), "/api/calls/" + call_id)
            return await self.send_big(request, body)
        if path == "/api/events":
            return await self.events(request, p)
        if path == "/api/me":
            return _response(
                200,
                _json(
                    {
                        "name": p.name,
                        "role": p.role.value,
                        "teams": sorted(p.teams),
                        "agent_id": p.agent_id,
                        "kind": p.kind,
                        "text": p.text,
                        "may_ack": p.may_ack,
                        "review": self.review is not None,
                    }
                ),
            )
        if path == "/api/users":
            if p.role is not UserRole.ADMIN:
                return _error(403, "forbidden", "only an admin may list the users")
            self.users.refresh()
            users = [u.public() for u in self.users.all()]
            return _response(200, _json({"users": users}))
        return _error(404, "not found", "no such resource")

    async def audio(self, request: web.Request, p: Principal, call_id: str) -> web.StreamResponse:
        """An evidence clip of a call's redacted recording (see the route table): a live
        call held in memory (the live state's visibility) or one only in the store (the
        history's scope)."""
        try:
            if not await self.call_seen(p, call_id):
                return _error(404, "no such call", "no call with this id is kept")
        except _STORE_DOWN as e:
            assert self.history is not None  # only the store's lookup raises these
            return self.history.unavailable(e)
        if not p.text:
            return _error(403, "forbidden", f"the {p.role.value} role may not hear calls' audio")
        try:
            rec = await self.recording(call_id)
        except Exception as e:  # a store or file that cannot be read: say so, no audio
            log.error("dashboard: recording of %s not looked up: %r", call_id, e)
            return _error(503, "recordings unavailable", "the recordings cannot be read now")
        if rec is None:
            return _error(404, "no recording", "no recording of this call is kept")
        if not rec.redacted:
            return _error(
                409,
                "recording not redacted",
                "this call's recording holds unredacted personal data and is not played; "
                "keep a redacted copy (qa-pipeline redact-audio) and store that one",
            )
        q = request.rel_url.query
        try:
            data = await asyncio.to_thread(clip_wav, rec, q.get("start"), q.get("end"))
        except ClipError as e:
            return _error(400, "bad clip", str(e))
        span = {"start": q.get("start"), "end": q.get("end")}  # which part was heard
        await asyncio.to_thread(
            self.record, request, p, (call_id,), f"/api/calls/{call_id}/audio", span
        )
        return web.Response(
            status=200,
            body=data,
            content_type="audio/wav",
            headers={**SECURITY_HEADERS, "Cache-Control": "private, no-store"},
        )

    async def call_seen(self, p: Principal, call_id: str) -> bool:
        """Whether ``p`` may see the call: live in memory, by the live state's visibility
        (a live call it may not see is not looked for in the store); else stored, by the
        history's scope."""
        detail = self.state.detail(call_id)
        if detail is not None:
            only = self.visible(p)
            return only is None or only(detail["call"])
        return self.history is not None and await self.history.visible(p, call_id)

    async def recording(self, call_id: str) -> Recording | None:
        """The call's recording: the server's lookup, else (with a store) the store's row."""
        if self.history is not None:
            return await self.history.recording(call_id)
        if self.recordings is None:
            return None
        return await asyncio.to_thread(self.recordings, call_id)

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        return _error(404, "not found", "no such resource")

    async def events(self, request: web.Request, p: Principal) -> web.StreamResponse:
        lim = self.limits
        who = f"{p.kind}:{p.name}"
        total = sum(self.streams.values())
        mine = self.streams.get(who, 0)
        if total >= lim.max_streams or mine >= lim.max_streams_per_token:
            which = (
                f"{total} open in all (limit {lim.max_streams})"
                if total >= lim.max_streams
                else f"{mine} open for this user or key (limit {lim.max_streams_per_token})"
            )
            log.info("dashboard: event stream refused for %s: %s", request.remote, which)
            refused = _error(
                503,
                "too many event streams",
                f"too many event streams: {which}",
                **{"Retry-After": "10"},
            )
            refused.force_close()
            return refused
        self.streams[who] = mine + 1
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        self.wakers.add(wake)

        def notify() -> None:
            loop.call_soon_threadsafe(wake.set)

        sub = None
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
                "X-Content-Type-Options": "nosniff",
            },
        )
        try:
            sub, snap, ids = await asyncio.to_thread(self.open_stream, p, notify)
            audited = set(ids)
            known = set(ids)
            if p.text and ids:
                await asyncio.to_thread(self.record, request, p, ids, request.path)
            resp.force_close()  # "Connection: close": the stream ends with its connection
            await resp.prepare(request)
            await self.write(resp, b"retry: 2000\nevent: snapshot\ndata: ", snap, b"\n\n")
            del snap
            closed = False
            while not closed and not self.stopping.is_set():
                try:
                    async with asyncio.timeout(self.keepalive_s):
                        await wake.wait()
                except TimeoutError:
                    if sub.dropped:
                        break
                    await self.write(resp, b": keepalive\n\n")
                    continue
                wake.clear()
                while True:
                    try:
                        msg = sub.queue.get_nowait()
                    except queue.Empty:
                        break
                    if msg is CLOSED:
                        closed = True
                        break
                    data = self.encoded_update(msg, p)
                    if data is None:
                        continue
                    cid = (msg.get("call") or {}).get("call_id")
                    catch_up = b""
                    if p.scoped and cid is not None and cid not in known:
                        # a call that became visible midway (its agent id or team arrived
                        # with a later event): what the stream held back of it first
                        catch_up = self.catch_up(cid, p)
                    if cid is not None:
                        known.add(cid)
                    if (
                        p.text
                        and cid is not None
                        and cid not in audited
                        and (
                            catch_up or any(k in msg for k in ("utterance", "finding", "uncertain"))
                        )
                    ):
                        audited.add(cid)
                        self.record(request, p, (cid,), request.path)
                    await self.write(resp, catch_up, data)
                if sub.dropped:
                    log.info("dashboard: event stream of %s fell behind; dropped", request.remote)
                    break
        except _WriteStalled:
            log.info(
                "dashboard: %s took nothing for %.0f s; stream closed",
                request.remote,
                lim.write_timeout_s,
            )
            _abort(request, resp)
            return resp
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.wakers.discard(wake)
            self.streams[who] -= 1
            if not self.streams[who]:
                del self.streams[who]
            if sub is not None:
                self.state.unsubscribe(sub)
        return resp


@dataclass
class DashboardServer:
    """A running dashboard; ``stop()`` ends the event streams and frees the port."""

    app: _App
    runner: web.AppRunner
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def open_streams(self) -> int:
        return sum(self.app.streams.values())

    def stop(self) -> None:
        if not self.thread.is_alive():
            return

        async def _stop() -> None:
            self.app.stopping.set()
            for w in list(self.app.wakers):
                w.set()
            await self.runner.cleanup()

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
            if self.app.audit is not None:
                self.app.audit.close()
            if self.app.history is not None:
                self.app.history.history.close()
            close = getattr(self.app.acks, "close", None)
            if close is not None:
                close()
            if self.app.store is not None:
                self.app.store.close()


def _build(app: _App) -> web.Application:
    web_app = web.Application(middlewares=[app.guard], client_max_size=app.limits.max_body_bytes)

    async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = "qa-dashboard"

    web_app.on_response_prepare.append(_server_header)
    r = web_app.router
    r.add_get("/healthz", app.healthz)
    r.add_get("/", app.page)
    r.add_get("/index.html", app.page)
    r.add_get("/history", app.history_page)
    r.add_get("/history/{tail:.*}", app.history_page)
    r.add_get("/calls/{tail:.*}", app.call_link)
    r.add_get("/logout", app.logout)
    r.add_post("/logout", app.logout)
    r.add_get("/favicon.ico", app.favicon)
    r.add_post("/login", app.login)
    r.add_post("/api/alerts/ack", app.ack)
    if app.review is not None:
        app.review.add_routes(web_app)
    r.add_get("/api/{tail:.*}", app.api)
    r.add_route("*", "/{tail:.*}", app.not_found)
    return web_app


def start_dashboard(
    state: DashboardState,
    host: str = "127.0.0.1",
    port: int = 8787,
    token: str | None = None,
    *,
    viewer_token: str | None = None,
    users: str | Path | None = None,
    audit_log: str | Path | None = None,
    acks: AckStore | None = None,
    acks_keep_days: float | None = DEFAULT_KEEP_DAYS,
    store: str | None = None,
    session_idle_s: float = 7200.0,
    session_max_s: float = 43200.0,
    secure_cookie: bool = False,
    title: str = "通话质检实时看板",
    keepalive_s: float = 15.0,
    limits: DashboardLimits | None = None,
    review_pack: RulePack | None = None,
    review_below: float | None = 60.0,
    review_scan_s: float = 60.0,
    recordings: RecordingLookup | None = None,
) -> DashboardServer:
    """Serve ``state`` on ``http://host:port/`` from a background thread (port 0 = any free
    one).

    ``users`` (else ``$QA_DASHBOARD_USERS``): the users file people log in from.
    ``token`` (else ``$QA_DASHBOARD_TOKEN``): machines' API key (admin read access);
    ``viewer_token`` (else ``$QA_DASHBOARD_VIEWER_TOKEN``): a read-only key without
    transcript text. At least a users file or a key is required. ``audit_log``: where
    transcript openings are recorded (``None``: not recorded; the ``dashboard:`` config and
    the commands default to ``dashboard-audit.jsonl``). ``acks``: where alert
    acknowledgements are kept (``None``: :data:`~.acks.DEFAULT_ACKS_LOG` beside the audit
    log, or in memory only without one; in the store's ``alert_acks`` table when there is
    a ``store``); those kept are shown on the state's alerts. ``acks_keep_days``: how long
    the file keeps an acknowledgement (``None``: however old; by default the scorecards'
    retention, 730 days; :class:`~.acks.FileAckStore`). ``store``: the transcript
    store (a SQLite path or a ``postgresql://`` URL) whose calls the history pages show
    (:mod:`.history`; read-only, except acknowledgements).
    ``limits``: what clients may take (:class:`DashboardLimits`; its defaults when ``None``).
    ``store``: the store (a SQLite path, ``sqlite:///path``, ``postgresql://...``) the
    dashboard reads and writes from a thread of its own (:class:`.StoreWorker`); with one,
    the review queue and appeals are served (:mod:`.review_api`): ``review_pack`` is the
    rule pack the calls were scored with (``None``: ``configs/rules/``), the queue is
    scanned at start and every ``review_scan_s`` seconds, ``review_below`` queues machine
    scores below it too (``None``: none for the score alone).
    ``recordings``: where a call's recording is found (:mod:`.recordings`; ``None``: no
    audio is played).
    """
    full, viewer = resolve_tokens(token, viewer_token, users=users)
    directory = UserDirectory(resolve_users(users))
    sessions = Sessions(session_idle_s, session_max_s)
    audit = AuditLog(Path(audit_log)) if audit_log is not None else None
    history = None
    worker = None
    mark = None  # the review queue's scan mark (repo.scan_mark before the scan at start)
    if store is not None:
        # one writer (the review queue's, the acks', the search index's), HistoryStore's
        # read connections beside it; opening the writer applies pending migrations
        worker, mark = _open_store(store, review_below)
        if acks is None:
            acks = StoreAckStore(worker)
        sync = functools.partial(worker.call, sync_index)  # the index, before a search
        history = HistoryApi(HistoryStore(store), directory, audit, recordings, sync)
    if acks is None:
        acks = FileAckStore(
            acks_path_beside(Path(audit_log)) if audit_log is not None else None,
            keep_days=acks_keep_days,
        )
    try:
        for a in acks.acks().values():
            state.acknowledge(a.event_id, a.user, a.at)
    except BaseException:
        if worker is not None:
            worker.close()
        raise
    lim = limits or DashboardLimits()
    loop = asyncio.new_event_loop()
    started: Future[tuple[_App, web.AppRunner, int]] = Future()

    async def _start() -> tuple[_App, web.AppRunner, int]:
        app = _App(
            state,
            Access(full, viewer),
            directory,
            sessions,
            lim,
            title,
            keepalive_s,
            audit=audit,
            acks=acks,
            history=history,
            secure_cookie=secure_cookie,
            store=worker,
            recordings=recordings,
        )
        if worker is not None:
            review_host = Host(
                who=app.who,
                unauthorized=app.unauthorized,
                read_body=app.read_body,
                cross_site=_cross_site,
                error=_error,
                respond=_response,
                page=lambda: html_page(lambda nonce: render_review_page(nonce, title)),
                users=directory,
                audit=audit,
                recording=app.recording,
            )
            app.review = ReviewApi(
                review_host,
                worker,
                pack=review_pack,
                below=review_below,
                scan_every_s=review_scan_s,
                scan_mark=mark,
            )
        runner = web.AppRunner(
            _build(app),
            access_log=None,
            logger=_ServerLog(logging.getLogger("qa_pipeline.dashboard.http"), {}),
            handle_signals=False,
            handler_cancellation=True,  # a client gone: its handler (event stream) ends
            keepalive_timeout=lim.idle_timeout_s,
            max_line_size=lim.max_header_bytes,
            max_field_size=lim.max_header_bytes,
            max_headers=lim.max_headers,
            lingering_time=1.0,
            shutdown_timeout=2.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=512, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        return app, runner, int(site.port)

    def _run() -> None:
        asyncio.set_event_loop(loop)
        try:
            started.set_result(loop.run_until_complete(_start()))
        except BaseException as e:
            started.set_exception(e)
            loop.close()
            return
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=_run, name="qa-dashboard", daemon=True)
    thread.start()
    try:
        app, runner, bound = started.result(timeout=30)
    except OSError as e:
        thread.join(timeout=5)
        if worker is not None:
            worker.close()
        raise DashboardError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    log.info("dashboard on http://%s:%d/", host, bound)
    return DashboardServer(app, runner, loop, thread, host, bound)


def _open_store(url: str | Path, below: float | None) -> tuple[StoreWorker, float | None]:
    """The dashboard's store, opened (migrations applied) and the review queue scanned
    once (every call), with the mark taken before that scan (the periodic scans go on
    from it); a store that cannot be opened is a :class:`DashboardError` naming it."""
    from ..review import repo
    from ..store import database_errors, store_label

    worker = StoreWorker(url)
    errors: tuple[type[BaseException], ...] = (QAError, OSError, *database_errors())

    def first_scan(st: Store) -> tuple[float | None, list[str]]:
        mark = repo.scan_mark(st)
        return mark, repo.scan(st, below=below)

    try:
        worker.open()
        mark, added = worker.call(first_scan)
    except errors as e:
        worker.close()
        raise DashboardError(f"{store_label(url)}: cannot open the store: {e}") from None
    if added:
        log.info("dashboard: %d calls entered the review queue", len(added))
    return worker, mark
