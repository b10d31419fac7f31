"""The ``serve`` config file: the pipeline sections plus sources, live ASR, metrics.

A serve config is a pipeline config (``audio``, ``vad``, ``asr``, ``rules``, ``sinks``, all
as in ``configs/default.yaml``) with four more sections, all checked before anything
starts (unknown keys rejected, every problem reported with file and line)::

    sources:                       # each source is a named component with a type
      - {type: websocket, host: 0.0.0.0, port: 8765, path: /media, auth: twilio}
      - {type: audiosocket, host: 0.0.0.0, port: 9092, allow: [10.1.2.0/24]}
      - {type: replay, files: [calls/a.wav], speed: 1.0}
      - {type: device, device: default}
    live:                          # the shared live ASR worker and call sessions
      window: fitted               # full = 30 s Whisper window; fitted = sized to the utterance
      beam_size: 1
      max_batch: 4
      queue_max: 256
      per_call_queue_max: 16       # one call's share of the queue: its flood sheds its own
      overflow: drop_oldest
      max_speed: 1.0               # network media faster than real time (+ burst_s) is cut off
      burst_s: 5.0
      max_audio_s: 14400           # audio cap per call
      max_calls: 0                 # 0 = no admission limit
      verify_keep_s: 240           # audio kept per call for asr.verify at its end; 0 = off
      record: {enabled: false, dir: recordings, format: wav}  # both legs to disk, redacted
    metrics: {host: 127.0.0.1, port: 9464}
    shutdown_timeout_s: 30
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ..config import PipelineConfig, load_config_as
from ..dashboard.config import DashboardConfig
from ..errors import ConfigError, Location
from ..notify.config import NotifyConfig


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebSocketSourceConfig(_Model):
    """Twilio Media Streams over WebSocket (one connection = one call, both tracks).

    Every upgrade request is authenticated (``auth``): ``twilio`` checks Twilio's
    ``X-Twilio-Signature`` with the account's auth token; ``token`` wants a shared token
    (``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` for clients that cannot set
    headers); ``none`` turns authentication off (the service warns at start). The service
    does not start when the secret the mode needs is missing."""

    type: Literal["websocket"] = "websocket"
    name: str = "websocket"
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535, description="0 = any free port")
    path: str = Field(default="/media", description="URL path to accept; '' accepts any")
    max_message_bytes: int = Field(default=1 << 20, ge=1024)
    auth: Literal["twilio", "token", "none"] = Field(
        default="token",
        description="twilio: verify X-Twilio-Signature; token: a shared bearer token; "
        "none: no authentication (explicit opt-out, warned about at start)",
    )
    twilio_auth_token: SecretStr | None = Field(
        default=None, description="auth: twilio; None = the variable named by twilio_auth_token_env"
    )
    twilio_auth_token_env: str = "TWILIO_AUTH_TOKEN"
    public_url: str | None = Field(
        default=None,
        description="auth: twilio: the stream URL as Twilio is given it (the <Stream url> of "
        "your TwiML, without query), e.g. wss://qa.example.com/media; the request's query "
        "string is appended. None = wss:// + the request's Host header + its path",
    )
    token: SecretStr | None = Field(
        default=None, description="auth: token; None = the variable named by token_env"
    )
    token_env: str = "QA_MEDIA_TOKEN"

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("wss://", "ws://", "https://", "http://")):
            raise ValueError("public_url must start with wss:// (or ws://)")
        if v is not None and "?" in v:
            raise ValueError("public_url without a query string (the request's is appended)")
        return v

    def secret(self) -> str | None:
        """The secret ``auth`` needs: from the config, else from its environment variable."""
        if self.auth == "twilio":
            value, env = self.twilio_auth_token, self.twilio_auth_token_env
        elif self.auth == "token":
            value, env = self.token, self.token_env
        else:
            return None
        return value.get_secret_value() if value is not None else os.environ.get(env) or None

    def secret_problem(self) -> str | None:
        """Why the service cannot start with this source (None: it can)."""
        if self.auth == "none" or self.secret():
            return None
        if self.auth == "twilio":
            what = (
                f"the account's auth token: set twilio_auth_token or ${self.twilio_auth_token_env}"
            )
        else:
            what = f"a token: set token or ${self.token_env}"
        return (
            f"sources: {self.name}: auth: {self.auth} needs {what} "
            "(auth: none turns authentication off; not for a reachable port)"
        )


def _networks(v: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for item in v:
        try:
            out.append(str(ipaddress.ip_network(str(item).strip())))
        except ValueError as e:
            raise ValueError(f"allow: {item!r}: {e}") from None
    return tuple(out)


class AudioSocketSourceConfig(_Model):
    """Asterisk AudioSocket over TCP (one connection = one leg of a call).

    Legs map to a call by UUID: the first connection with a UUID is channel ``0``
    (``first_role``), a second connection with the same UUID is channel ``1``; the call
    ends when every leg has hung up (or ``leg_wait_s`` after the first leg ended alone)."""

    type: Literal["audiosocket"] = "audiosocket"
    name: str = "audiosocket"
    host: str = "127.0.0.1"
    port: int = Field(default=9092, ge=0, le=65535, description="0 = any free port")
    first_role: Literal["agent", "customer"] = "agent"
    leg_wait_s: float = Field(default=2.0, ge=0.0)
    idle_timeout_s: float = Field(default=30.0, gt=0, description="no frame for this long = lost")
    allow: tuple[str, ...] = Field(
        default=("127.0.0.1/32", "::1/128"),
        description="peer networks allowed to connect (AudioSocket has no authentication of "
        "its own); others are refused and logged. 0.0.0.0/0 = anyone (warned about)",
    )

    @field_validator("allow")
    @classmethod
    def _allow(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _networks(v)


class ReplaySourceConfig(_Model):
    """Recorded calls played into the service at ``speed`` x real time."""

    type: Literal["replay"] = "replay"
    name: str = "replay"
    files: tuple[str, ...] = ()
    speed: float = Field(default=1.0, gt=0, description="1 = real time; 0 < x")
    chunk_ms: int = Field(default=20, ge=10, le=1000)
    loop: bool = False


class DeviceSourceConfig(_Model):
    """A local audio input (pyaudio); one call for as long as the service runs."""

    type: Literal["device"] = "device"
    name: str = "device"
    device: str | None = Field(default=None, description="device index or name; None = default")
    sample_rate: int = 16000
    channels: int = Field(default=1, ge=1, le=2)
    chunk_ms: int = Field(default=20, ge=10, le=200)


SourceConfig = Annotated[
    WebSocketSourceConfig | AudioSocketSourceConfig | ReplaySourceConfig | DeviceSourceConfig,
    Field(discriminator="type"),
]


class RecordConfig(_Model):
    """``live.record``: both legs of each live call recorded to disk (off by default).

    One file per call, a channel per leg at the source's rate, streamed to
    ``<dir>/<call>.<format>.partial`` as the call goes; at the call's end the spans of the
    utterances that held personal data (placed by word timing) are beeped or silenced and
    the redacted file ``<dir>/<call>.<format>`` is kept, the raw one deleted. Partial files
    left by a crash are deleted when the service starts. Kept files age out with
    ``retention.audio`` (the directory is purged as one of the audio directories; the
    store's rows with their files)."""

    enabled: bool = False
    dir: str = Field(default="recordings", description="where recordings are written")
    format: Literal["wav", "flac"] = Field(
        default="wav", description="wav: 16-bit PCM; flac: lossless, about half the size"
    )
    mode: Literal["beep", "silence"] = Field(
        default="beep", description="what replaces personal data: a 1 kHz beep or silence"
    )
    pad_s: float = Field(
        default=0.15, ge=0.0, le=2.0, description="seconds masked beyond each span, each side"
    )
    store: str | None = Field(
        default=None,
        description="the store (path or postgresql:// URL) that gets each kept recording's "
        "row (recordings table); null = retention.store, else the serve store (store:); "
        "none at all = no rows (the dashboard then finds recordings in dir)",
    )


class LiveConfig(_Model):
    """The shared live ASR worker and per-call sessions.

    The defaults trade accuracy for lines: beam 1 (recorded calls: 5), a 10 s minimum
    encoder window (15 s) and a speaker's pauses not joined into turns (recorded calls join
    them, ``vad.turn_gap_s``: live that would hold every utterance back): 32 lines instead of
    24 at p95 <= 1 s on 2 cores, for 3.4 points fewer verdicts right on the untuned corpus
    (seed 2, 12 calls: 67.7 % vs 71.1 %) and CER 0.276 vs 0.243 on the shared clips
    (``benchmarks/bench_live.py --parity``)."""

    window: Literal["full", "fitted"] = Field(
        default="fitted",
        description="full: every utterance padded to Whisper's 30 s window (the recorded-call "
        "decode, most accurate, ~6 lines on 2 cores); fitted: the encoder window sized to "
        "the utterance (max(min_window_s, duration + pad_s)), queued utterances of all "
        "lines decoded as one batch",
    )
    min_window_s: float = Field(default=10.0, ge=1.0, le=30.0)
    pad_s: float = Field(default=1.0, ge=0.0, le=10.0)
    beam_size: int | None = Field(
        default=1,
        ge=1,
        le=10,
        description="None = asr.beam_size. Measured (fitted window, shared clips): beam 1 "
        "CER 0.276 and >= 32 lines at p95 <= 1 s on 2 cores; beam 5 CER 0.243, ~24 lines",
    )
    timestamps_cut: bool = Field(
        default=False,
        description="fitted: decode with timestamps and stop at the first timestamp at or "
        "after the utterance's end (drops a sentence Whisper repeats into the padding). "
        "Off by default: on the shared clips it cost CER (0.299 vs 0.278 at beam 1) and the "
        "hallucination guard already collapses repeated sentences",
    )
    warmup: bool = Field(default=True, description="decode one dummy utterance at start")
    no_repeat_ngram_size: int = Field(default=0, ge=0)
    max_batch: int = Field(default=4, ge=1, le=64)
    queue_max: int = Field(default=256, ge=1, description="utterances waiting for the ASR")
    per_call_queue_max: int = Field(
        default=16,
        ge=1,
        description="utterances of one call waiting for the ASR (its share of the queue; "
        "decodes are taken round-robin across calls). A call over its share, or the call "
        "with the longest queue when the whole queue is full, loses its own utterances, "
        "never another call's; counted in qa_dropped_total{stage=asr} and the call's "
        "scorecard (incomplete)",
    )
    overflow: Literal["drop_oldest", "reject_newest"] = Field(
        default="drop_oldest",
        description="which of the shedding call's utterances goes: its oldest waiting one "
        "(it is furthest behind) or its newest",
    )
    max_speed: float = Field(
        default=1.0,
        ge=0.0,
        description="network sources (websocket, audiosocket): a call whose media clock "
        "runs ahead of its wall clock by more than burst_s beyond max_speed x real time "
        "(audio sent too fast, or timestamps that jump ahead) is cut off with the error "
        "faster_than_real_time and scored incomplete; 0 = off. Replay and device sources "
        "are paced by their own clock",
    )
    burst_s: float = Field(
        default=5.0, ge=0.0, description="media seconds a call may run ahead (jitter, bursts)"
    )
    max_audio_s: float = Field(
        default=4 * 3600.0,
        ge=0.0,
        description="a call's audio is capped at this many seconds: past it the call is "
        "cut off (duration_cap) and scored incomplete; 0 = no cap",
    )
    max_calls: int = Field(
        default=0,
        ge=0,
        description="open calls at most; a new call beyond it is refused at admission "
        "(call error at_capacity); 0 = no limit",
    )
    max_queue_age_s: float = Field(
        default=0.0,
        ge=0.0,
        description="0 = off; else an utterance waiting longer than this is dropped "
        "(counted, reason=stale) instead of decoded",
    )
    recent_scorecards: int = Field(
        default=100,
        ge=0,
        description="the last N scorecards kept in memory (LiveService.scorecards, for a "
        "status API or a test to read); every scorecard goes to the sinks as it is made, "
        "so nothing else needs them kept; 0 = none",
    )
    verify_keep_s: float = Field(
        default=240.0,
        ge=0.0,
        description="asr.verify at a call's end (the same setting and margin as recorded "
        "calls): seconds of each call's utterance audio kept for it, 16-bit at 16 kHz "
        "(32 KB a second: 7.7 MB a call, 32 calls 246 MB at most). Past the cap each "
        "side keeps its first turns (up to a quarter of it) and its latest ones and loses "
        "middle turns; a rule whose turns lost their audio is not verified; 0 = off",
    )
    verify_timeout_s: float = Field(
        default=60.0,
        gt=0.0,
        description="a call's verification taking longer is given up: its scorecard is "
        "the unverified one (counted, qa_live_verify_total{outcome=timeout}, and logged)",
    )
    record: RecordConfig = RecordConfig()
    text_cache: int = Field(
        default=10_000,
        ge=1,
        description="utterance texts whose rule analysis the pack keeps (a sentence heard "
        "again, a scripted greeting say, is not analysed again); about 3 KB each, so the "
        "default is ~30 MB at most. Batch rescoring keeps more (200,000)",
    )


class MetricsConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)


class ServeConfig(PipelineConfig):
    """Everything ``qa-pipeline serve`` needs."""

    sources: tuple[SourceConfig, ...] = (WebSocketSourceConfig(),)
    live: LiveConfig = LiveConfig()
    metrics: MetricsConfig = MetricsConfig()
    dashboard: DashboardConfig | None = Field(
        default=None, description="live dashboard served by this process (needs a token)"
    )
    notify: NotifyConfig | None = Field(
        default=None, description="supervisor notifiers for critical findings and low scores"
    )
    store: str | None = Field(
        default=None,
        description="where every ended call is written (transcript, call row, scorecard): "
        "a SQLite path or sqlite:///path, or a postgresql:// URL for a shared database; "
        "qa-pipeline serve uses out/qa-store.sqlite when the config does not say, null = "
        "none (see qa_pipeline.store.writer)",
    )
    store_queue: int = Field(
        default=1000, ge=1, description="ended calls waiting for the store before drops"
    )
    shutdown_timeout_s: float = Field(default=30.0, gt=0)
    call_timeout_s: float = Field(
        default=4 * 3600.0, gt=0, description="a call longer than this is closed and scored"
    )


def load_serve_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> ServeConfig:
    """Load and validate a serve config (None = defaults); all problems reported at once."""
    cfg = load_config_as(ServeConfig, path, overrides)
    where = Location(str(path) if path is not None else "<defaults>")
    problems: list[tuple[Location, str]] = []
    names = [s.name for s in cfg.sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append((where, f"sources: duplicate name(s) {', '.join(dupes)}"))
    for s in cfg.sources:
        if isinstance(s, WebSocketSourceConfig) and (why := s.secret_problem()):
            problems.append((where, why))
    if problems:
        raise ConfigError(problems)
    return cfg
