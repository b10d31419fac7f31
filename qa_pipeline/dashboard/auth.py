"""Who is asking and what they may see: principals, server-side sessions, per-role views.

A :class:`Principal` is a logged-in user (from the users file) or a machine presenting an
API key. What it sees (enforced on every data route and on the event stream):

==============  ================================================================  ====  ===
role            calls                                                             text  ack
==============  ================================================================  ====  ===
``admin``       all (and the user list, ``GET /api/users``)                       yes   yes
``qa``          all                                                               yes   yes
``supervisor``  calls of its teams (see :mod:`.users` for a call's team)         yes   yes
``agent``       its own calls (``CallInfo.agent_id`` = its ``agent_id``)         yes   no
``viewer``      all                                                               no    no
==============  ================================================================  ====  ===

"Ack" is acknowledging the alerts of the calls it sees (``POST /api/alerts/ack``). Only a
person logged in may (an API key acts for no one whose name an acknowledgement could carry);
an agent may not mark its own alerts handled.

"Text" is transcript text: utterance text, evidence text, matched phrases and finding
messages that quote the call (:meth:`DashboardState.redact`). Alerts and statistics follow
the calls: a scoped principal gets the alerts of the calls it sees, and its per-agent table
and violation chart count only those calls.

Sessions live in memory (:class:`Sessions`): a random 256-bit id in an HttpOnly,
SameSite=Strict cookie, nothing else in it; idle and absolute expiry; logout deletes it on
the server. A restart logs everyone out.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .users import UserRole

API_KEY_USER = "api-key"
#: roles that may acknowledge alerts (see the table above)
ACK_ROLES = frozenset({UserRole.SUPERVISOR, UserRole.QA, UserRole.ADMIN})
VIEWER_KEY_USER = "viewer-key"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for. ``kind``: ``user`` (a session) or ``key`` (an API key)."""

    name: str
    role: UserRole
    teams: frozenset[str] = frozenset()
    agent_id: str | None = None
    kind: str = "user"

    @property
    def text(self) -> bool:
        """May see transcript text (of the calls it sees)."""
        return self.role is not UserRole.VIEWER

    @property
    def may_ack(self) -> bool:
        """May acknowledge alerts (of the calls it sees): a logged-in person of
        :data:`ACK_ROLES`."""
        return self.kind == "user" and self.role in ACK_ROLES

    @property
    def scope(self) -> tuple[Any, ...]:
        """Principals with the same scope see the same views (a cache key)."""
        if self.role is UserRole.AGENT:
            return ("agent", self.agent_id)
        if self.role is UserRole.SUPERVISOR:
            return ("teams", tuple(sorted(self.teams)))
        return ("all", self.text)

    @property
    def scoped(self) -> bool:
        return self.role in (UserRole.AGENT, UserRole.SUPERVISOR)


def call_visible(
    p: Principal, call: dict[str, Any], teams_of_agent: Callable[[str | None], frozenset[str]]
) -> bool:
    """May ``p`` see the call whose summary is ``call``?"""
    if p.role is UserRole.AGENT:
        return bool(p.agent_id) and call.get("agent_id") == p.agent_id
    if p.role is UserRole.SUPERVISOR:
        team = call.get("team")
        teams = frozenset((team,)) if team else teams_of_agent(call.get("agent_id"))
        return bool(teams & p.teams)
    return True


@dataclass
class _Session:
    name: str
    created: float
    seen: float


class Sessions:
    """Server-side sessions by random id. Thread-safe; at most ``max_sessions`` (the least
    recently used go first)."""

    def __init__(
        self,
        idle_s: float,
        max_age_s: float,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, _Session] = OrderedDict()

    def create(self, name: str) -> str:
        sid = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._by_id[sid] = _Session(name, now, now)
            while len(self._by_id) > self.max_sessions:
                self._by_id.popitem(last=False)
        return sid

    def lookup(self, sid: str | None) -> str | None:
        """The user name of a live session (and it counts as used), else ``None``."""
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            s = self._by_id.get(sid)
            if s is None:
                return None
            if now - s.seen > self.idle_s or now - s.created > self.max_age_s:
                del self._by_id[sid]
                return None
            s.seen = now
            self._by_id.move_to_end(sid)
            return s.name

    def end(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_id.pop(sid, None)

    def end_user(self, name: str) -> None:
        with self._lock:
            for sid in [k for k, s in self._by_id.items() if s.name == name]:
                del self._by_id[sid]

    def __len__(self) -> int:
        return len(self._by_id)
