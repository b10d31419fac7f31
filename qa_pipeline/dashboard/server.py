"""The dashboard web app: one HTML page, a JSON API and a Server-Sent Events stream.

Runs on the standard library's threaded HTTP server, in its own threads, so it works the same
inside ``qa-pipeline serve`` (whatever that process's event loop does) and standalone::

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

Serve it behind a TLS-terminating reverse proxy when it leaves localhost (the cookie is not
marked ``Secure`` because this server speaks plain HTTP).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import queue
import secrets
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .page import render_page
from .state import CLOSED, DashboardState

log = logging.getLogger("qa_pipeline.dashboard")

TOKEN_ENV = "QA_DASHBOARD_TOKEN"
VIEWER_TOKEN_ENV = "QA_DASHBOARD_VIEWER_TOKEN"
COOKIE = "qa_dashboard_token"

Role = Literal["full", "viewer"]


class DashboardError(Exception):
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


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # set by start_dashboard
    state: DashboardState
    access: Access
    stopping: threading.Event
    title: str
    keepalive_s: float


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "qa-dashboard"
    sys_version = ""

    # -- plumbing ----------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str = "application/json; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _unauthorized(self) -> None:
        self._send(
            HTTPStatus.UNAUTHORIZED,
            _json({"error": "unauthorized", "detail": "a valid dashboard token is required"}),
            headers={"WWW-Authenticate": 'Bearer realm="qa-dashboard"'},
        )

    def _redirect(self, location: str, cookie: str | None = None) -> None:
        headers = {"Location": location}
        if cookie is not None:
            headers["Set-Cookie"] = cookie
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain; charset=utf-8", headers)

    def _presented_token(self, query: dict[str, list[str]]) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        if "token" in query:
            return query["token"][0]
        raw = self.headers.get("Cookie")
        if raw:
            c: SimpleCookie = SimpleCookie()
            try:
                c.load(raw)
            except Exception:
                return None
            if COOKIE in c:
                return unquote(c[COOKIE].value)
        return None

    @staticmethod
    def _cookie(value: str, max_age: int) -> str:
        return (
            f"{COOKIE}={quote(value, safe='')}; Path=/; HttpOnly; SameSite=Strict; "
            f"Max-Age={max_age}"
        )

    # -- routes ------------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802 - http.server API
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path
        if path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
            return
        if path in ("/", "/index.html"):
            if "token" in query:  # a link with a token: set the cookie, drop it from the URL
                tok = query["token"][0]
                if self.server.access.role(tok) is None:
                    self._redirect("/?login=failed")
                else:
                    self._redirect("/", self._cookie(tok, 12 * 3600))
                return
            nonce = secrets.token_urlsafe(16)
            csp = (
                "default-src 'none'; "
                f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
                "base-uri 'none'; frame-ancestors 'none'"
            )
            body = render_page(nonce, self.server.title).encode()
            self._send(
                HTTPStatus.OK,
                body,
                "text/html; charset=utf-8",
                {"Content-Security-Policy": csp, "X-Frame-Options": "DENY"},
            )
            return
        if path == "/logout":
            self._redirect("/", self._cookie("", 0))
            return
        if path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            return
        if not path.startswith("/api/"):
            self._send(HTTPStatus.NOT_FOUND, _json({"error": "not found"}))
            return
        role = self.server.access.role(self._presented_token(query))
        if role is None:
            self._unauthorized()
            return
        full = role == "full"
        state = self.server.state
        if path == "/api/state":
            snap = state.snapshot()
            snap["role"] = role
            self._send(HTTPStatus.OK, _json(state.redact(snap, full)))
        elif path.startswith("/api/calls/"):
            detail = state.detail(unquote(path[len("/api/calls/") :]))
            if detail is None:
                self._send(HTTPStatus.NOT_FOUND, _json({"error": "no such call"}))
            else:
                self._send(HTTPStatus.OK, _json(state.redact({"detail": detail}, full)["detail"]))
        elif path == "/api/events":
            self._stream(full, role)
        else:
            self._send(HTTPStatus.NOT_FOUND, _json({"error": "not found"}))

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        url = urlsplit(self.path)
        if url.path != "/login":
            self._send(HTTPStatus.NOT_FOUND, _json({"error": "not found"}))
            return
        length = min(int(self.headers.get("Content-Length") or 0), 4096)
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        tok = (form.get("token") or [""])[0].strip()
        if self.server.access.role(tok) is None:
            time.sleep(0.2)  # slow down guessing a little
            self._redirect("/?login=failed")
            return
        self._redirect("/", self._cookie(tok, 12 * 3600))

    def _stream(self, full: bool, role: Role) -> None:
        state = self.server.state
        sub, snap = state.subscribe(full=full)
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")
            self.send_header("Connection", "close")
            self.end_headers()
            snap["role"] = role
            self._event("snapshot", state.redact(snap, full), retry_ms=2000)
            idle = 0.0
            while not self.server.stopping.is_set():
                try:
                    msg = sub.queue.get(timeout=0.5)
                except queue.Empty:
                    if sub.dropped:
                        break
                    idle += 0.5
                    if idle >= self.server.keepalive_s:
                        self.wfile.write(b": keepalive\n\n")
                        self.wfile.flush()
                        idle = 0.0
                    continue
                if msg is CLOSED:
                    break
                idle = 0.0
                self._event("update", state.redact(msg, full))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        finally:
            state.unsubscribe(sub)

    def _event(self, name: str, data: dict[str, Any], retry_ms: int | None = None) -> None:
        head = f"retry: {retry_ms}\n" if retry_ms else ""
        self.wfile.write(f"{head}event: {name}\ndata: ".encode() + _json(data) + b"\n\n")
        self.wfile.flush()


@dataclass
class DashboardServer:
    """A running dashboard; ``stop()`` ends the event streams and frees the port."""

    server: _Server
    thread: threading.Thread
    host: str

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_dashboard(
    state: DashboardState,
    host: str = "127.0.0.1",
    port: int = 8787,
    token: str | None = None,
    *,
    viewer_token: str | None = None,
    title: str = "通话质检实时看板",
    keepalive_s: float = 15.0,
) -> DashboardServer:
    """Serve ``state`` on ``http://host:port/`` in background threads (port 0 = any free one).

    ``token`` (else ``$QA_DASHBOARD_TOKEN``) is required; ``viewer_token`` (else
    ``$QA_DASHBOARD_VIEWER_TOKEN``) optionally gives a second, transcript-less role.
    """
    full, viewer = resolve_tokens(token, viewer_token)
    try:
        server = _Server((host, port), _Handler)
    except OSError as e:
        raise DashboardError(f"cannot listen on {host}:{port}: {e}") from e
    server.state = state
    server.access = Access(full, viewer)
    server.stopping = threading.Event()
    server.title = title
    server.keepalive_s = keepalive_s
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="qa-dashboard", daemon=True
    )
    thread.start()
    log.info("dashboard on http://%s:%d/", host, server.server_address[1])
    return DashboardServer(server=server, thread=thread, host=host)
