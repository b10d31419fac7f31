"""The dashboard's handle on the store: one :class:`~qa_pipeline.store.Store` (SQLite or
PostgreSQL, migrations applied when it opens), opened and used in one worker thread of its
own, since a ``Store`` is not thread-safe. The web app's handlers (on the dashboard's event
loop) ``await worker.run(fn)``; ``fn(store)`` runs in that thread, one at a time, and its
transaction ends with it (committed when it returns, rolled back when it raises), so no
read holds a PostgreSQL transaction open between requests. A connection the server ended
(a restart, the database dropped) is not kept: the next call opens a new one (and, until
the store answers again, fails saying why); what failed is not retried (it may have
written).

Opened by ``start_dashboard(..., store=URL)`` / ``qa-pipeline dashboard --store URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..store import Store, open_store

__all__ = ["StoreWorker"]

log = logging.getLogger("qa_pipeline.dashboard")

T = TypeVar("T")


class StoreWorker:
    """A store at ``url`` (a SQLite path, ``sqlite:///path`` or ``postgresql://...``),
    opened at the first use (or :meth:`open`) in the worker thread."""

    def __init__(self, url: str | Path) -> None:
        self.url = str(url)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-dashboard-store")
        self._store: Store | None = None

    def _call(self, fn: Callable[[Store], T]) -> T:
        if self._store is None:
            self._store = open_store(self.url)
        st = self._store
        try:
            out = fn(st)
        except BaseException:
            with contextlib.suppress(Exception):
                st.rollback()
            if st.broken:  # the server ended the connection: the next call opens a new one
                self._store = None
                with contextlib.suppress(Exception):
                    st.close()
            raise
        st.commit()
        return out

    def open(self) -> None:
        """Open the store now (from any thread): a bad URL or a server that refuses is an
        error at start, not at the first request."""
        self.call(lambda st: None)

    def call(self, fn: Callable[[Store], T]) -> T:
        """``fn(store)`` in the worker thread, waited for (from any thread but the
        dashboard's event loop)."""
        return self._pool.submit(self._call, fn).result()

    async def run(self, fn: Callable[[Store], T]) -> T:
        """``fn(store)`` in the worker thread (from the dashboard's event loop)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, fn)

    def close(self) -> None:
        def _close() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None

        try:
            self._pool.submit(_close).result(timeout=10)
        except Exception as e:  # closing is best effort
            log.warning("dashboard: closing the store: %s", e)
        self._pool.shutdown(wait=False)
