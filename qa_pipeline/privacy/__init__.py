"""Personal data in Mandarin transcripts: found, masked before text leaves the process.

* :mod:`.entities` -> the kinds of personal data and what a finding holds.
* :mod:`.detect` -> :func:`find_entities`: the recognisers (digits and spoken numerals,
  context words both ways). The rules' ``entity`` condition and the redactor share them.
* :mod:`.redact` -> :class:`Redactor`: text -> redacted text + :class:`EntitySpan` s.
* :mod:`.config` -> the ``privacy:`` section.
* :mod:`.apply` -> redaction of what the pipeline carries (utterances, transcripts, call
  metadata, evidence) and of JSON written before it (``qa-pipeline privacy migrate``).

This package sits below the stages (``pyproject.toml``'s import layers): the text step
redacts every utterance, and sources, sinks and apps may redact what they carry.
"""

from .apply import (
    default_redactor,
    no_redaction,
    redact_call,
    redact_json,
    redact_text,
    redact_transcript,
    redact_utterance,
    redact_utterances,
)
from .config import PrivacyConfig
from .detect import find_entities
from .entities import LABELS, Entity, Kind
from .redact import Redacted, Redactor

__all__ = [
    "LABELS",
    "Entity",
    "Kind",
    "PrivacyConfig",
    "Redacted",
    "Redactor",
    "default_redactor",
    "find_entities",
    "no_redaction",
    "redact_call",
    "redact_json",
    "redact_text",
    "redact_transcript",
    "redact_utterances",
    "redact_utterance",
]
