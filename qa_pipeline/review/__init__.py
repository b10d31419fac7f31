"""Review and appeal (issue #18): the review queue, reviewers' per-verdict decisions,
agents' appeals (申诉), every version kept, the reviewed score that counts over the
machine's, and overturned verdicts exported as rule fixtures.

* :mod:`.model` -> the domain, free of SQL: why a call enters the queue, what a decision
  does to a verdict, the reviewed score by the pack's own scoring;
* :mod:`.repo` -> the store's review tables (migration ``0200_reviews``);
* :mod:`.views` -> a call's review as JSON-able data (``review show --json``, the dashboard);
* :mod:`.export` -> ``qa-pipeline rules fixtures-from-reviews``;
* :mod:`.cli` -> ``qa-pipeline review ...``.
"""

from .model import (
    Action,
    Decision,
    QueueState,
    Reason,
    ReviewedScore,
    ReviewError,
    VerdictState,
    apply_decisions,
    queue_reasons,
    reviewed_score,
)

__all__ = [
    "Action",
    "Decision",
    "QueueState",
    "Reason",
    "ReviewError",
    "ReviewedScore",
    "VerdictState",
    "apply_decisions",
    "queue_reasons",
    "reviewed_score",
]
