"""The ``privacy:`` section: redaction on by default."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PrivacyConfig(BaseModel):
    """How personal data is masked before text leaves the process.

    ``mode``: ``label`` writes ``[手机号]``; ``mask`` writes ``*`` for every character
    (``keep_last`` digits of a number stay visible); ``hash`` writes ``[手机号#<digest>]``, a
    keyed hash that links the same number across calls without revealing it (needs the key
    in the environment variable ``key_env``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    redact: bool = Field(default=True, description="mask personal data in every transcript")
    mode: Literal["label", "mask", "hash"] = "label"
    keep_last: int = Field(
        default=0, ge=0, le=4, description="digits of a masked number left visible at its end"
    )
    key_env: str = Field(
        default="QA_PIPELINE_PRIVACY_KEY",
        description="environment variable holding the key of the keyed hash (spans' "
        "digest; required in hash mode)",
    )
