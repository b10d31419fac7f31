"""The ``dashboard:`` section of the ``serve`` config (and the standalone command's options).

Example::

    dashboard:
      host: 0.0.0.0
      port: 8787
      users: dashboard-users.yaml   # people: roles, teams, argon2 hashes (null = $QA_DASHBOARD_USERS)
      audit_log: dashboard-audit.jsonl  # who opened which call's transcript (append-only)
      token: null            # machines' API key, header only; null = $QA_DASHBOARD_TOKEN
      viewer_token: null     # optional read-only API key without transcript text
      session_idle_s: 7200   # a browser session ends after this long unused ...
      session_max_s: 43200   # ... or this long after login
      secure_cookie: false   # true behind a TLS-terminating proxy (cookie marked Secure)
      store: null            # history from this store (null: serve's store:); acks kept there
      max_calls: 500
      limits:                # what one client may take (defaults shown)
        max_streams: 100             # open event streams in all ...
        max_streams_per_token: 50    # ... and per user or API key; more get 503
        max_body_bytes: 16384        # request body (only POST /login has one); more: 413
        idle_timeout_s: 15           # a connection that sends no (complete) request head
        body_timeout_s: 10           # reading a request body
        write_timeout_s: 30          # a page that takes no data for this long is dropped
        login_attempts: 10           # wrong passwords/API keys per peer address ...
        login_window_s: 60           # ... in this window; then 429 until it passes

People log in with a name and password from the ``users`` file (``qa-pipeline dashboard
users add``); machines send the ``token`` as an API key (``Authorization: Bearer`` or
``X-API-Key``). At least one of the two is required.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class DashboardLimits(BaseModel):
    """What one client (or all of them) may take from the dashboard's web server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_streams: int = Field(default=100, ge=1, description="open event streams in all")
    max_streams_per_token: int = Field(
        default=50, ge=1, description="open event streams per user or API key"
    )
    max_body_bytes: int = Field(default=16 * 1024, ge=256, description="request body size")
    max_header_bytes: int = Field(
        default=8190, ge=1024, description="request line and each header field"
    )
    max_headers: int = Field(default=64, ge=8, description="header fields per request")
    idle_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="a connection without a complete request head for this long is closed",
    )
    body_timeout_s: float = Field(default=10.0, gt=0, description="reading a request body")
    write_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="a response or event stream whose client takes nothing for this long is closed",
    )
    login_attempts: int = Field(
        default=10,
        ge=1,
        description="wrong passwords or API keys per peer address within login_window_s",
    )
    login_window_s: float = Field(default=60.0, gt=0)
    max_peers_tracked: int = Field(
        default=10_000, ge=1, description="peer addresses whose wrong tokens are remembered"
    )


class DashboardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535, description="0 = any free port")
    users: Path | None = Field(
        default=None,
        description="users file (roles, teams, password hashes); None = $QA_DASHBOARD_USERS",
    )
    audit_log: Path = Field(
        default=Path("dashboard-audit.jsonl"),
        description="append-only JSONL of who opened which call's transcript and who "
        "acknowledged which alert (the acknowledgements are kept in dashboard-acks.jsonl "
        "beside it)",
    )
    token: SecretStr | None = Field(
        default=None,
        description="machines' API key (admin read access, header only); "
        "None = $QA_DASHBOARD_TOKEN",
    )
    viewer_token: SecretStr | None = Field(
        default=None,
        description="optional read-only API key without transcript text; None = "
        "$QA_DASHBOARD_VIEWER_TOKEN",
    )
    session_idle_s: float = Field(default=7200.0, gt=0, description="session idle expiry")
    session_max_s: float = Field(default=43200.0, gt=0, description="session absolute expiry")
    secure_cookie: bool = Field(
        default=False, description="mark the session cookie Secure (behind a TLS proxy)"
    )
    store: str | None = Field(
        default=None,
        description="the transcript store whose calls the history pages show (SQLite path "
        "or postgresql:// URL; alert acknowledgements kept there too); None = serve's store:",
    )
    max_calls: int = Field(default=500, ge=1, description="calls kept in memory")
    max_alerts: int = Field(default=200, ge=1)
    title: str = "通话质检实时看板"
    limits: DashboardLimits = Field(default_factory=DashboardLimits)

    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token else None

    def viewer_token_value(self) -> str | None:
        return self.viewer_token.get_secret_value() if self.viewer_token else None
