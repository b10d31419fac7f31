"""Hostile clients against a real dashboard on 127.0.0.1 (issue 14, "a dashboard that cannot
be knocked over"): bad and huge bodies, idle and trickling connections, event streams that do
not read (the server's RSS measured), the stream caps, wrong-token throttling, and starting
without a token. Each case is bounded in time and in connections.

Before the change (standard-library threaded server, same 500-call state, a 4.4 MB
snapshot): ``Content-Length: -1`` with a 50 MB body was read whole; ``Content-Length:
10**12`` hung the request; 300 idle connects took 49 s; 100 non-reading streams grew RSS by
935 MB; no stream cap; 30 wrong logins all answered; no token was a 54-line traceback.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import PASSWORD, TOKEN, VIEWER_TOKEN, write_users

from qa_pipeline.dashboard import DashboardLimits, DashboardState, start_dashboard
from qa_pipeline.dashboard.server import peer_key

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
CALLS = 500  # a snapshot of about 4.4 MB, as in the issue
IDLE_TIMEOUT_S = 3.0
WRITE_TIMEOUT_S = 4.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class ServerProcess:
    """``dashboard_process.py`` in a subprocess: its own RSS, its own port."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), QA_PIPELINE_PURE_PYTHON="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "dashboard_process.py"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("port "), f"dashboard process did not start: {line!r}"
        self.port = int(line.split()[1])

    @property
    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def big() -> Iterator[ServerProcess]:
    """500 calls, events still arriving (20 a second), short timeouts."""
    p = ServerProcess(
        str(CALLS),
        "feed=20",
        f"idle_timeout_s={IDLE_TIMEOUT_S}",
        f"write_timeout_s={WRITE_TIMEOUT_S}",
        "max_streams=80",
        "max_streams_per_token=80",
    )
    try:
        yield p
    finally:
        p.close()


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def status_of(s: socket.socket) -> int:
    """The status code of the response on ``s`` (reads its first line)."""
    head = b""
    while b"\r\n" not in head:
        chunk = s.recv(256)
        if not chunk:
            break
        head += chunk
    parts = head.split(b" ", 2)
    assert len(parts) >= 2 and parts[0].startswith(b"HTTP/"), head[:80]
    return int(parts[1])


def get(port: int, path: str, token: str | None = None, timeout: float = 10.0) -> Any:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


# -- request size ------------------------------------------------------------------------------


def test_negative_content_length_refused_before_the_body(big: ServerProcess) -> None:
    rss0 = big.rss
    s = connect(big.port)
    t0 = time.monotonic()
    s.sendall(
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    sent = 0
    chunk = b"a" * (1 << 20)
    try:  # offer 50 MB; the server should answer and close long before taking it
        while sent < 50 << 20:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    try:
        status = status_of(s)
    except ConnectionResetError:  # refused and closed while the client still sent
        status = 400
    elapsed = time.monotonic() - t0
    s.close()
    assert status == 400
    assert elapsed < 5.0
    assert sent < 50 << 20, "the server took the whole 50 MB body"
    assert big.rss - rss0 < 20


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 1000000000000\r\n\r\ntoken=x",  # declared: refused before reading
        b"Content-Length: 20000\r\n\r\n" + b"t" * 20000,  # just over the 16 KiB limit
        b"Transfer-Encoding: chunked\r\n\r\n" + b"4e20\r\n" + b"t" * 20000 + b"\r\n0\r\n\r\n",
    ],
    ids=["huge-declared", "over-limit", "chunked-over-limit"],
)
def test_oversized_body_refused(big: ServerProcess, head: bytes) -> None:
    s = connect(big.port, timeout=5)
    t0 = time.monotonic()
    s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\n" + head)
    assert status_of(s) == 413
    assert time.monotonic() - t0 < 3.0
    s.close()


def test_huge_header_refused(big: ServerProcess) -> None:
    s = connect(big.port, timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 20000 + b"\r\n\r\n")
    assert status_of(s) in (400, 431)
    s.close()


# -- connections -------------------------------------------------------------------------------


def test_idle_connections_do_not_stop_a_request(big: ServerProcess) -> None:
    idle: list[socket.socket] = []
    t0 = time.monotonic()
    try:
        for i in range(250):
            s = connect(big.port, timeout=5)
            if i % 2:  # half send a partial request head and stop (slowloris)
                s.sendall(b"GET /api/state HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            idle.append(s)
        opened = time.monotonic() - t0
        assert opened < 10.0
        t1 = time.monotonic()
        status, _, body = get(big.port, "/api/state", TOKEN)
        assert status == 200 and len(json.loads(body)["calls"]) == CALLS
        assert time.monotonic() - t1 < 5.0
        # ... and the idle ones are closed after the idle timeout
        time.sleep(IDLE_TIMEOUT_S + 1.5)
        closed = 0
        for s in idle:
            s.settimeout(3)
            try:
                closed += s.recv(1024) == b""
            except (ConnectionError, TimeoutError):
                closed += 1
        assert closed == len(idle)
    finally:
        for s in idle:
            s.close()


# -- event streams -----------------------------------------------------------------------------


def open_stream(port: int, token: str, rcvbuf: int | None = None) -> tuple[socket.socket, int]:
    s = connect(port, timeout=10)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.sendall(
        f"GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    return s, status_of(s)


def test_streams_that_do_not_read_stay_small_and_are_dropped(big: ServerProcess) -> None:
    """60 pages open the event stream and never read its 4.4 MB snapshot while events keep
    arriving. Before: each held its own snapshot (9 MB of RSS a stream); now they share one
    and each buffers at most a few pieces of 64 KiB. After the write timeout they are dropped
    and their slots are free again."""
    get(big.port, "/healthz")
    rss0 = big.rss
    streams = []
    try:
        t0 = time.monotonic()
        for _ in range(60):
            s, status = open_stream(big.port, TOKEN, rcvbuf=4096)
            assert status == 200
            streams.append(s)
        # 60 open, 80 allowed: 20 more fit, then 503
        fitted = 0
        for _ in range(30):
            s, status = open_stream(big.port, TOKEN)
            streams.append(s)
            if status != 200:
                break
            fitted += 1
        if time.monotonic() - t0 < WRITE_TIMEOUT_S:  # no stream can have been dropped yet
            assert (fitted, status) == (20, 503), f"{fitted} fitted beside 60 under a cap of 80"
        else:  # a loaded machine: the first silent streams may have met their write timeout
            assert fitted >= 20, f"only {fitted} streams fitted beside 60 under a cap of 80"
        time.sleep(2)
        grown = big.rss - rss0
        assert grown < 60, f"RSS grew {grown:.0f} MB for {60 + fitted} streams that do not read"
        assert get(big.port, "/healthz", timeout=5)[0] == 200
        time.sleep(WRITE_TIMEOUT_S + 2)  # nobody read: all dropped
        s, status = open_stream(big.port, TOKEN)
        streams.append(s)
        assert status == 200
    finally:
        for s in streams:
            s.close()


# -- caps and throttling (in-process servers with small limits) -------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Any]:
    state = DashboardState()
    limits = DashboardLimits(
        max_streams=5, max_streams_per_token=3, login_attempts=5, login_window_s=3
    )
    server = start_dashboard(
        state,
        "127.0.0.1",
        0,
        TOKEN,
        viewer_token=VIEWER_TOKEN,
        users=write_users(tmp_path / "users.yaml", ("qa",)),
        limits=limits,
    )
    try:
        yield server
    finally:
        state.close()
        server.stop()


def test_stream_caps_per_token_and_in_all(small: Any) -> None:
    port = small.port
    opened = []
    try:
        for _ in range(3):
            s, status = open_stream(port, TOKEN)
            opened.append(s)
            assert status == 200
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/api/events", headers={"Authorization": f"Bearer {TOKEN}"})
        r = c.getresponse()
        body = json.loads(r.read())
        assert r.status == 503 and r.getheader("Retry-After")
        assert body["error"] == "too many event streams" and "limit 3" in body["detail"]
        c.close()
        for _ in range(2):  # the viewer token still has room, up to 5 in all
            s, status = open_stream(port, VIEWER_TOKEN)
            opened.append(s)
            assert status == 200
        status, _, body = get(port, "/api/events", VIEWER_TOKEN)
        assert status == 503 and "limit 5" in json.loads(body)["detail"]
        assert small.open_streams == 5
        opened.pop().close()  # a page closes: its slot is free
        deadline = time.monotonic() + 3
        while small.open_streams > 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        s, status = open_stream(port, VIEWER_TOKEN)
        opened.append(s)
        assert status == 200
    finally:
        for s in opened:
            s.close()


def test_a_malformed_request_is_one_log_line(small: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="qa_pipeline.dashboard")
    s = connect(small.port, timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
    assert status_of(s) == 400
    s.close()
    deadline = time.monotonic() + 2
    while not caplog.records and time.monotonic() < deadline:
        time.sleep(0.02)
    bad = [r for r in caplog.records if "Content-Length" in r.getMessage()]
    assert len(bad) == 1 and bad[0].levelno == logging.INFO and not bad[0].exc_info
    assert "\n" not in bad[0].getMessage()


def post_login(port: int, password: str, name: str = "qa") -> tuple[int, dict[str, str]]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(
        "POST",
        "/login",
        body=f"name={name}&password={password}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, dict(r.getheaders())


def test_wrong_passwords_and_keys_throttled_per_peer(small: Any) -> None:
    port = small.port
    for i in range(3):  # wrong API keys count ...
        assert get(port, "/api/state", f"wrong-key-{i}-xxxxxxxx")[0] == 401
    for i in range(2):  # ... as wrong passwords do
        status, headers = post_login(port, f"guess-{i}-xxxxxxxx")
        assert status == 303 and headers["Location"] == "/?login=failed"
    t0 = time.monotonic()
    status, headers = post_login(port, "guess-6-xxxxxxxx")
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 3
    # while throttled even the right password or key is refused (else guessing could go on),
    # on every way one is presented
    assert post_login(port, PASSWORD)[0] == 429
    assert get(port, "/api/state", TOKEN)[0] == 429
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/api/state", headers={"X-API-Key": TOKEN})
    assert c.getresponse().status == 429
    c.close()
    assert get(port, "/healthz")[0] == 200  # no key, no throttle
    time.sleep(max(0.0, 3.2 - (time.monotonic() - t0)))
    status, headers = post_login(port, PASSWORD)
    assert status == 303 and "HttpOnly" in headers.get("Set-Cookie", "")
    assert get(port, "/api/state", TOKEN)[0] == 200


# -- starting without a token ------------------------------------------------------------------


def _run_cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_DASHBOARD_")}
    env.update(PYTHONPATH=str(ROOT), QA_PIPELINE_PURE_PYTHON="1")
    return subprocess.run(
        [sys.executable, "-m", "qa_pipeline.cli", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_token_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("dashboard:\n  port: 0\nmetrics:\n  enabled: false\nsources: []\n")
    for args in (["serve", "-c", str(cfg)], ["dashboard", "--kafka", "127.0.0.1:1"]):
        r = _run_cli(args, tmp_path)
        err = r.stderr.strip().splitlines()
        assert r.returncode != 0, args
        assert "Traceback" not in r.stderr, r.stderr
        assert len(err) == 1 and "QA_DASHBOARD_TOKEN" in err[0], r.stderr
        assert "QA_DASHBOARD_USERS" in err[0], r.stderr


def test_peer_key_counts_an_ipv6_host_by_its_network() -> None:
    assert peer_key("127.0.0.1") == "127.0.0.1"
    assert peer_key("2001:db8:1:2::5") == peer_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert peer_key("2001:db8:1:3::5") != peer_key("2001:db8:1:2::5")
    assert peer_key("::ffff:10.0.0.7") == "10.0.0.7"
    assert peer_key(None) == "?"
