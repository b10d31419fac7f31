"""``/healthz`` and ``/readyz`` of the live service, on the metrics listener.

They share the metrics port (``metrics.host``:``metrics.port``, default
``127.0.0.1:9464``): one port for the scraper and the probes, opened before the model
loads. With ``metrics.enabled: false`` there are no health endpoints either.

``GET /healthz`` (liveness): ``200 ok`` while the service's event loop turns; ``503`` with
the reason when the loop has not run for :data:`STALL_S` seconds (a hung process: restart
it). It does not look at the model, sources or sinks.

``GET /readyz`` (readiness): ``200`` when the service can take calls, else ``503``; both
with a JSON body naming each check and its state::

    {"ready": false,
     "checks": {"model": "loading",
                "sources": {"websocket": "ok", "audiosocket": "not listening"},
                "sinks": {"jsonl": "out/events: [Errno 30] Read-only file system"},
                "accepting": "ok"}}

* ``model``: the Whisper model is loaded and warmed up (``loading`` until then).
* ``sources``: every configured source has started and its listening socket is open.
* ``sinks``: a JSONL sink's directory takes a probe file (created, written, fsynced,
  removed), and every event file it appends to is a regular file it may write; the
  Kafka sink's spool directory takes a probe file (a broker outage does not make the
  service unready: events wait in the spool); and no sink refused every event offered to
  it since the previous probe (disk full, I/O errors; cleared by the next event it keeps).
* ``accepting``: the service takes new calls (``draining`` after SIGTERM).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: /healthz answers 503 when the event loop has not turned for this long (seconds).
STALL_S = 10.0
HEARTBEAT_S = 0.5

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def probe_directory(directory: str | Path) -> str | None:
    """Why ``directory`` does not take a new file (None: it does). Creates, writes,
    fsyncs and removes ``.qa-ready-<pid>-<thread>``."""
    d = Path(directory)
    probe = d / f".qa-ready-{os.getpid()}-{threading.get_ident()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"ready\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as e:
        return f"{d}: {e.strerror or e}"
    return None


def probe_append_target(path: Path) -> str | None:
    """Why the existing file ``path`` cannot take appended lines (None: it can, or it does
    not exist yet)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"{path}: {e.strerror or e}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: not a regular file"
    if not os.access(path, os.W_OK):
        return f"{path}: not writable"
    return None


def sink_problem(sink: Any) -> str | None:
    """The file-system check of one sink (None: fine, or nothing to check)."""
    from ..sinks.jsonl import JsonlSink
    from ..sinks.kafka import KafkaSink

    if isinstance(sink, JsonlSink):
        if not sink.config.directory:
            return None
        why = probe_directory(sink.config.directory)
        if why:
            return why
        seen: set[Path] = set()
        for kind in sink.config.kinds:
            path = sink.path_for(kind)
            if path is None or path in seen:
                continue
            seen.add(path)
            why = probe_append_target(path)
            if why:
                return why
        return None
    if isinstance(sink, KafkaSink):
        return probe_directory(sink.config.spool.directory)
    return None


class Health:
    """The checks behind ``/healthz`` and ``/readyz`` for one :class:`LiveService`.

    Runs on the metrics server's threads; reads the service's state, changes nothing but
    its own (the heartbeat, the drop counts seen at the last probe)."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self._beat: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, int]] = {}
        self._refusing: dict[str, str] = {}

    # -- liveness ---------------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        """On the service's loop: note the time every ``HEARTBEAT_S``."""
        self._beat = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._heartbeat(), name="heartbeat")

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_S)

    def stop_heartbeat(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def live(self) -> tuple[bool, str]:
        if self._beat is None:
            return True, "ok"
        stalled = time.monotonic() - self._beat
        if stalled > STALL_S:
            return False, f"event loop stalled for {stalled:.0f} s"
        return True, "ok"

    # -- readiness --------------------------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, Any]]:
        s = self.service
        checks: dict[str, Any] = {}
        checks["model"] = "ok" if s.worker is not None and s.decoder is not None else "loading"
        sources: dict[str, str] = {}
        for src in list(s.sources):
            sources[src.name] = "ok" if s.source_listening(src) else "not listening"
        checks["sources"] = sources
        sinks: dict[str, str] = {}
        fan = s.sinks
        for name, sink in list(fan.sinks):
            sinks[name] = self._refused(name, fan) or sink_problem(sink) or "ok"
        checks["sinks"] = sinks
        checks["accepting"] = "ok" if s.accepting else ("draining" if s.worker else "starting")
        ok = (
            checks["model"] == "ok"
            and checks["accepting"] == "ok"
            and all(v == "ok" for v in sources.values())
            and all(v == "ok" for v in sinks.values())
        )
        return ok, checks

    def _refused(self, name: str, fan: Any) -> str | None:
        """A sink that refused every event offered since the last probe is not ready until
        it keeps one again."""
        offered = int(fan.accepted.get(name, 0))
        by_reason = dict(fan.dropped.get(name, {}))
        dropped = sum(by_reason.values())
        with self._lock:
            before = self._seen.get(name)
            self._seen[name] = (offered, dropped)
            if before is not None and offered > before[0]:
                if dropped - before[1] >= offered - before[0]:
                    reasons = ", ".join(sorted(by_reason)) or "dropped"
                    self._refusing[name] = (
                        f"the last {offered - before[0]} event(s) were dropped ({reasons})"
                    )
                else:
                    self._refusing.pop(name, None)
            return self._refusing.get(name)

    # -- the HTTP side ----------------------------------------------------------------------

    def wrap(self, inner: WsgiApp) -> WsgiApp:
        """A WSGI app answering ``/healthz`` and ``/readyz``, anything else by ``inner``."""

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                ok, why = self.live()
                return _answer(start_response, ok, f"{why}\n".encode(), "text/plain")
            if path == "/readyz":
                ok, checks = self.ready()
                body = json.dumps({"ready": ok, "checks": checks}, ensure_ascii=False)
                return _answer(start_response, ok, body.encode() + b"\n", "application/json")
            return inner(environ, start_response)

        return app


def _answer(start_response: Callable[..., Any], ok: bool, body: bytes, ctype: str) -> list[bytes]:
    status = "200 OK" if ok else "503 Service Unavailable"
    start_response(
        status,
        [
            ("Content-Type", f"{ctype}; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]


def mount_health(wsgi_server: Any, service: Any) -> Health:
    """Serve ``/healthz`` and ``/readyz`` on a running ``wsgiref`` server (the metrics
    listener) beside what it serves already; starts the loop heartbeat (call on the
    service's loop)."""
    health = Health(service)
    wsgi_server.set_app(health.wrap(wsgi_server.get_app()))
    health.start_heartbeat()
    return health
