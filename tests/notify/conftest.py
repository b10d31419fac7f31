"""Fixtures of the notifier tests: a local HTTP receiver on a free port."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dashboard"))  # generated_calls

from notify_receivers import Receiver, Request  # noqa: E402


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            r = holder["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            u = urlsplit(self.path)
            with r.lock:
                r.requests.append(
                    Request(u.path, parse_qs(u.query), dict(self.headers), body, time.time())
                )
            if r.delay_s:
                time.sleep(r.delay_s)
            status, reply = r.reply()
            data = json.dumps(reply).encode() if not isinstance(reply, bytes) else reply
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["r"] = Receiver(server)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield holder["r"]
    finally:
        server.shutdown()
        server.server_close()
