"""The live QA dashboard: in-memory state fed by events, a token-protected web app with
Server-Sent Events, and a standalone mode that reads the Kafka topics.

In the ``serve`` process::

    state = DashboardState()
    fanout = FanOut([..., ("dashboard", DashboardSink(state))], metrics)
    server = start_dashboard(state, host, port, token)   # own threads; server.url
    ...
    state.close(); server.stop()
"""

from .config import DashboardConfig, DashboardLimits
from .server import DashboardError, DashboardServer, start_dashboard
from .sink import DashboardSink
from .state import DashboardState, grades_from_pack

__all__ = [
    "DashboardConfig",
    "DashboardLimits",
    "DashboardError",
    "DashboardServer",
    "DashboardSink",
    "DashboardState",
    "grades_from_pack",
    "start_dashboard",
]
