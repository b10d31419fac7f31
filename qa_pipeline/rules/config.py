"""The ``rules:`` section of the pipeline config: which pack, and its setting overrides."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pack: str | None = Field(default=None, description="rule pack path; None = default pack")
    settings: dict[str, Any] = Field(default_factory=dict, description="pack setting overrides")
