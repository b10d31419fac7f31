"""The live QA dashboard: in-memory state fed by events, a web app with Server-Sent Events
for logged-in users (roles and teams, :mod:`.users`, :mod:`.auth`) and machines with an API
key, a transcript audit log (:mod:`.audit`), alert acknowledgements (:mod:`.acks`), and a
standalone mode that reads the Kafka topics.

In the ``serve`` process::

    state = DashboardState()
    fanout = FanOut([..., ("dashboard", DashboardSink(state))], metrics)
    server = start_dashboard(state, host, port, token, users=path, audit_log=log)  # own threads
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
