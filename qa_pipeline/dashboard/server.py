"""The dashboard web app: one HTML page, a JSON API and a Server-Sent Events stream.

Served by aiohttp on an event loop of its own, in its own thread, so it works the same inside
``qa-pipeline serve`` (whatever that process's event loop does) and standalone::

    state = DashboardState()
    server = start_dashboard(state, host="127.0.0.1", port=8787, token="s3cret")
    print(server.url)          # http://127.0.0.1:8787/
    ...
    server.stop()

Routes (all data routes need a token; without one: ``401`` and no data):

=========================  ==================================================================
``GET /``                  the page (no data in it; it shows a login form until a token is set)
``POST /login``            form ``token=``: sets the HttpOnly cookie ``qa_dashboard_token``
``GET /logout``            clears the cookie
``GET /api/state``         snapshot: calls, alerts, statistics, details (JSON)
``GET /api/calls/<id>``    one call: summary, utterances, findings (JSON)
``GET /api/events``        ``text/event-stream``: ``snapshot`` then ``update`` messages
``GET /healthz``           ``ok`` (no data, no token)
=========================  ==================================================================

A token is presented as ``Authorization: Bearer <token>``, the cookie, or ``?token=`` (for
``EventSource`` clients that cannot set headers; ``GET /?token=`` sets the cookie and
redirects to a clean URL). Tokens are compared in constant time. Two roles: the ``token``
sees everything; the optional ``viewer_token`` sees calls, scores, findings and alerts but no
transcript text (utterance text, evidence text and matched phrases are removed server-side).

What one client may take is bounded (:class:`~qa_pipeline.dashboard.config.DashboardLimits`):
request heads and bodies by size (``400``/``413``, a bad ``Content-Length`` is refused before
any body is read), a connection that sends no complete request head within
``idle_timeout_s`` is closed, a body must arrive within ``body_timeout_s``, a page that takes no
data for ``write_timeout_s`` is dropped, event streams are capped in all and per token
(``503`` with ``Retry-After``), and a peer address that presents ``login_attempts`` wrong
tokens within ``login_window_s`` gets ``429`` for every token it presents until the window
passes (an IPv6 peer is counted by its /64; behind a reverse proxy every client shares the
proxy's address). A page that does not
read costs a bounded buffer, not a snapshot of its own: one encoded snapshot is shared by the
pages that open while it is current, each then gets the changes since it (see
:meth:`DashboardState.subscribe`), and the snapshot is written in 64 KiB pieces.

Serve it behind a TLS-terminating reverse proxy when it leaves localhost (the cookie is not
marked ``Secure`` because this server speaks plain HTTP).
"""

from __future__ import annotations

import asyncio
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
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import QAError
from .config import DashboardLimits
from .page import render_page
from .state import CLOSED, DashboardState

log = logging.getLogger("qa_pipeline.dashboard")

TOKEN_ENV = "QA_DASHBOARD_TOKEN"
VIEWER_TOKEN_ENV = "QA_DASHBOARD_VIEWER_TOKEN"
COOKIE = "qa_dashboard_token"
#: bytes written to a client at a time (and at most this much more buffered per client)
CHUNK = 64 * 1024

Role = Literal["full", "viewer"]


class DashboardError(QAError):
    """The dashboard cannot start (no token configured, port taken, ...)."""


def resolve_tokens(
    token: str | None = None, viewer_token: str | None = None
) -> tuple[str, str | None]:
    """The configured tokens, falling back to ``QA_DASHBOARD_TOKEN`` /
    ``QA_DASHBOARD_VIEWER_TOKEN``. No full token at all is an error: no token, no data."""
    token = token or os.environ.get(TOKEN_ENV) or None
    viewer_token = viewer_token or os.environ.get(VIEWER_TOKEN_ENV) or None
    if not token:
        raise DashboardError(
            f"the dashboard needs a token: set {TOKEN_ENV} or pass --token / dashboard.token"
        )
    if len(token) < 8:
        raise DashboardError("the dashboard token must be at least 8 characters")
    if viewer_token is not None and hmac.compare_digest(token.encode(), viewer_token.encode()):
        raise DashboardError("the viewer token must differ from the full token")
    return token, viewer_token


class Access:
    """Maps a presented token to a role, comparing in constant time."""

    def __init__(self, token: str, viewer_token: str | None = None) -> None:
        self._full = token.encode()
        self._viewer = viewer_token.encode() if viewer_token else None

    def role(self, presented: str | None) -> Role | None:
        if not presented:
            return None
        p = presented.encode("utf-8", "replace")
        # Both comparisons always run (no early exit that would reveal which one matched).
        full = hmac.compare_digest(p, self._full)
        viewer = self._viewer is not None and hmac.compare_digest(p, self._viewer)
        if full:
            return "full"
        if viewer:
            return "viewer"
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


def _cookie(value: str, max_age: int) -> str:
    return f"{COOKIE}={quote(value, safe='')}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"


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
    event loop (one thread) except the snapshot builders, which run in worker threads."""

    state: DashboardState
    access: Access
    limits: DashboardLimits
    title: str
    keepalive_s: float
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    streams: dict[str, int] = field(default_factory=dict)  # open streams by role
    throttle: Throttle | None = None
    # (version, encoded snapshot) per full/viewer: shared by pages that open meanwhile
    _snapshots: dict[bool, tuple[int, bytes]] = field(default_factory=dict)
    _snap_lock: threading.Lock = field(default_factory=threading.Lock)
    # encoded update messages, by (id(msg), full); holds msg so its id is not reused
    _updates: OrderedDict[tuple[int, bool], tuple[dict[str, Any], bytes]] = field(
        default_factory=OrderedDict
    )
    wakers: set[asyncio.Event] = field(default_factory=set)

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

    def presented_token(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        if "token" in request.query:
            return request.query["token"]
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

    def check(self, request: web.Request, presented: str | None) -> Role | web.Response | None:
        """The role of a presented token; a 429 response while the peer is throttled; None
        for no token or a wrong one (counted against the peer)."""
        if not presented:
            return None
        peer = peer_key(request.remote)
        assert self.throttle is not None
        wait = self.throttle.retry_after(peer)
        if wait > 0:
            return _error(
                429,
                "too many attempts",
                "too many wrong tokens from this address; try again later",
                **{"Retry-After": str(max(1, math.ceil(wait)))},
            )
        role = self.access.role(presented)
        if role is None and self.throttle.failed(peer):
            log.warning(
                "dashboard: %d wrong tokens from %s within %.0f s; it gets 429 for a while",
                self.throttle.attempts,
                peer,
                self.throttle.window_s,
            )
        return role

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

    def encoded_snapshot(self, full: bool, role: Role) -> bytes:
        """The current snapshot, encoded; reused while the state has not changed. (A worker
        thread: takes the state's lock.)"""
        with self._snap_lock:
            cached = self._snapshots.get(full)
        if cached is not None and cached[0] == self.state.version:
            return cached[1]
        version, snap = self.state.versioned_snapshot()
        data = self._encode_snapshot(snap, full)
        with self._snap_lock:
            self._snapshots[full] = (version, data)
        return data

    def _encode_snapshot(self, snap: dict[str, Any], full: bool) -> bytes:
        snap = dict(snap)
        snap["role"] = "full" if full else "viewer"
        return _json(self.state.redact(snap, full))

    def open_stream(self, full: bool, notify: Callable[[], None]) -> tuple[Any, bytes]:
        """Subscribe; the encoded snapshot to send first (shared when still current, else
        the changes since it are already queued). (A worker thread.)"""
        with self._snap_lock:
            cached = self._snapshots.get(full)
        sub, snap = self.state.subscribe(
            full=full, notify=notify, since=cached[0] if cached else None
        )
        if snap is None:
            assert cached is not None
            return sub, cached[1]
        data = self._encode_snapshot(snap, full)
        with self._snap_lock:
            self._snapshots[full] = (sub.version, data)
        return sub, data

    def encoded_update(self, msg: dict[str, Any], full: bool) -> bytes:
        key = (id(msg), full)
        hit = self._updates.get(key)
        if hit is not None and hit[0] is msg:
            return hit[1]
        data = _sse("update", _json(self.state.redact(msg, full)))
        self._updates[key] = (msg, data)
        while len(self._updates) > 512:
            self._updates.popitem(last=False)
        return data

    # -- routes ------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return _response(200, b"ok\n", "text/plain; charset=utf-8")

    async def favicon(self, request: web.Request) -> web.StreamResponse:
        return _response(204, b"", "image/x-icon")

    async def logout(self, request: web.Request) -> web.StreamResponse:
        return _redirect("/", _cookie("", 0))

    async def page(self, request: web.Request) -> web.StreamResponse:
        if "token" in request.query:  # a link with a token: set the cookie, drop it from the URL
            tok = request.query["token"]
            role = self.check(request, tok)
            if isinstance(role, web.Response):
                return role
            if role is None:
                return _redirect("/?login=failed")
            return _redirect("/", _cookie(tok, 12 * 3600))
        nonce = secrets.token_urlsafe(16)
        csp = (
            "default-src 'none'; "
            f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'"
        )
        body = render_page(nonce, self.title).encode()
        return _response(
            200,
            body,
            "text/html; charset=utf-8",
            {"Content-Security-Policy": csp, "X-Frame-Options": "DENY"},
        )

    async def login(self, request: web.Request) -> web.StreamResponse:
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                raw = await request.read()
        except TimeoutError:
            resp = _error(408, "request timeout", "the request body did not arrive in time")
            resp.force_close()
            return resp
        form = parse_qs(raw.decode("utf-8", "replace"))
        tok = (form.get("token") or [""])[0].strip()
        role = self.check(request, tok)
        if isinstance(role, web.Response):
            return role
        if role is None:
            await asyncio.sleep(0.2)  # slow down guessing a little
            return _redirect("/?login=failed")
        return _redirect("/", _cookie(tok, 12 * 3600))

    async def api(self, request: web.Request) -> web.StreamResponse:
        role = self.check(request, self.presented_token(request))
        if isinstance(role, web.Response):
            return role
        if role is None:
            return _error(
                401,
                "unauthorized",
                "a valid dashboard token is required",
                **{"WWW-Authenticate": 'Bearer realm="qa-dashboard"'},
            )
        full = role == "full"
        path = request.path
        if path == "/api/state":
            data = await asyncio.to_thread(self.encoded_snapshot, full, role)
            return await self.send_big(request, data)
        if path.startswith("/api/calls/"):
            call_id = unquote(request.raw_path.split("?", 1)[0][len("/api/calls/") :])
            detail = self.state.detail(call_id)
            if detail is None:
                return _error(404, "no such call", "no call with this id is kept")
            body = _json(self.state.redact({"detail": detail}, full)["detail"])
            return await self.send_big(request, body)
        if path == "/api/events":
            return await self.events(request, full, role)
        return _error(404, "not found", "no such resource")

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        return _error(404, "not found", "no such resource")

    async def events(self, request: web.Request, full: bool, role: Role) -> web.StreamResponse:
        lim = self.limits
        total = sum(self.streams.values())
        mine = self.streams.get(role, 0)
        if total >= lim.max_streams or mine >= lim.max_streams_per_token:
            which = (
                f"{total} open in all (limit {lim.max_streams})"
                if total >= lim.max_streams
                else f"{mine} open for this token (limit {lim.max_streams_per_token})"
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
        self.streams[role] = mine + 1
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
            sub, snap = await asyncio.to_thread(self.open_stream, full, notify)
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
                    await self.write(resp, self.encoded_update(msg, full))
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
            self.streams[role] -= 1
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


def _build(app: _App) -> web.Application:
    web_app = web.Application(middlewares=[app.guard], client_max_size=app.limits.max_body_bytes)

    async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = "qa-dashboard"

    web_app.on_response_prepare.append(_server_header)
    r = web_app.router
    r.add_get("/healthz", app.healthz)
    r.add_get("/", app.page)
    r.add_get("/index.html", app.page)
    r.add_get("/logout", app.logout)
    r.add_get("/favicon.ico", app.favicon)
    r.add_post("/login", app.login)
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
    title: str = "通话质检实时看板",
    keepalive_s: float = 15.0,
    limits: DashboardLimits | None = None,
) -> DashboardServer:
    """Serve ``state`` on ``http://host:port/`` from a background thread (port 0 = any free
    one).

    ``token`` (else ``$QA_DASHBOARD_TOKEN``) is required; ``viewer_token`` (else
    ``$QA_DASHBOARD_VIEWER_TOKEN``) optionally gives a second, transcript-less role.
    ``limits``: what clients may take (:class:`DashboardLimits`; its defaults when ``None``).
    """
    full, viewer = resolve_tokens(token, viewer_token)
    lim = limits or DashboardLimits()
    loop = asyncio.new_event_loop()
    started: Future[tuple[_App, web.AppRunner, int]] = Future()

    async def _start() -> tuple[_App, web.AppRunner, int]:
        app = _App(state, Access(full, viewer), lim, title, keepalive_s)
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
        raise DashboardError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    log.info("dashboard on http://%s:%d/", host, bound)
    return DashboardServer(app, runner, loop, thread, host, bound)
