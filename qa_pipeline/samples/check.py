"""Score generated scenario calls on their audio and compare with their expectations."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..messages import Verdict


@dataclass(frozen=True, slots=True)
class ExpectationResult:
    scenario: str
    rule_id: str
    want: str  # "fire" | "ok"
    got: str  # the rule's verdict, or "missing"
    score: float

    @property
    def met(self) -> bool:
        return (self.got == Verdict.FAILED.value) == (self.want == "fire")


def check_calls(pipeline: Any, pack: Any, paths: Iterable[Path]) -> Iterator[ExpectationResult]:
    """Run the whole path (VAD, ASR, rules) on each generated call; one result per
    expectation in its sidecar."""
    for path in paths:
        side = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        card = pipeline.score(path, pack=pack).scorecard
        verdicts = {v.rule_id: v.verdict.value for v in card.verdicts}
        for rule_id, want in side["expect"].items():
            yield ExpectationResult(
                side["scenario"], rule_id, want, verdicts.get(rule_id, "missing"), card.score
            )
