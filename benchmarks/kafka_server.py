"""The Kafka broker a benchmark runs against: the one named by ``--bootstrap``, else a
single KRaft node started by ``scripts/kafka.sh`` on free loopback ports with its data in a
temporary directory, stopped (and its data removed) at the end.

    from kafka_server import kafka_server

    with kafka_server(args.bootstrap) as bootstrap:   # "127.0.0.1:PORT"
        ...
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def kafka_server(bootstrap: str | None = None) -> Iterator[str]:
    """``bootstrap`` as given, or a broker of our own for the ``with`` block."""
    if bootstrap:
        yield bootstrap
        return
    port = free_port()
    data = tempfile.mkdtemp(prefix="bench-kafka-")
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_DATA_DIR": data,
        "PYTHON": sys.executable,
    }
    try:
        subprocess.run([str(SCRIPT), "start"], env=env, check=True)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, check=False)
        shutil.rmtree(data, ignore_errors=True)
