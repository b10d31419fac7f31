"""``qa-pipeline samples``: generate the synthetic sample calls (mounted by ``qa_pipeline.cli``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import QAError
from .corpus import DEFAULT_CALLS, DEFAULT_SEED, corpus_dir, generate_corpus, read_sidecar
from .generate import ENCODINGS, generate_samples, load_scenarios


def samples_command(
    outdir: Annotated[
        Path, typer.Option("--outdir", "-o", help="where <id>.wav and <id>.json are written")
    ] = Path("samples"),
    scenario: Annotated[
        list[str] | None,
        typer.Option("--scenario", "-s", help="scenario id to generate (repeatable; default all)"),
    ] = None,
    encoding: Annotated[
        str, typer.Option(help=f"WAV sample encoding: {', '.join(ENCODINGS)}")
    ] = "ulaw",
    rate: Annotated[int, typer.Option(help="sample rate in Hz (8000 or 16000)")] = 8000,
    force: Annotated[bool, typer.Option(help="regenerate even when up to date")] = False,
    corpus: Annotated[
        bool,
        typer.Option(
            "--corpus",
            help="render the untuned accuracy corpus instead (under OUTDIR/seed-SEED; "
            "--encoding/--rate/--scenario do not apply: each call draws its own)",
        ),
    ] = False,
    calls: Annotated[int, typer.Option(help="--corpus: number of calls")] = DEFAULT_CALLS,
    seed: Annotated[
        int, typer.Option(help="--corpus: seed (same seed, same calls)")
    ] = DEFAULT_SEED,
) -> None:
    """Render the scenarios (espeak-ng Mandarin + sox) into dual-channel sample calls."""
    out = Console()
    err = Console(stderr=True)
    ids = list(scenario or [])
    if corpus:
        _corpus(outdir, calls, seed, force, out, err)
        return
    try:
        total = len(ids) if ids else len(load_scenarios())
        with _bar("samples", err) as bar:
            task = bar.add_task("", total=total)

            def progress(sid: str, done: int, _total: int) -> None:
                bar.update(task, completed=done, description=sid)

            paths = generate_samples(
                outdir, ids, rate=rate, encoding=encoding, progress=progress, force=force
            )
    except QAError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e

    table = Table(title=f"sample calls in {outdir}")
    table.add_column("id")
    table.add_column("duration", justify="right")
    table.add_column("turns", justify="right")
    table.add_column("expect")
    table.add_column("file")
    for p in paths:
        doc = json.loads(p.with_suffix(".json").read_text(encoding="utf-8"))
        expect = ", ".join(f"{k}={v}" for k, v in doc.get("expect", {}).items())
        table.add_row(
            doc["scenario"],
            f"{doc['audio']['duration']:.1f} s",
            str(len(doc["turns"])),
            expect,
            str(p),
        )
    out.print(table)


def _bar(label: str, err: Console) -> Progress:
    """A transient progress bar on stderr: one step per call written or found cached."""
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def _corpus(outdir: Path, calls: int, seed: int, force: bool, out: Console, err: Console) -> None:
    try:
        with _bar("corpus", err) as bar:
            task = bar.add_task("", total=calls)
            paths = generate_corpus(
                outdir,
                calls,
                seed,
                force=force,
                progress=lambda cid, done, _n: bar.update(task, completed=done, description=cid),
            )
    except QAError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    table = Table(title=f"untuned corpus in {corpus_dir(outdir, seed)} (seed {seed})")
    for col in ("id", "company", "direction", "audio", "duration", "faults"):
        table.add_column(col)
    for p in paths:
        doc = read_sidecar(p)
        a = doc["audio"]
        table.add_row(
            p.stem,
            doc["company"],
            doc["call"]["direction"],
            f"{a['sample_rate'] // 1000} kHz {a['encoding']}",
            f"{a['duration']:.1f} s",
            ", ".join(doc["faults"]) or "-",
        )
    out.print(table)
