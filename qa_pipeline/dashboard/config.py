"""The ``dashboard:`` section of the ``serve`` config (and the standalone command's options).

Example::

    dashboard:
      host: 0.0.0.0
      port: 8787
      token: null            # null = read $QA_DASHBOARD_TOKEN (required either way)
      viewer_token: null     # optional second role without transcript text
      max_calls: 500
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class DashboardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535, description="0 = any free port")
    token: SecretStr | None = Field(
        default=None, description="full access; None = $QA_DASHBOARD_TOKEN (one is required)"
    )
    viewer_token: SecretStr | None = Field(
        default=None,
        description="optional read-only role without transcript text; None = "
        "$QA_DASHBOARD_VIEWER_TOKEN",
    )
    max_calls: int = Field(default=500, ge=1, description="calls kept in memory")
    max_alerts: int = Field(default=200, ge=1)
    title: str = "通话质检实时看板"

    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token else None

    def viewer_token_value(self) -> str | None:
        return self.viewer_token.get_secret_value() if self.viewer_token else None
