"""Shared fixtures: the real speech clips in ../shared/data, one loaded model per session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_SPEECH = REPO.parent / "shared" / "data" / "speech"


def load_manifest() -> list[dict[str, Any]]:
    path = SHARED_SPEECH / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    if not (SHARED_SPEECH / "manifest.jsonl").is_file():
        pytest.skip(
            f"real speech clips not available: {SHARED_SPEECH} is absent "
            "(they live in the team's shared/ folder, not in the repository)"
        )
    return SHARED_SPEECH


@pytest.fixture(scope="session")
def manifest(speech_dir: Path) -> list[dict[str, Any]]:
    return load_manifest()


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    """One Whisper model for the whole session (loading it costs ~1 s), decoding as the
    default configuration does (biased to the default pack's company name)."""
    from qa_pipeline.config import load_config
    from qa_pipeline.pipeline import Pipeline

    return Pipeline(load_config()).engine


@pytest.fixture(scope="session")
def pipeline(engine):  # type: ignore[no-untyped-def]
    from qa_pipeline.config import load_config
    from qa_pipeline.pipeline import Pipeline

    return Pipeline(load_config(), engine=engine)


@pytest.fixture(autouse=True)
def _fresh_drop_log() -> None:
    """Each test sees the first drop of each (sink, reason) logged: the process-wide rate
    limiter of drop warnings starts empty."""
    from qa_pipeline.sinks.base import DROP_LOG

    DROP_LOG.reset()


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Any:
    """A command run in-process (``setup_logging``) leaves the root logger's level and
    handlers as it set them: put them back, so one test's ``--log-level info`` does not
    make every later test log (and pytest keep) each INFO line."""
    import logging

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)


# -- the store on both backends -------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Any:
    """A PostgreSQL server for the session (``scripts/postgres.sh``: Debian's PostgreSQL,
    loopback only), started once (~2 s) and stopped at the end; yields a function giving
    the URL of a database. Its own data directory and a free port, so several sessions
    (worktrees) do not meet; ``QA_PG_DIR`` / ``QA_PG_PORT`` choose them. The default
    directory is under /tmp, which the ``postgres`` user can reach when tests run as root
    (pytest's own temporary directory is closed to other users)."""
    import os
    import shutil
    import socket
    import subprocess
    import tempfile

    if os.environ.get("QA_PG_PORT"):
        port = os.environ["QA_PG_PORT"]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = str(s.getsockname()[1])
    own = None if os.environ.get("QA_PG_DIR") else tempfile.mkdtemp(prefix="qa-pg-")
    env = {**os.environ, "QA_PG_PORT": port, "QA_PG_DIR": os.environ.get("QA_PG_DIR") or own}
    script = str(REPO / "scripts" / "postgres.sh")
    subprocess.run([script, "start"], env=env, check=True, timeout=120)
    try:
        yield lambda db="postgres": f"postgresql://postgres@127.0.0.1:{port}/{db}"
    finally:
        subprocess.run([script, "stop"], env=env, check=False, timeout=120)
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server: Any) -> Any:
    """A fresh, empty PostgreSQL database (dropped after the test); yields its URL."""
    import uuid

    import psycopg

    name = f"qa_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield pg_server(name)
    with psycopg.connect(pg_server(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's store lives: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "qa-store.sqlite")
    url: str = request.getfixturevalue("pg_database")
    return url
