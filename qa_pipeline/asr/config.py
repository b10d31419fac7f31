"""The ``asr:`` section of the pipeline config: Whisper (faster-whisper / CTranslate2)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AsrConfig(BaseModel):
    """Whisper (faster-whisper / CTranslate2) settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
        description="recorded calls: 'fitted' = this project's decode, each segment's encoder "
        "window max(min_window_seconds, duration + 1 s) in whole seconds, at most 30, its "
        "segments batched (a GPU decodes many at once); 'full' = faster-whisper's own decode "
        "of each segment in Whisper's 30 s window. With the default 30 s minimum both read "
        "the same window (measured on the shared zh clips: 0.234 pooled CER each)",
    )
    min_window_seconds: float = Field(
        default=30.0,
        ge=1.0,
        le=30.0,
        description="window: fitted: the smallest encoder window in seconds. Shorter windows "
        "are faster on CPU (15 s: about twice the throughput on calls) and cost accuracy, by "
        "how much depends on the CPU's int8 kernels: on an AVX512-VNNI/AMX CPU (2026-12-07) "
        "the shared zh clips read 0.234 pooled CER at 30 s, 0.263 at 20 s, 0.288 at 15 s "
        "(plain loop 0.232); on an older AVX2 one 15 s was as good as 30 s",
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
        "scores the hinted reading within verify_margin of the heard one "
        "(qa_pipeline/verify.py); the transcript text is unchanged",
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
