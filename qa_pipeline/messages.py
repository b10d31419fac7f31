"""Typed, immutable messages passed between pipeline stages.

Flow: source -> ``AudioChunk`` -> VAD -> ``SpeechSegment`` -> ASR -> ``Utterance``
-> rules -> ``Finding`` / ``RuleVerdict`` -> ``Scorecard`` -> sinks.

Every message is a frozen ``msgspec.Struct`` (typed, slotted, immutable, hashable, and
built in C: the rule engine makes tens of findings and evidence items per call, and a
frozen dataclass's ``__init__`` cost several times as much); change one with
:func:`replace`. Messages that cannot take part in a reference cycle (scalars, strings,
enums and tuples of them) are ``gc=False``, out of the garbage collector's sight. Times are
seconds on the call clock (0 = start of the call). The codecs are derived from these types
(msgspec's conversion), not listed field by field: :func:`to_dict` / :func:`from_dict` for
JSON documents and events, :func:`to_wire` / :func:`from_wire` (msgpack, audio as raw bytes)
so a stage can also run in another process, behind Kafka. What the stages publish on Kafka
(a leg's speech segments with their audio at the source rate, clock watermarks, leg ends;
schema-versioned and checked on decode) is in :mod:`qa_pipeline.wire`.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

import msgspec
import msgspec.msgpack
import numpy as np
import numpy.typing as npt
from msgspec.structs import replace

__all__ = [
    "AudioChunk",
    "CallEnded",
    "CallInfo",
    "EntitySpan",
    "Direction",
    "Evidence",
    "Finding",
    "Role",
    "RuleVerdict",
    "SCHEMA_VERSION",
    "Samples",
    "Scorecard",
    "Severity",
    "SpeechSegment",
    "Utterance",
    "Verdict",
    "from_dict",
    "from_wire",
    "replace",
    "to_dict",
    "to_wire",
]

SCHEMA_VERSION = "1.0"

_M = TypeVar("_M")

# explicit alias: still a valid type where numpy is not importable (the isolated mypyc
# build of the rule engine type-checks this module without numpy installed)
Samples: TypeAlias = npt.NDArray[np.float32]


class _FastEnum(enum.StrEnum):
    """A string enum hashed like its value, in C (``Enum.__hash__`` is Python code, and the
    rule engine keys dicts and sets by these on every utterance); equal members and
    strings (``Role.AGENT == "agent"``) now also hash alike."""

    __hash__ = str.__hash__


class Role(_FastEnum):
    """Who speaks on a channel."""

    AGENT = "agent"
    CUSTOMER = "customer"
    UNKNOWN = "unknown"


class Direction(_FastEnum):
    """Call direction, from the call metadata."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Severity(_FastEnum):
    """How bad a violation is. ``critical`` fails the call and raises a live alert."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"


class Verdict(_FastEnum):
    """A rule's outcome for one call.

    ``uncertain``: the rule would fail, but only on speech heard with low confidence (or on
    a call whose speakers' roles are unknown, e.g. a mono recording). It is not a finding,
    takes no points (``RuleVerdict.pending_deduction`` says what failing would cost) and
    flags the call for review (``Scorecard.review``)."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_APPLICABLE = "not_applicable"
    UNCERTAIN = "uncertain"


class CallInfo(msgspec.Struct, frozen=True):
    """What is known about a call when it starts (from metadata or the source).

    ``started_at`` is the wall-clock start (local time of the call centre) used by
    time-of-day and calendar rules; ``None`` when unknown. ``session_id`` names this run
    of the call (minted when it starts, ``qa_pipeline.sinks.base.new_session_id``): call
    ids can recur, session ids do not; events' ids derive from it. ``""`` = not yet minted.
    """

    call_id: str
    started_at: datetime | None = None
    direction: Direction = Direction.INBOUND
    agent_id: str | None = None
    channels: tuple[Role, ...] = (Role.AGENT, Role.CUSTOMER)
    source: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    session_id: str = ""


class AudioChunk(msgspec.Struct, frozen=True, eq=False):
    """A piece of one channel's audio, mono float32 at ``sample_rate``."""

    call_id: str
    channel: int
    role: Role
    start: float
    sample_rate: int
    samples: Samples


class SpeechSegment(msgspec.Struct, frozen=True, eq=False):
    """One stretch of speech on one channel, cut by the VAD (16 kHz float32 audio)."""

    call_id: str
    channel: int
    role: Role
    start: float
    end: float
    samples: Samples
    sample_rate: int = 16000

    @property
    def duration(self) -> float:
        return self.end - self.start


class EntitySpan(msgspec.Struct, frozen=True, gc=False):
    """Where personal data stood in a redacted text (``qa_pipeline/privacy``).

    ``start``/``end`` are offsets of the mask in the *redacted* text; ``kind`` is the
    entity's type (``mobile``, ``id_number``, ...); ``digest`` is a keyed hash of its
    canonical value (empty without a key), so the same number can be linked across calls
    without its digits; ``tail`` is what stays visible (at most the last four digits).
    Raw values never travel.
    """

    kind: str
    start: int
    end: int
    digest: str = ""
    tail: str = ""


class Utterance(msgspec.Struct, frozen=True, gc=False):
    """A transcribed speech segment: the unit the rules see.

    ``text`` is normalised (simplified Chinese, half-width, tidy punctuation);
    ``raw_text`` is what the ASR wrote. ``confidence`` is exp(mean token log-prob) in
    [0, 1]. ``level_dbfs`` is the RMS level of the segment's audio. Speech whose words
    could not be read (Whisper looped on it) has ``text == ""`` and ``confidence == 0``:
    it counts for timing (gaps, holds, talk-over) and makes a missing phrase uncertain.

    ``entities``: the personal data redacted from ``text`` (its masks' spans).

    ``verified``: required phrases a targeted second decode found the audio to support
    although ``text`` (the unbiased decode) misses them (``qa_pipeline/verify.py``). Only
    ``require`` rules read them; banned-phrase rules and metrics see ``text`` alone.
    """

    call_id: str
    index: int
    channel: int
    role: Role
    start: float
    end: float
    text: str
    raw_text: str = ""
    confidence: float = 1.0
    no_speech_prob: float = 0.0
    level_dbfs: float | None = None
    language: str | None = None
    verified: tuple[str, ...] = ()
    entities: tuple[EntitySpan, ...] = ()

    @property
    def duration(self) -> float:
        return self.end - self.start


class CallEnded(msgspec.Struct, frozen=True, gc=False):
    """Control event: the call is over. ``channel_ends`` is each channel's last audio time
    (for a recording, the file length; for a live line, when that side hung up)."""

    call_id: str
    end: float
    channel_ends: tuple[float, ...] = ()


class Evidence(msgspec.Struct, frozen=True, gc=False):
    """Where a finding comes from: an utterance (or a time span) and the matched text."""

    start: float
    end: float
    utterance_index: int | None = None
    role: Role | None = None
    text: str = ""
    matched: str = ""


class Finding(msgspec.Struct, frozen=True, gc=False):
    """A rule violation, emitted as soon as the rule has decided it."""

    call_id: str
    rule_id: str
    severity: Severity
    message: str
    evidence: tuple[Evidence, ...] = ()
    decided_at: float = 0.0
    weight: float = 0.0
    suggestion: str | None = None


class RuleVerdict(msgspec.Struct, frozen=True, gc=False):
    """One rule's outcome for a call, so a pass is visible as well as a failure.

    An ``uncertain`` verdict takes no ``deduction``; ``pending_deduction`` is what it
    would take if a reviewer confirmed the failure, and ``evidence`` the utterances it
    rests on (``detail`` gives their confidence)."""

    rule_id: str
    verdict: Verdict
    severity: Severity
    weight: float
    description: str = ""
    deduction: float = 0.0
    detail: str = ""
    pending_deduction: float = 0.0
    evidence: tuple[Evidence, ...] = ()


class Scorecard(msgspec.Struct, frozen=True, gc=False):
    """The final result for one call.

    ``score``, ``grade`` and ``failed`` count failed verdicts only; ``review`` is true when
    a verdict is ``uncertain`` (the call needs a human look before those count).
    ``complete`` is false when the scorecard was built from part of the call's audio or
    transcript (``incomplete_reasons`` say why, e.g. ``asr_queue_full``, ``shutdown``,
    ``faster_than_real_time``); such a score is kept out of agent averages."""

    call_id: str
    score: float
    grade: str
    failed: bool
    verdicts: tuple[RuleVerdict, ...] = ()
    findings: tuple[Finding, ...] = ()
    rule_pack: str = ""
    rule_pack_version: str = ""
    duration: float = 0.0
    extras: tuple[tuple[str, float], ...] = ()
    review: bool = False
    complete: bool = True
    incomplete_reasons: tuple[str, ...] = ()


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def _tidy(x: Any) -> Any:
    """``to_builtins`` output as the documents have always had it: floats to 4 places,
    datetimes as ``datetime.isoformat`` writes them, tuples as lists."""
    t = type(x)
    if t is float:
        return round(x, 4)
    if t is dict:
        return {k: _tidy(v) for k, v in x.items()}
    if t is list or t is tuple:
        return [_tidy(v) for v in x]
    if isinstance(x, datetime):
        return x.isoformat()
    if isinstance(x, float):
        return round(float(x), 4)
    return x


def _without_arrays(obj: msgspec.Struct) -> dict[str, Any]:
    return {
        name: getattr(obj, name)
        for name in obj.__struct_fields__
        if not isinstance(getattr(obj, name), np.ndarray)
    }


def to_dict(obj: Any) -> Any:
    """Convert a message (or nested structure of messages) to JSON-able data: msgspec's
    own conversion of the message types (fields in declaration order, enums as values),
    with floats rounded to 4 places and datetimes as ISO strings.

    numpy sample arrays are dropped (audio never goes into events; :func:`to_wire` carries
    it between processes).
    """
    if isinstance(obj, (AudioChunk, SpeechSegment)):
        obj = _without_arrays(obj)
    return _tidy(
        msgspec.to_builtins(obj, builtin_types=(datetime,), str_keys=True, enc_hook=_enc_hook)
    )


def from_dict(d: Any, type_: type[_M]) -> _M:
    """The message of type ``type_`` from its :func:`to_dict` form (msgspec's conversion:
    lists become tuples, values enums, numbers floats where the field is a float, and
    numbers written as strings numbers; unknown keys are ignored). Raises ``msgspec.ValidationError`` (a ``ValueError``) naming the
    field that does not fit."""
    try:
        return msgspec.convert(d, type_, dec_hook=_dec_hook)
    except msgspec.ValidationError:  # numbers or booleans written as strings
        return msgspec.convert(d, type_, strict=False, dec_hook=_dec_hook)


# Between processes (a stage behind Kafka, a worker pool): msgpack, audio as raw bytes.
_ARRAY_KEYS = ("dtype", "shape", "data")


def _wire_enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        return {"dtype": arr.dtype.str, "shape": list(arr.shape), "data": arr.tobytes()}
    return _enc_hook(obj)


def _dec_hook(type_: Any, obj: Any) -> Any:
    is_array = type_ is np.ndarray or getattr(type_, "__origin__", None) is np.ndarray
    if is_array and isinstance(obj, dict) and all(k in obj for k in _ARRAY_KEYS):
        arr = np.frombuffer(obj["data"], dtype=np.dtype(obj["dtype"]))
        return arr.reshape(tuple(obj["shape"])).copy()
    raise NotImplementedError(f"cannot decode {type_!r}")


_WIRE_ENCODER = msgspec.msgpack.Encoder(enc_hook=_wire_enc_hook)


def to_wire(msg: msgspec.Struct) -> bytes:
    """A message as msgpack bytes, audio included (a sample array as its dtype, shape and
    raw bytes): what one process hands another. :func:`from_wire` reads it back."""
    return _WIRE_ENCODER.encode(msg)


def from_wire(data: bytes, type_: type[_M]) -> _M:
    """The message of type ``type_`` that :func:`to_wire` encoded."""
    return msgspec.msgpack.decode(data, type=type_, dec_hook=_dec_hook)
