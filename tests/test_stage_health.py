"""The stages' shared service parts (qa_pipeline/stage_health.py): the health listener, the
heartbeat behind ``/healthz``, SIGTERM/SIGINT as a stop request."""

from __future__ import annotations

import os
import signal
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from qa_pipeline.stage_health import Heartbeat, serve_health, stop_on_signals


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_healthz_follows_the_heartbeat_and_metrics_serve_the_registry() -> None:
    registry = CollectorRegistry()
    Counter("qa_test_things", "Things", registry=registry).inc(3)
    beat = Heartbeat(20.0, "test loop")
    server = serve_health(registry, beat, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert server.url == base + "/"
        assert get(base + "/healthz") == (200, b"ok\n")
        status, body = get(base + "/metrics?x=1")
        assert status == 200 and b"qa_test_things_total 3.0" in body
        beat.last -= 25
        assert get(base + "/healthz") == (503, b"test loop stalled for 25 s\n")
        beat.beat()
        assert get(base + "/healthz") == (200, b"ok\n")
        assert get(base + "/nothing")[0] == 404
    finally:
        server.stop()
    with pytest.raises(OSError):  # the port is free again: nothing answers
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_a_taken_port_is_an_oserror() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(OSError):
            serve_health(CollectorRegistry(), Heartbeat(1.0), "127.0.0.1", s.getsockname()[1])


def test_heartbeat_needs_a_positive_stall() -> None:
    with pytest.raises(ValueError, match="stall_s"):
        Heartbeat(0)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_ask_the_stage_to_stop(sig: signal.Signals) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stops: list[str] = []
    try:
        stop_on_signals(lambda: stops.append("stop"))
        os.kill(os.getpid(), sig)
        assert stops == ["stop"]  # handled (Python runs the handler before the next line)
    finally:
        for s, h in before.items():
            signal.signal(s, h)
