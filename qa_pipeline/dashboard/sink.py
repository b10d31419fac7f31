"""The dashboard as a sink: ``serve`` adds it to its :class:`~qa_pipeline.sinks.base.FanOut`."""

from __future__ import annotations

from ..messages import CallInfo
from ..sinks.base import Event
from .state import DashboardState


class DashboardSink:
    """Feeds every event into a :class:`DashboardState` (in memory, never blocks on I/O).

    ``emit`` takes the state's lock briefly and puts the change on each open page's bounded
    queue (``put_nowait``); a slow page is disconnected rather than waited for.
    """

    name = "dashboard"

    def __init__(self, state: DashboardState) -> None:
        self.state = state

    def emit(self, event: Event) -> None:
        self.state.apply(event)

    def call_started(self, call: CallInfo) -> None:
        """Optional hook: show the call (and its agent) before its first utterance."""
        self.state.call_started(call)

    def recording_kept(self, call_id: str) -> None:
        """Optional hook: the call's redacted recording is kept (evidence can be played)."""
        self.state.recording_kept(call_id)

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self) -> None:
        return None
