"""Pipeline configuration: pydantic models checked before anything starts.

A config file is YAML; every section is optional and falls back to the embedded
defaults (``configs/default.yaml`` documents each key). Unknown keys are rejected and
every problem is reported at once with its file and line.

Secrets from the environment: any string value in a config file may name environment
variables as ``${NAME}`` (``NAME`` = letters, digits, ``_``), e.g.
``password: ${SMTP_PASSWORD}`` or ``url: https://…/send?key=${WECOM_KEY}``; the variable's
value replaces it when the file is loaded. A variable that is not set is a config error
naming the key and the variable. ``$${`` writes a literal ``${``. Values given on the
command line or in code are not expanded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError, Location
from .messages import Role
from .sinks.config import SinksConfig
from .yamlsrc import copy_map, line_of, load_yaml_file, validation_problems


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AudioConfig(_Model):
    """How channels of a recording map to roles."""

    channels: tuple[Role, ...] = Field(
        default=(Role.AGENT, Role.CUSTOMER),
        description="Role of each channel, in order. A mono file is one 'unknown' speaker.",
    )
    min_level_dbfs: float = Field(
        default=-70.0, description="A file whose peak is below this is reported as silent."
    )
    mono_roles: Literal["auto", "off"] = Field(
        default="auto",
        description="mono recordings: 'auto' = tell two voices apart and name the agent from "
        "the pack's agent phrases and the call direction (qa_pipeline/roles.py), roles left "
        "unknown when the evidence is weak; 'off' = every utterance an unknown speaker",
    )
    mono_split_ms: int = Field(
        default=300,
        ge=30,
        description="mono, auto: a pause this long may be a change of speaker (the channel is "
        "cut there into pieces whose voices are compared)",
    )
    mono_min_separation: float = Field(
        default=1.35,
        ge=0.0,
        description="mono, auto: how far apart two voices must be to be told apart (centre "
        "distance over the spread within them, relative to the same split of one voice: 1 = "
        "no more apart than one voice); below it roles stay unknown. Set on the corpus's "
        "development seed: calls at <= 1.20 had 7-72 % of their speech on the wrong side or "
        "unknown, calls at >= 1.47 at most 4 % wrong",
    )
    mono_min_margin: float = Field(
        default=2.0,
        ge=1.0,
        description="mono, auto: the agent's voice must say the phrases of this many more "
        "agent rules of the pack than the other (the direction's first speaker counts one)",
    )


class VadConfig(_Model):
    """webrtcvad segmentation with start/stop hysteresis."""

    aggressiveness: int = Field(default=2, ge=0, le=3)
    frame_ms: Literal[10, 20, 30] = 30
    start_ms: int = Field(default=90, ge=0, description="voiced time needed to open a segment")
    stop_ms: int = Field(default=600, ge=0, description="unvoiced time that closes a segment")
    pad_ms: int = Field(default=150, ge=0, description="audio kept before/after each segment")
    max_utterance_s: float = Field(default=25.0, gt=1.0, le=30.0)
    min_utterance_s: float = Field(default=0.3, ge=0.0)
    min_level_dbfs: float = Field(
        default=-55.0, description="frames quieter than this are never speech (line noise)"
    )
    noise_gate_db: float = Field(
        default=3.0,
        ge=0.0,
        description="a frame counts as speech only this far (dB) above the channel's noise "
        "floor, whatever webrtcvad says (0 = off)",
    )
    noise_floor_window_s: float = Field(
        default=5.0, gt=0.0, description="past audio the noise floor is estimated from"
    )
    noise_floor_percentile: float = Field(
        default=5.0,
        ge=0.0,
        lt=100.0,
        description="the noise floor: this percentile of the window's frame levels",
    )
    trim_db: float = Field(
        default=20.0,
        ge=0.0,
        description="a segment's speech runs from its first to its last frame within this "
        "many dB of its loud level (90th percentile): quieter babble or noise that held it "
        "open at either edge is cut off (0 = off)",
    )
    turn_gap_s: float = Field(
        default=1.5,
        ge=0.0,
        description="recorded calls: join a channel's segments closer than this into one "
        "turn when the other side does not speak in between (more context for the ASR)",
    )
    nonspeech_filter: bool = Field(
        default=True,
        description="drop VAD segments that are tonal or stationary (tones, DTMF, fax, "
        "call-progress tones, line noise, hold music) before the ASR (qa_pipeline.screen)",
    )
    nonspeech_tonal_fraction: float = Field(
        default=0.75,
        gt=0.0,
        le=1.0,
        description="a segment is tonal when this share of its active frames has two spectral "
        "peaks holding > 80 % of the band energy (measured: tones/DTMF/fax >= 0.86, speech "
        "<= 0.67)",
    )
    nonspeech_min_spread_db: float = Field(
        default=1.2,
        ge=0.0,
        description="a segment is stationary when its frame level varies less than this "
        "(std, dB; measured: line noise / hold music <= 0.72, speech >= 1.7 even at 5 dB SNR)",
    )


class AsrConfig(_Model):
    """Whisper (faster-whisper / CTranslate2) settings."""

    model: str = Field(
        default="embedded:whisper-base",
        description="'embedded:whisper-base' (from the PyPI model packages) or a path to a "
        "CTranslate2 Whisper directory.",
    )
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    compute_type: str = Field(
        default="default", description="'default' = int8 on CPU, float16 on CUDA"
    )
    language: str | None = Field(default="zh", description="None = detect per utterance")
    beam_size: int = Field(default=5, ge=1, le=10)
    window: Literal["full", "fitted"] = Field(
        default="fitted",
        description="recorded calls: 'fitted' = each segment's encoder window fitted to it, "
        "at least min_window_seconds (max(min_window_seconds, duration + 1 s), whole seconds, "
        "at most 30); 'full' = every segment padded to Whisper's 30 s window (faster-whisper's "
        "own decode). Measured on the shared zh clips, beam 5: full CER 0.251; fitted 15 s "
        "CER 0.245 at about twice the full window's throughput on calls",
    )
    min_window_seconds: float = Field(
        default=15.0,
        ge=1.0,
        le=30.0,
        description="window: fitted: the smallest encoder window in seconds (measured: 10 s "
        "CER 0.263, 15 s 0.245, 20 s 0.247; windows fitted tightly to short turns lose more)",
    )
    workers: int = Field(default=2, ge=1, le=16, description="parallel decodes (CPU: one per core)")
    threads_per_worker: int = Field(default=1, ge=1, le=16)
    temperatures: tuple[float, ...] = Field(
        default=(0.0,), description="decode temperatures; more than one enables bounded fallback"
    )
    max_tokens_per_second: float = Field(
        default=25.0, gt=0, description="cap on generated tokens per audio second (+8)"
    )
    no_speech_threshold: float = Field(default=0.6, ge=0, le=1)
    log_prob_threshold: float = Field(default=-1.2)
    repetition_max: int = Field(
        default=4, ge=2, description="a unit repeated more than this many times is a loop"
    )
    initial_prompt: str | None = Field(
        default=None,
        description="context for the decoder, e.g. '以下是普通话的客服电话录音。' (measured: "
        "a generic prompt raises CER on the shared clips; use hotwords for domain terms)",
    )
    timestamps: bool = Field(
        default=True,
        description="decode in Whisper's timestamp mode (its main training mode; measured "
        "lower CER than without timestamps on the shared clips)",
    )
    hotwords: tuple[str, ...] = Field(
        default=(), description="domain words to bias decoding (agent names, product names, ...)"
    )
    bias: Literal["company", "pack", "off"] = Field(
        default="company",
        description="what the decoder is told besides hotwords (asr/bias.py): 'company' the "
        "rule pack's company name; 'pack' also the required agent phrases; 'off' nothing",
    )
    verify: bool = Field(
        default=True,
        description="when a required phrase is missing, decode the turns in its rule's scope "
        "again with the rule's phrases as hotwords and accept a phrase only when the audio "
        "scores the hinted reading within verify_margin of the heard one (asr/verify.py); "
        "the transcript text is unchanged",
    )
    verify_margin: float = Field(
        default=4.0,
        ge=0,
        description="nats the hinted reading's teacher-forced log-probability may fall "
        "short of the best reading of the same audio for its phrase to be accepted (set on "
        "the seed-1 corpus slice: the largest margin without a new false pass)",
    )
    hallucinations: tuple[str, ...] = Field(
        default=(),
        description="extra phrases to drop when they are a whole utterance (added to built-ins)",
    )
    cache_dir: str | None = Field(default=None, description="where the embedded model is assembled")

    @field_validator("temperatures")
    @classmethod
    def _bounded(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or len(v) > 3:
            raise ValueError("give 1 to 3 temperatures (fallback must stay bounded)")
        return v


class RulesConfig(_Model):
    pack: str | None = Field(default=None, description="rule pack path; None = default pack")
    settings: dict[str, Any] = Field(default_factory=dict, description="pack setting overrides")


class PipelineConfig(_Model):
    audio: AudioConfig = AudioConfig()
    vad: VadConfig = VadConfig()
    asr: AsrConfig = AsrConfig()
    rules: RulesConfig = RulesConfig()
    sinks: SinksConfig = Field(
        default_factory=SinksConfig,
        description="where events go: JSONL files by default, Kafka when configured",
    )


ConfigT = TypeVar("ConfigT", bound=PipelineConfig)


def load_yaml(path: Path) -> Any:
    """Load YAML with line numbers and duplicate-key rejection (:mod:`.yamlsrc`); errors
    name the file and line."""
    return load_yaml_file(path)


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> PipelineConfig:
    """Load and validate a config file (None = embedded defaults)."""
    return load_config_as(PipelineConfig, path, overrides)


def load_config_as(
    model: type[ConfigT],
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> ConfigT:
    """Load a config file into ``model`` (a ``PipelineConfig`` subclass such as the
    service's ``ServeConfig``); unknown keys rejected, every problem reported with its line."""
    data: dict[str, Any] = {}
    src = "<defaults>"
    if path is not None:
        p = Path(path)
        src = str(p)
        loaded = load_yaml(p)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError([(Location(src, 1), "top level must be a mapping")])
        data = loaded
        problems = expand_env(data, src)
        if problems:
            raise ConfigError(problems)
    if overrides:
        data = _merge(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_problems(e, data, src)) from None


_ENV_REF = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(data: Any, src: str) -> list[tuple[Location, str]]:
    """Replace ``${NAME}`` in every string of ``data`` (in place, so that line numbers are
    kept) with the environment variable's value; the problems found (unset variables)."""
    problems: list[tuple[Location, str]] = []

    def expand(value: str, loc: tuple[int | str, ...]) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(1):  # $${NAME}: a literal ${NAME}
                return m.group(0)[1:]
            name = m.group(2)
            env = os.environ.get(name)
            if env is None:
                where = ".".join(str(p) for p in loc)
                problems.append(
                    (
                        Location(src, line_of(data, loc)),
                        f"{where}: environment variable {name} is not set",
                    )
                )
                return ""
            return env

        return _ENV_REF.sub(one, value) if "${" in value else value

    def walk(node: Any, loc: tuple[int | str, ...]) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            if isinstance(value, str):
                node[key] = expand(value, (*loc, key))
            elif isinstance(value, (dict, list)):
                walk(value, (*loc, key))

    if isinstance(data, (dict, list)):
        walk(data, ())
    return problems


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy_map(base)  # keeps the lines of what the file said
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
