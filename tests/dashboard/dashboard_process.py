"""A dashboard in its own process, for the hostile-client tests (its RSS is measured alone).

``python dashboard_process.py CALLS [key=value ...]`` fills a state with ``CALLS`` copies of
the generated "stonewalling" call (each with its own call id and event ids), starts the
dashboard on a free port of 127.0.0.1 with the test token, prints ``port <n>`` and serves
until its standard input closes. ``key=value`` pairs are
:class:`~qa_pipeline.dashboard.config.DashboardLimits` fields (the limits under test), except
``feed=N``: N more events a second (more copies of the call) applied while it serves, so that
the state keeps changing.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qa_pipeline.dashboard import DashboardState  # noqa: E402
from qa_pipeline.sinks.base import Event  # noqa: E402


def copies(first: int = 0) -> Iterator[Event]:
    """The events of copies ``first``, ``first + 1``, ... of the generated call."""
    from generated_calls import call_events

    template = call_events("stonewalling", "c-0")
    for i in itertools.count(first):
        cid = f"c-{i}"
        for e in template:
            yield dataclasses.replace(e, call_id=cid, event_id=f"{cid}:{e.kind.value}:{e.seq}")


def filled_state(calls: int) -> DashboardState:
    """``calls`` ended calls (and room for no more: new ones push the oldest out)."""
    state = DashboardState(max_calls=max(calls, 1))
    for e in copies():
        if e.call_id == f"c-{calls}":
            break
        state.apply(e)
    return state


def feed(state: DashboardState, first: int, per_s: float, stop: threading.Event) -> None:
    for e in copies(first):
        if stop.wait(1 / per_s):
            return
        state.apply(e)


def main(argv: list[str]) -> int:
    from dashboard_helpers import TOKEN

    from qa_pipeline.dashboard import DashboardLimits, start_dashboard

    calls = int(argv[0]) if argv else 0
    options = dict(a.split("=", 1) for a in argv[1:])
    per_s = float(options.pop("feed", 0))
    limits = DashboardLimits(**options)  # type: ignore[arg-type]
    state = filled_state(calls)
    server = start_dashboard(state, "127.0.0.1", 0, TOKEN, limits=limits)
    stop = threading.Event()
    if per_s > 0:
        threading.Thread(target=feed, args=(state, calls, per_s, stop), daemon=True).start()
    print(f"port {server.port}", flush=True)
    sys.stdin.read()
    stop.set()
    state.close()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
