"""The ``retention:`` section: how long each kind of kept data lives, and the cut-offs.

Three kinds, each in days (``null`` = kept until deleted by hand)::

    retention:
      audio: 90          # recordings and evidence clips (files under audio_dirs; the
                         # store's recordings rows with their files)
      transcripts: 365   # transcripts in the store, transcript/utterance events (spool, JSONL)
      scorecards: 730    # scorecards and their findings (store results, spool, JSONL)

Why these defaults: PIPL (art. 19) asks that personal information be kept no longer than
the purpose needs. Audio is the rawest form (voice, everything said, unredacted unless the
audio redaction step ran) and is needed only while a call can still be reviewed or
appealed — a quarter covers the usual monthly QA cycle and an appeal after it. Transcripts
(redacted text) serve re-scoring with a new rule pack and calibration over a year's calls.
Scorecards (scores, verdicts, findings with short redacted quotes) feed agents' appraisals
and year-on-year trends, so they are kept two years. A team with other legal duties (e.g.
a regulator's record-keeping rule) sets its own numbers; shorter is always allowed.

Which time counts: a call's data ages from the call's **start time** when known (its
``started_at``; naive times are the call centre's local time), else from when it was
stored. So re-scoring an old call today does not make its scorecard young again.

This module is configuration and arithmetic only; :mod:`qa_pipeline.purge` does the
deleting (store, spool, JSONL files, audio files), from ``qa-pipeline purge`` or daily in
``serve``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["audio", "transcripts", "scorecards"]
KINDS: tuple[Kind, ...] = ("audio", "transcripts", "scorecards")

#: which retention kind an event envelope's ``kind`` belongs to (spool records, JSONL files)
EVENT_KINDS: dict[str, Kind] = {
    "transcript": "transcripts",
    "utterance": "transcripts",
    "finding": "scorecards",
    "alert": "scorecards",
    "scorecard": "scorecards",
}

#: file name endings taken for audio under ``audio_dirs`` (other files are left alone)
AUDIO_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".amr"}
)


class RetentionConfig(BaseModel):
    """Days kept per kind, where recordings live, and the service's purge schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    audio: int | None = Field(default=90, ge=1, description="days audio is kept; null = forever")
    transcripts: int | None = Field(
        default=365, ge=1, description="days transcripts are kept; null = forever"
    )
    scorecards: int | None = Field(
        default=730, ge=1, description="days scorecards are kept; null = forever"
    )
    audio_dirs: tuple[str, ...] = Field(
        default=(), description="directories of kept recordings/clips, purged by file age"
    )
    store: str | None = Field(
        default=None,
        description="the transcript store the service purges: a SQLite file or a "
        "postgresql:// URL (null = the store serve writes its calls to, if any)",
    )
    interval_s: float | None = Field(
        default=86400.0, gt=0, description="seconds between the service's purges; null = off"
    )
    first_delay_s: float = Field(
        default=60.0, ge=0, description="seconds after the service starts before its first purge"
    )

    def days(self, kind: Kind) -> int | None:
        value: int | None = getattr(self, kind)
        return value

    def cutoffs(self, now: datetime | None = None) -> dict[Kind, datetime]:
        """Per kind kept for a limited time, the instant (aware, UTC) before which its data
        is deleted."""
        at = (now or datetime.now(UTC)).astimezone(UTC)
        out: dict[Kind, datetime] = {}
        for kind in KINDS:
            days = self.days(kind)
            if days is not None:
                out[kind] = at - timedelta(days=days)
        return out


def as_epoch(when: datetime) -> float:
    """Seconds since the epoch; a naive ``datetime`` is local time."""
    return when.timestamp()


def iso_utc(when: datetime) -> str:
    """``when`` in the envelope's ``produced_at`` form (``2026-11-23T11:26:13.122Z``), so
    the two compare as text."""
    utc = when.astimezone(UTC) if when.tzinfo else datetime.fromtimestamp(when.timestamp(), UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> float | None:
    """An ISO 8601 time (naive = local) as epoch seconds; ``None`` when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None
