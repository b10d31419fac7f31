"""The ``rescore`` command.

Mount it on the main command (``qa_pipeline/cli.py``)::

    from .rescore.cli import rescore_command
    app.command("rescore")(rescore_command)

Standalone: ``python -m qa_pipeline.rescore [DIR ...] [options]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..cli_errors import fail
from ..errors import QAError
from ..store import DEFAULT_STORE
from .run import RescoreOptions, rescore
from .summary import RescoreSummary


def rescore_command(
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="directories (searched recursively) or files of recordings / transcript "
            "JSON documents; none: every call already in the store",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        str,
        typer.Option(
            "--store",
            "-s",
            help="transcript store (also caches and results): a SQLite file, sqlite:///path "
            "or a postgresql://user@host:port/db URL",
        ),
    ] = str(DEFAULT_STORE),
    kafka: Annotated[
        str | None,
        typer.Option(
            "--kafka",
            help="Kafka bootstrap servers: read the transcripts topic; TLS and SASL/SCRAM "
            "settings come from --config's sinks.kafka section",
        ),
    ] = None,
    topic: Annotated[str, typer.Option("--topic", help="transcripts topic")] = "qa.transcripts",
    rules: Annotated[
        Path | None, typer.Option("--rules", "-r", help="rule pack to apply (default pack)")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", "-b", help="old rule pack: diff its results with the new"),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="results.jsonl, results.csv, results.xlsx, report.html, diff"
        ),
    ] = Path("out/rescore"),
    xlsx: Annotated[
        bool,
        typer.Option(
            "--xlsx/--no-xlsx",
            help="also write results.xlsx (calls and findings sheets; about 0.5 s per 1,000 calls)",
        ),
    ] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="rule-scoring processes (default: 1 below 2,000 calls, else 2)",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="keep results already committed by the same run (same inputs and packs)",
        ),
    ] = True,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="YAML config (ASR, VAD, rules; sinks.kafka: TLS and SASL)"
        ),
    ] = None,
    batch_files: Annotated[
        int, typer.Option("--batch-files", min=1, help="recordings per ASR batch")
    ] = 8,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Re-score calls already taken with a (changed) rule pack: rules only where the
    transcript is stored, ASR only for recordings not transcribed with these settings."""
    err = Console(stderr=True)
    opts = RescoreOptions(
        inputs=list(inputs or []),
        store=store,
        kafka=kafka,
        topic=topic,
        rules=rules,
        baseline=baseline,
        out=out,
        workers=workers,
        resume=resume,
        config=config,
        batch_files=batch_files,
        progress=not quiet,
        xlsx=xlsx,
    )
    for p in opts.inputs:
        if not p.exists():
            typer.echo(f"error: {p}: does not exist", err=True)
            raise typer.Exit(2)
    try:
        summary = rescore(opts, console=err)
    except (QAError, RuntimeError, OSError) as e:
        fail(e)
    if json_out:
        print(json.dumps(summary_dict(summary), ensure_ascii=False, indent=2))
    else:
        print_summary(Console(), summary)


def summary_dict(s: RescoreSummary) -> dict[str, object]:
    return {
        "run_id": s.run_id,
        "baseline_run_id": s.baseline_run_id,
        "pack": s.pack,
        "baseline_pack": s.baseline_pack,
        "calls": s.calls,
        "scored": s.scored,
        "resumed": s.resumed,
        "reused": s.reused,
        "transcribed": s.transcribed,
        "cached": s.cached,
        "imported": s.imported,
        "errors": [
            {"call_id": e.call_id, "source": e.source, "error": e.message} for e in s.errors
        ],
        "workers": s.workers,
        "audio_seconds": round(s.audio_seconds, 2),
        "asr_seconds": round(s.asr_seconds, 2),
        "score_seconds": round(s.score_seconds, 3),
        "seconds": round(s.seconds, 3),
        "outputs": {k: str(v) for k, v in s.outputs.items()},
        "diff": {
            k: ({r: list(v) for r, v in d.items()} if isinstance(d, dict) else d)
            for k, d in s.diff.items()
        },
        "kafka": s.kafka,
        "bias_version": s.bias_version,
        "stale_bias": s.stale_bias,
        "verify_version": s.verify_version,
        "stale_verify": s.stale_verify,
        "promote": s.promote,
        "promote_refused": s.promote_refused,
    }


def print_summary(console: Console, s: RescoreSummary) -> None:
    t = Table(title=f"Re-score {s.pack}", show_header=False, expand=False)
    t.add_column()
    t.add_column()
    t.add_row("calls", str(s.calls))
    t.add_row("scored now", f"{s.scored} ({s.workers} process{'es' if s.workers > 1 else ''})")
    if s.resumed:
        t.add_row("already done (resumed)", str(s.resumed))
    t.add_row("transcripts from cache", str(s.cached))
    if s.transcribed:
        xrt = s.audio_seconds / s.asr_seconds if s.asr_seconds else 0.0
        t.add_row(
            "transcribed (ASR)",
            f"{s.transcribed} ({s.audio_seconds:.0f} s audio in {s.asr_seconds:.1f} s, "
            f"{xrt:.1f}× real time)",
        )
    if s.imported:
        t.add_row("imported transcripts", str(s.imported))
    t.add_row("unreadable / errors", str(len(s.errors)))
    if s.stale_bias:
        t.add_row(
            "decoded with another bias",
            f"{len(s.stale_bias)} transcripts (kept; the decoder bias is now "
            f"{s.bias_version or 'off'}: see --json stale_bias)",
        )
    if s.stale_verify:
        t.add_row(
            "verified with other phrases",
            f"{len(s.stale_verify)} transcripts (kept; required phrases are now verified "
            f"as {s.verify_version or 'off'}: see --json stale_verify)",
        )
    if s.baseline_pack:
        d = s.diff
        t.add_row("baseline", s.baseline_pack)
        t.add_row(
            "changed calls", f"{d.get('changed_calls', 0)} of {d.get('compared', 0)} compared"
        )
        for rid, (newly, gone) in sorted(d.get("rules", {}).items()):
            t.add_row(f"  {rid}", f"+{newly} newly flagged, -{gone} no longer flagged")
        t.add_row("grade changes", str(d.get("grade_changes", 0)))
    rate = s.calls / s.seconds if s.seconds else 0.0
    t.add_row("time", f"{s.seconds:.2f} s ({rate:.0f} calls/s overall)")
    for name, path in s.outputs.items():
        t.add_row(name, str(path))
    t.add_row("run", s.run_id)
    console.print(t)
    if s.promote is not None:
        console.print("To make this run count (current scores, trends):", soft_wrap=True)
        console.print(f"  {s.promote}", soft_wrap=True, markup=False, highlight=False)
    elif s.promote_refused is not None:
        console.print(
            f"Run {s.run_id} cannot be promoted: it {s.promote_refused}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    for e in s.errors[:20]:
        console.print(f"[red]unreadable[/] {e.call_id}: {e.source}: {e.message}", soft_wrap=True)
    if len(s.errors) > 20:
        console.print(f"… and {len(s.errors) - 20} more (results.jsonl, status 'error')")


app = typer.Typer(
    name="rescore",
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Re-score calls already taken with a (changed) rule pack.",
)
app.command()(rescore_command)


def main() -> None:
    app(prog_name=f"{Path(sys.executable).name} -m qa_pipeline.rescore")
