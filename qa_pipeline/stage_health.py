"""What the distributed stages (``ingest``, ``asr-worker``, ``evaluate``) share to run as
services: a heartbeat of their loop, ``/healthz`` and ``/metrics`` on ``--health-port``
(:func:`serve_health`), SIGTERM and SIGINT as a request to stop (:func:`stop_on_signals`),
and the consumer-lag gauge, labelled alike in every stage (:class:`ConsumerLag`).

Each stage keeps its metrics on a registry of its own (nothing is registered at import time).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

log = logging.getLogger("qa_pipeline.stage_health")


class Heartbeat:
    """When a stage's loop last turned: healthy while that was less than ``stall_s`` ago."""

    def __init__(self, stall_s: float, what: str = "loop") -> None:
        if stall_s <= 0:
            raise ValueError("stall_s must be > 0")
        self.stall_s = stall_s
        self.what = what
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def idle(self) -> float:
        """Seconds since the last beat."""
        return time.monotonic() - self.last

    def check(self) -> tuple[bool, str]:
        """(healthy, the line ``/healthz`` answers)."""
        idle = self.idle()
        if idle < self.stall_s:
            return True, "ok"
        return False, f"{self.what} stalled for {idle:.0f} s"


class HealthServer:
    """A running health listener; :meth:`stop` shuts it down and frees the port."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread, host: str) -> None:
        self.server = server
        self.thread = thread
        self.host = host

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_health(
    registry: CollectorRegistry, heartbeat: Heartbeat, host: str = "127.0.0.1", port: int = 0
) -> HealthServer:
    """``/healthz`` (200 while ``heartbeat`` is fresh, else 503 saying for how long the loop
    has not turned) and ``/metrics`` (``registry``, Prometheus text format) on
    ``host:port`` (0: any free port), in a daemon thread. ``OSError`` when the port is taken."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            path = self.path.split("?")[0]
            if path == "/metrics":
                code, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(registry)
            elif path == "/healthz":
                ok, line = heartbeat.check()
                code, ctype = (200 if ok else 503), "text/plain; charset=utf-8"
                body = f"{line}\n".encode()
            else:
                code, ctype, body = 404, "text/plain; charset=utf-8", b"not found\n"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="health", daemon=True)
    thread.start()
    return HealthServer(server, thread, host)


def stop_on_signals(stop: Callable[[], None], what: str = "stopping") -> None:
    """Call ``stop`` on SIGTERM and SIGINT (the stage finishes what it has in hand, then
    exits 0); ``what`` is logged with the signal. From the main thread only."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: %s", signum, what)
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


class ConsumerLag:
    """``qa_consumer_lag{group,topic,partition}``: records behind the end of each partition
    a consumer of ``group`` holds (the ASR workers' and the evaluators' alike). A partition
    handed on in a rebalance is forgotten (:meth:`keep`, :meth:`forget`): its new owner
    reports it, and a stale figure here would add to that one in alerts and panels."""

    NAME = "qa_consumer_lag"

    def __init__(self, registry: CollectorRegistry, group: str) -> None:
        self.group = group
        self.gauge = Gauge(
            self.NAME,
            "Records behind the end of the partition",
            ["group", "topic", "partition"],
            registry=registry,
        )
        self.reported: set[tuple[str, int]] = set()

    def set(self, topic: str, partition: int, lag: int) -> None:
        self.gauge.labels(self.group, topic, str(partition)).set(max(0, lag))
        self.reported.add((topic, partition))

    def forget(self, topic: str, partition: int) -> None:
        if (topic, partition) in self.reported:
            self.reported.discard((topic, partition))
            self.gauge.remove(self.group, topic, str(partition))

    def keep(self, held: Iterable[tuple[str, int]]) -> None:
        """Forget every partition reported but not in ``held``."""
        for topic, partition in self.reported - set(held):
            self.forget(topic, partition)


__all__ = ["ConsumerLag", "HealthServer", "Heartbeat", "serve_health", "stop_on_signals"]
