"""A store (``Store``, migrations applied) on each backend, for the search tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa_pipeline.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def db(store_url: str) -> Iterator[Store]:
    store = Store(store_url)
    yield store
    store.close()
