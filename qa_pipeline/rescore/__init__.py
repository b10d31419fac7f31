"""Archive re-scoring: apply a (changed) rule pack to every call already taken.

>>> summary = rescore(RescoreOptions(inputs=[Path("calls/")], baseline=Path("old-pack/")))

The command is ``qa-pipeline rescore`` (``qa_pipeline.rescore.cli``), also runnable as
``python -m qa_pipeline.rescore``. Transcripts, results and runs live in the SQLite store
(:mod:`qa_pipeline.store`).
"""

from .run import RescoreOptions, rescore
from .summary import CallError, RescoreSummary

__all__ = ["CallError", "RescoreOptions", "RescoreSummary", "rescore"]
