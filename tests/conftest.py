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
