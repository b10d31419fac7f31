"""Real servers for the integration tests, started by the project's own scripts.

Kafka: ``scripts/kafka.sh`` (KRaft single node, jars from Maven Central, Java 17).
Prometheus + Alertmanager: ``scripts/prometheus.sh`` (Debian packages).
Nothing here mocks a server. A missing binary FAILS the tests with the install command.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from replayed_calls import CALLS_DIR

ROOT = Path(__file__).resolve().parents[2]

INSTALL_HINT = {
    "java": "apt-get install -y openjdk-17-jre-headless",
    "mvn": "apt-get install -y maven",
    "prometheus": "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager",
    "promtool": "apt-get install -y --no-install-recommends prometheus",
    "prometheus-alertmanager": "apt-get install -y --no-install-recommends prometheus-alertmanager",
    "amtool": "apt-get install -y --no-install-recommends prometheus-alertmanager",
    "curl": "apt-get install -y curl",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs real servers/binaries (Kafka, Prometheus, promtool)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.integration)


def require(*binaries: str) -> None:
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        hints = "; ".join(f"{b}: {INSTALL_HINT.get(b, '?')}" for b in missing)
        pytest.fail(f"integration test needs {', '.join(missing)} on PATH. Install: {hints}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_script(script: str, action: str, env: dict[str, str], timeout: float = 300) -> None:
    res = subprocess.run(
        [str(ROOT / "scripts" / script), action],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if res.returncode != 0:
        pytest.fail(f"scripts/{script} {action} failed ({res.returncode}):\n{res.stderr}")


@dataclass
class KafkaServer:
    port: int
    env: dict[str, str]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        _run_script("kafka.sh", "start", self.env)

    def stop(self) -> None:
        _run_script("kafka.sh", "stop", self.env)


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    require("java")
    cache = ROOT / ".cache" / "kafka"
    if not any(cache.glob("*/libs/.complete")):
        require("mvn")
    port = free_port()
    env = {
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_DATA_DIR": str(tmp_path_factory.mktemp("kafka")),
        "PYTHON": sys.executable,
    }
    server = KafkaServer(port, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class KafkaTlsServer(KafkaServer):
    """A broker whose only client listener is SASL_SSL (SCRAM-SHA-512), certificates made
    here: a CA and a broker certificate for localhost / 127.0.0.1."""

    ca_file: Path
    user: str
    password: str
    data_dir: Path


def make_tls_certs(folder: Path) -> None:
    """``ca.pem`` and ``broker.pem`` (PKCS#8 key + certificate signed by the CA, SANs
    localhost and 127.0.0.1) in ``folder``, with openssl; ``ca.key`` is deleted."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the TLS Kafka test needs openssl: apt-get install -y openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=qa-pipeline test CA", "-keyout", "ca.key", "-out", "ca.pem",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "broker.key", "-out", "broker.csr")  # fmt: skip
    (folder / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
        encoding="ascii",
    )
    run("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "ext.cnf", "-out", "broker.crt")  # fmt: skip
    key = (folder / "broker.key").read_text(encoding="ascii")
    assert "BEGIN PRIVATE KEY" in key  # PKCS#8, what Kafka's PEM keystore reads
    (folder / "broker.pem").write_text(
        key + (folder / "broker.crt").read_text(encoding="ascii"), encoding="ascii"
    )
    for name in ("ca.key", "broker.key", "broker.csr", "ca.srl", "ext.cnf"):
        (folder / name).unlink(missing_ok=True)


def broker_processes(data_dir: Path) -> list[str]:
    """Java processes still running on ``data_dir``'s server.properties."""
    res = subprocess.run(
        ["pgrep", "-f", f"kafka.Kafka {data_dir}/server.properties"],
        capture_output=True,
        text=True,
    )
    return res.stdout.split()


@pytest.fixture(scope="module")
def kafka_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaTlsServer]:
    require("java", "openssl")
    cache = ROOT / ".cache" / "kafka"
    if not any(cache.glob("*/libs/.complete")) and not os.environ.get("KAFKA_CACHE"):
        require("mvn")
    tls = tmp_path_factory.mktemp("kafka-tls")
    make_tls_certs(tls)
    data = tmp_path_factory.mktemp("kafka-sasl")
    admin_pw, qa_pw = secrets.token_hex(16), secrets.token_hex(16)
    port = free_port()
    env = {
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_DATA_DIR": str(data),
        "KAFKA_SECURITY": "SASL_SSL",
        "KAFKA_TLS_DIR": str(tls),
        "KAFKA_SCRAM_USERS": f"admin={admin_pw},qa={qa_pw}",
        "KAFKA_START_TIMEOUT": "60",
        "KAFKA_STOP_TIMEOUT": "20",
        "PYTHON": sys.executable,
    }
    server = KafkaTlsServer(port, env, tls / "ca.pem", "qa", qa_pw, data)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        left = broker_processes(data)
        if left:
            for pid in left:
                os.kill(int(pid), signal.SIGKILL)
            pytest.fail(f"the broker was still running after stop (pids {left}); killed")


@dataclass
class Webhook:
    """An Alertmanager webhook receiver (plain http.server in a thread)."""

    server: ThreadingHTTPServer
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


def start_webhook() -> Webhook:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({"path": self.path, **json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Webhook(server, received)


@dataclass
class PromStack:
    prometheus: str
    alertmanager: str
    metrics_port: int
    webhook: Webhook


@pytest.fixture(scope="session")
def prom_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromStack]:
    require("prometheus", "promtool", "prometheus-alertmanager", "amtool", "curl")
    webhook = start_webhook()
    prom_port, am_port, metrics_port = free_port(), free_port(), free_port()
    env = {
        "PROM_PORT": str(prom_port),
        "AM_PORT": str(am_port),
        "PROM_DATA_DIR": str(tmp_path_factory.mktemp("prometheus")),
        "QA_METRICS_TARGETS": f"127.0.0.1:{metrics_port}",
        "PROM_SCRAPE_INTERVAL": "1s",
        "PROM_EVAL_INTERVAL": "1s",
        "AM_WEBHOOK_BASE": webhook.base,
        "AM_GROUP_WAIT": "1s",
        "AM_GROUP_INTERVAL": "1s",
    }
    _run_script("prometheus.sh", "start", env, timeout=120)
    try:
        yield PromStack(
            f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}", metrics_port, webhook
        )
    finally:
        _run_script("prometheus.sh", "stop", env, timeout=120)
        webhook.server.shutdown()


class Replay:
    """``python -m qa_pipeline.replay`` as a separate process, its status lines parsed."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qa_pipeline.replay", "--log-level", "WARNING", *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.status: list[dict[str, Any]] = []
        self.log: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                if line.startswith("replay-status "):
                    self.status.append(json.loads(line.split(" ", 1)[1]))
                else:
                    self.log.append(line.rstrip())
                self._cond.notify_all()

    def wait_for(self, status: str, timeout: float = 60, **match: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for s in self.status:
                if s["status"] == status and all(s.get(k) == v for k, v in match.items()):
                    return s
            return None

        with self._cond:
            ok = self._cond.wait_for(
                lambda: found() is not None or self.proc.poll() is not None, timeout
            )
            hit = found()
        if hit is None:
            raise AssertionError(
                f"replay never reported {status} {match} (ok={ok}, rc={self.proc.poll()}); "
                f"status={self.status}; log tail:\n" + "\n".join(self.log[-30:])
            )
        return hit

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    def stop_quietly(self) -> None:
        if self.proc.poll() is None:
            self.kill()


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[Any]:
    started: list[Replay] = []

    def start(*args: str) -> Replay:
        r = Replay(*args, cwd=tmp_path)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop_quietly()


@pytest.fixture
def replay_test_calls(replay: Any, tmp_path: Path) -> Any:
    """``run(bootstrap, prefix)``: replay the test calls (tests/sinks/data/calls) into Kafka
    topics ``prefix + kind`` through the Kafka sink, and wait until every event is sent."""

    def run(bootstrap: str, prefix: str) -> None:
        r = replay(
            "--transcripts", str(CALLS_DIR),
            "--kafka", bootstrap,
            "--topic-prefix", prefix,
            "--spool", str(tmp_path / "spool"),
            "--flush-timeout", "60",
        )  # fmt: skip
        r.wait_for("done", timeout=120)
        assert r.wait(timeout=60) == 0

    return run


def wait_until(pred: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
