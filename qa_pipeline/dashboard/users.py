"""Dashboard users: names, roles, teams and argon2id password hashes in a YAML file.

The file (``dashboard.users`` in the config, ``$QA_DASHBOARD_USERS``, or ``--users`` of the
``qa-pipeline dashboard users`` commands) looks like::

    users:
      - name: wang
        role: supervisor          # agent | supervisor | qa | viewer | admin
        teams: [north]
        password_hash: $argon2id$v=19$m=65536,t=3,p=4$...
      - name: li
        role: agent
        teams: [north]
        agent_id: "1001"          # the calls whose CallInfo.agent_id is this are li's
        password_hash: $argon2id$...

Passwords are hashed with argon2id (``argon2-cffi``'s defaults: salted, memory-hard); the
plain password is never stored. The file is written atomically with mode ``0600``; the
server reads it again when it changes, so ``users add``/``passwd``/``remove`` take effect on
the running dashboard (a removed user's sessions end at their next request).

**Teams of a call.** A call belongs to the team named by its call metadata ``team`` (a source
passes it in ``CallInfo.metadata``) when there is one, else to the teams of the agent users
whose ``agent_id`` is the call's agent id. A call of no known team is seen by no supervisor.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import QAError

USERS_ENV = "QA_DASHBOARD_USERS"
NAME_RE = re.compile(r"^[A-Za-z0-9_.@\-\u4e00-\u9fff]{1,64}$")
MIN_PASSWORD = 10


class UsersError(QAError):
    """The users file cannot be read or written, or a user is not valid."""


class UserRole(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    QA = "qa"
    VIEWER = "viewer"
    ADMIN = "admin"


class User(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: UserRole
    teams: tuple[str, ...] = ()
    agent_id: str | None = None
    password_hash: str = Field(default="", repr=False)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("a user name is 1-64 letters, digits, '_', '.', '@' or '-'")
        return v

    @model_validator(mode="after")
    def _role_needs(self) -> User:
        if self.role is UserRole.AGENT and not self.agent_id:
            raise ValueError(f"user {self.name!r}: an agent needs an agent_id (its calls)")
        if self.role is UserRole.SUPERVISOR and not self.teams:
            raise ValueError(f"user {self.name!r}: a supervisor needs at least one team")
        if self.password_hash and not self.password_hash.startswith("$argon2"):
            raise ValueError(f"user {self.name!r}: password_hash is not an argon2 hash")
        return self

    def public(self) -> dict[str, Any]:
        """Everything but the hash."""
        return {
            "name": self.name,
            "role": self.role.value,
            "teams": list(self.teams),
            "agent_id": self.agent_id,
        }


class UsersDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[User] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> UsersDoc:
        seen: set[str] = set()
        for u in self.users:
            if u.name in seen:
                raise ValueError(f"user {u.name!r} appears twice")
            seen.add(u.name)
        return self


def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise UsersError("dashboard users need argon2-cffi: pip install argon2-cffi") from e
    return PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash (with its own random salt) of ``password``."""
    if len(password) < MIN_PASSWORD:
        raise UsersError(f"a password needs at least {MIN_PASSWORD} characters")
    return str(_hasher().hash(password))


def verify_password(password_hash: str, password: str) -> bool:
    """``True`` when ``password`` matches (constant-time inside argon2)."""
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    try:
        return bool(_hasher().verify(password_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


#: verified against when the name is unknown, so an unknown name costs as long as a wrong
#: password (no user enumeration by timing)
_DUMMY: list[str] = []


def dummy_verify(password: str) -> None:
    if not _DUMMY:
        _DUMMY.append(str(_hasher().hash("not-a-password-0123456789")))
    verify_password(_DUMMY[0], password)


def load_users(path: Path) -> list[User]:
    """The users in ``path`` (a missing file: no users). Parsed with the bounded loader of
    the config files; problems are :class:`~qa_pipeline.errors.ConfigError` (file:line)."""
    from pydantic import ValidationError

    from ..errors import ConfigError, Location
    from ..yamlsrc import load_yaml_file, validation_problems

    if not path.exists():
        return []
    data = load_yaml_file(path)
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError([(Location(str(path), 1), "a users file is a mapping: users: [...]")])
    try:
        return UsersDoc.model_validate(data).users
    except ValidationError as e:
        raise ConfigError(validation_problems(e, data, str(path))) from None


def save_users(path: Path, users: Iterable[User]) -> None:
    """Write the file atomically (a temporary file renamed over it), mode 0600."""
    import yaml

    doc = {"users": [dict(u.public(), password_hash=u.password_hash) for u in users]}
    for d in doc["users"]:
        if d["agent_id"] is None:
            del d["agent_id"]
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".users-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class UserDirectory:
    """The users file as the server sees it: read again whenever its mtime/size changes
    (checked at most once a second)."""

    def __init__(self, path: Path | None, clock: Any = None) -> None:
        import time

        self.path = path
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = -1e18
        self._users: dict[str, User] = {}
        self._agent_teams: dict[str, frozenset[str]] = {}
        if path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp == self._stamp:
            return
        self._stamp = stamp  # a bad file is reported once, not at every check
        users = load_users(self.path) if stamp is not None else []
        teams: dict[str, set[str]] = {}
        for u in users:
            if u.role is UserRole.AGENT and u.agent_id:
                teams.setdefault(u.agent_id, set()).update(u.teams)
        self._users = {u.name: u for u in users}
        self._agent_teams = {a: frozenset(t) for a, t in teams.items()}

    def refresh(self) -> None:
        if self.path is None:
            return
        now = self._clock()
        with self._lock:
            if now - self._checked < 1.0:
                return
            self._checked = now
            try:
                self._load()
            except QAError as e:  # keep the last good set; say why once per change
                import logging

                logging.getLogger("qa_pipeline.dashboard").warning("%s (kept the last good one)", e)

    def get(self, name: str) -> User | None:
        self.refresh()
        return self._users.get(name)

    def all(self) -> list[User]:
        return list(self._users.values())

    def teams_of_agent(self, agent_id: str | None) -> frozenset[str]:
        if not agent_id:
            return frozenset()
        return self._agent_teams.get(agent_id, frozenset())

    def agent_teams(self) -> list[tuple[str, frozenset[str]]]:
        """Each agent id of the agent users with its teams (places a call without a team)."""
        self.refresh()
        return list(self._agent_teams.items())
